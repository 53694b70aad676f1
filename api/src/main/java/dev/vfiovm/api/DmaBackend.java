package dev.vfiovm.api;

/** How the VM's guest memory is pinned. */
public enum DmaBackend {
  /** Iommufd when the node has /dev/iommu, else IoUring. */
  Auto,
  /** Real DMA mapping through /dev/iommu and VFIO device cdevs. */
  Iommufd,
  /** Accounting only: guest memory registered as an io_uring buffer (same per-user charge), no device. */
  IoUring
}
