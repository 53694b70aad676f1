package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.BootSpec;
import dev.vfiovm.api.Console;
import dev.vfiovm.api.ContainerDiskSource;
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
    assertThat(pod(vm).getSpec().getContainers().get(0).getArgs()).containsExactly(
        "node-agent", "--vm", "team-a/db", "--host-uid", "1879048193",
        "--memory", Long.toString(4 * GI), "--memlock", Long.toString(5 * GI),
        "--device", "0000:3b:00.0", "--device", "0000:3b:00.1",
        "--accounting", "per-user", "--dma-backend", "io-uring", "--cpus", "1",
        "--report", "/run/vfiovm/report.json", "--report-pod", "$(POD_NAMESPACE)/$(POD_NAME)");
  }

  @Test
  void thePodIsBoundUnprivilegedBoundedAndFindable() {
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
    assertThat(pod.getSpec().getServiceAccountName())
        .isEqualTo(NodePodIdentity.name("vfiovm-node", "team-a", "db")).startsWith("vfiovm-node-db-");
    assertThat(pod.getSpec().getRestartPolicy()).isEqualTo("Never");
    Container c = pod.getSpec().getContainers().get(0);
    assertThat(c.getImage()).isEqualTo("example/vfiovm:1");
    assertThat(c.getSecurityContext().getPrivileged()).isFalse();
    Quantity memory = new Quantity(Long.toString(4 * GI + NodePodShape.VMM_OVERHEAD_BYTES
        + NodePodShape.AGENT_MEMORY_BYTES));
    assertThat(c.getResources().getRequests()).containsEntry("memory", memory);
    assertThat(c.getResources().getLimits()).containsEntry("memory", memory);
    assertThat(c.getTerminationMessagePath()).isEqualTo("/run/vfiovm/report.json");
    assertThat(c.getTerminationMessagePolicy()).isEqualTo("File");
    assertThat(c.getEnv()).extracting(e -> e.getName() + "=" + (e.getValue() != null ? e.getValue()
            : e.getValueFrom().getFieldRef().getFieldPath()))
        .containsExactly("POD_NAME=metadata.name", "POD_NAMESPACE=metadata.namespace",
            "JAVA_TOOL_OPTIONS=" + NodePodShape.AGENT_JAVA_OPTIONS);
    assertThat(pod.getSpec().getInitContainers()).isEmpty(); // nothing to boot: firmware only
  }

  @Test
  void theAgentHoldsExactlyItsCapabilitiesAndNoEscalation() {
    var sc = pod(vm("0000:3b:00.0")).getSpec().getContainers().get(0).getSecurityContext();
    assertThat(sc.getPrivileged()).isFalse();
    assertThat(sc.getAllowPrivilegeEscalation()).isFalse();
    assertThat(sc.getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(sc.getCapabilities().getAdd()).containsExactly("SETUID", "SETGID", "SETPCAP", "KILL", "SYS_PTRACE", "SYS_RESOURCE");
    // contract C1: the VM sandbox (bubblewrap) needs user namespaces and a fresh proc
    assertThat(sc.getSeccompProfile().getType()).isEqualTo("Unconfined");
    assertThat(sc.getProcMount()).isEqualTo("Unmasked");
    assertThat(sc.getRunAsUser()).isNull();
  }

  @Test
  void theCapabilitySetIsAnOperatorSetting() {
    VfioVm vm = vm();
    SpecValidation.Plan plan = SpecValidation.validate(vm.getSpec(), GI).plan();
    Pod pod = NodePodShape.build(vm, 1879048193L, "worker-1", plan,
        SETTINGS.withNodePodCapabilities(List.of("SETUID", "SETGID", "SETPCAP", "KILL")));
    assertThat(pod.getSpec().getContainers().get(0).getSecurityContext().getCapabilities().getAdd())
        .containsExactly("SETUID", "SETGID", "SETPCAP", "KILL");
  }

  @Test
  void devicesComeFromTheDevicePluginNotFromHostPaths() {
    for (DmaBackend backend : DmaBackend.values()) {
      VfioVm vm = backend == DmaBackend.IoUring ? vm() : vm("0000:3b:00.0");
      vm.getSpec().setDmaBackend(backend);
      // the one host path: the per-VM control directory, only where the agent can hot-plug (it opens /dev/iommu)
      Pod pod = pod(vm);
      if (backend == DmaBackend.IoUring) {
        assertThat(hostPaths(pod)).as(backend.name()).isEmpty();
      } else {
        assertThat(hostPaths(pod)).as(backend.name()).singleElement().satisfies(v -> {
          assertThat(v.getName()).isEqualTo("vfiovm-control");
          assertThat(v.getHostPath().getPath()).isEqualTo("/run/vfiovm/vms/" + pod.getMetadata().getName());
          assertThat(v.getHostPath().getType()).isEqualTo("DirectoryOrCreate");
        });
      }
    }
    VfioVm auto = vm("0000:3b:00.0", "0000:3b:00.1");
    Container c = pod(auto).getSpec().getContainers().get(0);
    assertThat(c.getResources().getRequests()).containsOnlyKeys(
        "memory", "vfiovm.dev/iommu", "vfiovm.dev/pci-0000-3b-00.0", "vfiovm.dev/pci-0000-3b-00.1");
    assertThat(c.getResources().getLimits()).isEqualTo(c.getResources().getRequests());
    assertThat(c.getResources().getRequests().get("vfiovm.dev/pci-0000-3b-00.0")).isEqualTo(new Quantity("1"));
    assertThat(c.getVolumeMounts()).extracting(m -> m.getMountPath()).containsExactly(SA_DIR, "/run/vfiovm/control");
  }

  @Test
  void theAgentGetsTheControlSocketWhereItCanHotPlug() {
    VfioVm iommufd = vm();
    iommufd.getSpec().setDmaBackend(DmaBackend.Iommufd);
    VfioVm autoWithDevice = vm("0000:3b:00.0");
    VfioVm autoWithout = vm();
    VfioVm uring = vm("0000:3b:00.0");
    uring.getSpec().setDmaBackend(DmaBackend.IoUring);
    for (VfioVm vm : List.of(iommufd, autoWithDevice)) {
      Pod pod = pod(vm);
      List<String> args = pod.getSpec().getContainers().get(0).getArgs();
      assertThat(args).containsSequence("--control-socket", "/run/vfiovm/control/agent.sock");
      // only the agent mounts it; init containers (the tenant's boot image) never do
      assertThat(pod.getSpec().getInitContainers()).allSatisfy(i ->
          assertThat(i.getVolumeMounts()).noneMatch(m -> m.getName().equals("vfiovm-control")));
    }
    for (VfioVm vm : List.of(autoWithout, uring)) {
      Pod pod = pod(vm);
      assertThat(pod.getSpec().getContainers().get(0).getArgs()).doesNotContain("--control-socket");
      assertThat(hostPaths(pod)).isEmpty();
    }
  }

  @Test
  void deviceResourcesByBackend() {
    assertThat(NodePodShape.deviceResources(DmaBackend.Iommufd, List.of()))
        .containsExactly("vfiovm.dev/iommu");
    assertThat(NodePodShape.deviceResources(DmaBackend.Iommufd, List.of("0000:00:03.0")))
        .containsExactly("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-00-03.0");
    // Auto opens /dev/iommu only with a device (the agent's rule), else pins through io_uring
    assertThat(NodePodShape.deviceResources(DmaBackend.Auto, List.of())).isEmpty();
    assertThat(NodePodShape.deviceResources(DmaBackend.Auto, List.of("0000:00:03.0")))
        .containsExactly("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-00-03.0");
    assertThat(NodePodShape.deviceResources(DmaBackend.IoUring, List.of("0000:00:03.0"))).isEmpty();
  }

  static final String SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

  static List<Volume> hostPaths(Pod pod) {
    return pod.getSpec().getVolumes().stream().filter(v -> v.getHostPath() != null).toList();
  }

  static VfioVm booting(String kernel, String initrd, String cmdline, String disk) {
    VfioVm vm = vm();
    vm.getSpec().setDmaBackend(DmaBackend.IoUring);
    BootSpec boot = new BootSpec();
    boot.setContainerDisk(new ContainerDiskSource("tenant.example/guest:1"));
    boot.setKernel(kernel);
    boot.setInitrd(initrd);
    boot.setCmdline(cmdline);
    boot.setDisk(disk);
    vm.getSpec().setBoot(boot);
    return vm;
  }

  static List<String> agentArgs(Pod pod) {
    return pod.getSpec().getContainers().get(0).getArgs();
  }

  @Test
  void aKernelBootPassesCpusFixedBootFileNamesAndTheCmdlineLiterally() {
    VfioVm vm = booting("/boot/vmlinuz", "/boot/initrd.img", "console=ttyS0 x=$(POD_NAME)", null);
    vm.getSpec().setCpus(4);
    List<String> args = agentArgs(pod(vm));
    assertThat(args).containsSequence("--dma-backend", "io-uring", "--cpus", "4",
        "--kernel", "/vm/boot/kernel", "--initrd", "/vm/boot/initrd", "--cmdline", "console=ttyS0 x=$$(POD_NAME)",
        "--report");
    assertThat(args).doesNotContain("--disk", "--console", "--vm-command");
    // the kubelet turns $$ back into $ (LocalPodRunnerTest checks the same expansion): the guest gets the text
  }

  @Test
  void aDiskBootAndNoConsole() {
    VfioVm vm = booting(null, null, null, "/disk/guest.img");
    vm.getSpec().setConsole(Console.None);
    Pod pod = pod(vm);
    assertThat(agentArgs(pod)).containsSequence("--cpus", "1", "--disk", "/vm/boot/disk", "--console", "none",
        "--report").doesNotContain("--kernel", "--initrd", "--cmdline");
    assertThat(pod.getSpec().getInitContainers()).extracting(Container::getName).containsExactly("vfiovm-tools", "boot-disk");
    assertThat(pod.getSpec().getInitContainers().get(1).getCommand()).endsWith("/disk/guest.img", "/vm/boot/disk");
    // the agent names the format by the suffix: a qcow2 keeps it
    Pod qcow2 = pod(booting(null, null, null, "/disk/Guest.QCOW2"));
    assertThat(agentArgs(qcow2)).containsSequence("--disk", "/vm/boot/disk.qcow2");
    assertThat(qcow2.getSpec().getInitContainers().get(1).getCommand()).endsWith("/disk/Guest.QCOW2", "/vm/boot/disk.qcow2");
    assertThat(qcow2.getSpec().getInitContainers().get(1).getName()).isEqualTo("boot-disk");
  }

  @Test
  void theContainerDiskIsCopiedByUnprivilegedInitContainersWithoutCredentials() {
    Pod pod = pod(booting("/boot/vmlinuz", "/boot/initrd.img", null, null));
    assertThat(pod.getSpec().getAutomountServiceAccountToken()).isFalse();
    List<Container> inits = pod.getSpec().getInitContainers();
    assertThat(inits).extracting(Container::getName).containsExactly("vfiovm-tools", "boot-kernel", "boot-initrd");
    assertThat(inits.get(0).getImage()).isEqualTo("example/vfiovm:1"); // the trusted node image
    assertThat(inits.get(0).getCommand()).containsExactly("/usr/local/bin/vfiovm-busybox", "cp",
        "/usr/local/bin/vfiovm-busybox", "/vfiovm-tools/vfiovm-busybox");
    assertThat(inits.get(1).getImage()).isEqualTo("tenant.example/guest:1");
    assertThat(inits.get(1).getCommand())
        .containsExactly("/vfiovm-tools/vfiovm-busybox", "cp", "-L", "/boot/vmlinuz", "/vm/boot/kernel");
    assertThat(inits.get(2).getCommand())
        .containsExactly("/vfiovm-tools/vfiovm-busybox", "cp", "-L", "/boot/initrd.img", "/vm/boot/initrd");
    for (Container init : inits) {
      var sc = init.getSecurityContext();
      assertThat(sc.getRunAsUser()).isEqualTo(1879048193L);
      assertThat(sc.getRunAsGroup()).isEqualTo(1879048193L);
      assertThat(sc.getRunAsNonRoot()).isTrue();
      assertThat(sc.getPrivileged()).isFalse();
      assertThat(sc.getAllowPrivilegeEscalation()).isFalse();
      assertThat(sc.getReadOnlyRootFilesystem()).isTrue();
      assertThat(sc.getCapabilities().getDrop()).containsExactly("ALL");
      assertThat(sc.getCapabilities().getAdd()).isNullOrEmpty();
      assertThat(init.getVolumeMounts()).extracting(m -> m.getMountPath()).doesNotContain(SA_DIR);
      assertThat(init.getResources().getLimits()).containsKey("memory");
      assertThat(init.getEnv()).isEmpty();
    }
    assertThat(inits.get(1).getVolumeMounts()).extracting(m -> m.getName() + ":" + m.getMountPath() + ":" + m.getReadOnly())
        .containsExactly("vfiovm-tools:/vfiovm-tools:true", "boot:/vm/boot:null");
    Container agent = pod.getSpec().getContainers().get(0);
    assertThat(agent.getVolumeMounts()).extracting(m -> m.getName() + ":" + m.getMountPath() + ":" + m.getReadOnly())
        .containsExactly("boot:/vm/boot:true", "kube-api-access:" + SA_DIR + ":true");
    assertThat(pod.getSpec().getVolumes()).filteredOn(v -> v.getEmptyDir() != null).extracting(Volume::getName)
        .containsExactly("vfiovm-tools", "boot");
  }

  @Test
  void onlyTheAgentGetsTheApiTokenAsTheAutomountWouldGiveIt() {
    Pod pod = pod(vm());
    assertThat(pod.getSpec().getAutomountServiceAccountToken()).isFalse();
    Volume sa = pod.getSpec().getVolumes().stream().filter(v -> v.getName().equals("kube-api-access")).findFirst()
        .orElseThrow();
    var sources = sa.getProjected().getSources();
    assertThat(sources.get(0).getServiceAccountToken().getPath()).isEqualTo("token");
    assertThat(sources.get(1).getConfigMap().getName()).isEqualTo("kube-root-ca.crt");
    assertThat(sources.get(1).getConfigMap().getItems()).extracting(i -> i.getKey() + "->" + i.getPath())
        .containsExactly("ca.crt->ca.crt");
    assertThat(sources.get(2).getDownwardAPI().getItems()).extracting(i -> i.getPath() + "=" + i.getFieldRef().getFieldPath())
        .containsExactly("namespace=metadata.namespace");
    assertThat(pod.getSpec().getContainers().get(0).getVolumeMounts())
        .anySatisfy(m -> assertThat(m.getMountPath() + ":" + m.getReadOnly()).isEqualTo(SA_DIR + ":true"));
  }

  @Test
  void memoryCoversGuestRamTheVmmAndTheAgentsBoundedJvm() {
    assertThat(NodePodShape.VMM_OVERHEAD_BYTES).isGreaterThanOrEqualTo(96L << 20); // measured QEMU TCG ~94 MiB
    assertThat(NodePodShape.AGENT_MEMORY_BYTES).isGreaterThan(256L << 20); // heap + metaspace bounds
    assertThat(NodePodShape.AGENT_JAVA_OPTIONS).contains("-Xmx128m").contains("-XX:MaxMetaspaceSize=128m");
    Quantity limit = pod(vm()).getSpec().getContainers().get(0).getResources().getLimits().get("memory");
    assertThat(Quantity.getAmountInBytes(limit).longValueExact())
        .isEqualTo(4 * GI + NodePodShape.VMM_OVERHEAD_BYTES + NodePodShape.AGENT_MEMORY_BYTES);
  }

  @Test
  void whatTheVmIsCanBeReadBackFromItsPodToSeeAnEditedSpec() {
    VfioVm vm = booting("/boot/vmlinuz", null, "console=ttyS0 $x", null);
    SpecValidation.Plan plan = SpecValidation.validate(vm.getSpec(), GI).plan();
    Pod pod = pod(vm);
    assertThat(NodePodShape.vmArgs(plan)).containsExactly("--cpus", "1", "--kernel", "/vm/boot/kernel",
        "--cmdline", "console=ttyS0 $$x");
    assertThat(NodePodShape.vmArgsOf(pod)).isEqualTo(NodePodShape.vmArgs(plan));
    vm.getSpec().setCpus(2);
    assertThat(NodePodShape.vmArgsOf(pod)).isNotEqualTo(NodePodShape.vmArgs(SpecValidation.validate(vm.getSpec(), GI).plan()));
    // a pod made before --cpus existed ran one vCPU: not an edit
    Pod old = pod(vm());
    old.getSpec().getContainers().get(0).setArgs(List.of("node-agent", "--vm", "team-a/db", "--report", "/r"));
    assertThat(NodePodShape.vmArgsOf(old)).isEqualTo(NodePodShape.vmArgs(SpecValidation.validate(vm().getSpec(), GI).plan()));
  }

  @Test
  void theStatusSaysWhereTheConsoleIs() {
    assertThat(NodePodShape.console("vfiovm-system", "vfiovm-db-1", Console.Serial))
        .isEqualTo("kubectl logs -n vfiovm-system vfiovm-db-1 -c node-agent");
    assertThat(NodePodShape.console("vfiovm-system/vfiovm-db-1", Console.None)).isEqualTo("none");
    VfioVm quiet = vm();
    quiet.getSpec().setConsole(Console.None);
    assertThat(NodePodShape.consoleOf(pod(quiet))).isEqualTo(Console.None);
    assertThat(NodePodShape.consoleOf(pod(vm()))).isEqualTo(Console.Serial);
  }

  @Test
  void podNamesAreUniquePerNamespaceAndValidHostnames() {
    assertThat(NodePodShape.podName("a-b", "c")).isNotEqualTo(NodePodShape.podName("a", "b-c"));
    String longName = NodePodShape.podName("ns", "x".repeat(200));
    assertThat(longName).hasSizeLessThanOrEqualTo(63).matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
    assertThat(NodePodShape.podName("ns", "my.vm")).matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  }
}
