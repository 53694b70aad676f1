package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import dev.vfiovm.api.DeviceResources;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.Quantity;
import java.util.Map;

/**
 * What a node may pin for VMs: its allocatable memory minus the host reserve (setting, or the node's
 * {@value #HOST_RESERVE_ANNOTATION} annotation). A node whose numbers cannot be read has budget 0 and says why.
 *
 * @param schedulable false for a cordoned node: only VMs pinned to it by spec.nodeName go there
 * @param problem why the budget is 0, or null
 * @param deviceResources the node's allocatable vfiovm.dev/* device-plugin resources (what its vfiovm-node daemon
 *     advertises to the kubelet): resource name -> count
 */
public record NodeBudget(
    String name,
    Map<String, String> labels,
    long allocatableBytes,
    long reserveBytes,
    boolean schedulable,
    String problem,
    Map<String, Long> deviceResources) {
  public static final String HOST_RESERVE_ANNOTATION = "vfiovm.dev/host-reserve";

  public NodeBudget {
    labels = labels == null ? Map.of() : Map.copyOf(labels);
    deviceResources = deviceResources == null ? Map.of() : Map.copyOf(deviceResources);
  }

  /** A node without device-plugin resources. */
  public NodeBudget(String name, Map<String, String> labels, long allocatableBytes, long reserveBytes,
      boolean schedulable, String problem) {
    this(name, labels, allocatableBytes, reserveBytes, schedulable, problem, Map.of());
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
    return new NodeBudget(name, labels, allocatable, reserve, schedulable, problem, devices);
  }
}
