package dev.vfiovm.nodedaemon;

import dev.vfiovm.api.DeviceResources;
import dev.vfiovm.node.DevicePath;
import dev.vfiovm.node.DeviceResolutionException;
import dev.vfiovm.node.SysfsDevices;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * What the node daemon advertises to the kubelet, from a snapshot of the host's sysfs and /dev (contract:
 * device resource names):
 *
 * <ul>
 *   <li>{@value #IOMMU_RESOURCE}: {@code slots} shareable devices {@code iommu-0..N-1}, all serving
 *       /dev/iommu (every VM opens its own iommufd; the slots only bound how many containers get it). Always
 *       served, with no device when the node has no /dev/iommu, so the kubelet lists the resource at 0.
 *   <li>{@code vfiovm.dev/pci-DDDD-BB-SS.F}: one per PCI device bound to vfio-pci with a VFIO cdev, one
 *       device (its PCI address) serving /dev/vfio/devices/vfioN.
 * </ul>
 */
public final class DeviceInventory {
  public static final String IOMMU_RESOURCE = DeviceResources.IOMMU;
  public static final String IOMMU_DEVICE = "/dev/iommu";
  public static final int DEFAULT_IOMMU_SLOTS = 64;

  private DeviceInventory() {}

  /** One device of a resource: its ID, whether its device node is present, the host paths it gives. */
  public record Device(String id, boolean healthy, List<String> paths) {
    public Device {
      paths = List.copyOf(paths);
    }
  }

  /** A vfio-pci device seen in sysfs: its address, VFIO cdev and whether the cdev exists in /dev. */
  public record VfioPci(String pciAddress, String cdev, boolean cdevPresent) {}

  /** What the host has: /dev/iommu or not, and its vfio-pci devices. */
  public record Snapshot(boolean iommu, List<VfioPci> vfioDevices) {
    public Snapshot {
      vfioDevices = List.copyOf(vfioDevices);
    }
  }

  /** {@code vfiovm.dev/pci-0000-00-03.0} for PCI address 0000:00:03.0 (":" becomes "-"). */
  public static String pciResource(String pciAddress) {
    return DeviceResources.pci(SysfsDevices.normalize(pciAddress));
  }

  /** Resource name -> its devices, the IOMMU first, then the PCI devices by address. Pure. */
  public static Map<String, List<Device>> advertise(Snapshot snapshot, int iommuSlots) {
    Map<String, List<Device>> resources = new LinkedHashMap<>();
    List<Device> slots = new ArrayList<>();
    if (snapshot.iommu()) {
      for (int i = 0; i < iommuSlots; i++) {
        slots.add(new Device("iommu-" + i, true, List.of(IOMMU_DEVICE)));
      }
    }
    resources.put(IOMMU_RESOURCE, slots);
    snapshot.vfioDevices().stream()
        .sorted(java.util.Comparator.comparing(VfioPci::pciAddress))
        .forEach(d -> resources.put(pciResource(d.pciAddress()),
            List.of(new Device(d.pciAddress(), d.cdevPresent(), List.of(d.cdev())))));
    return resources;
  }

  /** Reads the snapshot under {@code root} ("/" on a node; a fake tree in tests). */
  public static Snapshot scan(Path root) {
    SysfsDevices sysfs = new SysfsDevices(root);
    List<VfioPci> devices = new ArrayList<>();
    Path pci = root.resolve("sys/bus/pci/devices");
    if (Files.isDirectory(pci)) {
      try (Stream<Path> entries = Files.list(pci)) {
        for (Path entry : entries.sorted().toList()) {
          String address = entry.getFileName().toString();
          VfioPci device = vfioPci(sysfs, root, address);
          if (device != null) {
            devices.add(device);
          }
        }
      } catch (IOException e) {
        throw new java.io.UncheckedIOException("cannot list " + pci, e);
      }
    }
    return new Snapshot(sysfs.hasIommufd(), devices);
  }

  /** The device if it is bound to vfio-pci with a VFIO cdev in sysfs (present in /dev or not), else null. */
  private static VfioPci vfioPci(SysfsDevices sysfs, Path root, String address) {
    try {
      DevicePath d = sysfs.resolve(address);
      return new VfioPci(d.pciAddress(), d.cdev(), true);
    } catch (DeviceResolutionException e) {
      if (e.reason() != DeviceResolutionException.Reason.NoVfioCdev) {
        return null; // not a PCI address, or not bound to vfio-pci: not ours to advertise
      }
      // bound to vfio-pci with a vfioN in sysfs but no /dev node: advertised unhealthy
      Path vfioDev = root.resolve("sys/bus/pci/devices").resolve(address).resolve("vfio-dev");
      try (Stream<Path> s = Files.isDirectory(vfioDev) ? Files.list(vfioDev) : Stream.empty()) {
        return s.map(p -> p.getFileName().toString()).filter(n -> n.matches("vfio\\d+")).sorted().findFirst()
            .map(n -> new VfioPci(SysfsDevices.normalize(address), "/dev/vfio/devices/" + n, false))
            .orElse(null);
      } catch (IOException io) {
        return null;
      }
    }
  }
}
