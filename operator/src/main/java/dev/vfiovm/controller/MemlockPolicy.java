package dev.vfiovm.controller;

/**
 * RLIMIT_MEMLOCK of a VM process (libvirt's rule): factor x memory + overhead, where factor is the number
 * of devices with a guest vIOMMU (each device then pins guest memory separately), else 1. Never unlimited.
 */
public final class MemlockPolicy {
  private MemlockPolicy() {}

  public static int factor(boolean viommu, int devices) {
    return viommu ? Math.max(1, devices) : 1;
  }

  /**
   * @throws ArithmeticException when the limit does not fit in 63 bits (the spec asks for the impossible)
   */
  public static long limitBytes(long memoryBytes, int devices, boolean viommu, long overheadBytes) {
    if (memoryBytes <= 0) {
      throw new IllegalArgumentException("memory must be positive, was " + memoryBytes);
    }
    return Math.addExact(Math.multiplyExact(factor(viommu, devices), memoryBytes), overheadBytes);
  }
}
