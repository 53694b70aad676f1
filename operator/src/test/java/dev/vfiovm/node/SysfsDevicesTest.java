package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.node.DeviceResolutionException.Reason;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Device resolution on a fake host tree laid out as the kernel does it. */
class SysfsDevicesTest {
  @TempDir Path root;
  SysfsDevices sysfs;

  @BeforeEach
  void setUp() {
    sysfs = new SysfsDevices(root);
  }

  private Path device(String bdf, String driver) throws Exception {
    Path dev = Files.createDirectories(root.resolve("sys/devices/pci0000:00/" + bdf));
    Files.createDirectories(root.resolve("sys/bus/pci/devices"));
    Files.createSymbolicLink(root.resolve("sys/bus/pci/devices/" + bdf), dev);
    if (driver != null) {
      Path drv = Files.createDirectories(root.resolve("sys/bus/pci/drivers/" + driver));
      Files.createSymbolicLink(dev.resolve("driver"), drv);
    }
    return dev;
  }

  @Test
  void resolvesAVfioBoundDeviceToItsCdev() throws Exception {
    Path dev = device("0000:3b:00.0", "vfio-pci");
    Files.createDirectories(dev.resolve("vfio-dev/vfio7"));
    Files.createDirectories(root.resolve("dev/vfio/devices"));
    Files.createFile(root.resolve("dev/vfio/devices/vfio7"));

    DevicePath d = sysfs.resolve("0000:3B:00.0");
    assertThat(d.pciAddress()).isEqualTo("0000:3b:00.0");
    assertThat(d.cdev()).isEqualTo("/dev/vfio/devices/vfio7");
    assertThat(sysfs.hostPath(d.cdev())).isEqualTo(root.resolve("dev/vfio/devices/vfio7").toString());
  }

  @Test
  void absentDevice() {
    assertThatThrownBy(() -> sysfs.resolve("0000:3b:00.0"))
        .isInstanceOfSatisfying(DeviceResolutionException.class, e -> assertThat(e.reason()).isEqualTo(Reason.DeviceNotFound))
        .hasMessageContaining("0000:3b:00.0 not found")
        .hasMessageContaining("lspci -D");
  }

  @Test
  void deviceOnAnotherDriverSaysHowToRebind() throws Exception {
    device("0000:00:02.0", "e1000e");
    assertThatThrownBy(() -> sysfs.resolve("00:02.0"))
        .isInstanceOfSatisfying(DeviceResolutionException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NotBoundToVfioPci))
        .hasMessageContaining("bound to driver 'e1000e', not vfio-pci")
        .hasMessageContaining("echo vfio-pci > /sys/bus/pci/devices/0000:00:02.0/driver_override")
        .hasMessageContaining("/sys/bus/pci/drivers/e1000e/unbind");
  }

  @Test
  void deviceWithoutDriver() throws Exception {
    device("0000:00:03.0", null);
    assertThatThrownBy(() -> sysfs.resolve("0000:00:03.0"))
        .isInstanceOfSatisfying(DeviceResolutionException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NotBoundToVfioPci))
        .hasMessageContaining("not bound to any driver");
  }

  @Test
  void vfioDeviceWithoutCdevNamesTheKernelOption() throws Exception {
    device("0000:00:04.0", "vfio-pci");
    assertThatThrownBy(() -> sysfs.resolve("0000:00:04.0"))
        .isInstanceOfSatisfying(DeviceResolutionException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NoVfioCdev))
        .hasMessageContaining("CONFIG_VFIO_DEVICE_CDEV");
  }

  @Test
  void cdevMissingFromDevNamesTheDevicePluginResource() throws Exception {
    Path dev = device("0000:00:05.0", "vfio-pci");
    Files.createDirectories(dev.resolve("vfio-dev/vfio0"));
    assertThatThrownBy(() -> sysfs.resolve("0000:00:05.0"))
        .isInstanceOfSatisfying(DeviceResolutionException.class, e -> assertThat(e.reason()).isEqualTo(Reason.NoVfioCdev))
        .hasMessageContaining("/dev/vfio/devices/vfio0 does not exist")
        .hasMessageContaining("vfiovm.dev/pci-0000-00-05.0").hasMessageContaining("vfiovm-node daemon");
  }

  @Test
  void malformedAddress() {
    assertThatThrownBy(() -> sysfs.resolve("eth0"))
        .isInstanceOfSatisfying(DeviceResolutionException.class, e -> assertThat(e.reason()).isEqualTo(Reason.InvalidPciAddress))
        .hasMessageContaining("DDDD:BB:DD.F");
  }

  @Test
  void iommufdPresenceFollowsDevIommu() throws Exception {
    assertThat(sysfs.hasIommufd()).isFalse();
    Files.createDirectories(root.resolve("dev"));
    Files.createFile(root.resolve("dev/iommu"));
    assertThat(sysfs.hasIommufd()).isTrue();
  }
}
