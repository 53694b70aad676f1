package dev.vfiovm.node;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.node.kernel.Iommufd;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import dev.vfiovm.node.kernel.Uapi;
import dev.vfiovm.node.kernel.VfioDevice;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One VM on this node: sets up DMA (iommufd: context, accounting mode, IOAS, devices bound and attached),
 * starts the VM process under the VM's UID with its RLIMIT_MEMLOCK, lets it pin its guest memory, reports,
 * holds until told to stop, then releases every pin. Every state change is published.
 */
public final class NodeAgent {
  private static final Logger LOG = LoggerFactory.getLogger(NodeAgent.class);
  static final long STOP_GRACE_SECONDS = 10;

  /** How the agent ended: process exit code and, on failure, the one stderr line naming the cause. */
  public record Outcome(int exitCode, String failureLine) {}

  private final NodeAgentPlan plan;
  private final SysfsDevices sysfs;
  private final ReportPublisher publisher;
  private final CompletableFuture<Void> stopRequested = new CompletableFuture<>();
  private final NodeAgentReport report = new NodeAgentReport();

  private DmaBackend backend;
  private Accounting accounting;
  private Iommufd iommufd;
  private int ioasId = -1;
  private final List<VfioDevice> devices = new ArrayList<>();
  private VmProcess vm;
  private CompletableFuture<Kernel.WaitStatus> vmExit;

  public NodeAgent(NodeAgentPlan plan, SysfsDevices sysfs) {
    this.plan = plan;
    this.sysfs = sysfs;
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
      report.setVm(plan.vm());
      report.setHostUid(plan.hostUid());
      report.setPinnedBytes(0L);
      report.setDmaBackend(backend.name());
      report.setAccounting(accounting.name());
      publish(AgentPhase.Starting);
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
        report.setMessage("mapped, reported and released (--exit-after-map)");
        publish(AgentPhase.Stopped);
        return new Outcome(0, null);
      }
      CompletableFuture.anyOf(stopRequested, vmExit).join();
      if (!stopRequested.isDone()) {
        Kernel.WaitStatus status = vmExit.join();
        release();
        if (status.exited() && status.exitCode() == 0) {
          report.setMessage("VM process " + vm.pid() + " exited (status 0); every pin released");
          publish(AgentPhase.Stopped);
          return new Outcome(0, null);
        }
        return fail("VmExited", "VM process " + vm.pid() + " " + status + "; every pin released");
      }
      LOG.info("stop requested: stopping VM process {}", vm.pid());
      stopVm();
      release();
      report.setMessage("stopped on request; every pin released");
      publish(AgentPhase.Stopped);
      return new Outcome(0, null);
    }
  }

  private void start() {
    if (backend == DmaBackend.Iommufd) {
      setUpIommufd();
    } else if (!plan.devices().isEmpty()) {
      LOG.warn("io-uring backend: devices {} are only accounted for, not opened or attached", plan.devices());
      for (String d : plan.devices()) {
        report.getDevices().add(new DeviceStatus(d, null, false));
      }
    }
    List<Integer> deviceFds = devices.stream().map(VfioDevice::fd).toList();
    vm =
        VmProcess.spawn(
            plan,
            backend,
            accounting,
            iommufd == null ? null : iommufd.fd(),
            ioasId,
            deviceFds,
            report.getDevices().stream().map(DeviceStatus::getPciAddress).toList());
    int pid = vm.pid();
    report.setVmPid((long) pid);
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
    vmExit = exit;
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
    String line = vm.readLine();
    if (line == null) {
      throw new AgentFailure(
          "VmExited",
          "VM process " + pid + " " + awaitExit() + " before mapping guest memory (its output is above; "
              + "util-linux setpriv and unshare must be installed, user namespaces enabled (user.max_user_namespaces > 0), "
              + "and the agent not run inside a chroot, where the kernel refuses new user namespaces)");
    }
    String[] words = line.split(" ");
    if (words[0].equals(VmFds.ERROR)) {
      throw mapFailure(words[1], words.length > 2 ? words[2] : "?");
    }
    long pinned = Long.parseLong(words[1]);
    long iova = Long.parseLong(words[2]);
    if (!plan.vmCommand().isEmpty()) {
      String execLine = vm.readLine();
      if (execLine != null) {
        String[] w = execLine.split(" ");
        throw new AgentFailure(
            w[1],
            "--vm-command " + plan.vmCommand().get(0) + " could not be started in the VM process: " + w[1]
                + " (" + w[2] + "; is it installed and executable by host UID " + plan.hostUid() + "?)");
      }
      vm.closeControl();
    }
    checkIdentity(pid);
    report.setPinnedBytes(pinned);
    report.setMessage(
        "VM process " + pid + " (host UID " + plan.hostUid() + ", own user namespace) pinned " + pinned
            + " bytes through " + backend + (backend == DmaBackend.Iommufd ? " at IOVA 0x" + Long.toHexString(iova) : "")
            + ", charged " + (accounting == Accounting.PerProcess ? "to its process (mm)" : "to host UID " + plan.hostUid())
            + " under RLIMIT_MEMLOCK " + plan.memlockBytes());
    publish(AgentPhase.Running);
  }

  private void setUpIommufd() {
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
              + Iommufd.DEVICE + " mounted into the node pod; or use --dma-backend io-uring (accounting only)");
    }
    iommufd = new Iommufd(Kernel.open(sysfs.hostPath(Iommufd.DEVICE), Uapi.O_RDWR));
    if (accounting == Accounting.PerProcess) {
      // must precede every object on this fd, or the kernel answers EBUSY
      try {
        iommufd.setRlimitMode(Uapi.RLIMIT_MODE_PER_PROCESS);
      } catch (KernelException e) {
        throw new AgentFailure(
            e.errnoName(),
            "IOMMU_OPTION RLIMIT_MODE=per-process refused: " + e.errnoName()
                + (e.errnoName().equals("EPERM")
                    ? " (the agent needs CAP_SYS_RESOURCE: run the node pod privileged), or use --accounting per-user"
                    : ""));
      }
    }
    ioasId = iommufd.allocIoas();
    for (int i = 0; i < report.getDevices().size(); i++) {
      DeviceStatus status = report.getDevices().get(i);
      VfioDevice device = VfioDevice.open(sysfs.hostPath(status.getCdev()));
      devices.add(device);
      try {
        int devId = device.bind(iommufd);
        device.attach(ioasId);
        LOG.info("device {} ({}) bound as object {} and attached to IOAS {}", status.getPciAddress(), status.getCdev(), devId, ioasId);
      } catch (KernelException e) {
        throw new AgentFailure(
            e.errnoName(),
            "device " + status.getPciAddress() + " (" + status.getCdev() + "): " + e.getMessage()
                + (e.errnoName().equals("EBUSY") ? ": another process (a VM?) holds the device" : ""));
      }
      status.setAttached(true);
    }
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
    return new AgentFailure(errno, "the VM process could not map its guest memory: " + call + " failed with " + errno);
  }

  private void checkIdentity(int pid) {
    ProcStatus status;
    try {
      status = ProcStatus.of(pid);
    } catch (IOException e) {
      throw new AgentFailure("VmExited", "VM process " + pid + " " + awaitExit() + " right after mapping");
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

  private String awaitExit() {
    try {
      return vmExit.get(STOP_GRACE_SECONDS, TimeUnit.SECONDS).toString();
    } catch (InterruptedException | ExecutionException | TimeoutException e) {
      return "stopped answering";
    }
  }

  /** SIGTERM to the VM's process group, SIGKILL after a grace period; returns once it is reaped. */
  private void stopVm() {
    if (vm == null || vmExit.isDone()) {
      return;
    }
    vm.signal(Uapi.SIGTERM);
    try {
      vmExit.get(STOP_GRACE_SECONDS, TimeUnit.SECONDS);
    } catch (TimeoutException e) {
      LOG.warn("VM process {} ignored SIGTERM for {} s: SIGKILL", vm.pid(), STOP_GRACE_SECONDS);
      vm.signal(Uapi.SIGKILL);
      vmExit.join();
    } catch (InterruptedException | ExecutionException e) {
      vm.signal(Uapi.SIGKILL);
    }
  }

  /** Releases every pin and kernel object the agent holds; tolerant, so a failure mid-way still releases the rest. */
  private void release() {
    if (vm != null) {
      vm.closeControl();
    }
    for (VfioDevice d : devices) {
      try {
        d.detach();
      } catch (KernelException e) {
        LOG.debug("detach: {}", e.getMessage());
      }
      Kernel.closeQuietly(d.fd());
    }
    devices.clear();
    if (iommufd != null) {
      if (ioasId >= 0) {
        try {
          long bytes = iommufd.unmapAll(ioasId);
          LOG.info("unmapped {} bytes from IOAS {}", bytes, ioasId);
          iommufd.destroy(ioasId);
        } catch (KernelException e) {
          LOG.debug("IOAS release: {}", e.getMessage());
        }
      }
      Kernel.closeQuietly(iommufd.fd());
      iommufd = null;
    }
    report.getDevices().forEach(d -> d.setAttached(false));
    report.setPinnedBytes(0L);
  }

  private Outcome fail(String error, String message) {
    stopVm();
    release();
    report.setError(error);
    report.setMessage(message);
    publish(AgentPhase.Failed);
    return new Outcome(1, "node-agent: " + error + ": " + message);
  }

  private void publish(AgentPhase phase) {
    report.setPhase(phase);
    LOG.info("report: {}", ReportPublisher.toJson(report));
    publisher.publish(report);
  }
}
