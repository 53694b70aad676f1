package dev.vfiovm.node;

/**
 * The documented fd numbers and environment variables of the VM process. The agent spawns it with
 * CONTROL, IOMMUFD and the device fds in place; before exec'ing --vm-command the VM process closes CONTROL
 * and puts its guest memory memfd there, so the command sees:
 *
 * <pre>
 * 3  VFIOVM_MEMFD       guest memory (memfd, --memory bytes), already DMA-mapped/pinned as a whole
 * 4  VFIOVM_IOMMUFD     the VM's iommufd (iommufd backend): IOAS VFIOVM_IOAS_ID maps the memfd at VFIOVM_IOVA
 * 4  VFIOVM_IOURING_FD  the io_uring holding the pinned buffer (io-uring backend)
 * 5+ VFIOVM_DEVICE_FDS  VFIO device cdev fds, bound to the iommufd and attached to the IOAS, in --device order
 * </pre>
 */
public final class VmFds {
  private VmFds() {}

  /** Agent &lt;-&gt; VM process control socket (spawn layout only; gone before --vm-command runs). */
  public static final int CONTROL = 3;

  public static final int MEMFD = 3;
  public static final int IOMMUFD = 4;
  public static final int IOURING = 4;
  public static final int FIRST_DEVICE = 5;

  public static final String ENV_MEMFD = "VFIOVM_MEMFD";
  public static final String ENV_IOMMUFD = "VFIOVM_IOMMUFD";
  public static final String ENV_IOURING_FD = "VFIOVM_IOURING_FD";
  public static final String ENV_DEVICE_FDS = "VFIOVM_DEVICE_FDS";
  public static final String ENV_DEVICES = "VFIOVM_DEVICES";
  public static final String ENV_IOAS_ID = "VFIOVM_IOAS_ID";
  public static final String ENV_IOVA = "VFIOVM_IOVA";
  public static final String ENV_MEMORY_BYTES = "VFIOVM_MEMORY_BYTES";
  public static final String ENV_MEMLOCK_BYTES = "VFIOVM_MEMLOCK_BYTES";
  public static final String ENV_DMA_BACKEND = "VFIOVM_DMA_BACKEND";
  public static final String ENV_ACCOUNTING = "VFIOVM_ACCOUNTING";
  public static final String ENV_VM = "VFIOVM_VM";

  /** Control messages, one line each, VM process -&gt; agent. */
  static final String MAPPED = "MAPPED";

  static final String ERROR = "ERROR";
  /** Agent -&gt; VM process: RLIMIT_MEMLOCK is set, go on (read by the root shell before dropping to the UID). */
  static final String GO = "go";
}
