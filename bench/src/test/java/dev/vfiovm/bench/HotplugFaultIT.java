package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.DeviceSpec;
import dev.vfiovm.api.DeviceState;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.controller.AttachmentPodShape;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Hot-plug under a SIGKILLed operator, with the {@link StandInKubelet} playing kubelet and agent for the
 * attachment pods: two devices added to a Running vIOMMU VM, the operator killed right after the edit and
 * restarted; the VM ends with both devices Attached, DevicesReady=True, exactly one attachment pod each and the
 * limit raised for two devices; an unplug then deletes one pod and returns the limit to one device's.
 */
class HotplugFaultIT {
  static final long MIB = 1L << 20;
  static final String A = "0000:3b:00.0";
  static final String B = "0000:3b:00.1";
  static final Duration CONVERGE = Duration.ofMinutes(3);

  @Test
  void aHotPlugSurvivesAKill9OfTheOperator() throws Exception {
    try (FaultCluster cluster = new FaultCluster("hotplug", 1, "16Mi")) {
      String nodeName = cluster.nodes.get(0);
      Node node = cluster.client.nodes().withName(nodeName).get();
      for (String r : List.of("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-3b-00.0", "vfiovm.dev/pci-0000-3b-00.1")) {
        node.getStatus().getAllocatable().put(r, new Quantity("1"));
        node.getStatus().getCapacity().put(r, new Quantity("1"));
      }
      cluster.client.nodes().resource(node).updateStatus();
      OperatorProcess operator = cluster.operator("hotplug", cluster.operatorArgs(1_879_148_192L, 16, false));
      await("the operator ready").atMost(CONVERGE).pollInterval(Duration.ofMillis(200)).until(operator::ready);

      VfioVm vm = cluster.vm("hp", "2Mi");
      vm.getSpec().setDmaBackend(DmaBackend.Iommufd);
      vm.getSpec().setViommu(true);
      cluster.client.resource(vm).create();
      await("Running").atMost(CONVERGE).until(() -> get(cluster), v -> phase(v) == Phase.Running);
      // factor max(1, 0 devices) = 1: 2Mi + 1Mi overhead
      assertThat(get(cluster).getStatus().getMemlockLimitBytes()).isEqualTo(3 * MIB);

      cluster.client.resources(VfioVm.class).inNamespace(cluster.vmNs).withName("hp").edit(v -> {
        v.getSpec().setDevices(List.of(new DeviceSpec(A), new DeviceSpec(B)));
        return v;
      });
      operator.kill9();
      operator.start();

      VfioVm plugged = await("both devices attached").atMost(CONVERGE).until(() -> get(cluster),
          v -> v.getStatus() != null && "True".equals(devicesReady(v).getStatus()));
      assertThat(plugged.getStatus().getDevices()).extracting(d -> d.getPciAddress() + " " + d.getState() + " "
          + d.isHotplugged()).containsExactly(A + " Attached true", B + " Attached true");
      // vIOMMU: two devices, each pinning guest RAM: 2 x 2Mi + 1Mi
      assertThat(plugged.getStatus().getMemlockLimitBytes()).isEqualTo(5 * MIB);
      assertThat(attachmentPods(cluster)).extracting(p -> AttachmentPodShape.deviceOf(p).orElse(""))
          .containsExactlyInAnyOrder(A, B);

      cluster.client.resources(VfioVm.class).inNamespace(cluster.vmNs).withName("hp").edit(v -> {
        v.getSpec().setDevices(List.of(new DeviceSpec(A)));
        return v;
      });
      VfioVm unplugged = await("B released").atMost(CONVERGE).until(() -> get(cluster),
          v -> v.getStatus().getDevices().size() == 1 && v.getStatus().getMemlockLimitBytes() == 3 * MIB);
      assertThat(unplugged.getStatus().getDevices().get(0).getState()).isEqualTo(DeviceState.Attached);
      assertThat(attachmentPods(cluster)).extracting(p -> AttachmentPodShape.deviceOf(p).orElse("")).containsExactly(A);

      cluster.client.resources(VfioVm.class).inNamespace(cluster.vmNs).withName("hp").delete();
      await("VM gone").atMost(CONVERGE).until(() -> get(cluster) == null);
      assertThat(attachmentPods(cluster)).isEmpty();
    }
  }

  static VfioVm get(FaultCluster cluster) {
    return cluster.client.resources(VfioVm.class).inNamespace(cluster.vmNs).withName("hp").get();
  }

  static Phase phase(VfioVm v) {
    return v == null || v.getStatus() == null ? null : v.getStatus().getPhase();
  }

  static Condition devicesReady(VfioVm v) {
    return v.getStatus().getConditions().stream().filter(c -> "DevicesReady".equals(c.getType())).findFirst()
        .orElse(new Condition());
  }

  static List<Pod> attachmentPods(FaultCluster cluster) {
    return cluster.client.pods().inNamespace(cluster.nodePodNs).withLabelSelector(AttachmentPodShape.SELECTOR).list()
        .getItems().stream().filter(p -> p.getMetadata().getDeletionTimestamp() == null).toList();
  }
}
