package dev.vfiovm.e2e.iommufd;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.controller.MemlockPolicy;
import dev.vfiovm.controller.OperatorSettings;
import dev.vfiovm.testing.Prerequisites;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The iommufd tier: the real node agent against real iommufd + VFIO cdev, in a QEMU (TCG) guest with an
 * emulated VT-d and two e1000e NICs bound to vfio-pci. One boot runs every scenario of
 * e2e/iommufd/scenarios.sh; each test asserts one scenario from the agents' reports and from the kernel's
 * own counters of the VM process (VmPin, VmLck, RLIMIT_MEMLOCK).
 */
class IommufdScenariosIT {
  static final long MI = 1024 * 1024;
  /** What scenarios.sh gives every VM: memory M = 3/4 of the memlock limit L. */
  static final long L = 16 * MI;
  static final long M = 12 * MI;
  static final String DEV_A = "0000:00:03.0";
  static final String DEV_B = "0000:00:04.0";
  static final String OTHER_DEVICE = "0000:00:05.0";
  /** Scenario 4: a 2-device VM with a guest vIOMMU; the operator's memlock limit for it. */
  static final long S4_MEMORY = 12 * MI;
  static final long S4_MEMLOCK = MemlockPolicy.limitBytes(
      S4_MEMORY, 2, true, OperatorSettings.defaults("vfiovm-system", "vfiovm").memlockOverheadBytes());
  /** Scenario 3: room for the guest memory pinned twice. */
  static final long L2 = 24 * MI;

  static GuestRun guest;

  @BeforeAll
  static void bootGuestAndRunAllScenarios() throws Exception {
    Path repo = Path.of(System.getenv().getOrDefault("VFIOVM_REPO_ROOT", "..")).toAbsolutePath().normalize();
    Path jar = Path.of(System.getenv().getOrDefault("VFIOVM_JAR", repo + "/operator/target/vfiovm.jar"));
    // where e2e/scripts/setup.d/30-iommufd-kernel.sh caches it
    String cache = System.getenv().getOrDefault("VFIOVM_CACHE", System.getProperty("user.home") + "/.cache/vfiovm");
    Path kernel = Path.of(System.getProperty("vfiovm.iommufd.kernel", cache + "/iommufd-kernel/bzImage"));
    Prerequisites.require(onPath("qemu-system-x86_64"), "qemu-system-x86_64 (apt-get install qemu-system-x86)");
    Prerequisites.require(Files.isExecutable(Path.of("/bin/busybox")), "/bin/busybox (apt-get install busybox-static)");
    Prerequisites.require(Files.isRegularFile(kernel), "the iommufd guest kernel at " + kernel
        + " (bash e2e/scripts/setup.d/30-iommufd-kernel.sh)");
    Prerequisites.require(Files.isRegularFile(jar), "the agent jar at " + jar + " (mvn package)");
    Prerequisites.require(onPath("gcc"), "gcc (apt-get install gcc libc6-dev) to build e2e/iommufd/overmap.c");

    Path out = Path.of(System.getProperty("vfiovm.iommufd.out", repo + "/e2e/target/iommufd"));
    Path overmap = buildOvermap(repo, out.resolveSibling("iommufd-bin"));
    guest = GuestRun.boot(repo, out, repo.resolve("e2e/iommufd/scenarios.sh"),
        kernel,
        Map.of("VFIOVM_JAR", jar.toString(),
            "OVERMAP", overmap.toString(),
            "S4_MEMORY", Long.toString(S4_MEMORY),
            "S4_MEMLOCK", Long.toString(S4_MEMLOCK)),
        Duration.ofSeconds(Long.getLong("vfiovm.iommufd.timeoutSeconds", 20 * 60)));
    System.out.printf("iommufd guest: exit %d, wall %.1f s, guest uptimes %s, timings %s%n",
        guest.exitCode, guest.wallTime.toMillis() / 1000.0, guest.uptimes(), guest.timings());

    assertThat(guest.killedByHost).as("guest hung and was killed; console:\n%s", guest.tail()).isFalse();
    assertThat(guest.console).as("guest never booted; console:\n%s", guest.tail()).contains("VFIOVM-GUEST booted");
    assertThat(guest.console).as("console:\n%s", guest.tail())
        .contains("VFIOVM-GUEST job exit=0", "VFIOVM-GUEST poweroff");
    assertThat(guest.out.resolve("done")).as("scenarios did not all run; console:\n%s", guest.tail()).exists();
  }

  @Test
  void guestRebindsTwoDevicesToVfioPciAndHasIommufd() {
    assertThat(guest.console)
        .contains("VFIOVM-GUEST rebound " + DEV_A + " driver=vfio-pci cdev=vfio")
        .contains("VFIOVM-GUEST rebound " + DEV_B + " driver=vfio-pci cdev=vfio")
        .contains("VFIOVM-GUEST iommufd /dev/iommu present");
  }

  @Test
  void perUserSameUidSecondVmFailsWithEnomemAndFirstKeepsItsPins() {
    GuestVm first = guest.vm("s1-a");
    GuestVm second = guest.vm("s1-b");
    assertRunning(first, 70001, "PerUser", M, L, DEV_A);
    // per-user mode charges the UID's counter, not the process's locked_vm
    assertThat(first.statusBytes("VmLck")).as(first.describe()).hasValue(0);
    NodeAgentReport failure = assertFailed(second, "ENOMEM");
    // the message names both numbers: what the VM pins and the limit it exceeds
    assertThat(failure.getMessage()).contains(Long.toString(M), Long.toString(L), "70001");
    assertThat(second.stderr()).as(second.describe()).singleElement().asString()
        .contains("ENOMEM", Long.toString(M), Long.toString(L));
    assertThat(second.report().getDevices()).allSatisfy(d -> assertThat(d.isAttached()).isFalse());
    // the snapshot of the first VM is taken after the second one failed
    assertThat(first.statusBytes("VmPin")).as(first.describe()).hasValue(M);
    assertStoppedCleanly(first);
  }

  @Test
  void perUserDistinctUidsBothMapEachChargedToItsOwnProcess() {
    GuestVm a = guest.vm("s2-a");
    GuestVm b = guest.vm("s2-b");
    assertRunning(a, 70011, "PerUser", M, L, DEV_A);
    assertRunning(b, 70012, "PerUser", M, L, DEV_B);
    assertStoppedCleanly(a);
    assertStoppedCleanly(b);
  }

  @Test
  void perProcessSameUidBothMapEachBoundedByItsOwnLimit() {
    GuestVm a = guest.vm("s3-a");
    GuestVm b = guest.vm("s3-b");
    // both VMs of one UID map M (2 x M > L: per-user accounting would refuse the second, see scenario 1)
    for (GuestVm vm : List.of(a, b)) {
      NodeAgentReport running = vm.runningReport();
      assertThat(running.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Running);
      assertThat(running.getAccounting()).isEqualTo("PerProcess");
      assertThat(running.getHostUid()).isEqualTo(70021);
      assertThat(running.getPinnedBytes()).isEqualTo(M);
      assertThat(vm.realUid()).as(vm.describe()).hasValue(70021);
    }
    assertThat(a.memlockLimit()).containsExactly(L, L);
    assertThat(b.memlockLimit()).containsExactly(L2, L2);
    // their VMMs (overmap, exec'd in the VM process: a fresh mm) each pin M twice more, charged to their own
    // process: under L the pin that would take it past L is refused ...
    assertThat(a.output()).as(a.describe())
        .contains("overmap: map 1 +" + M + " bytes -> OK", "overmap: map 2 +" + M + " bytes -> ENOMEM");
    assertThat(a.statusBytes("VmPin")).as(a.describe()).hasValue(M);
    assertThat(a.statusBytes("VmLck")).as(a.describe()).hasValue(M);
    // ... and under 2 x M the same requests succeed, though the UID then has 4 x M > L pinned: the refusal
    // was this process's own limit, nothing the other VM of the UID did
    assertThat(b.output()).as(b.describe())
        .contains("overmap: map 1 +" + M + " bytes -> OK", "overmap: map 2 +" + M + " bytes -> OK");
    assertThat(b.statusBytes("VmPin")).as(b.describe()).hasValue(2 * M);
    assertThat(b.statusBytes("VmLck")).as(b.describe()).hasValue(2 * M);
    assertStoppedCleanly(a);
    assertStoppedCleanly(b);
  }

  @Test
  void perUserAccountingBoundsTheVmAcrossTheExecOfItsVmm() {
    // the contrast to scenario 3: the UID's counter still holds the M pinned before the exec, so the VMM's
    // request for M more (M + M > L) is refused, whatever mm it comes from
    GuestVm vm = guest.vm("s7");
    NodeAgentReport running = vm.runningReport();
    assertThat(running.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Running);
    assertThat(running.getAccounting()).isEqualTo("PerUser");
    assertThat(running.getPinnedBytes()).isEqualTo(M);
    assertThat(vm.memlockLimit()).containsExactly(L, L);
    assertThat(vm.output()).as(vm.describe()).contains("overmap: map 1 +" + M + " bytes -> ENOMEM");
    assertStoppedCleanly(vm);
  }

  @Test
  void twoDevicesOnOneIoasPinOnceUnderTheOperatorsViommuLimit() {
    GuestVm vm = guest.vm("s4");
    assertRunning(vm, 70031, "PerProcess", S4_MEMORY, S4_MEMLOCK, DEV_A, DEV_B);
    assertThat(vm.statusBytes("VmPin")).as("pinned once, not once per device: " + vm.describe())
        .hasValue(S4_MEMORY);
    assertStoppedCleanly(vm);
  }

  @Test
  void afterSigtermNoPinsRemainAndANewVmBindsAndMapsTheSameDevices() {
    // scenario 1's VMs are the ones torn down: s1-a by SIGTERM (device A), s1-b by its failure (device B)
    GuestVm stopped = guest.vm("s1-a");
    assertStoppedCleanly(stopped);
    assertThat(stopped.report().getPinnedBytes()).as(stopped.describe()).isZero();
    assertThat(stopped.report().getDevices()).allSatisfy(d -> assertThat(d.isAttached()).isFalse());
    // same UID, per-user: mapping 3/4 L again succeeds only if none of s1-a's pins are still charged
    GuestVm next = guest.vm("s5");
    assertRunning(next, 70001, "PerUser", M, L, DEV_A, DEV_B);
    assertStoppedCleanly(next);
  }

  @Test
  void deviceNotBoundToVfioPciIsAClearError() {
    GuestVm vm = guest.vm("s6-unbound");
    NodeAgentReport report = assertFailed(vm, "NotBoundToVfioPci");
    assertThat(report.getMessage()).as(vm.describe()).contains(OTHER_DEVICE, "e1000e", "vfio-pci", "driver_override");
    assertThat(vm.stderr()).as(vm.describe()).singleElement().asString().contains(OTHER_DEVICE);
  }

  @Test
  void missingDevIommuIsAClearError() {
    GuestVm vm = guest.vm("s6-noiommu");
    NodeAgentReport report = assertFailed(vm, "NoIommufd");
    assertThat(report.getMessage()).as(vm.describe()).contains("/dev/iommu", "CONFIG_IOMMUFD");
    assertThat(vm.stderr()).as(vm.describe()).singleElement().asString().contains("/dev/iommu");
  }

  /** Running with the expected accounting, pins and limit, by the report and by the kernel. */
  static void assertRunning(GuestVm vm, long uid, String accounting, long memory, long limit, String... devices) {
    assertThat(vm.ran()).as(vm.name + " never ran").isTrue();
    assertThat(vm.snapshotTaken()).as("no snapshot of a running VM: " + vm.describe()).isTrue();
    NodeAgentReport report = vm.runningReport();
    assertThat(report.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Running);
    assertThat(report.getHostUid()).isEqualTo(uid);
    assertThat(report.getAccounting()).isEqualTo(accounting);
    assertThat(report.getDmaBackend()).isEqualTo("Iommufd");
    assertThat(report.getMemlockLimitBytes()).isEqualTo(limit);
    assertThat(report.getPinnedBytes()).isEqualTo(memory);
    assertThat(report.getDevices()).extracting(d -> d.getPciAddress()).containsExactly(devices);
    assertThat(report.getDevices()).allSatisfy(d -> assertThat(d.isAttached()).isTrue());
    // the kernel's view of the VM process: its UID, its pins, and the limit it is held to
    assertThat(vm.realUid()).as(vm.describe()).hasValue(uid);
    assertThat(vm.statusBytes("VmPin")).as(vm.describe()).hasValue(memory);
    assertThat(vm.memlockLimit()).as(vm.describe()).containsExactly(limit, limit);
  }

  static NodeAgentReport assertFailed(GuestVm vm, String error) {
    assertThat(vm.ran()).as(vm.name + " never ran").isTrue();
    assertThat(vm.exitCode()).as(vm.describe()).isPresent();
    assertThat(vm.exitCode().getAsLong()).as(vm.describe()).isNotZero().isNotEqualTo(124);
    NodeAgentReport report = vm.report();
    assertThat(report.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Failed);
    if (error != null) {
      assertThat(report.getError()).as(vm.describe()).isEqualTo(error);
    }
    assertThat(report.getMessage()).as(vm.describe()).isNotBlank();
    return report;
  }

  /** SIGTERM ends the agent with exit 0, a Stopped report, and its VM process gone. */
  static void assertStoppedCleanly(GuestVm vm) {
    assertThat(vm.exitCode()).as(vm.describe()).hasValue(0);
    assertThat(vm.report().getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Stopped);
    assertThat(vm.vmProcessGoneAfterExit()).as(vm.describe()).isTrue();
  }

  /** The --vm-command of scenario 3, built for the host (the guest runs the host's userland). */
  static Path buildOvermap(Path repo, Path dir) throws Exception {
    Files.createDirectories(dir);
    Path binary = dir.resolve("overmap");
    Process gcc = new ProcessBuilder("gcc", "-O2", "-Wall", "-Werror", "-o", binary.toString(),
            repo.resolve("e2e/iommufd/overmap.c").toString())
        .redirectErrorStream(true).start();
    String output = new String(gcc.getInputStream().readAllBytes());
    assertThat(gcc.waitFor()).as("gcc overmap.c: %s", output).isZero();
    return binary;
  }

  static boolean onPath(String binary) {
    return Stream.of(System.getenv().getOrDefault("PATH", "").split(":"))
        .anyMatch(dir -> Files.isExecutable(Path.of(dir, binary)));
  }
}
