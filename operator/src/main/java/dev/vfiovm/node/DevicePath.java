package dev.vfiovm.node;

/**
 * A VFIO device resolved on this host: its PCI address, sysfs directory and VFIO cdev (as a path on the
 * host, e.g. /dev/vfio/devices/vfio0).
 */
public record DevicePath(String pciAddress, String sysfsDir, String cdev) {}
