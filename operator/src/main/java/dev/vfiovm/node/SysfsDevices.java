package dev.vfiovm.node;

import dev.vfiovm.api.DeviceResources;
import dev.vfiovm.node.DeviceResolutionException.Reason;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Resolves PCI addresses to VFIO device cdevs the way the kernel lays them out:
 * /sys/bus/pci/devices/&lt;BDF&gt;/vfio-dev/vfioN -&gt; /dev/vfio/devices/vfioN. The host root is injectable so
 * tests use a fake tree.
 */
public final class SysfsDevices {
  private static final Pattern BDF =
      Pattern.compile("([0-9a-f]{4}:)?[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]", Pattern.CASE_INSENSITIVE);

  private final Path root;

  public SysfsDevices(Path root) {
    this.root = root;
  }

  /** The real host. */
  public static SysfsDevices host() {
    return new SysfsDevices(Path.of("/"));
  }

  /** DDDD:BB:DD.F in lower case; a bare BB:DD.F gets domain 0000. */
  public static String normalize(String pciAddress) {
    String a = pciAddress == null ? "" : pciAddress.trim().toLowerCase(Locale.ROOT);
    if (!BDF.matcher(a).matches()) {
      throw new DeviceResolutionException(
          Reason.InvalidPciAddress,
          "device '" + pciAddress + "' is not a PCI address: use DDDD:BB:DD.F as `lspci -D` prints it, e.g. 0000:3b:00.0");
    }
    return a.length() == 7 ? "0000:" + a : a;
  }

  /** The device's VFIO cdev, or a DeviceResolutionException saying what is wrong and how to fix it. */
  public DevicePath resolve(String pciAddress) {
    String bdf = normalize(pciAddress);
    String sysfs = "/sys/bus/pci/devices/" + bdf;
    Path dev = host(sysfs);
    if (!Files.isDirectory(dev)) {
      throw new DeviceResolutionException(
          Reason.DeviceNotFound,
          "PCI device " + bdf + " not found (no " + sysfs + "): check the address with `lspci -D` on this node"
              + " (the node pod reads the kernel's sysfs, read-only at /sys)");
    }
    Path driverLink = dev.resolve("driver");
    String driver = null;
    try {
      if (Files.isSymbolicLink(driverLink) || Files.exists(driverLink)) {
        driver = driverLink.toRealPath().getFileName().toString();
      }
    } catch (IOException e) {
      driver = null;
    }
    String rebind =
        "bind it to vfio-pci: echo vfio-pci > " + sysfs + "/driver_override; "
            + (driver != null ? "echo " + bdf + " > /sys/bus/pci/drivers/" + driver + "/unbind; " : "")
            + "echo " + bdf + " > /sys/bus/pci/drivers_probe";
    if (driver == null) {
      throw new DeviceResolutionException(
          Reason.NotBoundToVfioPci, "PCI device " + bdf + " is not bound to any driver: " + rebind);
    }
    if (!driver.contains("vfio")) {
      throw new DeviceResolutionException(
          Reason.NotBoundToVfioPci,
          "PCI device " + bdf + " is bound to driver '" + driver + "', not vfio-pci: " + rebind);
    }
    Path vfioDev = dev.resolve("vfio-dev");
    String node;
    try (Stream<Path> s = Files.isDirectory(vfioDev) ? Files.list(vfioDev) : Stream.empty()) {
      node =
          s.map(p -> p.getFileName().toString())
              .filter(n -> n.matches("vfio\\d+"))
              .sorted()
              .findFirst()
              .orElse(null);
    } catch (IOException e) {
      node = null;
    }
    if (node == null) {
      throw new DeviceResolutionException(
          Reason.NoVfioCdev,
          "PCI device " + bdf + " is bound to " + driver + " but has no VFIO device cdev (no " + sysfs
              + "/vfio-dev/vfioN): the node's kernel needs CONFIG_VFIO_DEVICE_CDEV=y (Linux 6.6+) and CONFIG_IOMMUFD");
    }
    String cdev = "/dev/vfio/devices/" + node;
    if (!Files.exists(host(cdev))) {
      throw new DeviceResolutionException(
          Reason.NoVfioCdev,
          "PCI device " + bdf + " has VFIO cdev " + node + " in sysfs but " + cdev
              + " does not exist: the node pod gets it from the vfiovm-node device plugin (resource "
              + DeviceResources.pci(bdf) + "); is the vfiovm-node daemon running on this node?");
    }
    return new DevicePath(bdf, sysfs, cdev);
  }

  /** Whether the host has an iommufd (/dev/iommu). */
  public boolean hasIommufd() {
    return Files.exists(host("/dev/iommu"));
  }

  /** A host path under the injected root, as the agent opens it. */
  public String hostPath(String absolute) {
    return host(absolute).toString();
  }

  private Path host(String absolute) {
    return root.resolve(absolute.substring(1));
  }
}
