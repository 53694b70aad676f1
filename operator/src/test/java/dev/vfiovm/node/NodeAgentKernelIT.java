package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import dev.vfiovm.node.kernel.Uapi;
import java.nio.charset.StandardCharsets;
import java.nio.file.attribute.PosixFilePermissions;
import dev.vfiovm.testing.Prerequisites;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The node agent on the real kernel, as root, through its real CLI (the shaded jar): the seed's problem
 * (two VMs under one UID share one per-user budget), its fix (a UID per VM), a compromised VM staying
 * within its limit, nothing leaking, VMs not touching each other. Small limits: the hard memlock limit here
 * is 8 MiB and root lacks CAP_SYS_RESOURCE. The io_uring backend stands in for iommufd's per-user mode
 * (same user_struct counter, same RLIMIT_MEMLOCK check); the iommufd tier repeats these on /dev/iommu.
 */
class NodeAgentKernelIT {
  static final long MIB = 1 << 20;
  static final long LIMIT = 4 * MIB;
  static final long GUEST = 3 * MIB;
  /** The io_uring ring itself costs two pages of the VM's budget. */
  static final long RING = 2 * 4096;

  /** Fresh UIDs per run, inside the operator's default range, so runs never share a user_struct. */
  static final AtomicLong NEXT_UID = new AtomicLong(0x70000000L + 0x8000 + (System.nanoTime() & 0x3fff) * 4);

  static Path jar;

  /**
   * The kernel's count of what the VM pins: the io_uring buffer registered by the VM-side launcher, as the
   * fdinfo of the ring QEMU inherited at fd 4 shows it (the launcher's exec left VmPin on its old mm).
   */
  static long registered(int pid) throws IOException {
    return ProcStatus.ioUringRegisteredBytes(pid, VmFds.IOURING);
  }

  @TempDir Path dir;
  final List<Process> agents = new ArrayList<>();

  @BeforeAll
  static void prerequisites() throws IOException {
    String jarEnv = System.getenv("VFIOVM_JAR");
    jar = jarEnv == null ? null : Path.of(jarEnv);
    Prerequisites.require("root".equals(System.getProperty("user.name")), "root (run the kernel tier as root)");
    Prerequisites.require(jar != null && Files.isRegularFile(jar), "the shaded jar (mvn package) at VFIOVM_JAR");
    String qemu = System.getenv("VFIOVM_QEMU");
    Prerequisites.require(
        qemu != null && Files.isExecutable(Path.of(qemu)),
        "QEMU >= 9 at VFIOVM_QEMU (" + qemu + "; bash hack/setup.sh 35-qemu installs 10.0.2)");
    Prerequisites.require(
        Files.isExecutable(Path.of("/usr/bin/setpriv")) && Files.isExecutable(Path.of("/usr/bin/unshare")),
        "util-linux setpriv and unshare");
    Prerequisites.require(
        Files.readString(Path.of("/proc/sys/kernel/io_uring_disabled")).trim().equals("0"),
        "io_uring enabled (sysctl kernel.io_uring_disabled=0)");
    Prerequisites.require(
        Long.parseLong(Files.readString(Path.of("/proc/sys/user/max_user_namespaces")).trim()) > 0,
        "user namespaces (sysctl user.max_user_namespaces > 0)");
    Prerequisites.require(Kernel.memlockLimit(0)[1] >= 2 * LIMIT, "a memlock hard limit of at least 8 MiB");
  }

  @AfterEach
  void stopAgents() throws InterruptedException {
    for (Process p : agents) {
      p.destroy();
    }
    for (Process p : agents) {
      if (!p.waitFor(20, TimeUnit.SECONDS)) {
        p.destroyForcibly();
      }
    }
  }

  /** A running node-agent process and its files. */
  record Agent(Process process, Path reportFile, Path out, Path err) {
    NodeAgentReport report() {
      try {
        return ReportPublisher.fromJson(Files.readString(reportFile));
      } catch (IOException e) {
        return null;
      }
    }

    /** Waits for the phase (or for the agent to end, so a wrong outcome fails at once with its stderr). */
    NodeAgentReport awaitPhase(AgentPhase phase) {
      await()
          .atMost(Duration.ofSeconds(60))
          .pollInterval(Duration.ofMillis(50))
          .until(() -> !process.isAlive() || report() != null && report().getPhase() == phase);
      assertThat(report().getPhase()).as("phase; stderr: %s", stderr()).isEqualTo(phase);
      return report();
    }

    int vmPid() {
      return report().getVmPid().intValue();
    }

    int exit() throws InterruptedException {
      assertThat(process.waitFor(60, TimeUnit.SECONDS)).as("agent exits").isTrue();
      return process.exitValue();
    }

    String stderr() {
      try {
        return Files.readString(err);
      } catch (IOException e) {
        return "";
      }
    }

    String stdout() {
      try {
        return Files.readString(out);
      } catch (IOException e) {
        return "";
      }
    }

    /** SIGTERM, as the kubelet does; returns the exit code. */
    int stop() throws InterruptedException {
      process.destroy();
      return exit();
    }
  }

  Agent agent(String name, long uid, long memory, long memlock, String... extra) throws IOException {
    Path report = dir.resolve(name + ".json");
    Path out = dir.resolve(name + ".out");
    Path err = dir.resolve(name + ".err");
    List<String> cmd = new ArrayList<>();
    cmd.addAll(
        List.of(
            Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", jar.toString(),
            "node-agent", "--vm", "kernel-it/" + name, "--host-uid", Long.toString(uid),
            "--memory", Long.toString(memory), "--memlock", Long.toString(memlock),
            "--accounting", "per-user", "--dma-backend", "io-uring", "--report", report.toString()));
    cmd.addAll(List.of(extra));
    Process p = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
    agents.add(p);
    return new Agent(p, report, out, err);
  }

  static long uid() {
    return NEXT_UID.getAndIncrement();
  }

  static ProcStatus proc(int pid) throws IOException {
    return ProcStatus.of(pid);
  }

  /** Soft and hard "Max locked memory" of a process, from /proc/PID/limits. */
  static List<Long> memlockOf(int pid) throws IOException {
    for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/limits"))) {
      if (l.startsWith("Max locked memory")) {
        String[] w = l.substring("Max locked memory".length()).trim().split("\\s+");
        return List.of(Long.parseLong(w[0]), Long.parseLong(w[1]));
      }
    }
    throw new IllegalStateException("no memlock line");
  }

  @Test
  void theSeedTwoVmsUnderOneUidShareOneBudgetSoTheSecondFailsWithEnomem() throws Exception {
    long shared = uid();
    Agent vm1 = agent("seed-vm1", shared, GUEST, LIMIT);
    vm1.awaitPhase(AgentPhase.Running);
    Agent vm2 = agent("seed-vm2", shared, GUEST, LIMIT, "--exit-after-map");

    assertThat(vm2.exit()).isEqualTo(1);
    NodeAgentReport r2 = vm2.report();
    assertThat(r2.getPhase()).isEqualTo(AgentPhase.Failed);
    assertThat(r2.getError()).isEqualTo("ENOMEM");
    assertThat(r2.getPinnedBytes()).isZero();
    List<String> errLines = vm2.stderr().lines().toList();
    assertThat(errLines).hasSize(1);
    assertThat(errLines.get(0)).contains("ENOMEM", Long.toString(GUEST), Long.toString(LIMIT));
    // its own limit would have allowed it: 3 MiB < 4 MiB; the first VM's pins are what count
    assertThat(vm1.report().getPhase()).isEqualTo(AgentPhase.Running);
    assertThat(registered(vm1.vmPid())).isEqualTo(GUEST);
  }

  @Test
  void theFixDistinctUidsBothPinAndStartingVm2NeverTouchesVm1() throws Exception {
    Agent vm1 = agent("fix-vm1", uid(), GUEST, LIMIT);
    NodeAgentReport r1 = vm1.awaitPhase(AgentPhase.Running);
    ProcStatus before = proc(vm1.vmPid());
    List<Long> limitBefore = memlockOf(vm1.vmPid());

    Agent vm2 = agent("fix-vm2", uid(), GUEST, LIMIT);
    NodeAgentReport r2 = vm2.awaitPhase(AgentPhase.Running);

    assertThat(r1.getPinnedBytes()).isEqualTo(GUEST);
    assertThat(r2.getPinnedBytes()).isEqualTo(GUEST);
    assertThat(r2.getDmaBackend()).isEqualTo("IoUring");
    assertThat(r2.getAccounting()).isEqualTo("PerUser");
    assertThat(registered(vm2.vmPid())).isEqualTo(GUEST);
    // VM1's limit, pins and identity are exactly as before VM2 started
    assertThat(memlockOf(vm1.vmPid())).isEqualTo(limitBefore).containsExactly(LIMIT, LIMIT);
    assertThat(proc(vm1.vmPid())).isEqualTo(before);
    assertThat(vm1.report().getPhase()).isEqualTo(AgentPhase.Running);
  }

  @Test
  void theVmProcessIsItsUidAsRootOfItsOwnUserNamespaceWithNoPrivilegeOutside() throws Exception {
    long uid = uid();
    Agent vm = agent("identity", uid, GUEST, LIMIT);
    vm.awaitPhase(AgentPhase.Running);
    int pid = vm.vmPid();
    ProcStatus s = proc(pid);
    assertThat(s.uids()).containsOnly(uid);
    assertThat(s.gids()).containsOnly(uid);
    assertThat(s.uidMap()).isEqualTo("0 " + uid + " 1");
    assertThat(Files.readSymbolicLink(Path.of("/proc/" + pid + "/ns/user")))
        .isNotEqualTo(Files.readSymbolicLink(Path.of("/proc/self/ns/user")));
    List<String> status = Files.readAllLines(Path.of("/proc/" + pid + "/status"));
    assertThat(status).contains("NoNewPrivs:\t1");
    assertThat(memlockOf(pid)).containsExactly(LIMIT, LIMIT);
    // the agent pins nothing itself: every pin is the VM process's
    ProcStatus agent = proc((int) vm.process().pid());
    assertThat(agent.vmPinBytes()).isZero();
    assertThat(agent.vmLckBytes()).isZero();
    assertThat(registered(pid)).isEqualTo(GUEST);
    // the VM process is QEMU itself (the launcher exec'd it), and it runs under QEMU's own seccomp filter
    assertThat(Files.readString(Path.of("/proc/" + pid + "/comm")).trim()).startsWith("qemu-system");
    assertThat(status).contains("Seccomp:\t2");
  }

  @Test
  void aCompromisedVmIsBoundedAndOtherVmsKeepTheirPins() throws Exception {
    Agent other = agent("other", uid(), GUEST, LIMIT);
    other.awaitPhase(AgentPhase.Running);
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    Path testClasses = Path.of(CompromisedVm.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    String cp = jar + ":" + testClasses;
    Agent bad =
        agent(
            "compromised", uid(), GUEST, LIMIT, "--vm-ro-bind", testClasses.toString(),
            "--vm-command", java, "-Djna.tmpdir=/tmp", "-XX:-UsePerfData", "-cp", cp, CompromisedVm.class.getName());
    bad.awaitPhase(AgentPhase.Running);
    await().atMost(Duration.ofSeconds(60)).until(() -> bad.stdout().contains("compromised-vm=holding"));

    String out = bad.stdout();
    assertThat(out).contains("fd7=/memfd:vfiovm-guest (deleted)", "fd4=anon_inode:[io_uring]");
    assertThat(out).contains("raise-memlock=EPERM");
    assertThat(out).contains("pin-beyond-limit=ENOMEM");
    // no /dev/iommu on this host: RLIMIT_MODE refusal is proven by the iommufd tier
    assertThat(out).contains("rlimit-mode=no-iommufd");
    assertThat(bad.report().getPhase()).isEqualTo(AgentPhase.Running);
    assertThat(registered(other.vmPid())).isEqualTo(GUEST);
    assertThat(other.report().getPhase()).isEqualTo(AgentPhase.Running);
  }

  /** Every live host process that has uid as its real, effective, saved or fs UID (the kernel's view). */
  static List<Integer> processesOf(long uid) throws IOException {
    List<Integer> out = new ArrayList<>();
    try (var procs = Files.list(Path.of("/proc"))) {
      for (Path p : (Iterable<Path>) procs::iterator) {
        String name = p.getFileName().toString();
        if (!name.matches("\\d+")) {
          continue;
        }
        try {
          for (String l : Files.readAllLines(p.resolve("status"))) {
            if (l.startsWith("Uid:") && List.of(l.substring(4).trim().split("\\s+")).contains(Long.toString(uid))) {
              out.add(Integer.parseInt(name));
            }
          }
        } catch (IOException gone) {
          // exited while scanning
        }
      }
    }
    return out;
  }

  /** e2e/probes/compromised-vm.c, compiled into a directory the VM's UID can reach (not the 0700 @TempDir). */
  static Path compileProbe() throws Exception {
    Path src = Path.of(System.getenv().getOrDefault("VFIOVM_REPO_ROOT", ".."), "e2e/probes/compromised-vm.c");
    Prerequisites.require(Files.isRegularFile(src), "the probe's source at " + src + " (VFIOVM_REPO_ROOT)");
    Prerequisites.require(new ProcessBuilder("cc", "--version").start().waitFor() == 0, "a C compiler (cc)");
    Path dir = Files.createTempDirectory("vfiovm-probe");
    Files.setPosixFilePermissions(dir, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
    Path bin = dir.resolve("compromised-vm");
    Process cc = new ProcessBuilder("cc", "-O2", "-Wall", "-Werror", "-o", bin.toString(), src.toString())
        .redirectErrorStream(true).start();
    String out = new String(cc.getInputStream().readAllBytes());
    assertThat(cc.waitFor()).as(out).isZero();
    return bin;
  }

  /** A non-loopback IPv4 address of this host, if it has one: the probe tries to reach it too. */
  static String hostAddress() throws IOException {
    for (var nif : java.util.Collections.list(java.net.NetworkInterface.getNetworkInterfaces())) {
      for (var a : java.util.Collections.list(nif.getInetAddresses())) {
        if (a instanceof java.net.Inet4Address && !a.isLoopbackAddress()) {
          return a.getHostAddress();
        }
      }
    }
    return null;
  }

  /**
   * The compromised-VM probe (e2e/probes/compromised-vm.c) as the VM process, next to a real victim VM: every
   * attempt is refused or finds nothing (never a LEAK); the victim keeps running with its pins; the probe runs
   * as its UID in its own PID namespace and cgroup; after SIGTERM no process of its UID is left on the host
   * (the setsid grandchild included) and the UID pins its whole limit again.
   */
  @Test
  void theCompromisedVmProbeReachesNothingAndLeavesNothingBehind() throws Exception {
    Path probe = compileProbe();
    Path secrets = Files.createTempDirectory("vfiovm-secret");
    try (java.nio.channels.ServerSocketChannel server = java.nio.channels.ServerSocketChannel.open()) {
      Files.setPosixFilePermissions(secrets, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
      // world-readable: only the sandbox keeps it from the VM
      Path token = Files.writeString(secrets.resolve("token"), "a-service-account-token");
      server.bind(new java.net.InetSocketAddress("0.0.0.0", 0));
      server.configureBlocking(false);
      int port = ((java.net.InetSocketAddress) server.getLocalAddress()).getPort();

      Agent victim = agent("victim", uid(), GUEST, LIMIT);
      victim.awaitPhase(AgentPhase.Running);
      int victimPid = victim.vmPid();
      long uid = uid();
      List<String> args = new ArrayList<>(List.of(
          "--vm-command", probe.toString(), "probe", "victim=" + victimPid, "agent=" + victim.process().pid(),
          "secret=" + token, "secret=" + victim.reportFile(), "secret=" + dir.resolve("probe.json"),
          "readonly=" + jar, "readonly=" + probe, "connect=127.0.0.1:" + port));
      String host = hostAddress();
      if (host != null) {
        args.add("connect=" + host + ":" + port);
      }
      Agent bad = agent("probe", uid, GUEST, LIMIT, args.toArray(new String[0]));
      NodeAgentReport running = bad.awaitPhase(AgentPhase.Running);
      await().atMost(Duration.ofSeconds(60)).until(() -> bad.stdout().contains("PROBE-DONE") || !bad.process().isAlive());

      List<String> lines = bad.stdout().lines().filter(l -> l.startsWith("PROBE ")).toList();
      assertThat(lines).as(bad.stdout()).allMatch(l -> l.matches("PROBE \\S+ (refused|nothing) .*"));
      java.util.Map<String, String> verdicts = new java.util.HashMap<>();
      lines.forEach(l -> verdicts.put(l.split(" ")[1], l.split(" ")[2]));
      assertThat(verdicts).containsEntry("serviceaccount-token", "nothing").containsEntry("run-secrets", "nothing")
          .containsEntry("agent-file-0", "nothing").containsEntry("agent-file-1", "nothing")
          .containsEntry("agent-file-2", "nothing").containsEntry("write-readonly-0", "refused")
          .containsEntry("write-readonly-1", "refused").containsEntry("agent-environ", "nothing")
          .containsEntry("agent-proc-environ", "nothing").containsEntry("signal-agent", "nothing")
          .containsEntry("apiserver-loopback", "refused").containsEntry("connect-0", "refused")
          .containsEntry("proc-list", "nothing").containsEntry("victim-memfd", "nothing")
          .containsEntry("victim-mem", "nothing").containsEntry("signal-victim", "nothing")
          .containsEntry("ptrace-victim", "refused").containsEntry("ptrace-init", "refused")
          .containsEntry("kill-all", "nothing").containsEntry("memlock-soft-above-hard", "refused")
          .containsEntry("memlock-raise-hard", "refused").containsEntry("memlock-raise-syscall", "refused")
          .containsEntry("memlock-now", "nothing").containsEntry("pin-beyond-limit", "refused")
          .containsEntry("mount-tmpfs", "refused").containsEntry("unshare-user", "refused")
          .containsEntry("clone-newuser", "refused").containsEntry("setns-user", "refused")
          .containsEntry("bpf-prog-load", "refused").containsEntry("setsid-child", "nothing")
          // no /dev/iommu on this host: the iommufd tier proves RLIMIT_MODE refused
          .containsEntry("rlimit-mode", "nothing");
      if (host != null) {
        assertThat(verdicts).containsEntry("connect-1", "refused");
      }
      assertThat(bad.stdout()).contains("PROBE pin-beyond-limit refused IORING_REGISTER_BUFFERS of " + LIMIT + " more bytes: ENOMEM");
      assertThat(server.accept()).as("no connection reached the host").isNull();

      // the victim is untouched
      assertThat(victim.report().getPhase()).isEqualTo(AgentPhase.Running);
      assertThat(Path.of("/proc/" + victimPid)).exists();
      assertThat(registered(victimPid)).isEqualTo(GUEST);

      // the probe: its UID, pid 2 of its own PID namespace, in its own cgroup (writable cgroup2 here)
      int vmPid = bad.vmPid();
      assertThat(proc(vmPid).uids()).containsOnly(uid);
      assertThat(Files.readAllLines(Path.of("/proc/" + vmPid + "/status"))).anyMatch(l -> l.matches("NSpid:\\s+" + vmPid + "\\s+2"));
      assertThat(running.getSandbox()).contains("bubblewrap", "seccomp");
      if (Files.isWritable(Path.of("/sys/fs/cgroup/unified"))) {
        assertThat(running.getCgroup()).startsWith("/sys/fs/cgroup/unified/vfiovm-");
        assertThat(Files.readString(Path.of(running.getCgroup(), "cgroup.procs"))).contains(Integer.toString(vmPid));
      }
      // the sandbox's processes found without CONFIG_PROC_CHILDREN (the iommufd guest's kernel) as with it
      // (the agent's own child is its spawning thread's, so only a scan finds it; bwrap is single-threaded)
      List<Integer> outer = VmProcess.scanChildren((int) bad.process().pid());
      assertThat(outer).hasSize(1);
      assertThat(VmProcess.scanChildren(outer.get(0))).hasSize(1)
          .containsExactlyInAnyOrderElementsOf(VmProcess.children(outer.get(0)));
      int init = VmProcess.children(outer.get(0)).get(0);
      assertThat(VmProcess.scanChildren(init)).contains(vmPid).containsExactlyInAnyOrderElementsOf(VmProcess.children(init));
      // the setsid grandchild is a process of the UID too (namespace init, probe, grandchild at least)
      assertThat(processesOf(uid)).hasSizeGreaterThanOrEqualTo(3);

      assertThat(bad.stop()).as(bad.stderr()).isZero();
      assertThat(bad.report().getPhase()).isEqualTo(AgentPhase.Stopped);
      // the agent reported Stopped only once none was left: no waiting here
      assertThat(processesOf(uid)).isEmpty();
      if (running.getCgroup() != null) {
        assertThat(Path.of(running.getCgroup())).doesNotExist();
      }
      // and the UID's per-user counter is back to zero: the whole budget (minus the ring's two pages) pins
      Agent again = agent("probe-again", uid, LIMIT - RING, LIMIT, "--exit-after-map");
      assertThat(again.exit()).as(again.stderr()).isZero();
      assertThat(victim.report().getPhase()).isEqualTo(AgentPhase.Running);
    } finally {
      Files.deleteIfExists(secrets.resolve("token"));
      Files.deleteIfExists(secrets);
      Files.deleteIfExists(probe);
      Files.deleteIfExists(probe.getParent());
    }
  }

  @Test
  void nothingLeaksAfterSigtermTheSameUidCanPinItsFullLimitAgain() throws Exception {
    long uid = uid();
    Agent first = agent("leak-first", uid, GUEST, LIMIT);
    first.awaitPhase(AgentPhase.Running);
    int vmPid = first.vmPid();
    assertThat(registered(vmPid)).isEqualTo(GUEST);

    assertThat(first.stop()).isZero();
    NodeAgentReport stopped = first.report();
    assertThat(stopped.getPhase()).isEqualTo(AgentPhase.Stopped);
    assertThat(stopped.getPinnedBytes()).isZero();
    assertThat(Path.of("/proc/" + vmPid)).doesNotExist();

    // the whole budget minus the ring's two pages: fails if even one page were still charged to the UID
    Agent again = agent("leak-again", uid, LIMIT - RING, LIMIT, "--exit-after-map");
    assertThat(again.exit()).as(again.stderr()).isZero();
    assertThat(again.report().getPhase()).isEqualTo(AgentPhase.Stopped);
    // and --exit-after-map released too
    Agent third = agent("leak-third", uid, LIMIT - RING, LIMIT, "--exit-after-map");
    assertThat(third.exit()).as(third.stderr()).isZero();
  }

  @Test
  void aVmDoesNotOutliveItsAgentKilledOutright() throws Exception {
    long uid = uid();
    Agent agent = agent("killed-agent", uid, GUEST, LIMIT);
    agent.awaitPhase(AgentPhase.Running);
    Path vmProc = Path.of("/proc/" + agent.vmPid());
    agent.process().destroyForcibly();
    await().atMost(Duration.ofSeconds(30)).until(() -> !Files.exists(vmProc));
    Agent again = agent("after-killed-agent", uid, LIMIT - RING, LIMIT, "--exit-after-map");
    assertThat(again.exit()).as(again.stderr()).isZero();
  }

  @Test
  void aCrashedVmIsReportedAsFailedAndItsPinsReleased() throws Exception {
    long uid = uid();
    Agent crash = agent("crash", uid, GUEST, LIMIT, "--vm-command", "sh", "-c", "sleep 1; kill -SEGV $$");
    assertThat(crash.exit()).isEqualTo(1);
    NodeAgentReport r = crash.report();
    assertThat(r.getPhase()).isEqualTo(AgentPhase.Failed);
    assertThat(r.getError()).isEqualTo("VmExited");
    assertThat(r.getMessage()).contains("killed by signal 11");
    assertThat(crash.stderr().lines().toList()).singleElement().asString().contains("VmExited", "signal 11");
    Agent again = agent("after-crash", uid, LIMIT - RING, LIMIT, "--exit-after-map");
    assertThat(again.exit()).as(again.stderr()).isZero();
  }

  @Test
  void aMissingDeviceFailsWithAMessageSayingWhich() throws Exception {
    Path report = dir.resolve("nodev.json");
    Process p =
        new ProcessBuilder(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", jar.toString(),
                "node-agent", "--vm", "kernel-it/nodev", "--host-uid", Long.toString(uid()), "--memory", "3Mi",
                "--memlock", "4Mi", "--dma-backend", "iommufd", "--device", "0000:ff:1f.7", "--report", report.toString())
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .start();
    agents.add(p);
    String err = new String(p.getErrorStream().readAllBytes());
    assertThat(p.waitFor()).isEqualTo(1);
    assertThat(err.lines().toList()).singleElement().asString().contains("DeviceNotFound", "0000:ff:1f.7");
    NodeAgentReport r = ReportPublisher.fromJson(Files.readString(report));
    assertThat(r.getPhase()).isEqualTo(AgentPhase.Failed);
    assertThat(r.getError()).isEqualTo("DeviceNotFound");
  }

  /**
   * Issue 12: Auto with a device on a node without /dev/iommu used to fall back to io_uring and report Running
   * with no device attached. Now the agent refuses it, naming what to change. The device is a real PCI device of
   * this host (not bound to vfio-pci): on a host that has /dev/iommu the agent still never runs it on io_uring.
   */
  @Test
  void autoWithADeviceOnANodeWithoutDevIommuFailsAndNeverRunsWithoutTheDevice() throws Exception {
    String device = Files.list(Path.of("/sys/bus/pci/devices")).map(p -> p.getFileName().toString()).sorted()
        .findFirst().orElseThrow();
    boolean hostHasIommu = Files.exists(Path.of("/dev/iommu"));
    Path report = dir.resolve("auto.json");
    Path errFile = dir.resolve("auto.err");
    Process p =
        new ProcessBuilder(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", jar.toString(),
                "node-agent", "--vm", "kernel-it/auto", "--host-uid", Long.toString(uid()), "--memory", "3Mi",
                "--memlock", "4Mi", "--dma-backend", "auto", "--device", device, "--report", report.toString())
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .redirectError(errFile.toFile())
            .start();
    agents.add(p);
    Agent agent = new Agent(p, report, dir.resolve("auto.out"), errFile);
    // before the fix it reached Running (io_uring, the device only accounted for): fail fast on that too
    await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(50))
        .until(() -> !p.isAlive() || agent.report() != null && agent.report().getPhase() == AgentPhase.Running);
    NodeAgentReport r = agent.report();
    assertThat(r.getPhase()).as("phase; stderr: %s", agent.stderr()).isEqualTo(AgentPhase.Failed);
    assertThat(agent.exit()).isEqualTo(1);
    String err = agent.stderr();
    assertThat(r.getDmaBackend()).isNotEqualTo("IoUring");
    assertThat(r.getVmPid()).isNull();
    if (!hostHasIommu) {
      assertThat(r.getError()).isEqualTo(NodeAgentPlan.NO_IOMMU);
      assertThat(r.getMessage()).contains(device, "/dev/iommu", "intel_iommu=on", "another node", "remove spec.devices");
      assertThat(err.lines().toList()).singleElement().asString().contains(NodeAgentPlan.NO_IOMMU, "/dev/iommu");
    }
  }

  /** One request line on the agent's control socket (fd by SCM_RIGHTS when &gt;= 0); the reply line. */
  static String controlRequest(Path socket, String line, int fd) {
    int conn = Kernel.unixConnect(socket.toString());
    try {
      Kernel.sendWithFd(conn, (line + "\n").getBytes(StandardCharsets.UTF_8), fd);
      return Kernel.readLine(conn);
    } finally {
      Kernel.closeQuietly(conn);
    }
  }

  /** The targets of a process's open fds (/proc/PID/fd). */
  static List<String> openFiles(long pid) throws IOException {
    List<String> out = new ArrayList<>();
    try (var fds = Files.list(Path.of("/proc/" + pid + "/fd"))) {
      for (Path fd : fds.toList()) {
        try {
          out.add(Files.readSymbolicLink(fd).toString());
        } catch (IOException e) {
          // closed meanwhile
        }
      }
    }
    return out;
  }

  /**
   * Hot-plug's control socket on a real agent (io-uring here: no /dev/iommu): 0600 in a 0700 directory; a plug
   * carrying a real fd by SCM_RIGHTS is refused with HotplugNeedsIommufd and the agent keeps no copy of the fd;
   * a malformed request and a non-root peer get a clear error; attach-device --unplug-only prints the agent's
   * refusal and exits 1; the VM's limit and pins never moved.
   */
  @Test
  void theControlSocketRefusesHotplugOnIoUringMalformedRequestsAndNonRootPeersAndKeepsNoFd() throws Exception {
    Path socket = dir.resolve("control/agent.sock");
    Agent vm = agent("control", uid(), GUEST, LIMIT, "--control-socket", socket.toString());
    vm.awaitPhase(AgentPhase.Running);
    await().atMost(Duration.ofSeconds(30)).until(() -> Files.exists(socket));
    assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket))).isEqualTo("rw-------");
    assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket.getParent()))).isEqualTo("rwx------");
    List<Long> limitBefore = memlockOf(vm.vmPid());

    Path cdev = Files.writeString(dir.resolve("stand-in-cdev"), "x");
    int fd = Kernel.open(cdev.toString(), Uapi.O_RDWR);
    String reply;
    try {
      reply = controlRequest(socket, "{\"op\":\"plug\",\"pciAddress\":\"0000:00:04.0\",\"memlockLimitBytes\":" + 2 * LIMIT + "}", fd);
    } finally {
      Kernel.close(fd);
    }
    assertThat(reply).startsWith("{\"ok\":false,\"error\":\"HotplugNeedsIommufd\"").contains("iommufd");
    // the fd came (the agent owned a copy) and is closed again: nothing half-made
    assertThat(openFiles(vm.process().pid())).doesNotContain(cdev.toString());
    assertThat(controlRequest(socket, "{\"op\":\"plug\",\"pciAddress\":\"0000:00:04.0\"}", -1))
        .startsWith("{\"ok\":false,\"error\":\"BadRequest\"").contains("memlockLimitBytes");
    assertThat(controlRequest(socket, "not json", -1)).startsWith("{\"ok\":false,\"error\":\"BadRequest\"");
    assertThat(controlRequest(socket, "{\"op\":\"plug\",\"pciAddress\":\"0000:00:04.0\",\"memlockLimitBytes\":1}", -1))
        .startsWith("{\"ok\":false,\"error\":\"BadRequest\"").contains("SCM_RIGHTS");

    // attach-device --unplug-only: the agent's refusal on stderr, exit 1
    Process attach = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar",
        jar.toString(), "attach-device", "--control-socket", socket.toString(), "--device", "0000:00:04.0",
        "--memlock", Long.toString(LIMIT), "--unplug-only").redirectErrorStream(true).start();
    String attachOut = new String(attach.getInputStream().readAllBytes());
    assertThat(attach.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(attach.exitValue()).as(attachOut).isEqualTo(1);
    assertThat(attachOut).contains("\"op\":\"unplug\"", "attach-device: HotplugNeedsIommufd: ");

    // a peer that is not uid 0 (the directory and socket opened up here only to let one reach it) is refused
    for (Path p = socket.getParent(); p.startsWith(dir); p = p.getParent()) {
      Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwx--x--x"));
    }
    Files.setPosixFilePermissions(socket, PosixFilePermissions.fromString("rw-rw-rw-"));
    Process nobody = new ProcessBuilder("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
        Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", jar.toString(), "attach-device",
        "--control-socket", socket.toString(), "--device", "0000:00:04.0", "--memlock", "1", "--unplug-only")
        .redirectErrorStream(true).start();
    String nobodyOut = new String(nobody.getInputStream().readAllBytes());
    assertThat(nobody.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(nobody.exitValue()).as(nobodyOut).isEqualTo(1);
    assertThat(nobodyOut).contains("attach-device: NotRoot: ", "is uid 65534");

    assertThat(memlockOf(vm.vmPid())).isEqualTo(limitBefore).containsExactly(LIMIT, LIMIT);
    assertThat(vm.report().getPhase()).isEqualTo(AgentPhase.Running);
    assertThat(vm.report().getMemlockLimitBytes()).isEqualTo(LIMIT);
    assertThat(vm.stop()).isZero();
    assertThat(socket).doesNotExist();
  }

  /**
   * The facade's prlimit64 on a running process (what a plug does to QEMU, from outside), as far as this host
   * allows: root without CAP_SYS_RESOURCE may lower the limit of a process of its own ids, read back from
   * /proc/PID/limits, and raising it above its hard limit is the kernel's EPERM with the limit unchanged.
   */
  @Test
  void theLimitOfARunningProcessChangesFromOutsideAsTheKernelAllows() throws Exception {
    Process sleeper = new ProcessBuilder("sleep", "60").start();
    try {
      int pid = (int) sleeper.pid();
      long hard = memlockOf(pid).get(1);
      Kernel.setMemlockLimit(pid, hard / 2);
      assertThat(memlockOf(pid)).containsExactly(hard / 2, hard / 2);
      assertThat(Kernel.memlockLimit(pid)).containsExactly(hard / 2, hard / 2);
      org.assertj.core.api.Assertions.assertThatThrownBy(() -> Kernel.setMemlockLimit(pid, hard))
          .isInstanceOf(KernelException.class).hasMessageContaining("EPERM");
      assertThat(memlockOf(pid)).containsExactly(hard / 2, hard / 2);
      Kernel.setMemlockLimit(pid, hard / 4);
      assertThat(memlockOf(pid)).containsExactly(hard / 4, hard / 4);
    } finally {
      sleeper.destroyForcibly();
    }
  }
}
