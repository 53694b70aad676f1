package dev.vfiovm.e2e.iommufd;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.testing.Prerequisites;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The iommufd tier: the real node agent, with QEMU 10 as the VM process, against real iommufd + VFIO cdev,
 * nested: an L1 QEMU (TCG) guest with an emulated VT-d and three e1000e NICs bound to vfio-pci runs the agents;
 * each agent's QEMU binds, attaches and maps its L2 guest's RAM itself, as the VM's host UID in its own user
 * namespace. One L1 boot runs every scenario of e2e/iommufd/scenarios.sh; each test asserts one scenario from
 * the agents' reports and from the kernel's own view (L1's /proc/PID/status and limits of the VMM, the L2
 * guest's serial console).
 */
class IommufdScenariosIT {
  static final long MI = 1024 * 1024;
  /**
   * What QEMU 10 pins beyond guest RAM ({@code -m}) for these VMs (q35, -nodefaults, SeaBIOS, the assigned
   * NICs carry no ROM): the 256 KiB BIOS image, which is RAM to the memory listener that maps guest memory into
   * the IOAS. Measured in L1: VmPin = 128 MiB + 256 KiB for a 128 MiB VM, 32 MiB + 256 KiB for a 32 MiB one.
   */
  static final long PIN_EXTRA = 256 * 1024;
  static final String DEV_A = "0000:00:03.0";
  static final String DEV_B = "0000:00:04.0";
  static final String DEV_C = "0000:00:06.0";
  static final String OTHER_DEVICE = "0000:00:05.0";
  /** Values scenarios.sh uses: the Linux L2, the tiny guests, the compromised VMM. */
  static final long M1 = 128 * MI;
  static final long MT = 32 * MI;
  static final long M5 = 16 * MI;
  static final long L5 = 24 * MI;
  static final long FITS5 = 4 * MI;
  static final long M7 = 8 * MI;
  static final long L7 = 16 * MI;
  static final String TINY_MARKER = "VFIOVM-TINY-GUEST running";

  static GuestRun guest;

  static long need(long memory) {
    return memory + PIN_EXTRA;
  }

  @BeforeAll
  static void bootGuestAndRunAllScenarios() throws Exception {
    Path repo = Path.of(System.getenv().getOrDefault("VFIOVM_REPO_ROOT", "..")).toAbsolutePath().normalize();
    // -Dvfiovm.iommufd.jar=JAR runs the tier against another agent build
    Path jar = Path.of(System.getProperty("vfiovm.iommufd.jar",
        System.getenv().getOrDefault("VFIOVM_JAR", repo + "/operator/target/vfiovm.jar")));
    // where hack/setup.d/30-iommufd-kernel.sh and 35-qemu.sh cache them
    String cache = System.getenv().getOrDefault("VFIOVM_CACHE", System.getProperty("user.home") + "/.cache/vfiovm");
    Path kernel = Path.of(System.getProperty("vfiovm.iommufd.kernel", cache + "/iommufd-kernel/bzImage"));
    // QEMU 10 unpacked (DIR/usr/bin/qemu-system-x86_64): where hack/setup.d/35-qemu.sh puts it
    Path qemu10 = Path.of(System.getProperty("vfiovm.iommufd.qemu",
        Stream.of("/opt/vfiovm/qemu10", cache + "/qemu10")
            .filter(d -> Files.isExecutable(Path.of(d, "usr/bin/qemu-system-x86_64")))
            .findFirst().orElse(cache + "/qemu10")));
    Prerequisites.require(onPath("qemu-system-x86_64"), "qemu-system-x86_64 (apt-get install qemu-system-x86)");
    Prerequisites.require(Files.isExecutable(qemu10.resolve("usr/bin/qemu-system-x86_64")),
        "QEMU 10 (iommufd backend) at " + qemu10 + " (bash hack/setup.d/35-qemu.sh)");
    Prerequisites.require(Files.isExecutable(Path.of("/bin/busybox")), "/bin/busybox (apt-get install busybox-static)");
    Prerequisites.require(Files.isRegularFile(kernel), "the iommufd guest kernel at " + kernel
        + " (bash hack/setup.d/30-iommufd-kernel.sh)");
    Prerequisites.require(Files.isRegularFile(jar), "the agent jar at " + jar + " (mvn package)");
    Prerequisites.require(Files.isRegularFile(Path.of(cache, "uapi-headers-6.12/linux/iommufd.h")),
        "the Linux 6.12 uAPI headers at " + cache + "/uapi-headers-6.12 for p6's bench/native/pin.c "
            + "(bash hack/setup.d/40-uapi-headers.sh)");
    Prerequisites.require(onPath("gcc") && onPath("as") && onPath("ld"),
        "gcc, as, ld (apt-get install gcc libc6-dev binutils) for e2e/iommufd/*.c and tiny-guest.S");

    Path out = Path.of(System.getProperty("vfiovm.iommufd.out", repo + "/e2e/target/iommufd"));
    Path bin = out.resolveSibling("iommufd-bin");
    buildPayloads(repo, bin, jar);
    Duration bound = Duration.ofSeconds(Long.getLong("vfiovm.iommufd.timeoutSeconds", 50 * 60));
    guest = GuestRun.boot(repo, out, repo.resolve("e2e/iommufd/scenarios.sh"),
        kernel,
        Map.of("BIN", bin.toString(),
            "KERNEL", kernel.toString(),
            "QEMU_DIR", qemu10.toString(),
            "PIN_EXTRA", Long.toString(PIN_EXTRA),
            // the Linux L2 must reach its lease within this (nested TCG: measured 1,130-1,800 s after its agent started)
            "L2_TIMEOUT", Long.toString(Math.max(60, bound.toSeconds() - 300))),
        bound);
    System.out.printf("iommufd guest: exit %d, wall %.1f s, guest uptimes %s, timings %s%n",
        guest.exitCode, guest.wallTime.toMillis() / 1000.0, guest.uptimes(), guest.timings());

    assertThat(guest.killedByHost).as("guest hung and was killed; console:\n%s", guest.tail()).isFalse();
    assertThat(guest.console).as("guest never booted; console:\n%s", guest.tail()).contains("VFIOVM-GUEST booted");
    assertThat(guest.console).as("console:\n%s", guest.tail())
        .contains("VFIOVM-GUEST job exit=0", "VFIOVM-GUEST poweroff");
    assertThat(guest.out.resolve("done")).as("scenarios did not all run; console:\n%s", guest.tail()).exists();
  }

  @Test
  void l1RebindsTwoDevicesToVfioPciAndHasIommufd() {
    assertThat(guest.console)
        .contains("VFIOVM-GUEST rebound " + DEV_A + " driver=vfio-pci cdev=vfio")
        .contains("VFIOVM-GUEST rebound " + DEV_B + " driver=vfio-pci cdev=vfio")
        .contains("VFIOVM-GUEST rebound " + DEV_C + " driver=vfio-pci cdev=vfio")
        .contains("VFIOVM-GUEST iommufd /dev/iommu present");
  }

  /** 1: a VM with one assigned e1000e boots Linux, which drives the device and gets a DHCP lease through it. */
  @Test
  void aVmWithAnAssignedNicBootsLinuxWhichGetsADhcpLeaseThroughIt() {
    GuestVm vm = guest.vm("s1-linux");
    assertQemuRunning(vm, 70001, M1, need(M1), DEV_A);
    // L2's own view: the assigned NIC behind its root port is the e1000e of L1, driven by L2's e1000e driver,
    // and L0's user-network DHCP server answered through it (DMA both ways through the VMM's mappings)
    assertThat(vm.console()).as(vm.describe())
        .contains("L2-BOOTED")
        .contains("L2-PCI 0000:01:00.0 0x8086:0x10d3 driver=e1000e")
        .contains("L2-LINK-UP")
        .contains("udhcpc: lease of 10.0.2.15 obtained from 10.0.2.2")
        .contains("L2-DHCP-OK");
    // still the same pins and UID at the lease, minutes later
    assertThat(vm.runningReport("lease").getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Running);
    assertThat(vm.uids("lease")).as(vm.describe()).containsOnly(70001L).hasSize(4);
    assertThat(vm.statusBytes("VmPin", "lease")).as(vm.describe()).hasValue(need(M1));
  }

  /**
   * Hot-plug (issue 14): attach-device hands DEV_B's cdev to the running s1's agent over its control socket; the
   * agent raises only s1's RLIMIT_MEMLOCK by one guest RAM (the operator's plan for a vIOMMU VM) before
   * device_add; inside L2 the new NIC is bound to e1000e and gets a lease; the bystander VM's limit and pins do
   * not move; SIGTERM to attach-device unplugs it (device_del, DEVICE_DELETED), s1's limit goes back, and a
   * third VM then boots with the device.
   */
  @Test
  void aDeviceHotPluggedIntoARunningVmRaisesOnlyItsLimitWorksInTheGuestAndIsFreeAfterUnplug() {
    GuestVm s1 = guest.vm("s1-linux");
    GuestVm attach = guest.vm("hp-attach");
    GuestVm bystander = guest.vm("s8-bystander");
    long raised = need(M1) + M1;
    // the attachment's side: plug replied Attached, SIGTERM sent the unplug, which replied ok; exit 0
    assertThat(attach.output()).as(attach.describe())
        .contains("\"op\":\"plug\",\"pciAddress\":\"" + DEV_B + "\",\"memlockLimitBytes\":" + raised)
        .contains("<- {\"ok\":true,\"state\":\"Attached\",\"previousMemlockLimitBytes\":" + need(M1) + "}")
        .contains("\"op\":\"unplug\",\"pciAddress\":\"" + DEV_B + "\",\"memlockLimitBytes\":" + need(M1))
        .contains("<- {\"ok\":true,\"state\":\"Unplugged\"}");
    assertThat(attach.exitCode()).as(attach.describe()).hasValue(0);
    // before: s1 at exactly its need, one device
    assertThat(s1.memlockLimit("before-plug")).as(s1.describe()).containsExactly(need(M1), need(M1));
    // plugged: the kernel's view of s1's QEMU - its limit rose by exactly one guest RAM; its pins stay one copy of
    // guest RAM + BIOS (the new device joined the same IOAS, whose pages are pinned once)
    assertThat(s1.memlockLimit("plugged")).as(s1.describe()).containsExactly(raised, raised);
    assertThat(s1.statusBytes("VmPin", "plugged")).as(s1.describe()).hasValue(need(M1));
    assertThat(s1.uids("plugged")).as(s1.describe()).containsOnly(70001L);
    NodeAgentReport plugged = s1.runningReport("plugged");
    assertThat(plugged.getMemlockLimitBytes()).as(s1.describe()).isEqualTo(raised);
    assertThat(plugged.getDevices()).as(s1.describe()).extracting(d -> d.getPciAddress()).containsExactly(DEV_A, DEV_B);
    assertThat(plugged.getDevices().get(0).isHotplugged()).isFalse();
    assertThat(plugged.getDevices().get(0).getState()).isEqualTo(dev.vfiovm.api.DeviceState.Attached);
    assertThat(plugged.getDevices().get(1).isHotplugged()).as(s1.describe()).isTrue();
    assertThat(plugged.getDevices().get(1).getState()).as(s1.describe()).isEqualTo(dev.vfiovm.api.DeviceState.Attached);
    assertThat(plugged.getDevices().get(1).isAttached()).isTrue();
    // L2's own view: a new PCI device behind the hot-plug root port, the e1000e driver bound, and a lease through it
    assertThat(s1.console()).as(s1.describe())
        .containsPattern("L2-HOTPLUG 0000:0[2-9]:00\\.0 0x8086:0x10d3 driver=e1000e")
        .contains("L2-DHCP2-OK");
    assertThat(s1.console().split("udhcpc: lease of 10.0.2.15 obtained from 10.0.2.2", -1)).as(s1.describe()).hasSize(3);
    // unplugged: DEVICE_DELETED came, L2 saw it go, the limit back to the need, the pins unchanged
    assertThat(s1.console()).as(s1.describe()).containsPattern("L2-HOTUNPLUG 0000:0[2-9]:00\\.0");
    assertThat(s1.memlockLimit("unplugged")).as(s1.describe()).containsExactly(need(M1), need(M1));
    assertThat(s1.statusBytes("VmPin", "unplugged")).as(s1.describe()).hasValue(need(M1));
    NodeAgentReport unplugged = s1.runningReport("unplugged");
    assertThat(unplugged.getDevices()).extracting(d -> d.getPciAddress()).containsExactly(DEV_A);
    assertThat(unplugged.getMemlockLimitBytes()).isEqualTo(need(M1));
    // the bystander (its own UID and device) ran throughout with its limit and pins unchanged
    // (the bystander's snapshots are the tagged ones around the plug)
    NodeAgentReport byRunning = bystander.runningReport("before-plug");
    assertThat(byRunning.getPhase()).as(bystander.describe()).isEqualTo(AgentPhase.Running);
    assertThat(byRunning.getHostUid()).isEqualTo(70008);
    assertThat(byRunning.getDevices()).extracting(d -> d.getPciAddress()).containsExactly(DEV_C);
    assertThat(bystander.console()).as(bystander.describe()).contains(TINY_MARKER);
    for (String tag : List.of("before-plug", "plugged", "unplugged")) {
      assertThat(bystander.memlockLimit(tag)).as(tag + " " + bystander.describe()).containsExactly(need(MT), need(MT));
      assertThat(bystander.statusBytes("VmPin", tag)).as(tag + " " + bystander.describe()).hasValue(need(MT));
      assertThat(bystander.uids(tag)).as(tag + " " + bystander.describe()).containsOnly(70008L).hasSize(4);
      assertThat(bystander.runningReport(tag).getMemlockLimitBytes()).as(tag).isEqualTo(need(MT));
    }
    assertStoppedCleanly(bystander);
    // the device was free again: a third VM of its own UID bound, mapped and booted with it
    GuestVm third = guest.vm("s9-third");
    assertQemuRunning(third, 70009, MT, need(MT), DEV_B);
    assertThat(third.console()).as(third.describe()).contains(TINY_MARKER);
    assertStoppedCleanly(third);
  }

  /** 2: the seed with real QEMU: one UID, each limit its own need -> the second VMM fails ENOMEM. */
  @Test
  void twoVmsOfOneUidEachLimitedToItsNeedTheSecondFailsWithEnomemTheFirstRuns() {
    GuestVm second = guest.vm("s2-same-uid");
    NodeAgentReport failure = assertFailed(second, "ENOMEM");
    // QEMU's own line: its map of guest RAM into the IOAS was refused (-12 = ENOMEM)
    assertQemuSaidEnomem(failure, second);
    assertThat(failure.getMemlockLimitBytes()).isEqualTo(need(MT));
    assertThat(second.vmProcessGoneAfterExit()).as(second.describe()).isTrue();
    // the first VM, of the same UID, kept running with all its pins after the second one failed
    GuestVm first = guest.vm("s1-linux");
    assertThat(first.runningReport("after-s2").getPhase()).as(first.describe()).isEqualTo(AgentPhase.Running);
    assertThat(first.statusBytes("VmPin", "after-s2")).as(first.describe()).hasValue(need(M1));
    assertThat(first.uids("after-s2")).as(first.describe()).containsOnly(70001L);
  }

  @Test
  void twoVmsOfDistinctUidsBothRun() {
    GuestVm other = guest.vm("s2-other-uid");
    assertQemuRunning(other, 70002, MT, need(MT), DEV_B);
    assertThat(other.console()).as(other.describe()).contains(TINY_MARKER);
    // recorded while s2-other-uid ran: s1 (UID 70001) ran at the same time, both at exactly their need
    GuestVm first = guest.vm("s1-linux");
    assertThat(first.runningReport("both-running").getPhase()).as(first.describe()).isEqualTo(AgentPhase.Running);
    assertThat(first.statusBytes("VmPin", "both-running")).as(first.describe()).hasValue(need(M1));
    assertStoppedCleanly(other);
  }

  /** 3: a limit below guest RAM: ENOMEM at start-up, the message names both numbers. */
  @Test
  void aLimitBelowGuestRamFailsWithEnomemNamingBothNumbers() {
    GuestVm vm = guest.vm("s3-below");
    NodeAgentReport failure = assertFailed(vm, "ENOMEM");
    assertThat(failure.getMemlockLimitBytes()).isEqualTo(16 * MI);
    assertThat(mentions(failure.getMessage(), MT)).as("guest RAM %d in: %s", MT, vm.describe()).isTrue();
    assertThat(mentions(failure.getMessage(), 16 * MI)).as("limit %d in: %s", 16 * MI, vm.describe()).isTrue();
    assertQemuSaidEnomem(failure, vm);
    assertThat(vm.vmProcessGoneAfterExit()).as(vm.describe()).isTrue();
  }

  /** 3 (kernel): a limit of exactly guest RAM is below the VM's need (RAM + BIOS): the kernel refuses the map. */
  @Test
  void aLimitBelowTheVmsNeedFailsWithEnomemFromTheKernel() {
    GuestVm vm = guest.vm("s3-below-need");
    NodeAgentReport failure = assertFailed(vm, "ENOMEM");
    assertThat(failure.getMemlockLimitBytes()).isEqualTo(MT);
    assertQemuSaidEnomem(failure, vm);
    assertThat(mentions(failure.getMessage(), MT)).as(vm.describe()).isTrue();
    assertThat(vm.vmProcessGoneAfterExit()).as(vm.describe()).isTrue();
  }

  /** 4: SIGTERM -> the guest powers off, the pins are released, and the device boots in a new VM at once. */
  @Test
  void afterSigtermTheGuestIsGoneNoPinsRemainAndTheDeviceBootsInANewVm() {
    GuestVm stopped = guest.vm("s1-linux");
    assertStoppedCleanly(stopped);
    // QMP system_powerdown reached the guest: its power button handler powered it off
    assertThat(stopped.console()).as(stopped.describe()).contains("L2-POWERDOWN");
    // the same UID, limit = the new VM's own need: per-user accounting would refuse its map (ENOMEM) if any
    // of s1's pins were still charged to UID 70001
    GuestVm next = guest.vm("s4-next");
    assertQemuRunning(next, 70001, MT, need(MT), DEV_A);
    assertThat(next.console()).as(next.describe()).contains(TINY_MARKER);
    assertStoppedCleanly(next);
  }

  /** 5: a compromised VMM cannot pin past its limit, from a forked child nor from an exec'd image. */
  @Test
  void aCompromisedVmmCannotPinPastItsLimitAcrossForkAndExec() {
    GuestVm vm = guest.vm("s5-compromised");
    NodeAgentReport running = vm.runningReport();
    assertThat(running.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Running);
    assertThat(running.getHostUid()).isEqualTo(70005);
    assertThat(running.getAccounting()).isEqualTo("PerUser");
    assertThat(running.getMemlockLimitBytes()).isEqualTo(L5);
    // at READY the VMM had pinned its guest memory, charged to itself: the report's figure is the kernel's
    assertThat(running.getPinnedBytes()).as(vm.describe()).isEqualTo(M5);
    assertThat(vm.statusBytes("VmPin", "ready")).as(vm.describe()).hasValue(M5);
    List<String> lines = vm.outputLines("compromised-vmm: ");
    List<String> expected = List.of(
        "compromised-vmm: bind device fd \\d+ -> OK devid=\\d+",
        "compromised-vmm: ioas alloc -> OK ioas=\\d+",
        "compromised-vmm: attach device fd \\d+ -> OK",
        "compromised-vmm: map guest memory \\+" + M5 + " bytes -> OK",
        "compromised-vmm: READY",
        // (the test's SIGUSR1, sent once the agent had reported Running)
        "compromised-vmm: told to attack \\(SIGUSR1\\)",
        // UID 70005's counter holds M5; M5 more exceeds L5 whatever the process: a copy of the mm ...
        "compromised-vmm: forked child map \\+" + M5 + " bytes -> ENOMEM",
        // ... or a fresh one
        "compromised-vmm: exec'd image map \\+" + M5 + " bytes -> ENOMEM",
        // what still fits under L5 is pinned: the refusals were the limit, not a broken fd
        "compromised-vmm: exec'd image map \\+" + FITS5 + " bytes -> OK",
        "compromised-vmm: done");
    assertThat(lines).as(vm.describe()).hasSameSizeAs(expected);
    for (int i = 0; i < expected.size(); i++) {
      assertThat(lines.get(i)).as(vm.describe()).matches(expected.get(i));
    }
    // the kernel's view of the exec'd image: the VM's UID, no new privileges, its own user namespace, the limit
    // set from outside; its own mm pins only what it mapped itself (the per-mm counter forgot the pre-exec pins;
    // the UID's counter, which bounded it, did not)
    assertThat(vm.uids()).as(vm.describe()).containsOnly(70005L).hasSize(4);
    assertThat(vm.statusNumber("NoNewPrivs")).as(vm.describe()).hasValue(1);
    assertThat(vm.ownUserNamespace()).as(vm.describe()).isTrue();
    assertThat(vm.memlockLimit()).containsExactly(L5, L5);
    assertThat(vm.statusBytes("VmPin")).as(vm.describe()).hasValue(FITS5);
    assertStoppedCleanly(vm);
  }

  /**
   * 7: the compromised-VM probe (e2e/probes/compromised-vm.c) in its sandbox, on a real iommufd with a VFIO
   * cdev, next to a running victim (s1): every attempt refused or nothing, RLIMIT_MODE refused (EPERM), no
   * process of its UID left after SIGTERM, and the same UID then pins its whole limit.
   */
  @Test
  void theCompromisedVmProbeReachesNothingAndItsUidPinsItsWholeLimitAfterwards() {
    GuestVm vm = guest.vm("s7-probe");
    NodeAgentReport running = vm.runningReport();
    assertThat(running.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Running);
    assertThat(running.getHostUid()).isEqualTo(70007);
    assertThat(running.getPinnedBytes()).as(vm.describe()).isEqualTo(M7);
    assertThat(running.getSandbox()).as(vm.describe()).contains("bubblewrap", "seccomp");
    List<String> lines = vm.outputLines("PROBE ");
    assertThat(lines).as(vm.describe()).hasSizeGreaterThanOrEqualTo(30)
        .allMatch(l -> l.matches("PROBE \\S+ (refused|nothing) .*"));
    assertThat(lines).as(vm.describe()).contains(
        "PROBE rlimit-mode refused IOMMU_OPTION RLIMIT_MODE=per-process on fd 4: EPERM",
        "PROBE pin-beyond-limit refused IOMMU_IOAS_MAP of " + L7 + " more bytes: ENOMEM",
        "PROBE mount-tmpfs refused mount(tmpfs, /tmp): EPERM",
        "PROBE unshare-user refused unshare(CLONE_NEWUSER): EPERM",
        "PROBE bpf-prog-load refused bpf(BPF_PROG_LOAD): EPERM",
        "PROBE memlock-raise-hard refused setrlimit(MEMLOCK hard x2): EPERM",
        "PROBE kill-all nothing kill(-1, SIGKILL): ESRCH",
        "PROBE host-dev-iommu nothing open(/dev/iommu, O_RDONLY): ENOENT");
    assertThat(lines).as(vm.describe()).anyMatch(l -> l.startsWith("PROBE victim-memfd nothing"))
        .anyMatch(l -> l.startsWith("PROBE signal-victim nothing")).anyMatch(l -> l.startsWith("PROBE proc-list nothing"))
        .anyMatch(l -> l.startsWith("PROBE agent-file-0 nothing")).anyMatch(l -> l.startsWith("PROBE serviceaccount-token nothing"))
        .anyMatch(l -> l.startsWith("PROBE setsid-child nothing"));
    assertThat(vm.output()).as(vm.describe()).contains("PROBE-DONE");
    assertThat(vm.uids()).as(vm.describe()).containsOnly(70007L);
    assertStoppedCleanly(vm);
    // the kernel's view after teardown: no process of UID 70007 left (its setsid grandchild included) ...
    assertThat(vm.fileLines("uid-left")).as(vm.describe()).isEmpty();
    // ... and its per-user counter back to zero: the same UID maps its whole limit at once
    GuestVm again = guest.vm("s7-again");
    assertThat(again.exitCode()).as(again.describe()).hasValue(0);
    assertThat(again.output()).as(again.describe()).contains("\"phase\":\"Running\"", "\"pinnedBytes\":" + L7);
    assertThat(guest.vm("s1-linux").runningReport("lease").getPhase()).isEqualTo(AgentPhase.Running);
  }

  @Test
  void deviceNotBoundToVfioPciIsAClearError() {
    GuestVm vm = guest.vm("s6-unbound");
    NodeAgentReport report = assertFailed(vm, "NotBoundToVfioPci");
    assertThat(report.getMessage()).as(vm.describe()).contains(OTHER_DEVICE, "e1000e", "vfio-pci");
  }

  @Test
  void missingDevIommuIsAClearError() {
    GuestVm vm = guest.vm("s6-noiommu");
    NodeAgentReport report = assertFailed(vm, "NoIommufd");
    assertThat(report.getMessage()).as(vm.describe()).contains("/dev/iommu");
  }

  /**
   * p6's guest step (e2e/iommufd/p6-pin.sh, docs/performance.md): the figure was produced, of real pins - every
   * round of both sides (the Java facade's memfd + iommufd IOAS_MAP, pin.c's same syscalls) raised its
   * process's VmPin by exactly the mapped size and gave it all back; and pins happen at attach, not at a map
   * into an IOAS no device is attached to. Asserts no ratio and no time.
   */
  @Test
  void p6PinFigureIsProducedFromRoundsWhosePinsTheKernelSaw() throws Exception {
    Path json = guest.out.resolve("p6/p6-pin.json");
    assertThat(json).as("p6 figure; console:\n%s", guest.tail()).exists();
    JsonNode p6 = new ObjectMapper().readTree(json.toFile());
    long bytes = p6.get("bytes").asLong();
    assertThat(bytes).isPositive();
    assertThat(p6.get("pins_seen").asBoolean()).as(p6.toString()).isTrue();
    assertThat(p6.get("ratio").asDouble()).as(p6.toString()).isPositive();
    for (String side : List.of("java_rounds", "c_rounds")) {
      assertThat(p6.get(side)).as(side).hasSize(p6.get("rounds").asInt());
      p6.get(side).forEach(r -> {
        assertThat(r.get("vmPinMapped").asLong() - r.get("vmPinBefore").asLong()).as(side + " " + r).isEqualTo(bytes);
        assertThat(r.get("vmPinAfter").asLong()).as(side + " " + r).isEqualTo(r.get("vmPinBefore").asLong());
      });
    }
    // what the docs say of iommufd: a map into an IOAS with no device attached pins nothing, the attach pins it
    JsonNode lazy = p6.get("map_before_attach");
    assertThat(lazy.get("vmPinAfterMap").asLong()).as(lazy.toString()).isZero();
    assertThat(lazy.get("vmPinAfterAttach").asLong()).as(lazy.toString()).isEqualTo(lazy.get("bytes").asLong());
    assertThat(Files.readString(guest.out.resolve("p6/exit")).trim()).as("p6-pin.sh's exit").isEqualTo("0");
  }

  /**
   * A QEMU VM Running with the expected UID, limit and devices, by the report and by the kernel: the VMM is
   * QEMU with the iommufd and the device handed over as fds (no host path, so QEMU bound the device itself),
   * runs as the VM's UID in its own user namespace under no_new_privs and QEMU's seccomp sandbox, is held to
   * the limit set from outside, and pins exactly what it needs (the report's figure is the kernel's).
   */
  static void assertQemuRunning(GuestVm vm, long uid, long memory, long limit, String... devices) {
    assertThat(vm.ran()).as(vm.name + " never ran").isTrue();
    assertThat(vm.snapshotTaken(null)).as("no snapshot of a running VM: " + vm.describe()).isTrue();
    NodeAgentReport report = vm.runningReport();
    assertThat(report.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Running);
    assertThat(report.getHostUid()).isEqualTo(uid);
    assertThat(report.getAccounting()).isEqualTo("PerUser");
    assertThat(report.getDmaBackend()).isEqualTo("Iommufd");
    assertThat(report.getMemlockLimitBytes()).isEqualTo(limit);
    assertThat(report.getDevices()).extracting(d -> d.getPciAddress()).containsExactly(devices);
    List<String> argv = vm.cmdline();
    assertThat(argv).as(vm.describe()).isNotEmpty();
    assertThat(argv.get(0)).endsWith("qemu-system-x86_64");
    assertThat(argv).anyMatch(a -> a.matches("iommufd,id=[^,]+,fd=\\d+"));
    assertThat(argv.stream().filter(a -> a.startsWith("vfio-pci,")).toList()).as(String.join(" ", argv))
        .hasSize(devices.length)
        .allSatisfy(a -> assertThat(a).contains("iommufd=").containsPattern(",fd=\\d+").doesNotContain("host="));
    assertThat(vm.uids()).as(vm.describe()).containsOnly(uid).hasSize(4);
    assertThat(vm.ownUserNamespace()).as(vm.describe()).isTrue();
    assertThat(vm.statusNumber("NoNewPrivs")).as(vm.describe()).hasValue(1);
    assertThat(vm.statusNumber("Seccomp")).as("QEMU's -sandbox: " + vm.describe()).hasValue(2);
    assertThat(vm.memlockLimit()).as(vm.describe()).containsExactly(limit, limit);
    // guest RAM and BIOS pinned, exactly this VM's need, charged to the UID (per-user: VmLck stays 0)
    assertThat(vm.statusBytes("VmPin")).as(vm.describe()).hasValue(memory + PIN_EXTRA);
    assertThat(vm.statusBytes("VmLck")).as(vm.describe()).hasValue(0);
    assertThat(report.getPinnedBytes()).as("the report's pins are the kernel's VmPin: " + vm.describe())
        .isEqualTo(vm.statusBytes("VmPin").getAsLong());
  }

  /** The agent's ENOMEM message quotes QEMU's own line, which names the failed map (-12 or its strerror). */
  static void assertQemuSaidEnomem(NodeAgentReport failure, GuestVm vm) {
    String message = failure.getMessage();
    assertThat(message).as(vm.describe()).contains("QEMU said: ");
    assertThat(message.substring(message.indexOf("QEMU said: "))).as(vm.describe())
        .containsAnyOf("-12", "Cannot allocate memory");
  }

  static NodeAgentReport assertFailed(GuestVm vm, String error) {
    assertThat(vm.ran()).as(vm.name + " never ran").isTrue();
    assertThat(vm.exitCode()).as(vm.describe()).isPresent();
    assertThat(vm.exitCode().getAsLong()).as(vm.describe()).isNotZero().isNotEqualTo(124);
    NodeAgentReport report = vm.report();
    assertThat(report.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Failed);
    assertThat(report.getError()).as(vm.describe()).isEqualTo(error);
    assertThat(report.getMessage()).as(vm.describe()).isNotBlank();
    return report;
  }

  /** SIGTERM ends the agent with exit 0, a Stopped report with no pins, and its VM process gone. */
  static void assertStoppedCleanly(GuestVm vm) {
    assertThat(vm.exitCode()).as(vm.describe()).hasValue(0);
    NodeAgentReport report = vm.report();
    assertThat(report.getPhase()).as(vm.describe()).isEqualTo(AgentPhase.Stopped);
    assertThat(report.getPinnedBytes() == null ? 0L : report.getPinnedBytes()).as(vm.describe()).isZero();
    assertThat(vm.vmProcessGoneAfterExit()).as(vm.describe()).isTrue();
  }

  /** True if {@code message} names {@code bytes}: in bytes, or in MiB ("32Mi", "32 MiB"). */
  static boolean mentions(String message, long bytes) {
    List<String> forms = new ArrayList<>(List.of(Long.toString(bytes)));
    if (bytes % MI == 0) {
      forms.add(bytes / MI + "Mi");
      forms.add(bytes / MI + " MiB");
    }
    return forms.stream().anyMatch(message::contains);
  }

  /** The tier's payloads, built on the host (e2e/iommufd/build-payloads.sh), AppCDS archive included. */
  static void buildPayloads(Path repo, Path bin, Path jar) throws Exception {
    Process p = new ProcessBuilder(repo.resolve("e2e/iommufd/build-payloads.sh").toString(), bin.toString(),
            jar.toString(), "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:-UsePerfData")
        .redirectErrorStream(true).start();
    String output = new String(p.getInputStream().readAllBytes());
    assertThat(p.waitFor()).as("build-payloads.sh: %s", output).isZero();
  }

  static boolean onPath(String binary) {
    return Stream.of(System.getenv().getOrDefault("PATH", "").split(":"))
        .anyMatch(dir -> Files.isExecutable(Path.of(dir, binary)));
  }
}
