package dev.vfiovm.node.kernel;

/**
 * A failed system call: carries the call (e.g. {@code IOMMU_IOAS_MAP}), the errno and its symbolic name
 * (ENOMEM, EPERM, EBUSY, ...), which is what the agent reports as the error of a failed VM.
 */
public class KernelException extends RuntimeException {
  private final String call;
  private final int errno;
  private final String errnoName;

  public KernelException(String call, int errno) {
    super(call + ": " + Kernel.errnoName(errno) + " (" + Kernel.strerror(errno) + ")");
    this.call = call;
    this.errno = errno;
    this.errnoName = Kernel.errnoName(errno);
  }

  /** The call that failed, as named in the kernel's uAPI or libc. */
  public String call() {
    return call;
  }

  public int errno() {
    return errno;
  }

  /** Symbolic errno: ENOMEM, EPERM, ... */
  public String errnoName() {
    return errnoName;
  }
}
