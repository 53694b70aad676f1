package dev.vfiovm.node;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DmaBackend;
import java.nio.file.Path;
import java.util.List;

/**
 * What one node agent does for one VM, validated: the VM's host UID, guest memory, its RLIMIT_MEMLOCK, its
 * devices and how pins are accounted. Built from the CLI; pure.
 */
public record NodeAgentPlan(
    String vm,
    long hostUid,
    long memoryBytes,
    long memlockBytes,
    List<String> devices,
    Accounting accounting,
    DmaBackend dmaBackend,
    Path reportFile,
    String reportPod,
    List<String> vmCommand,
    List<String> vmReadOnly,
    boolean exitAfterMap,
    Vmm vmm) {

  /**
   * The VMM side of the plan: which QEMU, what it boots, where the console goes. Unused with --vm-command.
   *
   * @param powerdownSeconds how long a guest gets to power off after QMP system_powerdown before quit/SIGKILL
   */
  public record Vmm(
      String qemu,
      List<String> qemuData,
      String accel,
      int cpus,
      QemuCommandLine.Boot boot,
      boolean serialConsole,
      Path consoleLog,
      long powerdownSeconds) {
    public static final String DEFAULT_QEMU = "qemu-system-x86_64";

    public Vmm {
      qemuData = List.copyOf(qemuData);
      if (cpus < 1 || cpus > 64) {
        throw new IllegalArgumentException("--cpus " + cpus + " must be 1..64");
      }
      if (boot.kernel() == null && (boot.initrd() != null || boot.cmdline() != null)) {
        throw new IllegalArgumentException("--initrd and --cmdline need --kernel (a direct kernel boot)");
      }
      if (boot.kernel() != null && boot.disk() != null) {
        throw new IllegalArgumentException("give --kernel (direct boot) or --disk (firmware boot), not both");
      }
      if (!accel.matches("tcg|kvm")) {
        throw new IllegalArgumentException("--accel '" + accel + "' must be tcg or kvm");
      }
      if (powerdownSeconds < 0) {
        throw new IllegalArgumentException("--powerdown-timeout must be >= 0");
      }
    }

    /** A firmware-only VM: QEMU's defaults, one vCPU, nothing booted, console on stdout. */
    public static Vmm defaults() {
      return new Vmm(DEFAULT_QEMU, List.of(), "tcg", 1, QemuCommandLine.Boot.NONE, true, null, 10);
    }
  }

  static final long PAGE = 4096;

  public NodeAgentPlan {
    devices = List.copyOf(devices);
    vmCommand = List.copyOf(vmCommand);
    vmReadOnly = List.copyOf(vmReadOnly);
    for (String p : vmReadOnly) {
      if (!p.startsWith("/")) {
        throw new IllegalArgumentException("--vm-ro-bind " + p + " must be an absolute path");
      }
    }
    if (vm == null || !vm.matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?")) {
      throw new IllegalArgumentException("--vm '" + vm + "' must be NAMESPACE/NAME of the VfioVm");
    }
    if (hostUid <= 0 || hostUid >= 0xFFFFFFFFL) {
      throw new IllegalArgumentException(
          "--host-uid " + hostUid + " must be a host UID above 0 (the VM's own UID, never root)");
    }
    if (memoryBytes % PAGE != 0) {
      throw new IllegalArgumentException(
          "--memory " + memoryBytes + " must be a multiple of the page size " + PAGE + " (e.g. 4Gi)");
    }
    // a limit below guest RAM is not refused here: the kernel refuses the pin (ENOMEM), and the report says so
    if (memlockBytes <= 0) {
      throw new IllegalArgumentException("--memlock " + memlockBytes + " must be positive");
    }
    if (reportPod != null && !reportPod.matches("[^/\\s]+/[^/\\s]+")) {
      throw new IllegalArgumentException("--report-pod '" + reportPod + "' must be NAMESPACE/NAME");
    }
    if (dmaBackend == DmaBackend.Iommufd && devices.isEmpty()) {
      throw new IllegalArgumentException(
          "--dma-backend iommufd needs at least one --device: iommufd pins guest memory only for attached devices");
    }
  }

  /** The report error of a VM whose devices need /dev/iommu on a node that has none. */
  public static final String NO_IOMMU = "NodeHasNoIommu";

  /**
   * The backend really used: Auto takes iommufd when the VM has a device to attach (without one iommufd would
   * pin nothing), else io_uring. Auto with devices never falls back to io_uring: io_uring attaches no device,
   * so the VM would run without the devices it asked for; on a host without /dev/iommu such a plan does not
   * run at all ({@link #backendProblem}).
   */
  public DmaBackend effectiveBackend(boolean hostHasIommufd) {
    return switch (dmaBackend) {
      case Iommufd -> DmaBackend.Iommufd;
      case IoUring -> DmaBackend.IoUring;
      case Auto -> devices.isEmpty() ? DmaBackend.IoUring : DmaBackend.Iommufd;
    };
  }

  /**
   * Why this plan cannot run on this host, or null: Auto with devices on a node without /dev/iommu (error
   * {@value #NO_IOMMU}; the message says what to change). Explicit Iommufd keeps its own check (NoIommufd) when
   * the agent opens the device.
   */
  public String backendProblem(boolean hostHasIommufd) {
    if (dmaBackend == DmaBackend.Auto && !devices.isEmpty() && !hostHasIommufd) {
      return "dmaBackend Auto with devices " + devices + " needs /dev/iommu, and this node has none: the devices"
          + " can only be attached through iommufd (io_uring would run the VM without them). Enable the node's"
          + " IOMMU (kernel parameter intel_iommu=on or amd_iommu=on, CONFIG_IOMMUFD) so /dev/iommu exists, or run"
          + " the VM on another node that has /dev/iommu (spec.nodeName / spec.nodeSelector), or remove"
          + " spec.devices";
    }
    return null;
  }

  /**
   * The accounting really in force: io_uring charges the user only (the per-VM UID makes that per-VM);
   * iommufd does what the plan asks (per-process through IOMMU_OPTION RLIMIT_MODE).
   */
  public Accounting effectiveAccounting(DmaBackend backend) {
    return backend == DmaBackend.IoUring ? Accounting.PerUser : accounting;
  }

  /** CLI spelling of an accounting mode: per-process, per-user. */
  public static Accounting parseAccounting(String text) {
    return switch (text == null ? "" : text.trim().toLowerCase()) {
      case "per-process", "perprocess" -> Accounting.PerProcess;
      case "per-user", "peruser" -> Accounting.PerUser;
      default -> throw new IllegalArgumentException(
          "--accounting '" + text + "' must be per-process or per-user");
    };
  }

  /** CLI spelling of a backend: auto, iommufd, io-uring. */
  public static DmaBackend parseBackend(String text) {
    return switch (text == null ? "" : text.trim().toLowerCase()) {
      case "auto" -> DmaBackend.Auto;
      case "iommufd" -> DmaBackend.Iommufd;
      case "io-uring", "io_uring", "iouring" -> DmaBackend.IoUring;
      default -> throw new IllegalArgumentException(
          "--dma-backend '" + text + "' must be auto, iommufd or io-uring");
    };
  }
}
