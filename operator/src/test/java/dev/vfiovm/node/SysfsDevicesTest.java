package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.node.DeviceResolutionException.Reason;
import dev.vfiovm.testing.FakeHost;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Device resolution on a fake host tree laid out as the kernel does it ({@link FakeHost}). */
class SysfsDevicesTest {
  @TempDir Path root;
  SysfsDevices sysfs;

  @BeforeEach
  void setUp() {
    sysfs = new SysfsDevices(root);
  }

  /** resolve(address) fails for {@code reason}, its message naming each of {@code says}. */
  private void assertRefused(String address, Reason reason, String... says) {
    var refusal = assertThatThrownBy(() -> sysfs.resolve(address))
        .isInstanceOfSatisfying(DeviceResolutionException.class, e -> assertThat(e.reason()).isEqualTo(reason));
    for (String part : says) {
      refusal.hasMessageContaining(part);
    }
  }

  private FakeHost host() {
    return new FakeHost(root);
  }

  @Test
  void resolvesAVfioBoundDeviceToItsCdev() throws Exception {
    host().pci("0000:3b:00.0", "vfio-pci", "vfio7", true);

    DevicePath d = sysfs.resolve("0000:3B:00.0");
    assertThat(d.pciAddress()).isEqualTo("0000:3b:00.0");
    assertThat(d.cdev()).isEqualTo("/dev/vfio/devices/vfio7");
    assertThat(sysfs.hostPath(d.cdev())).isEqualTo(root.resolve("dev/vfio/devices/vfio7").toString());
  }

  @Test
  void absentDevice() {
    assertRefused("0000:3b:00.0", Reason.DeviceNotFound, "0000:3b:00.0 not found", "lspci -D");
  }

  @Test
  void deviceOnAnotherDriverSaysHowToRebind() throws Exception {
    host().pci("0000:00:02.0", "e1000e", null, false);
    assertRefused("00:02.0", Reason.NotBoundToVfioPci,
        "bound to driver 'e1000e', not vfio-pci",
        "echo vfio-pci > /sys/bus/pci/devices/0000:00:02.0/driver_override",
        "/sys/bus/pci/drivers/e1000e/unbind");
  }

  @Test
  void deviceWithoutDriver() throws Exception {
    host().pci("0000:00:03.0", null, null, false);
    assertRefused("0000:00:03.0", Reason.NotBoundToVfioPci, "not bound to any driver");
  }

  @Test
  void vfioDeviceWithoutCdevNamesTheKernelOption() throws Exception {
    host().pci("0000:00:04.0", "vfio-pci", null, false);
    assertRefused("0000:00:04.0", Reason.NoVfioCdev, "CONFIG_VFIO_DEVICE_CDEV");
  }

  @Test
  void cdevMissingFromDevNamesTheDevicePluginResource() throws Exception {
    host().pci("0000:00:05.0", "vfio-pci", "vfio0", false); // in sysfs, not in /dev
    assertRefused("0000:00:05.0", Reason.NoVfioCdev,
        "/dev/vfio/devices/vfio0 does not exist",
        "vfiovm.dev/pci-0000-00-05.0",
        "vfiovm-node daemon");
  }

  @Test
  void malformedAddress() {
    assertRefused("eth0", Reason.InvalidPciAddress, "DDDD:BB:DD.F");
  }

  @Test
  void iommufdPresenceFollowsDevIommu() throws Exception {
    assertThat(sysfs.hasIommufd()).isFalse();
    host().iommu();
    assertThat(sysfs.hasIommufd()).isTrue();
  }
}
