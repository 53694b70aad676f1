package dev.vfiovm.e2e.iommufd;

/**
 * The documented memlock rule (DESIGN.md, libvirt's): factor x memory + overhead, factor = number of
 * devices with a guest vIOMMU (each device then pins on its own), else 1; overhead = the operator's
 * default VFIOVM_MEMLOCK_OVERHEAD (1Gi). Stands in until the operator's own policy class lands.
 */
final class MemlockFormula {
  static final long DEFAULT_OVERHEAD = 1024L * 1024 * 1024;

  private MemlockFormula() {}

  static long limitBytes(long memoryBytes, int devices, boolean viommu) {
    return (viommu ? Math.max(1, devices) : 1) * memoryBytes + DEFAULT_OVERHEAD;
  }
}
