package dev.vfiovm.api;

import java.util.Locale;

/**
 * The kubelet extended resources the node daemon's device plugin advertises and node pods request:
 * {@value #IOMMU} (the node's /dev/iommu, shareable slots) and one {@code vfiovm.dev/pci-DDDD-BB-SS.F} per VFIO
 * device (the PCI address with ":" replaced by "-"), of capacity 1, serving /dev/vfio/devices/vfioN.
 */
public final class DeviceResources {
  public static final String IOMMU = "vfiovm.dev/iommu";
  public static final String PCI_PREFIX = "vfiovm.dev/pci-";

  private DeviceResources() {}

  /** {@code vfiovm.dev/pci-0000-00-03.0} for 0000:00:03.0 (or 00:03.0: domain 0000; any case). */
  public static String pci(String pciAddress) {
    String a = pciAddress.trim().toLowerCase(Locale.ROOT);
    if (a.length() == 7) {
      a = "0000:" + a;
    }
    return PCI_PREFIX + a.replace(':', '-');
  }

  public static boolean isDeviceResource(String name) {
    return name.equals(IOMMU) || name.startsWith(PCI_PREFIX);
  }
}
