package dev.vfiovm.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A fake host tree (sysfs + /dev) laid out as the kernel does it, for the tests of what reads it: the node
 * agent's device resolution (SysfsDevices) and the device plugin's inventory.
 */
public final class FakeHost {
  public final Path root;

  public FakeHost(Path root) {
    this.root = root;
  }

  public FakeHost iommu() throws IOException {
    Files.createDirectories(root.resolve("dev"));
    Files.createFile(root.resolve("dev/iommu"));
    return this;
  }

  /** A PCI device on {@code driver} (null: none); with {@code vfioN} in sysfs and, if {@code cdev}, in /dev. */
  public FakeHost pci(String bdf, String driver, String vfioN, boolean cdev) throws IOException {
    Path dev = Files.createDirectories(root.resolve("sys/devices/pci0000:00/" + bdf));
    Files.createDirectories(root.resolve("sys/bus/pci/devices"));
    Files.createSymbolicLink(root.resolve("sys/bus/pci/devices/" + bdf), dev);
    if (driver != null) {
      Path drv = Files.createDirectories(root.resolve("sys/bus/pci/drivers/" + driver));
      Files.createSymbolicLink(dev.resolve("driver"), drv);
    }
    if (vfioN != null) {
      Files.createDirectories(dev.resolve("vfio-dev/" + vfioN));
      if (cdev) {
        Files.createDirectories(root.resolve("dev/vfio/devices"));
        Files.createFile(root.resolve("dev/vfio/devices/" + vfioN));
      }
    }
    return this;
  }
}
