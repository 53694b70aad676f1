package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.UidAudit;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.TaintBuilder;
import org.junit.jupiter.api.Test;

/** Which node updates wake the waiting VMs ({@link VfioVmReconciler#budgetChanged}): only what placement reads. */
class NodeUpdateFilterTest {
  static Node node(String audit, String heartbeat, String ready) {
    NodeBuilder b = new NodeBuilder().withNewMetadata().withName("n").withResourceVersion(heartbeat)
        .addToLabels("zone", "a").endMetadata()
        .withNewSpec().endSpec()
        .withNewStatus().addToAllocatable("memory", new Quantity("8Gi")).addToAllocatable("cpu", new Quantity("4"))
        .addNewCondition().withType("Ready").withStatus(ready).withLastHeartbeatTime(heartbeat).endCondition()
        .endStatus();
    if (audit != null) {
      b.editMetadata().addToAnnotations(UidAudit.ANNOTATION, audit).endMetadata();
    }
    return b.build();
  }

  @Test
  void theUidAuditAnnotationAndKubeletHeartbeatsWakeNoOne() {
    Node old = node("{\"scannedAt\":\"2026-12-01T21:00:00Z\"}", "2026-12-01T21:00:00Z", "True");
    assertThat(VfioVmReconciler.budgetChanged(node("{\"scannedAt\":\"2026-12-01T21:00:15Z\"}",
        "2026-12-01T21:00:00Z", "True"), old)).isFalse();
    assertThat(VfioVmReconciler.budgetChanged(node(null, "2026-12-01T21:00:00Z", "True"), old)).isFalse();
    assertThat(VfioVmReconciler.budgetChanged(node(old.getMetadata().getAnnotations().get(UidAudit.ANNOTATION),
        "2026-12-01T21:00:10Z", "True"), old)).isFalse();
    // cpu is no placement input
    Node cpu = node(null, "2026-12-01T21:00:00Z", "True");
    cpu.getStatus().getAllocatable().put("cpu", new Quantity("8"));
    assertThat(VfioVmReconciler.budgetChanged(cpu, node(null, "2026-12-01T21:00:00Z", "True"))).isFalse();
  }

  @Test
  void whatPlacementReadsWakes() {
    Node old = node(null, "t", "True");
    assertThat(VfioVmReconciler.budgetChanged(node(null, "t", "False"), old)).isTrue();
    Node memory = node(null, "t", "True");
    memory.getStatus().getAllocatable().put("memory", new Quantity("16Gi"));
    assertThat(VfioVmReconciler.budgetChanged(memory, old)).isTrue();
    Node device = node(null, "t", "True");
    device.getStatus().getAllocatable().put(dev.vfiovm.api.DeviceResources.IOMMU, new Quantity("1"));
    assertThat(VfioVmReconciler.budgetChanged(device, old)).isTrue();
    Node reserve = node(null, "t", "True");
    reserve.getMetadata().setAnnotations(java.util.Map.of(NodeBudget.HOST_RESERVE_ANNOTATION, "1Gi"));
    assertThat(VfioVmReconciler.budgetChanged(reserve, old)).isTrue();
    Node label = node(null, "t", "True");
    label.getMetadata().getLabels().put("zone", "b");
    assertThat(VfioVmReconciler.budgetChanged(label, old)).isTrue();
    Node cordoned = node(null, "t", "True");
    cordoned.getSpec().setUnschedulable(true);
    assertThat(VfioVmReconciler.budgetChanged(cordoned, old)).isTrue();
    Node tainted = node(null, "t", "True");
    tainted.getSpec().setTaints(java.util.List.of(new TaintBuilder().withKey("k").withEffect("NoSchedule").build()));
    assertThat(VfioVmReconciler.budgetChanged(tainted, old)).isTrue();
  }
}
