package dev.vfiovm.nodedaemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.testing.FakeHost;
import dev.vfiovm.nodedaemon.DeviceInventory.Device;
import dev.vfiovm.nodedaemon.DeviceInventory.Snapshot;
import dev.vfiovm.nodedaemon.DeviceInventory.VfioPci;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DeviceInventoryTest {
  @TempDir Path root;

  @Test
  void resourceNameIsThePciAddressWithDashes() {
    assertThat(DeviceInventory.pciResource("0000:00:03.0")).isEqualTo("vfiovm.dev/pci-0000-00-03.0");
    assertThat(DeviceInventory.pciResource("3B:00.1")).isEqualTo("vfiovm.dev/pci-0000-3b-00.1");
  }

  @Test
  void iommuIsSharedSlotsAllServingDevIommu() {
    Map<String, List<Device>> r = DeviceInventory.advertise(new Snapshot(true, List.of()), 3);
    assertThat(r).containsOnlyKeys("vfiovm.dev/iommu");
    assertThat(r.get("vfiovm.dev/iommu")).containsExactly(
        new Device("iommu-0", true, List.of("/dev/iommu")),
        new Device("iommu-1", true, List.of("/dev/iommu")),
        new Device("iommu-2", true, List.of("/dev/iommu")));
  }

  @Test
  void noIommuIsTheResourceWithNoDevice() {
    assertThat(DeviceInventory.advertise(new Snapshot(false, List.of()), 64))
        .containsExactly(Map.entry("vfiovm.dev/iommu", List.of()));
  }

  @Test
  void onePciResourcePerVfioDeviceHealthyWhenItsCdevExists() {
    Map<String, List<Device>> r = DeviceInventory.advertise(new Snapshot(false, List.of(
        new VfioPci("0000:3b:00.0", "/dev/vfio/devices/vfio1", false),
        new VfioPci("0000:00:03.0", "/dev/vfio/devices/vfio0", true))), 64);
    assertThat(r.keySet()).containsExactly(
        "vfiovm.dev/iommu", "vfiovm.dev/pci-0000-00-03.0", "vfiovm.dev/pci-0000-3b-00.0");
    assertThat(r.get("vfiovm.dev/pci-0000-00-03.0"))
        .containsExactly(new Device("0000:00:03.0", true, List.of("/dev/vfio/devices/vfio0")));
    assertThat(r.get("vfiovm.dev/pci-0000-3b-00.0"))
        .containsExactly(new Device("0000:3b:00.0", false, List.of("/dev/vfio/devices/vfio1")));
  }

  @Test
  void scanFindsOnlyVfioPciDevicesWithACdev() throws Exception {
    new FakeHost(root).iommu()
        .pci("0000:00:03.0", "vfio-pci", "vfio0", true)
        .pci("0000:00:04.0", "vfio-pci", "vfio1", false)
        .pci("0000:00:02.0", "e1000e", null, false)
        .pci("0000:00:05.0", null, null, false)
        .pci("0000:00:06.0", "vfio-pci", null, false);
    assertThat(DeviceInventory.scan(root)).isEqualTo(new Snapshot(true, List.of(
        new VfioPci("0000:00:03.0", "/dev/vfio/devices/vfio0", true),
        new VfioPci("0000:00:04.0", "/dev/vfio/devices/vfio1", false))));
  }

  @Test
  void scanOfAnEmptyHost() throws Exception {
    Files.createDirectories(root.resolve("sys"));
    assertThat(DeviceInventory.scan(root)).isEqualTo(new Snapshot(false, List.of()));
  }
}
