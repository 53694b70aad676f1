package dev.vfiovm.node;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DeviceState;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.node.kernel.Iommufd;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import dev.vfiovm.node.kernel.Uapi;
import dev.vfiovm.node.kernel.VfioDevice;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One VM on this node: resolves its devices, opens a fresh iommufd (per-process mode set first where asked)
 * and each device's VFIO cdev without binding it, starts QEMU (or a --vm-command) as the VM process under the
 * VM's UID with its RLIMIT_MEMLOCK set from outside, hands those fds over, and supervises it over QMP: the VM
 * is Running once QEMU runs the guest with every device present, and the pinned bytes are the kernel's count
 * for the VMM. Holds until told to stop, powers the guest down (then quit, then SIGKILL), reports every change.
 */
public final class NodeAgent {
  private static final Logger LOG = LoggerFactory.getLogger(NodeAgent.class);
  static final long STOP_GRACE_SECONDS = 10;
  /** How long assigned devices may take to appear in query-pci once the guest runs. */
  static final long DEVICE_WAIT_SECONDS = 300;
  private static final Pattern QEMU_ERRNO = Pattern.compile("= -(\\d+) \\(|: -(\\d+)\\b|\\(errno (\\d+)\\)");

  /** How the agent ended: process exit code and, on failure, the one stderr line naming the cause. */
  public record Outcome(int exitCode, String failureLine) {}

  /**
   * Hot-plug: the control socket (null: none), how many free pcie-root-ports QEMU gets at start, and how long
   * the guest may take to enable a plugged device or release an unplugged one.
   */
  public record Hotplug(Path controlSocket, int slots, long timeoutSeconds) {
    public static final int DEFAULT_SLOTS = 2;
    public static final long DEFAULT_TIMEOUT_SECONDS = 300;

    public Hotplug {
      if (slots < 0 || slots > 16) {
        throw new IllegalArgumentException("--hotplug-slots " + slots + " must be 0..16");
      }
      if (timeoutSeconds < 1) {
        throw new IllegalArgumentException("--hotplug-timeout must be >= 1");
      }
    }

    public static Hotplug defaults() {
      return new Hotplug(null, DEFAULT_SLOTS, DEFAULT_TIMEOUT_SECONDS);
    }
  }

  /** A device QEMU has, by PCI address: its qdev id and, when hot-plugged, the root port it sits behind. */
  private record Plugged(String qdevId, int slot) {}

  private final NodeAgentPlan plan;
  private final SysfsDevices sysfs;
  private final ReportPublisher publisher;
  private final CompletableFuture<Void> stopRequested = new CompletableFuture<>();
  private final NodeAgentReport report = new NodeAgentReport();

  private DmaBackend backend;
  private Accounting accounting;
  private boolean isQemu;
  private Iommufd iommufd;
  private final List<VfioDevice> devices = new ArrayList<>();
  private VmProcess vm;
  private CompletableFuture<Kernel.WaitStatus> vmExit;
  private Qmp qmp;
  private StreamRelay console;
  private StreamRelay vmStderr;
  private OutputStream consoleLog;

  private final Hotplug hotplug;
  private ControlSocket control;
  private final Map<String, Plugged> plugged = new HashMap<>();
  private boolean[] slotBusy;
  private int hotplugCount;

  public NodeAgent(NodeAgentPlan plan, SysfsDevices sysfs) {
    this(plan, sysfs, Hotplug.defaults());
  }

  public NodeAgent(NodeAgentPlan plan, SysfsDevices sysfs, Hotplug hotplug) {
    this.plan = plan;
    this.sysfs = sysfs;
    this.hotplug = hotplug;
    this.slotBusy = new boolean[hotplug.slots()];
    this.publisher = new ReportPublisher(plan.reportFile(), plan.reportPod());
  }

  /** Asks a running agent to stop (SIGTERM handler); safe from any thread. */
  public void requestStop() {
    stopRequested.complete(null);
  }

  public Outcome run() {
    try (publisher) {
      backend = plan.effectiveBackend(sysfs.hasIommufd());
      accounting = plan.effectiveAccounting(backend);
      isQemu = plan.vmCommand().isEmpty();
      report.setVm(plan.vm());
      report.setHostUid(plan.hostUid());
      report.setPinnedBytes(0L);
      report.setDmaBackend(backend.name());
      report.setAccounting(accounting.name());
      report.setConsole(isQemu && plan.vmm().serialConsole()
          ? "the node agent's stdout (kubectl logs)" + (plan.vmm().consoleLog() != null ? " and " + plan.vmm().consoleLog() : "")
          : "none");
      publish(AgentPhase.Starting);
      String problem = plan.backendProblem(sysfs.hasIommufd());
      if (problem != null) {
        return fail(NodeAgentPlan.NO_IOMMU, problem);
      }
      try {
        start();
      } catch (AgentFailure f) {
        return fail(f.error(), f.getMessage());
      } catch (KernelException e) {
        return fail(e.errnoName(), e.getMessage());
      } catch (RuntimeException e) {
        LOG.error("unexpected failure", e);
        return fail("InternalError", e.toString());
      }
      if (plan.exitAfterMap()) {
        stopVm();
        release();
        report.setMessage("ran, reported and stopped (--exit-when-running); every pin released");
        publish(AgentPhase.Stopped);
        return new Outcome(0, null);
      }
      if (hotplug.controlSocket() != null) {
        try {
          control = ControlSocket.open(hotplug.controlSocket(), this::handleControl);
        } catch (AgentFailure f) {
          return fail(f.error(), f.getMessage());
        } catch (KernelException e) {
          return fail(e.errnoName(), "control socket " + hotplug.controlSocket() + ": " + e.getMessage());
        }
      }
      CompletableFuture.anyOf(stopRequested, vmExit).join();
      closeControl();
      if (!stopRequested.isDone()) {
        Kernel.WaitStatus status = vmExit.join();
        release();
        if (status.exited() && status.exitCode() == 0) {
          report.setMessage("VM process " + vmPidForWords() + " exited (status 0"
              + (isQemu ? ": the guest powered off" : "") + "); every pin released");
          publish(AgentPhase.Stopped);
          return new Outcome(0, null);
        }
        return fail("VmExited", "VM process " + vmPidForWords() + " " + exitWords(status) + vmmWords() + "; every pin released");
      }
      LOG.info("stop requested: stopping VM process {}", vmPidForWords());
      stopVm();
      release();
      report.setMessage("stopped on request; every pin released");
      publish(AgentPhase.Stopped);
      return new Outcome(0, null);
    }
  }

  private void start() {
    if (backend == DmaBackend.Iommufd) {
      openIommufd();
    } else if (!plan.devices().isEmpty()) {
      LOG.warn("io-uring backend (accounting only): devices {} are only accounted for, not assigned", plan.devices());
      for (String d : plan.devices()) {
        report.getDevices().add(new DeviceStatus(d, null, false));
      }
    }
    List<String> vmmArgv;
    if (isQemu) {
      NodeAgentPlan.Vmm v = plan.vmm();
      QemuVersion version = QemuVersion.probe(v.qemu());
      report.setVmm("QEMU " + version);
      checkVmCanRead(v);
      vmmArgv = QemuCommandLine.build(new QemuCommandLine.Spec(
          v.qemu(), v.qemuData(), plan.vm(), v.accel(), v.cpus(), plan.memoryBytes(), backend,
          devices.size(), v.boot(), v.serialConsole(), backend == DmaBackend.Iommufd ? hotplug.slots() : 0));
      LOG.info("VMM: {}", String.join(" ", vmmArgv));
    } else {
      vmmArgv = plan.vmCommand();
      report.setVmm(plan.vmCommand().get(0));
    }
    int[] qmpPair = isQemu ? Kernel.socketPair() : null;
    int[] consolePair = isQemu && plan.vmm().serialConsole() ? Kernel.socketPair() : null;
    int[] stderrPair = Kernel.socketPair();
    try {
      vm = VmProcess.spawn(
          plan, backend, accounting, iommufd == null ? null : iommufd.fd(),
          devices.stream().map(VfioDevice::fd).toList(),
          report.getDevices().stream().map(DeviceStatus::getPciAddress).toList(),
          vmmArgv, isQemu,
          qmpPair == null ? -1 : qmpPair[1], consolePair == null ? -1 : consolePair[1], stderrPair[1]);
    } finally {
      if (qmpPair != null) {
        Kernel.closeQuietly(qmpPair[1]);
      }
      if (consolePair != null) {
        Kernel.closeQuietly(consolePair[1]);
      }
      Kernel.closeQuietly(stderrPair[1]);
      // the VM process holds them now; the agent's copies would keep QEMU's IOAS and bindings (and so the
      // pins) alive after QEMU exits
      closeAgentDeviceFds();
    }
    int pid = vm.pid();
    report.setCgroup(vm.cgroup());
    report.setSandbox(vm.sandbox());
    vmStderr = new StreamRelay("vm-" + pid + "-stderr", stderrPair[0], List.of(System.out), "vm[" + pid + "]: ");
    if (consolePair != null) {
      List<OutputStream> sinks = new ArrayList<>(List.of(System.out));
      if (plan.vmm().consoleLog() != null) {
        try {
          consoleLog = Files.newOutputStream(plan.vmm().consoleLog());
          sinks.add(consoleLog);
        } catch (IOException e) {
          throw new AgentFailure("ConsoleLog", "cannot write --console-log " + plan.vmm().consoleLog() + ": " + e);
        }
      }
      console = new StreamRelay("vm-" + pid + "-console", consolePair[0], sinks, null);
    }
    if (qmpPair != null) {
      qmp = new Qmp(qmpPair[0]);
    }
    vmExit = waitInBackground(pid);
    LOG.info("VM process {} spawned; setting RLIMIT_MEMLOCK {} (soft = hard) before it may pin", pid, plan.memlockBytes());
    try {
      vm.limitAndGo(plan.memlockBytes());
    } catch (KernelException e) {
      throw new AgentFailure(
          e.errnoName(),
          "cannot set RLIMIT_MEMLOCK of VM process " + pid + ": " + e.getMessage()
              + " (the agent must run as root; lowering another UID's limit needs CAP_SYS_RESOURCE)");
    }
    // reported once really applied: the operator's MemlockLimited condition reads it that way
    report.setMemlockLimitBytes(plan.memlockBytes());
    if (backend == DmaBackend.IoUring) {
      awaitLauncher(pid);
    } else if (!isQemu) {
      awaitReady(pid);
    }
    if (isQemu) {
      awaitGuestRunning(pid);
    }
    // the VMM itself: pid 2 of the sandbox's PID namespace (pid is the agent's child, bwrap's monitor)
    int vmmPid = vm.vmmPid();
    if (vmmPid <= 0) {
      throw new AgentFailure("VmExited", "VM process " + pid + " " + awaitExit() + " right after starting" + vmmWords());
    }
    pid = vmmPid;
    report.setVmPid((long) pid);
    checkIdentity(pid);
    long pinned = pinnedBytes(pid);
    report.setPinnedBytes(pinned);
    report.getDevices().forEach(d -> d.setAttached(backend == DmaBackend.Iommufd));
    if (backend == DmaBackend.Iommufd) {
      for (int i = 0; i < report.getDevices().size(); i++) {
        report.getDevices().get(i).setState(DeviceState.Attached);
        plugged.put(report.getDevices().get(i).getPciAddress(), new Plugged(QemuCommandLine.deviceId(i), -1));
      }
    }
    if (console != null) {
      report.setConsoleBytes(console.bytes());
    }
    report.setMessage(
        (isQemu ? report.getVmm() + " runs the guest" : "VM process runs " + report.getVmm())
            + " as process " + pid + " (host UID " + plan.hostUid() + ", own user namespace); " + pinned
            + " bytes pinned through " + backend + (backend == DmaBackend.IoUring ? " (accounting only, no device)" : "")
            + ", charged " + (accounting == Accounting.PerProcess ? "to its process (mm)" : "to host UID " + plan.hostUid())
            + " under RLIMIT_MEMLOCK " + plan.memlockBytes());
    publish(AgentPhase.Running);
  }

  private void openIommufd() {
    for (String address : plan.devices()) {
      try {
        DevicePath d = sysfs.resolve(address);
        report.getDevices().add(new DeviceStatus(d.pciAddress(), d.cdev(), false));
      } catch (DeviceResolutionException e) {
        throw new AgentFailure(e.reason().name(), e.getMessage());
      }
    }
    if (!sysfs.hasIommufd()) {
      throw new AgentFailure(
          "NoIommufd",
          Iommufd.DEVICE + " not found: the node's kernel needs CONFIG_IOMMUFD with its IOMMU enabled, and "
              + Iommufd.DEVICE + " given to the node pod; or use --dma-backend io-uring (accounting only)");
    }
    iommufd = new Iommufd(Kernel.open(sysfs.hostPath(Iommufd.DEVICE), Uapi.O_RDWR));
    if (accounting == Accounting.PerProcess) {
      // must precede every object on this fd, or the kernel answers EBUSY; the VMM creates the objects later
      try {
        iommufd.setRlimitMode(Uapi.RLIMIT_MODE_PER_PROCESS);
      } catch (KernelException e) {
        throw new AgentFailure(
            e.errnoName(),
            "IOMMU_OPTION RLIMIT_MODE=per-process refused: " + e.errnoName()
                + (e.errnoName().equals("EPERM")
                    ? " (the agent needs CAP_SYS_RESOURCE), or use --accounting per-user"
                    : ""));
      }
    }
    for (DeviceStatus status : report.getDevices()) {
      // opened, never bound: VFIO_DEVICE_BIND_IOMMUFD on a bound cdev is EINVAL, and the VMM binds it itself
      devices.add(VfioDevice.open(sysfs.hostPath(status.getCdev())));
      LOG.info("device {} ({}) opened for the VMM (not bound)", status.getPciAddress(), status.getCdev());
    }
  }

  /** The io-uring launcher: MAPPED (or ERROR) once guest RAM is registered, then EOF when it exec'd the VMM. */
  private void awaitLauncher(int pid) {
    String line = vm.readLine();
    if (line == null) {
      throw new AgentFailure(
          "VmExited",
          "VM process " + pid + " " + awaitExit() + " before pinning guest memory" + vmmWords()
              + " (util-linux setpriv and unshare must be installed, user namespaces enabled "
              + "(user.max_user_namespaces > 0), and the agent not run inside a chroot)");
    }
    String[] words = line.split(" ");
    if (words[0].equals(VmFds.ERROR)) {
      throw mapFailure(words[1], words.length > 2 ? words[2] : "?");
    }
    String execLine = vm.readLine();
    if (execLine != null) {
      String[] w = execLine.split(" ");
      throw new AgentFailure(
          w[1],
          (isQemu ? "QEMU " + plan.vmm().qemu() : "--vm-command " + plan.vmCommand().get(0))
              + " could not be started in the VM process: " + w[1] + " (" + w[2]
              + "; is it installed and executable by host UID " + plan.hostUid() + "?)");
    }
    vm.closeControl();
  }

  /** A --vm-command on iommufd says READY on the control socket once it bound, attached and mapped. */
  private void awaitReady(int pid) {
    String line = vm.readLine();
    vm.closeControl();
    if (line == null || !line.trim().equals(VmFds.READY)) {
      throw new AgentFailure(
          "VmExited",
          "--vm-command " + plan.vmCommand().get(0) + " (process " + pid + ") "
              + (line == null ? awaitExit() + " without writing READY on fd " + VmFds.CONTROL : "wrote '" + line + "', not READY")
              + vmmWords());
    }
  }

  /** QMP greeting (QEMU built the machine: devices bound and attached, guest RAM mapped), running, devices present. */
  private void awaitGuestRunning(int pid) {
    try {
      qmp.handshake();
      JsonNode status = qmp.execute("query-status");
      if (!status.path("running").asBoolean()) {
        throw new AgentFailure("GuestNotRunning", "QEMU " + pid + " is up but its guest is " + status.path("status").asText());
      }
      // a device behind a pcie-root-port shows in query-pci once the guest firmware numbered that port's
      // bus: seconds under TCG, tens of seconds nested; QEMU dying meanwhile ends the wait (QMP EOF)
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(DEVICE_WAIT_SECONDS);
      List<String> missing = missingDevices(Qmp.pciDeviceIds(qmp.execute("query-pci")));
      while (!missing.isEmpty() && System.nanoTime() < deadline) {
        try {
          Thread.sleep(500);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          break;
        }
        missing = missingDevices(Qmp.pciDeviceIds(qmp.execute("query-pci")));
      }
      if (!missing.isEmpty()) {
        throw new AgentFailure(
            "DeviceMissing",
            "QEMU " + pid + " runs but query-pci did not show " + missing + " within " + DEVICE_WAIT_SECONDS + " s");
      }
    } catch (Qmp.QmpException e) {
      String exit = awaitExit();
      throw qemuFailure(pid, exit, e.getMessage());
    }
  }

  private List<String> missingDevices(List<String> present) {
    List<String> missing = new ArrayList<>();
    for (int i = 0; i < devices.size(); i++) {
      if (!present.contains(QemuCommandLine.deviceId(i))) {
        missing.add(QemuCommandLine.deviceId(i) + " (" + report.getDevices().get(i).getPciAddress() + ")");
      }
    }
    return missing;
  }

  /** What QEMU said on its way out, as a failure whose error is the errno QEMU quotes, if any. */
  private AgentFailure qemuFailure(int pid, String exit, String qmpProblem) {
    vmStderr.done().orTimeout(STOP_GRACE_SECONDS, TimeUnit.SECONDS).exceptionally(t -> null).join();
    List<String> lines = vmStderr.lastLines();
    String qemuLine = lines.stream().filter(l -> l.contains("qemu-system") || l.contains("vfio")).reduce((x, y) -> y)
        .orElse(lines.isEmpty() ? qmpProblem : lines.get(lines.size() - 1));
    String errno = null;
    for (String l : lines) {
      Matcher m = QEMU_ERRNO.matcher(l);
      if (m.find()) {
        String n = m.group(1) != null ? m.group(1) : m.group(2) != null ? m.group(2) : m.group(3);
        errno = Kernel.errnoName(Integer.parseInt(n));
        qemuLine = l;
        break;
      }
      if (l.contains("Cannot allocate memory")) {
        errno = "ENOMEM";
        qemuLine = l;
        break;
      }
    }
    if ("ENOMEM".equals(errno)) {
      return new AgentFailure(
          errno,
          "QEMU " + pid + " could not pin its guest memory (" + plan.memoryBytes() + " bytes of RAM, plus QEMU's ROMs such as"
              + " 256 KiB of BIOS) as host UID " + plan.hostUid() + " under RLIMIT_MEMLOCK " + plan.memlockBytes()
              + " bytes: ENOMEM ("
              + (accounting == Accounting.PerUser
                  ? "per-user accounting: every process of host UID " + plan.hostUid()
                      + " counts against it; give this VM its own host UID or raise its memlock limit"
                  : "raise its memlock limit")
              + "); QEMU said: " + qemuLine);
    }
    return new AgentFailure(
        errno != null ? errno : "VmExited",
        "QEMU " + pid + " " + exit + " before its guest ran; QEMU said: " + qemuLine);
  }

  private AgentFailure mapFailure(String errno, String call) {
    if (errno.equals("ENOMEM")) {
      return new AgentFailure(
          errno,
          "pinning " + plan.memoryBytes() + " bytes of guest memory (" + call + ") as host UID " + plan.hostUid()
              + " exceeds RLIMIT_MEMLOCK " + plan.memlockBytes() + " bytes: ENOMEM; "
              + (accounting == Accounting.PerUser
                  ? "with per-user accounting every process of host UID " + plan.hostUid()
                      + " counts against it: give this VM its own host UID or raise --memlock"
                  : "raise --memlock"));
    }
    return new AgentFailure(errno, "the VM process could not pin its guest memory: " + call + " failed with " + errno);
  }

  /** The kernel's count: the VMM's VmPin (iommufd), or the bytes its inherited io_uring holds registered. */
  private long pinnedBytes(int pid) {
    try {
      if (backend == DmaBackend.IoUring) {
        return ProcStatus.ioUringRegisteredBytes(pid, VmFds.IOURING);
      }
      return ProcStatus.of(pid).vmPinBytes();
    } catch (IOException e) {
      throw new AgentFailure("VmExited", "VM process " + pid + " " + awaitExit() + " right after starting" + vmmWords());
    }
  }

  private void checkIdentity(int pid) {
    ProcStatus status;
    try {
      status = ProcStatus.of(pid);
    } catch (IOException e) {
      throw new AgentFailure("VmExited", "VM process " + pid + " " + awaitExit() + " right after starting" + vmmWords());
    }
    long uid = plan.hostUid();
    if (!status.uids().stream().allMatch(u -> u == uid) || !status.uidMap().equals("0 " + uid + " 1")) {
      throw new AgentFailure(
          "IdentityMismatch",
          "VM process " + pid + " runs with uids " + status.uids() + " and uid_map '" + status.uidMap()
              + "', not host UID " + uid + " as root of its own user namespace");
    }
    LOG.info("VM process {}: uids {}, uid_map '{}', VmPin {} bytes, VmLck {} bytes", pid, status.uids(), status.uidMap(), status.vmPinBytes(), status.vmLckBytes());
  }

  /** The VM process can read QEMU, its data and the boot files as its own UID, or the failure says which. */
  private static void checkVmCanRead(NodeAgentPlan.Vmm v) {
    List<String> paths = new ArrayList<>();
    if (v.qemu().contains("/")) {
      paths.add(v.qemu());
    }
    paths.addAll(v.qemuData());
    QemuCommandLine.Boot b = v.boot();
    for (String p : new String[] {b.kernel(), b.initrd(), b.disk()}) {
      if (p != null) {
        if (!Files.isRegularFile(Path.of(p))) {
          throw new AgentFailure("BootFileMissing", "boot file " + p + " does not exist (or is not a file)");
        }
        paths.add(p);
      }
    }
    for (String p : paths) {
      String problem = VmProcess.unreachableByOthers(Path.of(p).toAbsolutePath());
      if (problem != null) {
        throw new AgentFailure(
            "VmCannotRead",
            "the VM process (its own host UID, no groups) cannot use " + p + ": " + problem
                + "; make it world-readable (and its directories searchable)");
      }
    }
  }

  /** bwrap exits with 128+N when the VMM was killed by signal N: say it as the kernel would. */
  static String exitWords(Kernel.WaitStatus status) {
    if (status.exited() && status.exitCode() > 128 && status.exitCode() < 128 + 65) {
      return "killed by signal " + (status.exitCode() - 128) + " (bwrap's exit status " + status.exitCode() + ")";
    }
    return status.toString();
  }

  private String vmPidForWords() {
    return report.getVmPid() != null ? report.getVmPid().toString() : Integer.toString(vm.pid());
  }

  private String vmmWords() {
    if (vmStderr == null) {
      return "";
    }
    vmStderr.done().orTimeout(2, TimeUnit.SECONDS).exceptionally(t -> null).join();
    List<String> lines = vmStderr.lastLines();
    return lines.isEmpty() ? "" : "; it said: " + lines.get(lines.size() - 1);
  }

  private static CompletableFuture<Kernel.WaitStatus> waitInBackground(int pid) {
    CompletableFuture<Kernel.WaitStatus> exit = new CompletableFuture<>();
    Thread waiter =
        new Thread(
            () -> {
              try {
                exit.complete(Kernel.waitpid(pid, false));
              } catch (RuntimeException e) {
                exit.completeExceptionally(e);
              }
            },
            "vm-" + pid + "-waiter");
    waiter.setDaemon(true);
    waiter.start();
    return exit;
  }

  private String awaitExit() {
    try {
      return exitWords(vmExit.get(STOP_GRACE_SECONDS, TimeUnit.SECONDS));
    } catch (InterruptedException | ExecutionException | TimeoutException e) {
      return "stopped answering";
    }
  }

  /**
   * QEMU: QMP system_powerdown, the guest's grace, then quit, then SIGKILL; a --vm-command: SIGTERM, then
   * SIGKILL. SIGTERM goes to the VMM, SIGKILL to the whole sandbox; returns once the agent's child is reaped
   * ({@link #release} then waits until no process of the VM remains).
   */
  private void stopVm() {
    if (vm == null || vmExit.isDone()) {
      return;
    }
    if (qmp != null) {
      try {
        // firmware only (nothing booted): no guest OS to ask
        boolean booted = plan.vmm().boot().direct() || plan.vmm().boot().disk() != null;
        if (booted) {
          qmp.execute("system_powerdown");
          if (waitExit(plan.vmm().powerdownSeconds())) {
            return;
          }
          LOG.info("guest did not power off within {} s: QMP quit", plan.vmm().powerdownSeconds());
        }
        qmp.execute("quit");
      } catch (Qmp.QmpException e) {
        LOG.debug("QMP on stop: {}", e.getMessage());
      }
      if (waitExit(STOP_GRACE_SECONDS)) {
        return;
      }
      vm.killSandbox(false);
      vmExit.join();
      return;
    }
    if (!vm.signalVmm(Uapi.SIGTERM)) {
      vm.killSandbox(false);
    }
    if (!waitExit(STOP_GRACE_SECONDS)) {
      LOG.warn("VM process {} ignored SIGTERM for {} s: SIGKILL to its sandbox", vmPidForWords(), STOP_GRACE_SECONDS);
      vm.killSandbox(false);
      vmExit.join();
    }
  }

  private boolean waitExit(long seconds) {
    try {
      vmExit.get(seconds, TimeUnit.SECONDS);
      return true;
    } catch (TimeoutException e) {
      return false;
    } catch (InterruptedException | ExecutionException e) {
      return vmExit.isDone();
    }
  }

  private void closeAgentDeviceFds() {
    for (VfioDevice d : devices) {
      Kernel.closeQuietly(d.fd());
    }
    if (iommufd != null) {
      Kernel.closeQuietly(iommufd.fd());
    }
  }

  /** Releases what the agent holds; the VM's pins went with its process (its fds were the last ones). */
  private void release() {
    if (vm != null && vmExit != null) {
      if (!vmExit.isDone()) {
        vm.killSandbox(false);
      }
      vmExit.join();
      // whatever the VM started (a setsid child keeps the sandbox's init alive): killed, and waited for
      if (vm.teardown(TimeUnit.SECONDS.toMillis(STOP_GRACE_SECONDS))) {
        LOG.info("VM process {}: no process of the VM remains", vmPidForWords());
      }
      vm.closeControl();
    }
    if (qmp != null) {
      qmp.close();
    }
    closeAgentDeviceFds();
    devices.clear();
    iommufd = null;
    if (console != null) {
      console.done().orTimeout(STOP_GRACE_SECONDS, TimeUnit.SECONDS).exceptionally(t -> null).join();
      report.setConsoleBytes(console.bytes());
    }
    if (consoleLog != null) {
      try {
        consoleLog.close();
      } catch (IOException e) {
        LOG.debug("console log: {}", e.getMessage());
      }
    }
    report.getDevices().forEach(d -> d.setAttached(false));
    report.setPinnedBytes(0L);
  }

  // --- hot-plug (the control socket's requests, one at a time)

  private synchronized ControlSocket.Reply handleControl(ControlSocket.Request request, int fd) {
    try {
      return switch (request.op()) {
        case plug -> plug(request.pciAddress(), request.memlockLimitBytes(), fd);
        case unplug -> unplug(request.pciAddress(), request.memlockLimitBytes());
      };
    } catch (KernelException e) {
      return ControlSocket.Reply.error(e.errnoName(), e.getMessage());
    } catch (RuntimeException e) {
      LOG.error("hot-plug request failed unexpectedly", e);
      return ControlSocket.Reply.error("InternalError", e.toString());
    } finally {
      Kernel.closeQuietly(fd);
    }
  }

  private ControlSocket.Reply refuseUnlessRunningOnIommufd(String what) {
    if (backend != DmaBackend.Iommufd) {
      return ControlSocket.Reply.error("HotplugNeedsIommufd", "cannot " + what + ": this VM runs on the "
          + backend + " backend (accounting only, no device is assigned); hot-plug needs backend iommufd "
          + "(a node with /dev/iommu)");
    }
    if (report.getPhase() != AgentPhase.Running || qmp == null || vmExit == null || vmExit.isDone()) {
      return ControlSocket.Reply.error("VmNotRunning", "cannot " + what + ": the VM is " + report.getPhase()
          + ", not Running");
    }
    return null;
  }

  private DeviceStatus deviceStatus(String bdf) {
    return report.getDevices().stream().filter(d -> bdf.equals(d.getPciAddress())).findFirst().orElse(null);
  }

  /**
   * Plug: raise QEMU's RLIMIT_MEMLOCK to limit when higher (only this VM's process), getfd, device_add behind a
   * free reserved root port, then wait until the guest enabled it (its BARs mapped in query-pci). Anything that
   * fails leaves the limit as it was, QEMU without the device, and the fd closed.
   */
  private ControlSocket.Reply plug(String bdf, long limit, int fd) {
    ControlSocket.Reply refused = refuseUnlessRunningOnIommufd("plug " + bdf);
    if (refused != null) {
      return refused;
    }
    DeviceStatus existing = deviceStatus(bdf);
    if (existing != null && existing.getState() != DeviceState.Failed) {
      return ControlSocket.Reply.error("EBUSY", bdf + " is already this VM's (" + existing.getState() + ")");
    }
    DevicePath path;
    try {
      path = sysfs.resolve(bdf);
    } catch (DeviceResolutionException e) {
      return ControlSocket.Reply.error(e.reason().name(), e.getMessage());
    }
    String mismatch = sameDevice(fd, path);
    if (mismatch != null) {
      return ControlSocket.Reply.error("WrongDevice", mismatch);
    }
    int slot = -1;
    for (int k = 0; k < slotBusy.length; k++) {
      if (!slotBusy[k]) {
        slot = k;
        break;
      }
    }
    if (slot < 0) {
      return ControlSocket.Reply.error("NoFreeHotplugSlot", "all " + slotBusy.length + " root ports reserved for "
          + "hot-plug are in use; unplug a device, or restart the VM with more --hotplug-slots");
    }
    if (existing != null) {
      report.getDevices().remove(existing);
    }
    DeviceStatus status = new DeviceStatus(bdf, path.cdev(), false);
    status.setHotplugged(true);
    status.setState(DeviceState.Plugging);
    String bus = QemuCommandLine.hotplugBus(slot);
    String id = QemuCommandLine.hotplugDeviceId(hotplugCount);
    String fdname = "hotfd" + hotplugCount;
    hotplugCount++;
    status.setMessage("plugging as " + id + " behind " + bus);
    report.getDevices().add(status);
    publish(AgentPhase.Running);
    int vmmPid = report.getVmPid().intValue();
    long before = Kernel.memlockLimit(vmmPid)[1];
    boolean raised = false;
    try {
      if (limit > before) {
        LOG.info("plug {}: raising RLIMIT_MEMLOCK of VM process {} from {} to {} before device_add", bdf, vmmPid, before, limit);
        Kernel.setMemlockLimit(vmmPid, limit);
        raised = true;
        report.setMemlockLimitBytes(limit);
      }
      qmp.getfd(fdname, fd);
      try {
        qmp.deviceAddVfio(id, bus, fdname);
      } catch (Qmp.QmpException e) {
        closeFdQuietly(fdname);
        throw e;
      }
    } catch (KernelException | Qmp.QmpException e) {
      String error = e instanceof KernelException k ? k.errnoName() : qmpErrno(e.getMessage());
      restoreLimit(vmmPid, raised, before);
      return plugFailed(status, error, "device_add of " + bdf + " failed: " + e.getMessage()
          + (raised ? "; RLIMIT_MEMLOCK back to " + before : ""));
    }
    slotBusy[slot] = true;
    plugged.put(bdf, new Plugged(id, slot));
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(hotplug.timeoutSeconds());
    boolean enabled = false;
    try {
      while (!(enabled = Qmp.guestEnabled(qmp.execute("query-pci"), id)) && System.nanoTime() < deadline && !vmExit.isDone()) {
        Thread.sleep(500);
      }
    } catch (Qmp.QmpException e) {
      LOG.warn("plug {}: {}", bdf, e.getMessage());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (!enabled) {
      // nothing half-made: take it out again (bounded), the limit back
      boolean deleted = removeFromQemu(id);
      slotBusy[slot] = !deleted;
      plugged.remove(bdf);
      restoreLimit(vmmPid, raised, before);
      return plugFailed(status, "GuestDidNotEnable", "QEMU added " + bdf + " as " + id + " but the guest did not "
          + "enable it (no BAR mapped in query-pci) within " + hotplug.timeoutSeconds() + " s; "
          + (deleted ? "it was unplugged again" : "its unplug did not complete either")
          + (raised ? ", RLIMIT_MEMLOCK back to " + before : "")
          + " (does the guest kernel have PCIe/ACPI hot-plug?)");
    }
    status.setAttached(true);
    status.setState(DeviceState.Attached);
    status.setReason(null);
    status.setMessage("hot-plugged as " + id + " behind " + bus + "; the guest enabled it");
    refreshPins(vmmPid);
    publish(AgentPhase.Running);
    return ControlSocket.Reply.ok(DeviceState.Attached.name()).withPrevious(before);
  }

  /** Unplug: device_del, wait for DEVICE_DELETED (bounded), then lower the limit to limit when lower. */
  private ControlSocket.Reply unplug(String bdf, long limit) {
    ControlSocket.Reply refused = refuseUnlessRunningOnIommufd("unplug " + bdf);
    if (refused != null) {
      return refused;
    }
    DeviceStatus status = deviceStatus(bdf);
    Plugged p = plugged.get(bdf);
    if (status == null || p == null) {
      return ControlSocket.Reply.error("NotAttached", bdf + " is not a device of this VM");
    }
    DeviceState was = status.getState();
    status.setState(DeviceState.Unplugging);
    status.setMessage("unplugging " + p.qdevId() + " (device_del; waiting for the guest to release it)");
    publish(AgentPhase.Running);
    try {
      qmp.deviceDel(p.qdevId());
    } catch (Qmp.QmpException e) {
      status.setState(was);
      status.setMessage("device_del refused: " + e.getMessage());
      publish(AgentPhase.Running);
      return ControlSocket.Reply.error(qmpErrno(e.getMessage()), "device_del of " + bdf + " failed: " + e.getMessage());
    }
    if (!qmp.awaitDeviceDeleted(p.qdevId(), TimeUnit.SECONDS.toMillis(hotplug.timeoutSeconds()))) {
      status.setState(DeviceState.Failed);
      status.setReason("UnplugTimedOut");
      status.setMessage("the guest did not release " + bdf + " (no DEVICE_DELETED for " + p.qdevId() + ") within "
          + hotplug.timeoutSeconds() + " s; it stays in the VM");
      publish(AgentPhase.Running);
      return ControlSocket.Reply.error("ETIMEDOUT", status.getMessage());
    }
    report.getDevices().remove(status);
    plugged.remove(bdf);
    if (p.slot() >= 0) {
      slotBusy[p.slot()] = false;
    }
    int vmmPid = report.getVmPid().intValue();
    long current = Kernel.memlockLimit(vmmPid)[1];
    if (limit < current) {
      LOG.info("unplug {}: lowering RLIMIT_MEMLOCK of VM process {} from {} to {}", bdf, vmmPid, current, limit);
      Kernel.setMemlockLimit(vmmPid, limit);
      report.setMemlockLimitBytes(limit);
    }
    refreshPins(vmmPid);
    publish(AgentPhase.Running);
    return ControlSocket.Reply.ok("Unplugged");
  }

  private ControlSocket.Reply plugFailed(DeviceStatus status, String error, String message) {
    status.setState(DeviceState.Failed);
    status.setAttached(false);
    status.setReason(error);
    status.setMessage(message);
    publish(AgentPhase.Running);
    return ControlSocket.Reply.error(error, message);
  }

  private boolean removeFromQemu(String id) {
    try {
      qmp.deviceDel(id);
      return qmp.awaitDeviceDeleted(id, TimeUnit.SECONDS.toMillis(hotplug.timeoutSeconds()));
    } catch (Qmp.QmpException e) {
      LOG.warn("device_del {}: {}", id, e.getMessage());
      return false;
    }
  }

  private void closeFdQuietly(String fdname) {
    try {
      qmp.closefd(fdname);
    } catch (Qmp.QmpException e) {
      LOG.debug("closefd {}: {}", fdname, e.getMessage());
    }
  }

  private void restoreLimit(int vmmPid, boolean raised, long before) {
    if (raised) {
      Kernel.setMemlockLimit(vmmPid, before);
      report.setMemlockLimitBytes(before);
    }
  }

  private void refreshPins(int vmmPid) {
    try {
      report.setPinnedBytes(ProcStatus.of(vmmPid).vmPinBytes());
    } catch (IOException e) {
      LOG.debug("VmPin of {}: {}", vmmPid, e.toString());
    }
  }

  /** The errno name a QEMU error quotes (-12 -> ENOMEM), else QemuRefused. */
  static String qmpErrno(String message) {
    Matcher m = QEMU_ERRNO.matcher(message == null ? "" : message);
    if (m.find()) {
      for (int g = 1; g <= m.groupCount(); g++) {
        if (m.group(g) != null) {
          return Kernel.errnoName(Integer.parseInt(m.group(g)));
        }
      }
    }
    return "QemuRefused";
  }

  /** Null if fd is the cdev of path (same character device), else why not. */
  private String sameDevice(int fd, DevicePath path) {
    try {
      Object got = Files.getAttribute(Path.of("/proc/self/fd/" + fd), "unix:rdev");
      Object want = Files.getAttribute(Path.of(sysfs.hostPath(path.cdev())), "unix:rdev");
      return got.equals(want) ? null : "the fd sent is not " + path.cdev() + " of " + path.pciAddress()
          + " (device numbers " + got + " and " + want + ")";
    } catch (IOException | RuntimeException e) {
      return "cannot check the fd sent against " + path.cdev() + ": " + e;
    }
  }

  private void closeControl() {
    if (control != null) {
      control.close();
      control = null;
    }
  }

  private Outcome fail(String error, String message) {
    closeControl();
    stopVm();
    release();
    report.setError(error);
    report.setMessage(message);
    publish(AgentPhase.Failed);
    return new Outcome(1, "node-agent: " + error + ": " + message);
  }

  private synchronized void publish(AgentPhase phase) {
    report.setPhase(phase);
    LOG.info("report: {}", ReportPublisher.toJson(report));
    publisher.publish(report);
  }
}
