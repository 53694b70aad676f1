package dev.vfiovm.node;

/**
 * The documented fd numbers and environment variables of the VM process (QEMU, or a --vm-command). The
 * agent opens everything privileged itself and hands it over at fixed numbers:
 *
 * <pre>
 * 3   VFIOVM_CONTROL_FD  socket to the agent (the root gate reads "go" on it; closed before QEMU starts;
 *                        kept for a --vm-command on iommufd, which writes READY on it once set up)
 * 4   VFIOVM_IOMMUFD     a fresh iommufd, no object on it yet (RLIMIT_MODE already set for PerProcess)
 * 4   VFIOVM_IOURING_FD  the io_uring holding the guest RAM registered as a buffer (io-uring backend)
 * 5   QMP socket         QEMU: -chardev socket,id=qmp,fd=5
 * 6   console socket     QEMU: -chardev socket,id=console,fd=6 (the guest's serial console)
 * 7   VFIOVM_MEMFD       guest RAM memfd (io-uring backend: registered by the launcher, QEMU's RAM backend)
 * 8+  VFIOVM_DEVICE_FDS  each device's VFIO cdev, opened but NOT bound: the VMM binds, attaches and maps
 * </pre>
 */
public final class VmFds {
  private VmFds() {}

  public static final int CONTROL = 3;
  public static final int IOMMUFD = 4;
  public static final int IOURING = 4;
  public static final int QMP = 5;
  public static final int CONSOLE = 6;
  public static final int MEMFD = 7;
  public static final int FIRST_DEVICE = 8;

  public static final String ENV_CONTROL_FD = "VFIOVM_CONTROL_FD";
  public static final String ENV_MEMFD = "VFIOVM_MEMFD";
  public static final String ENV_IOMMUFD = "VFIOVM_IOMMUFD";
  public static final String ENV_IOURING_FD = "VFIOVM_IOURING_FD";
  public static final String ENV_DEVICE_FDS = "VFIOVM_DEVICE_FDS";
  public static final String ENV_DEVICES = "VFIOVM_DEVICES";
  public static final String ENV_MEMORY_BYTES = "VFIOVM_MEMORY_BYTES";
  public static final String ENV_MEMLOCK_BYTES = "VFIOVM_MEMLOCK_BYTES";
  public static final String ENV_DMA_BACKEND = "VFIOVM_DMA_BACKEND";
  public static final String ENV_ACCOUNTING = "VFIOVM_ACCOUNTING";
  public static final String ENV_VM = "VFIOVM_VM";

  /** Control messages, one line each, VM process -&gt; agent. */
  static final String MAPPED = "MAPPED";

  static final String ERROR = "ERROR";
  /** A --vm-command on iommufd: bound, attached and mapped; the agent reports Running. */
  static final String READY = "READY";
  /** Agent -&gt; VM process: RLIMIT_MEMLOCK is set, go on (read by the root shell before dropping to the UID). */
  static final String GO = "go";
}
