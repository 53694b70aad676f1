package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
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
    MissingDeviceResource(false);

    public final boolean terminal;

    Reason(boolean terminal) {
      this.terminal = terminal;
    }
  }

  /**
   * What the VM asks for. {@code resources}: the device-plugin resources its node pod requests (1 each, see
   * {@link NodePodShape#deviceResources}); a node must have each in its status.allocatable.
   */
  public record Request(long memlockLimitBytes, List<String> devices, String nodeName, Map<String, String> nodeSelector,
      List<String> resources) {
    public Request {
      devices = devices == null ? List.of() : List.copyOf(devices);
      nodeSelector = nodeSelector == null ? Map.of() : Map.copyOf(nodeSelector);
      resources = resources == null ? List.of() : List.copyOf(resources);
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
      candidates = List.of(node);
    } else {
      candidates = nodes.stream().filter(n -> n.schedulable() && matches(n, request.nodeSelector())).toList();
      if (candidates.isEmpty()) {
        return new Decision(null, Reason.NoMatchingNode, request.nodeSelector().isEmpty()
            ? "no schedulable node in the cluster (yet)"
            : "no schedulable node carries the labels of spec.nodeSelector " + request.nodeSelector());
      }
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

    NodeBudget best = null;
    long bestLeft = Long.MAX_VALUE;
    for (NodeBudget node : deviceFree.stream().sorted(Comparator.comparing(NodeBudget::name)).toList()) {
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
        + deviceFree.stream().map(n -> describe(n, loads)).collect(Collectors.joining("; "))
        + "; lower spec.memory, wait for a VM to be deleted, or add a node");
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
