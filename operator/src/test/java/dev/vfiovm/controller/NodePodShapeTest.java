package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Volume;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class NodePodShapeTest {
  static final long GI = 1L << 30;
  static final OperatorSettings SETTINGS = OperatorSettings.defaults("vfiovm-system", "example/vfiovm:1");

  static VfioVm vm(String... devices) {
    VfioVm vm = ClusterTestSupport.vm("team-a", "db", "4Gi", Map.of(), devices);
    return vm;
  }

  static Pod pod(VfioVm vm) {
    SpecValidation.Plan plan = SpecValidation.validate(vm.getSpec(), GI).plan();
    return NodePodShape.build(vm, 1879048193L, "worker-1", plan, SETTINGS);
  }

  @Test
  void argsFollowTheNodeAgentContract() {
    VfioVm vm = vm("0000:3b:00.0", "0000:3b:00.1");
    vm.getSpec().setAccounting(Accounting.PerUser);
    vm.getSpec().setDmaBackend(DmaBackend.IoUring);
    vm.getSpec().setVmCommand(List.of("/usr/bin/qemu", "-m", "4G"));
    assertThat(pod(vm).getSpec().getContainers().get(0).getArgs()).containsExactly(
        "node-agent", "--vm", "team-a/db", "--host-uid", "1879048193",
        "--memory", Long.toString(4 * GI), "--memlock", Long.toString(5 * GI),
        "--device", "0000:3b:00.0", "--device", "0000:3b:00.1",
        "--accounting", "per-user", "--dma-backend", "io-uring",
        "--report", "/run/vfiovm/report.json", "--report-pod", "$(POD_NAMESPACE)/$(POD_NAME)",
        "--vm-command", "/usr/bin/qemu", "-m", "4G");
  }

  @Test
  void thePodIsBoundPrivilegedBoundedAndFindable() {
    Pod pod = pod(vm("0000:3b:00.0"));
    assertThat(pod.getMetadata().getNamespace()).isEqualTo("vfiovm-system");
    assertThat(pod.getMetadata().getName()).startsWith("vfiovm-db-").hasSizeLessThanOrEqualTo(63);
    assertThat(pod.getMetadata().getLabels()).containsExactlyInAnyOrderEntriesOf(Map.of(
        "app.kubernetes.io/name", "vfiovm-node",
        "app.kubernetes.io/managed-by", "vfiovm-operator",
        "vfiovm.dev/vm-namespace", "team-a",
        "vfiovm.dev/vm-name", "db",
        "vfiovm.dev/host-uid", "1879048193"));
    assertThat(pod.getMetadata().getAnnotations()).containsEntry("vfiovm.dev/vm", "team-a/db");
    assertThat(pod.getMetadata().getOwnerReferences()).isEmpty(); // cross-namespace owners are invalid
    assertThat(pod.getSpec().getNodeName()).isEqualTo("worker-1");
    assertThat(pod.getSpec().getServiceAccountName()).isEqualTo("vfiovm-node");
    assertThat(pod.getSpec().getRestartPolicy()).isEqualTo("Never");
    Container c = pod.getSpec().getContainers().get(0);
    assertThat(c.getImage()).isEqualTo("example/vfiovm:1");
    assertThat(c.getSecurityContext().getPrivileged()).isTrue();
    Quantity memory = new Quantity(Long.toString(4 * GI + NodePodShape.AGENT_MEMORY_BYTES));
    assertThat(c.getResources().getRequests()).containsEntry("memory", memory);
    assertThat(c.getResources().getLimits()).containsEntry("memory", memory);
    assertThat(c.getTerminationMessagePath()).isEqualTo("/run/vfiovm/report.json");
    assertThat(c.getTerminationMessagePolicy()).isEqualTo("File");
    assertThat(c.getEnv()).extracting(e -> e.getName() + "=" + e.getValueFrom().getFieldRef().getFieldPath())
        .containsExactly("POD_NAME=metadata.name", "POD_NAMESPACE=metadata.namespace");
  }

  @Test
  void hostDevicesAreMountedByBackend() {
    VfioVm auto = vm("0000:3b:00.0");
    assertThat(pod(auto).getSpec().getVolumes()).extracting(v -> v.getHostPath().getPath() + ":" + v.getHostPath().getType())
        .containsExactly("/dev/iommu:", "/dev/vfio:", "/sys/bus/pci:");
    assertThat(pod(auto).getSpec().getContainers().get(0).getVolumeMounts()).extracting(m -> m.getMountPath())
        .containsExactly("/dev/iommu", "/dev/vfio", "/sys/bus/pci");
    VfioVm iommufd = vm("0000:3b:00.0");
    iommufd.getSpec().setDmaBackend(DmaBackend.Iommufd);
    assertThat(pod(iommufd).getSpec().getVolumes()).extracting(Volume::getHostPath).extracting(h -> h.getType())
        .containsExactly("CharDevice", "Directory", "Directory");
    VfioVm ioUring = vm();
    ioUring.getSpec().setDmaBackend(DmaBackend.IoUring);
    assertThat(pod(ioUring).getSpec().getVolumes()).isEmpty();
  }

  @Test
  void podNamesAreUniquePerNamespaceAndValidHostnames() {
    assertThat(NodePodShape.podName("a-b", "c")).isNotEqualTo(NodePodShape.podName("a", "b-c"));
    String longName = NodePodShape.podName("ns", "x".repeat(200));
    assertThat(longName).hasSizeLessThanOrEqualTo(63).matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
    assertThat(NodePodShape.podName("ns", "my.vm")).matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  }
}
