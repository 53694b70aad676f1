package dev.vfiovm.node;

/** A --device that cannot be used; the code goes to the report's error, the message says how to fix it. */
public class DeviceResolutionException extends RuntimeException {
  /** Why a device cannot be used. */
  public enum Reason {
    InvalidPciAddress,
    DeviceNotFound,
    NotBoundToVfioPci,
    NoVfioCdev
  }

  private final Reason reason;

  public DeviceResolutionException(Reason reason, String message) {
    super(message);
    this.reason = reason;
  }

  public Reason reason() {
    return reason;
  }
}
