package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import java.util.Map;
import org.junit.jupiter.api.Test;

class AttachmentPodShapeTest {
  static final OperatorSettings SETTINGS = OperatorSettings.defaults("vfiovm-system", "vfiovm:1");

  static VfioVm vm(String ns, String name) {
    VfioVm vm = NodePodShapeTest.vm("0000:3b:00.0");
    vm.getMetadata().setNamespace(ns);
    vm.getMetadata().setName(name);
    vm.getMetadata().setUid("uid-1");
    return vm;
  }

  @Test
  void anAttachmentPodGetsTheDeviceAndTheControlDirectoryAndNothingElse() {
    VfioVm vm = vm("team", "vm1");
    Pod pod = AttachmentPodShape.attachment(vm, 1879048193L, "worker-1", "0000:3b:00.1", 3L << 30, 2L << 30, SETTINGS);
    String nodePod = NodePodShape.podName("team", "vm1");
    assertThat(pod.getMetadata().getName()).isEqualTo(nodePod + "-dev-0000-3b-00-1");
    assertThat(pod.getMetadata().getNamespace()).isEqualTo("vfiovm-system");
    assertThat(pod.getMetadata().getLabels()).containsEntry("vfiovm.dev/role", "device-attachment")
        .containsEntry("vfiovm.dev/vm-name", "vm1").containsEntry("vfiovm.dev/vm-namespace", "team")
        .containsEntry("vfiovm.dev/host-uid", "1879048193")
        // never selected as a node pod (the operator's node-pods informer, the stand-in kubelet)
        .doesNotContainEntry("app.kubernetes.io/name", "vfiovm-node");
    assertThat(pod.getMetadata().getAnnotations()).containsEntry("vfiovm.dev/vm-uid", "uid-1")
        .containsEntry("vfiovm.dev/pci-address", "0000:3b:00.1");
    assertThat(pod.getSpec().getNodeName()).isEqualTo("worker-1");
    assertThat(pod.getSpec().getRestartPolicy()).isEqualTo("Never");
    assertThat(pod.getSpec().getAutomountServiceAccountToken()).isFalse();
    assertThat(pod.getSpec().getTerminationGracePeriodSeconds()).isEqualTo(60L);
    Container c = pod.getSpec().getContainers().get(0);
    assertThat(c.getName()).isEqualTo("attach");
    assertThat(c.getImage()).isEqualTo("vfiovm:1");
    assertThat(c.getArgs()).containsExactly("attach-device", "--control-socket", "/run/vfiovm/control/agent.sock",
        "--device", "0000:3b:00.1", "--memlock", Long.toString(3L << 30), "--unplug-memlock", Long.toString(2L << 30));
    assertThat(c.getResources().getRequests()).isEqualTo(Map.of("memory", new Quantity(Long.toString(192L << 20)),
        "vfiovm.dev/pci-0000-3b-00.1", new Quantity("1")));
    assertThat(c.getResources().getLimits()).isEqualTo(c.getResources().getRequests());
    var sc = c.getSecurityContext();
    assertThat(sc.getRunAsUser()).isZero();
    assertThat(sc.getPrivileged()).isFalse();
    assertThat(sc.getAllowPrivilegeEscalation()).isFalse();
    assertThat(sc.getReadOnlyRootFilesystem()).isTrue();
    assertThat(sc.getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(sc.getCapabilities().getAdd()).isNullOrEmpty();
    assertThat(sc.getSeccompProfile().getType()).isEqualTo("RuntimeDefault");
    assertThat(pod.getSpec().getVolumes()).filteredOn(v -> v.getHostPath() != null).singleElement().satisfies(v -> {
      assertThat(v.getName()).isEqualTo("vfiovm-control");
      assertThat(v.getHostPath().getPath()).isEqualTo("/run/vfiovm/vms/" + nodePod);
      assertThat(v.getHostPath().getType()).isEqualTo("DirectoryOrCreate");
    });
    assertThat(c.getVolumeMounts()).extracting(m -> m.getName() + ":" + m.getMountPath())
        .containsExactly("vfiovm-control:/run/vfiovm/control", "tmp:/tmp");
    assertThat(AttachmentPodShape.deviceOf(pod)).contains("0000:3b:00.1");
    assertThat(AttachmentPodShape.isDetach(pod)).isFalse();
  }

  @Test
  void aDetachPodHasNoDeviceResourceAndOnlyUnplugs() {
    Pod pod = AttachmentPodShape.detach(vm("team", "vm1"), 7, "worker-1", "0000:3b:00.0", 2L << 30, SETTINGS);
    assertThat(pod.getMetadata().getName()).endsWith("-det-0000-3b-00-0");
    assertThat(pod.getMetadata().getLabels()).containsEntry("vfiovm.dev/role", "device-detach");
    Container c = pod.getSpec().getContainers().get(0);
    assertThat(c.getResources().getRequests()).containsOnlyKeys("memory");
    assertThat(c.getArgs()).contains("--unplug-only").containsSequence("--device", "0000:3b:00.0");
    assertThat(AttachmentPodShape.isDetach(pod)).isTrue();
  }

  @Test
  void namesFitALabelWhateverTheVmName() {
    String longName = "v".repeat(253);
    String ns = "n".repeat(63);
    String nodePod = NodePodShape.podName(ns, longName);
    String name = AttachmentPodShape.name(nodePod, "0000:3b:00.1", false);
    assertThat(name).hasSizeLessThanOrEqualTo(63).matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?").endsWith("-dev-0000-3b-00-1");
    // two VMs whose node-pod names share the kept prefix still get distinct names
    assertThat(AttachmentPodShape.name(NodePodShape.podName(ns, longName + "x"), "0000:3b:00.1", false))
        .isNotEqualTo(name);
    assertThat(AttachmentPodShape.name("vfiovm-a-0123456789", "0000:3b:00.1", true))
        .isEqualTo("vfiovm-a-0123456789-det-0000-3b-00-1");
  }
}
