package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import io.fabric8.kubernetes.api.model.Toleration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Where a VM goes. A node fits when the memlock limits already placed there plus the VM's own stay within its
 * budget (equality fits). Among fitting nodes the one left with the least free budget wins (best fit), so
 * large holes stay free for large VMs; ties go to the node name.
 */
public final class Placement {
  private Placement() {}

  /** Why a VM is not placed. {@code terminal}: the user must change something (phase Failed), else Pending. */
  public enum Reason {
    InsufficientBudget(false),
    NodeNotFound(false),
    NoMatchingNode(false),
    NodeSelectorMismatch(true),
    DeviceConflict(true),
    /** No candidate node advertises a device-plugin resource the VM's node pod requests (it may appear later). */
    MissingDeviceResource(false),
    /** Every candidate node's Ready condition is not True (the VM waits for one to become Ready). */
    NodeNotReady(false),
    /** Every candidate node has a NoSchedule/NoExecute taint the node pod does not tolerate (until untainted). */
    UntoleratedTaint(false),
    /** The node pod's memory request does not fit beside what other pods request on any candidate node. */
    InsufficientNodeMemory(false);

    public final boolean terminal;

    Reason(boolean terminal) {
      this.terminal = terminal;
    }
  }

  /**
   * What the VM asks for. {@code resources}: the device-plugin resources its node pod requests (1 each, see
   * {@link NodePodShape#deviceResources}); a node must have each in its status.allocatable.
   * {@code podMemoryBytes}: the node pod's memory request ({@link NodePodShape#podMemoryBytes}; 0: not checked,
   * as the kubelet does not check a pod that requests none); it must fit in the node's allocatable memory
   * beside what the other pods there request. {@code tolerations}: the node pod's
   * ({@link NodePodShape#DEFAULT_TOLERATIONS} unless given).
   */
  public record Request(long memlockLimitBytes, List<String> devices, String nodeName, Map<String, String> nodeSelector,
      List<String> resources, long podMemoryBytes, List<Toleration> tolerations) {
    public Request {
      devices = devices == null ? List.of() : List.copyOf(devices);
      nodeSelector = nodeSelector == null ? Map.of() : Map.copyOf(nodeSelector);
      resources = resources == null ? List.of() : List.copyOf(resources);
      tolerations = tolerations == null ? NodePodShape.DEFAULT_TOLERATIONS : List.copyOf(tolerations);
    }

    /** A request that does not check the node pod's memory, with the node pod's default tolerations. */
    public Request(long memlockLimitBytes, List<String> devices, String nodeName, Map<String, String> nodeSelector,
        List<String> resources) {
      this(memlockLimitBytes, devices, nodeName, nodeSelector, resources, 0, NodePodShape.DEFAULT_TOLERATIONS);
    }

    /** A request without device-plugin resources. */
    public Request(long memlockLimitBytes, List<String> devices, String nodeName, Map<String, String> nodeSelector) {
      this(memlockLimitBytes, devices, nodeName, nodeSelector, List.of());
    }
  }

  /** A node's current load: placed memlock limits and devices held (PCI address -> NS/NAME of the VM). */
  public record Load(long usedBytes, Map<String, String> devices) {
    public static final Load EMPTY = new Load(0, Map.of());
  }

  /** Either {@code node} or {@code reason} + {@code message}. */
  public record Decision(String node, Reason reason, String message) {
    public static Decision placed(String node) {
      return new Decision(node, null, null);
    }

    public boolean isPlaced() {
      return node != null;
    }
  }

  /**
   * Why a Ready node with a NoExecute readiness taint is no candidate yet: the node controller lifts the taint a
   * few seconds after the condition turns True, and until then the VM's pod would be evicted
   * ({@link NodeBudget#unusableForPlaced}), so the VM would only end Failed.
   */
  private static final String LAGGING_TAINT_WAIT = " (the node is Ready again: the node controller removes the taint"
      + " shortly); the VM waits for it";

  /**
   * A Ready node's lingering NoExecute readiness taint, judged by the rule for a placed pod
   * ({@link NodeBudget#unusableForPlaced}: on a Ready node its {@code NodeNotReady} is such a taint), or null.
   */
  private static NodeBudget.Unusable lingeringReadinessTaint(NodeBudget node, List<Toleration> tolerations) {
    NodeBudget.Unusable unusable = node.unusableForPlaced(tolerations);
    return unusable != null && unusable.reason() == Reason.NodeNotReady ? unusable : null;
  }

  public static Decision place(Request request, List<NodeBudget> nodes, Map<String, Load> loads) {
    List<NodeBudget> candidates;
    boolean pinned = request.nodeName() != null && !request.nodeName().isEmpty();
    if (pinned) {
      NodeBudget node = nodes.stream().filter(n -> n.name().equals(request.nodeName())).findFirst().orElse(null);
      if (node == null) {
        return new Decision(null, Reason.NodeNotFound,
            "spec.nodeName " + request.nodeName() + " is not a node of this cluster (yet); the VM waits for it");
      }
      if (!matches(node, request.nodeSelector())) {
        return new Decision(null, Reason.NodeSelectorMismatch, "spec.nodeName " + node.name()
            + " does not carry the labels of spec.nodeSelector " + request.nodeSelector()
            + "; change spec.nodeName or spec.nodeSelector");
      }
      if (!node.ready()) {
        return new Decision(null, Reason.NodeNotReady, "spec.nodeName " + node.name() + " is not Ready: "
            + node.notReady() + "; the VM waits for it: fix the node (its kubelet, runtime, network), or choose"
            + " another node in spec.nodeName");
      }
      var lagging = lingeringReadinessTaint(node, request.tolerations());
      if (lagging != null) {
        return new Decision(null, Reason.NodeNotReady, "spec.nodeName " + node.name() + ": " + lagging.message()
            + LAGGING_TAINT_WAIT);
      }
      // a cordon's own taint: a cordoned node still takes VMs pinned to it (NodeBudget.schedulable), as the
      // kubelet does for pods bound by spec.nodeName
      var taint = node.untoleratedTaint(withCordon(request.tolerations()));
      if (taint.isPresent()) {
        return new Decision(null, Reason.UntoleratedTaint, "spec.nodeName " + node.name() + " has taint "
            + NodeBudget.describe(taint.get()) + ", which the VM's node pod does not tolerate; the VM waits: untaint"
            + " the node (kubectl taint nodes " + node.name() + " " + taint.get().getKey() + ":"
            + taint.get().getEffect() + "-), or choose another node in spec.nodeName");
      }
      candidates = List.of(node);
    } else {
      candidates = nodes.stream().filter(n -> n.schedulable() && matches(n, request.nodeSelector())).toList();
      if (candidates.isEmpty()) {
        return new Decision(null, Reason.NoMatchingNode, request.nodeSelector().isEmpty()
            ? "no schedulable node in the cluster (yet)"
            : "no schedulable node carries the labels of spec.nodeSelector " + request.nodeSelector());
      }
      List<NodeBudget> readyOrLagging = candidates.stream().filter(NodeBudget::ready).toList();
      List<NodeBudget> ready = readyOrLagging.stream()
          .filter(n -> lingeringReadinessTaint(n, request.tolerations()) == null).toList();
      if (ready.isEmpty() && !readyOrLagging.isEmpty()) {
        return new Decision(null, Reason.NodeNotReady, readyOrLagging.stream()
            .map(n -> lingeringReadinessTaint(n, request.tolerations()).message())
            .collect(Collectors.joining("; ")) + LAGGING_TAINT_WAIT);
      }
      if (ready.isEmpty()) {
        return new Decision(null, Reason.NodeNotReady, candidates.stream()
            .map(n -> "node " + n.name() + " is not Ready: " + n.notReady()).collect(Collectors.joining("; "))
            + "; the VM waits for a Ready node: fix the node (its kubelet, runtime, network), or add one"
            + (request.nodeSelector().isEmpty() ? "" : " or change spec.nodeSelector"));
      }
      List<NodeBudget> tolerated = ready.stream()
          .filter(n -> n.untoleratedTaint(request.tolerations()).isEmpty()).toList();
      if (tolerated.isEmpty()) {
        return new Decision(null, Reason.UntoleratedTaint, ready.stream()
            .map(n -> "node " + n.name() + " has taint " + NodeBudget.describe(n.untoleratedTaint(request.tolerations())
                .orElseThrow()))
            .collect(Collectors.joining("; "))
            + ", which the VM's node pod does not tolerate (node pods tolerate no taint); the VM waits: untaint a"
            + " node (kubectl taint nodes NODE KEY:EFFECT-), or add an untainted node"
            + (request.nodeSelector().isEmpty() ? "" : " or change spec.nodeSelector"));
      }
      candidates = tolerated;
    }

    List<NodeBudget> equipped = new ArrayList<>();
    List<String> missing = new ArrayList<>();
    for (NodeBudget node : candidates) {
      List<String> lacks = request.resources().stream().filter(r -> node.allocatable(r) < 1).toList();
      if (lacks.isEmpty()) {
        equipped.add(node);
      } else {
        missing.add("node " + node.name() + " has no " + String.join(", no ", lacks) + " in status.allocatable");
      }
    }
    if (equipped.isEmpty()) {
      return new Decision(null, Reason.MissingDeviceResource, String.join("; ", missing)
          + ": the node's vfiovm-node daemon advertises /dev/iommu as " + dev.vfiovm.api.DeviceResources.IOMMU
          + " and each device bound to vfio-pci (with a VFIO cdev) as vfiovm.dev/pci-DDDD-BB-SS.F; bind the device"
          + " to vfio-pci on that node, choose another device or node, or use dmaBackend IoUring");
    }

    List<NodeBudget> deviceFree = new ArrayList<>();
    List<String> conflicts = new ArrayList<>();
    for (NodeBudget node : equipped) {
      Map<String, String> held = loads.getOrDefault(node.name(), Load.EMPTY).devices();
      List<String> taken = request.devices().stream().filter(held::containsKey).toList();
      if (taken.isEmpty()) {
        deviceFree.add(node);
      } else {
        conflicts.add(taken.stream()
            .map(d -> "device " + d + " on node " + node.name() + " is assigned to VfioVm " + held.get(d))
            .collect(Collectors.joining(", ")));
      }
    }
    if (deviceFree.isEmpty()) {
      return new Decision(null, Reason.DeviceConflict, String.join("; ", conflicts)
          + "; choose another device or node, or delete that VfioVm");
    }

    List<NodeBudget> roomy = request.podMemoryBytes() <= 0 ? deviceFree
        : deviceFree.stream().filter(n -> n.memoryFreeForPods() >= request.podMemoryBytes()).toList();
    if (request.podMemoryBytes() > 0) {
      if (roomy.isEmpty()) {
        return new Decision(null, Reason.InsufficientNodeMemory, "node pod memory request "
            + Quantities.human(request.podMemoryBytes()) + " (spec.memory + VMM overhead + node agent) fits beside"
            + " the other pods on no node: " + deviceFree.stream().map(Placement::describeMemory)
                .collect(Collectors.joining("; "))
            + "; lower spec.memory, free memory on a node (fewer or smaller pods there), or add a node (the"
            + " overheads are the operator's --vmm-overhead and --agent-memory)");
      }
    }

    NodeBudget best = null;
    long bestLeft = Long.MAX_VALUE;
    for (NodeBudget node : roomy.stream().sorted(Comparator.comparing(NodeBudget::name)).toList()) {
      long free = node.budgetBytes() - loads.getOrDefault(node.name(), Load.EMPTY).usedBytes();
      long left = free - request.memlockLimitBytes();
      if (left >= 0 && left < bestLeft) {
        best = node;
        bestLeft = left;
      }
    }
    if (best != null) {
      return Decision.placed(best.name());
    }
    return new Decision(null, Reason.InsufficientBudget, "memlock limit "
        + Quantities.human(request.memlockLimitBytes()) + " fits no node's free budget: "
        + roomy.stream().map(n -> describe(n, loads)).collect(Collectors.joining("; "))
        + (roomy.size() < deviceFree.size() ? "; " + deviceFree.stream().filter(n -> !roomy.contains(n))
            .map(n -> "node pod memory does not fit on " + describeMemory(n)).collect(Collectors.joining("; ")) : "")
        + "; lower spec.memory, wait for a VM to be deleted, or add a node");
  }

  /** The toleration of the cordon's taint (node.kubernetes.io/unschedulable:NoSchedule) added. */
  static List<Toleration> withCordon(List<Toleration> tolerations) {
    List<Toleration> all = new ArrayList<>(tolerations);
    all.add(new io.fabric8.kubernetes.api.model.TolerationBuilder().withKey(UNSCHEDULABLE_TAINT)
        .withOperator("Exists").withEffect("NoSchedule").build());
    return all;
  }

  /** The taint the node controller puts on a cordoned node. */
  static final String UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable";

  private static String describeMemory(NodeBudget node) {
    if (node.problem() != null) {
      return node.name() + " has no budget (" + node.problem() + ")";
    }
    return node.name() + " free " + Quantities.human(Math.max(0, node.memoryFreeForPods())) + " (allocatable "
        + Quantities.human(node.allocatableBytes()) + " - requested by other pods "
        + Quantities.human(node.requestedByOtherPods()) + ")";
  }

  private static String describe(NodeBudget node, Map<String, Load> loads) {
    long used = loads.getOrDefault(node.name(), Load.EMPTY).usedBytes();
    if (node.problem() != null) {
      return node.name() + " has no budget (" + node.problem() + ")";
    }
    return node.name() + " free " + Quantities.human(Math.max(0, node.budgetBytes() - used)) + " (allocatable "
        + Quantities.human(node.allocatableBytes()) + " - reserve " + Quantities.human(node.reserveBytes())
        + " - placed " + Quantities.human(used) + ")";
  }

  static boolean matches(NodeBudget node, Map<String, String> selector) {
    Set<Map.Entry<String, String>> required = selector.entrySet();
    return required.stream().allMatch(e -> e.getValue().equals(node.labels().get(e.getKey())));
  }
}
