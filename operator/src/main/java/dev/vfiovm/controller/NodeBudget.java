package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import dev.vfiovm.api.DeviceResources;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeCondition;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Taint;
import io.fabric8.kubernetes.api.model.Toleration;
import java.math.RoundingMode;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;

/**
 * What a node may pin for VMs: its allocatable memory minus the host reserve (setting, or the node's
 * {@value #HOST_RESERVE_ANNOTATION} annotation). A node whose numbers cannot be read has budget 0 and says why.
 * Also what the kubelet will check when the node pod arrives (issue 12): whether the node is Ready, its taints,
 * and the memory that other pods bound to it already request.
 *
 * @param schedulable false for a cordoned node: only VMs pinned to it by spec.nodeName go there
 * @param problem why the budget is 0, or null
 * @param deviceResources the node's allocatable vfiovm.dev/* device-plugin resources (what its vfiovm-node daemon
 *     advertises to the kubelet): resource name -> count
 * @param notReady null when the node's Ready condition is True, else what it says (no candidate for a new
 *     placement: the kubelet of a NotReady node runs nothing, and the node controller taints it NoExecute)
 * @param taints the node's spec.taints (only NoSchedule and NoExecute matter to placement)
 * @param requestedByOtherPods the effective memory requests of the other non-terminal pods bound to the node
 *     ({@link #memoryRequestedByNode}); the node pod must fit in allocatable memory beside them
 */
public record NodeBudget(
    String name,
    Map<String, String> labels,
    long allocatableBytes,
    long reserveBytes,
    boolean schedulable,
    String problem,
    Map<String, Long> deviceResources,
    String notReady,
    List<Taint> taints,
    long requestedByOtherPods) {
  public static final String HOST_RESERVE_ANNOTATION = "vfiovm.dev/host-reserve";

  public NodeBudget {
    labels = labels == null ? Map.of() : Map.copyOf(labels);
    deviceResources = deviceResources == null ? Map.of() : Map.copyOf(deviceResources);
    taints = taints == null ? List.of() : List.copyOf(taints);
  }

  /** A Ready, untainted node with nothing else requesting memory. */
  public NodeBudget(String name, Map<String, String> labels, long allocatableBytes, long reserveBytes,
      boolean schedulable, String problem, Map<String, Long> deviceResources) {
    this(name, labels, allocatableBytes, reserveBytes, schedulable, problem, deviceResources, null, List.of(), 0);
  }

  /** A node without device-plugin resources. */
  public NodeBudget(String name, Map<String, String> labels, long allocatableBytes, long reserveBytes,
      boolean schedulable, String problem) {
    this(name, labels, allocatableBytes, reserveBytes, schedulable, problem, Map.of());
  }

  /** The same node with {@code bytes} of memory requested by the other pods bound to it. */
  public NodeBudget withRequestedByOtherPods(long bytes) {
    return new NodeBudget(name, labels, allocatableBytes, reserveBytes, schedulable, problem, deviceResources,
        notReady, taints, Math.max(0, bytes));
  }

  public boolean ready() {
    return notReady == null;
  }

  /** Allocatable memory not requested by other pods (may be negative on an overcommitted node). */
  public long memoryFreeForPods() {
    return allocatableBytes - requestedByOtherPods;
  }

  /**
   * The taints that mirror the Ready condition (the API server's TaintNodesByCondition puts not-ready:NoSchedule on
   * every new Node, the node controller adds and removes both keys as Ready changes). Placement judges readiness
   * by the condition itself ({@link #notReady}); of the taints, which lag behind it, only a NoExecute one still
   * keeps a node pod away ({@link #unusableForPlaced}), as the taint manager would evict it.
   */
  public static final List<String> READINESS_TAINTS = List.of("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable");

  /**
   * The first NoSchedule/NoExecute taint of the node that none of {@code tolerations} tolerates, or empty.
   * PreferNoSchedule is only a preference and never excludes a node; {@link #READINESS_TAINTS} are the Ready
   * condition's business ({@link #unusableForPlaced}).
   */
  public Optional<Taint> untoleratedTaint(List<Toleration> tolerations) {
    return taints.stream()
        .filter(t -> "NoSchedule".equals(t.getEffect()) || "NoExecute".equals(t.getEffect()))
        .filter(t -> !READINESS_TAINTS.contains(t.getKey()))
        .filter(t -> tolerations.stream().noneMatch(tol -> tolerates(tol, t)))
        .findFirst();
  }

  /** The API's toleration rule (k8s.io/api core/v1 Toleration.ToleratesTaint). */
  static boolean tolerates(Toleration toleration, Taint taint) {
    String effect = toleration.getEffect();
    if (effect != null && !effect.isEmpty() && !effect.equals(taint.getEffect())) {
      return false;
    }
    String key = toleration.getKey();
    if (key != null && !key.isEmpty() && !key.equals(taint.getKey())) {
      return false;
    }
    String operator = toleration.getOperator() == null || toleration.getOperator().isEmpty()
        ? "Equal" : toleration.getOperator();
    return switch (operator) {
      case "Exists" -> true;
      case "Equal" -> (key != null && !key.isEmpty())
          && nullToEmpty(toleration.getValue()).equals(nullToEmpty(taint.getValue()));
      default -> false;
    };
  }

  private static String nullToEmpty(String s) {
    return s == null ? "" : s;
  }

  /** Why a VM already placed on this node cannot run there now: {@link Placement.Reason} and what to do. */
  public record Unusable(Placement.Reason reason, String message) {}

  /**
   * Why a node pod placed here cannot run here now, or null: the node is not Ready (its kubelet starts nothing and
   * the node lifecycle controller's NoExecute taint has its pods evicted), or it has a NoExecute taint the node
   * pod does not tolerate (the taint manager evicts it). NoSchedule taints do not count: they keep new pods
   * away, not the ones already bound.
   */
  public Unusable unusableForPlaced(List<Toleration> tolerations) {
    if (!ready()) {
      return new Unusable(Placement.Reason.NodeNotReady, "node " + name + " is not Ready: " + notReady);
    }
    return taints.stream()
        .filter(t -> "NoExecute".equals(t.getEffect()))
        .filter(t -> tolerations.stream().noneMatch(tol -> tolerates(tol, t)))
        .findFirst()
        .map(t -> new Unusable(READINESS_TAINTS.contains(t.getKey()) ? Placement.Reason.NodeNotReady
            : Placement.Reason.UntoleratedTaint, "node " + name + " has taint " + describe(t)
            + ", which the VM's node pod does not tolerate"))
        .orElse(null);
  }

  /** kubectl's spelling of a taint: key=value:Effect (key:Effect without a value). */
  static String describe(Taint taint) {
    String value = taint.getValue() == null || taint.getValue().isEmpty() ? "" : "=" + taint.getValue();
    return taint.getKey() + value + ":" + taint.getEffect();
  }

  /**
   * The memory the kubelet counts as requested on each node (its admission arithmetic, also the scheduler's):
   * for every pod bound to a node (spec.nodeName) that is not terminal (phase Succeeded or Failed), the larger
   * of the sum over its containers and the largest init container (an init container runs alone, before the
   * containers; restartable "sidecar" init containers keep running, so they add to both), plus
   * spec.overhead.memory. A container's request is its resources.requests.memory, or its limit where only a
   * limit is given (the API server defaults the request to the limit). Node name -> bytes.
   */
  public static Map<String, Long> memoryRequestedByNode(Collection<Pod> pods) {
    Map<String, Long> byNode = new TreeMap<>();
    for (Pod pod : pods) {
      if (pod.getSpec() == null || pod.getSpec().getNodeName() == null || pod.getSpec().getNodeName().isEmpty()) {
        continue;
      }
      String phase = pod.getStatus() == null ? null : pod.getStatus().getPhase();
      if ("Succeeded".equals(phase) || "Failed".equals(phase)) {
        continue;
      }
      byNode.merge(pod.getSpec().getNodeName(), effectiveMemoryRequest(pod), Long::sum);
    }
    return byNode;
  }

  /** One pod's effective memory request (see {@link #memoryRequestedByNode}). */
  public static long effectiveMemoryRequest(Pod pod) {
    long containers = 0;
    for (Container c : pod.getSpec().getContainers() == null ? List.<Container>of() : pod.getSpec().getContainers()) {
      containers += memoryRequest(c);
    }
    long sidecars = 0;
    long initMax = 0;
    for (Container c : pod.getSpec().getInitContainers() == null ? List.<Container>of()
        : pod.getSpec().getInitContainers()) {
      long request = memoryRequest(c);
      if ("Always".equals(c.getRestartPolicy())) {
        sidecars += request;
        initMax = Math.max(initMax, sidecars);
      } else {
        initMax = Math.max(initMax, sidecars + request);
      }
    }
    long overhead = pod.getSpec().getOverhead() == null ? 0 : bytesOf(pod.getSpec().getOverhead().get("memory"));
    return Math.max(containers + sidecars, initMax) + overhead;
  }

  private static long memoryRequest(Container c) {
    if (c.getResources() == null) {
      return 0;
    }
    Quantity request = c.getResources().getRequests() == null ? null : c.getResources().getRequests().get("memory");
    if (request == null && c.getResources().getLimits() != null) {
      request = c.getResources().getLimits().get("memory");
    }
    return bytesOf(request);
  }

  private static long bytesOf(Quantity q) {
    if (q == null) {
      return 0;
    }
    try {
      return Quantity.getAmountInBytes(q).setScale(0, RoundingMode.CEILING).longValueExact();
    } catch (ArithmeticException | IllegalArgumentException e) {
      return 0;
    }
  }

  /** How many of {@code resource} the node has allocatable (0 when it does not advertise it). */
  public long allocatable(String resource) {
    return deviceResources.getOrDefault(resource, 0L);
  }

  /** Bytes of memlock limits the node may carry in total. */
  public long budgetBytes() {
    return problem != null ? 0 : Math.max(0, allocatableBytes - reserveBytes);
  }

  public static NodeBudget of(Node node, long defaultReserveBytes) {
    String name = node.getMetadata().getName();
    Map<String, String> labels = node.getMetadata().getLabels();
    boolean schedulable = node.getSpec() == null || !Boolean.TRUE.equals(node.getSpec().getUnschedulable());
    Map<String, String> annotations = node.getMetadata().getAnnotations();
    long reserve = defaultReserveBytes;
    String problem = null;
    String override = annotations == null ? null : annotations.get(HOST_RESERVE_ANNOTATION);
    if (override != null) {
      try {
        reserve = Quantities.bytes(override);
      } catch (IllegalArgumentException e) {
        problem = "annotation " + HOST_RESERVE_ANNOTATION + "='" + override + "' is not a quantity (e.g. 2Gi)";
      }
    }
    long allocatable = 0;
    Quantity memory = node.getStatus() == null || node.getStatus().getAllocatable() == null
        ? null
        : node.getStatus().getAllocatable().get("memory");
    if (memory == null) {
      problem = problem != null ? problem : "status.allocatable.memory is not reported yet";
    } else {
      try {
        allocatable = Quantities.bytes(memory.toString());
      } catch (IllegalArgumentException e) {
        problem = problem != null ? problem : "status.allocatable.memory: " + e.getMessage();
      }
    }
    Map<String, Long> devices = new java.util.TreeMap<>();
    if (node.getStatus() != null && node.getStatus().getAllocatable() != null) {
      node.getStatus().getAllocatable().forEach((resource, quantity) -> {
        if (DeviceResources.isDeviceResource(resource)) {
          try {
            devices.put(resource, quantity.getNumericalAmount().longValue());
          } catch (ArithmeticException | IllegalArgumentException e) {
            devices.put(resource, 0L);
          }
        }
      });
    }
    return new NodeBudget(name, labels, allocatable, reserve, schedulable, problem, devices, notReady(node),
        node.getSpec() == null ? List.of() : node.getSpec().getTaints(), 0);
  }

  /** Null when the node's Ready condition is True, else what it says (a node without one is not Ready yet). */
  static String notReady(Node node) {
    List<NodeCondition> conditions = node.getStatus() == null || node.getStatus().getConditions() == null
        ? List.of() : node.getStatus().getConditions();
    NodeCondition ready = conditions.stream().filter(c -> "Ready".equals(c.getType())).findFirst().orElse(null);
    if (ready == null) {
      return "it reports no Ready condition (yet): its kubelet has not posted a status";
    }
    if ("True".equals(ready.getStatus())) {
      return null;
    }
    return "condition Ready=" + ready.getStatus()
        + (ready.getReason() == null ? "" : " (" + ready.getReason()
            + (ready.getMessage() == null || ready.getMessage().isEmpty() ? "" : ": " + ready.getMessage()) + ")");
  }
}
