package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DmaBackend;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class NodeAgentPlanTest {
  private static NodeAgentPlan parse(String... args) {
    NodeAgentCommand cmd = new NodeAgentCommand();
    new CommandLine(cmd).parseArgs(args);
    return cmd.plan();
  }

  @Test
  void parsesTheOperatorsArguments() {
    NodeAgentPlan plan =
        parse(
            "--vm", "team-a/vm1", "--host-uid", "1879048192", "--memory", "4Gi", "--memlock", "5Gi",
            "--device", "0000:3b:00.0", "--device", "3c:00.1", "--accounting", "per-user",
            "--dma-backend", "iommufd", "--report", "/run/vfiovm/report.json", "--report-pod", "vfiovm-system/vm1-node");
    assertThat(plan.vm()).isEqualTo("team-a/vm1");
    assertThat(plan.hostUid()).isEqualTo(1879048192L);
    assertThat(plan.memoryBytes()).isEqualTo(4L << 30);
    assertThat(plan.memlockBytes()).isEqualTo(5L << 30);
    assertThat(plan.devices()).containsExactly("0000:3b:00.0", "3c:00.1");
    assertThat(plan.accounting()).isEqualTo(Accounting.PerUser);
    assertThat(plan.dmaBackend()).isEqualTo(DmaBackend.Iommufd);
    assertThat(plan.reportFile()).isEqualTo(Path.of("/run/vfiovm/report.json"));
    assertThat(plan.reportPod()).isEqualTo("vfiovm-system/vm1-node");
    assertThat(plan.vmCommand()).isEmpty();
    assertThat(plan.exitAfterMap()).isFalse();
  }

  @Test
  void defaultsArePerUserAndAuto() {
    NodeAgentPlan plan = parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "4Mi");
    assertThat(plan.accounting()).isEqualTo(Accounting.PerUser);
    assertThat(plan.dmaBackend()).isEqualTo(DmaBackend.Auto);
  }

  @Test
  void vmCommandTakesEveryRemainingArgumentEvenOptionLookalikes() {
    NodeAgentPlan plan =
        parse(
            "--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "4Mi", "--exit-after-map",
            "--vm-command", "qemu", "--memory", "1", "-x", "--exit-after-map");
    assertThat(plan.vmCommand()).containsExactly("qemu", "--memory", "1", "-x", "--exit-after-map");
    assertThat(plan.memoryBytes()).isEqualTo(4L << 20);
    assertThat(plan.exitAfterMap()).isTrue();
  }

  @Test
  void rejectsPlansThatCannotWork() {
    assertThatThrownBy(() -> parse("--vm", "vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "4Mi"))
        .hasMessageContaining("NAMESPACE/NAME");
    assertThatThrownBy(() -> parse("--vm", "ns/vm", "--host-uid", "0", "--memory", "4Mi", "--memlock", "4Mi"))
        .hasMessageContaining("never root");
    // a limit below guest RAM is the kernel's to refuse (ENOMEM, reported), not a usage error
    assertThat(parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "3Mi").memlockBytes())
        .isEqualTo(3L << 20);
    assertThatThrownBy(() -> parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "0"))
        .hasMessageContaining("must be positive");
    assertThatThrownBy(() -> parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4097", "--memlock", "4Mi"))
        .hasMessageContaining("multiple of the page size");
    assertThatThrownBy(
            () -> parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "4Mi",
                "--dma-backend", "iommufd"))
        .hasMessageContaining("needs at least one --device");
    assertThatThrownBy(
            () -> parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "4Mi",
                "--accounting", "shared"))
        .hasMessageContaining("per-process or per-user");
    assertThatThrownBy(
            () -> parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "4Mi",
                "--dma-backend", "vfio"))
        .hasMessageContaining("auto, iommufd or io-uring");
    assertThatThrownBy(
            () -> parse("--vm", "ns/vm", "--host-uid", "5000", "--memory", "4Mi", "--memlock", "4Mi",
                "--report-pod", "pod"))
        .hasMessageContaining("--report-pod 'pod' must be NAMESPACE/NAME");
  }

  private static NodeAgentPlan plan(DmaBackend backend, Accounting accounting, List<String> devices) {
    return new NodeAgentPlan(
        "ns/vm", 5000, 4096, 4096, devices, accounting, backend, null, null, List.of(), List.of(), false,
        NodeAgentPlan.Vmm.defaults());
  }

  @Test
  void autoTakesIommufdOnlyWithDevAndADevice() {
    assertThat(plan(DmaBackend.Auto, Accounting.PerProcess, List.of("0000:3b:00.0")).effectiveBackend(true))
        .isEqualTo(DmaBackend.Iommufd);
    assertThat(plan(DmaBackend.Auto, Accounting.PerProcess, List.of("0000:3b:00.0")).backendProblem(true)).isNull();
    assertThat(plan(DmaBackend.Auto, Accounting.PerProcess, List.of()).backendProblem(false)).isNull();
    assertThat(plan(DmaBackend.Auto, Accounting.PerProcess, List.of()).effectiveBackend(true))
        .isEqualTo(DmaBackend.IoUring);
    assertThat(plan(DmaBackend.IoUring, Accounting.PerProcess, List.of("0000:3b:00.0")).effectiveBackend(true))
        .isEqualTo(DmaBackend.IoUring);
    assertThat(plan(DmaBackend.Iommufd, Accounting.PerProcess, List.of("0000:3b:00.0")).effectiveBackend(false))
        .isEqualTo(DmaBackend.Iommufd);
  }

  @Test
  void autoWithDevicesNeverFallsBackToIoUringWithoutDevIommu() {
    NodeAgentPlan plan = plan(DmaBackend.Auto, Accounting.PerProcess, List.of("0000:3b:00.0"));
    assertThat(plan.effectiveBackend(false)).isEqualTo(DmaBackend.Iommufd);
    assertThat(plan.backendProblem(false))
        .contains("0000:3b:00.0", "/dev/iommu", "intel_iommu=on", "amd_iommu=on", "another node", "remove spec.devices");
    assertThat(plan(DmaBackend.Iommufd, Accounting.PerProcess, List.of("0000:3b:00.0")).backendProblem(false)).isNull();
    assertThat(plan(DmaBackend.IoUring, Accounting.PerProcess, List.of("0000:3b:00.0")).backendProblem(false)).isNull();
  }

  @Test
  void ioUringCanOnlyChargeTheUser() {
    NodeAgentPlan perProcess = plan(DmaBackend.Auto, Accounting.PerProcess, List.of("0000:3b:00.0"));
    assertThat(perProcess.effectiveAccounting(DmaBackend.IoUring)).isEqualTo(Accounting.PerUser);
    assertThat(perProcess.effectiveAccounting(DmaBackend.Iommufd)).isEqualTo(Accounting.PerProcess);
    assertThat(plan(DmaBackend.Auto, Accounting.PerUser, List.of()).effectiveAccounting(DmaBackend.Iommufd))
        .isEqualTo(Accounting.PerUser);
  }
}
