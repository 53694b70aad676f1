package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.api.DmaBackend;
import java.util.List;
import org.junit.jupiter.api.Test;

class QemuCommandLineTest {
  static QemuCommandLine.Spec spec(DmaBackend backend, int devices, QemuCommandLine.Boot boot, boolean console) {
    return new QemuCommandLine.Spec(
        "/usr/bin/qemu-system-x86_64", List.of("/opt/q/share"), "team-a/vm1", "tcg", 2, 128L << 20, backend,
        devices, boot, console);
  }

  static String joined(QemuCommandLine.Spec s) {
    return String.join(" ", QemuCommandLine.build(s));
  }

  @Test
  void iommufdHandsEveryDeviceToQemuByFdBehindItsOwnRootPort() {
    String line = joined(spec(DmaBackend.Iommufd, 2, QemuCommandLine.Boot.NONE, true));
    assertThat(line)
        .startsWith("/usr/bin/qemu-system-x86_64 -L /opt/q/share ")
        .contains("-object iommufd,id=iommufd0,fd=4")
        .contains("-device pcie-root-port,id=rp0,bus=pcie.0,chassis=1 "
            + "-device vfio-pci,id=hostdev0,iommufd=iommufd0,fd=8,bus=rp0")
        .contains("-device pcie-root-port,id=rp1,bus=pcie.0,chassis=2 "
            + "-device vfio-pci,id=hostdev1,iommufd=iommufd0,fd=9,bus=rp1")
        .doesNotContain("host=")
        .contains("-object memory-backend-memfd,id=ram,size=131072K,share=on", "-machine q35,memory-backend=ram");
  }

  @Test
  void everyVmIsSandboxedWithNothingButWhatIsListed() {
    List<String> argv = QemuCommandLine.build(spec(DmaBackend.Iommufd, 1, QemuCommandLine.Boot.NONE, true));
    assertThat(String.join(" ", argv))
        .contains("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
        .contains("-nodefaults", "-no-user-config", "-display none")
        .contains("-chardev socket,id=qmp,fd=5 -mon chardev=qmp,mode=control")
        .contains("-chardev socket,id=console,fd=6 -serial chardev:console")
        .contains("-smp 2", "-m 131072K", "-accel tcg", "-cpu max");
  }

  @Test
  void ioUringBootsOnTheLaunchersPinnedMemfd() {
    String line = joined(spec(DmaBackend.IoUring, 0, QemuCommandLine.Boot.NONE, false));
    assertThat(line)
        .contains("-object memory-backend-file,id=ram,size=131072K,mem-path=/proc/self/fd/7,share=on")
        .doesNotContain("iommufd", "vfio-pci", "-serial");
  }

  @Test
  void directKernelBootAndDiskBoot() {
    assertThat(joined(spec(DmaBackend.IoUring, 0,
            new QemuCommandLine.Boot("/vm/boot/vmlinuz", "/vm/boot/initrd.img", "console=ttyS0 quiet", null), true)))
        .contains("-kernel /vm/boot/vmlinuz -initrd /vm/boot/initrd.img")
        .endsWith("-append console=ttyS0 quiet");
    assertThat(joined(spec(DmaBackend.IoUring, 0, new QemuCommandLine.Boot(null, null, null, "/vm/boot/d.qcow2"), true)))
        .contains("-drive file=/vm/boot/d.qcow2,if=none,id=disk0,format=qcow2,snapshot=on -device virtio-blk-pci,drive=disk0,bootindex=1");
    assertThat(joined(spec(DmaBackend.IoUring, 0, new QemuCommandLine.Boot(null, null, null, "/vm/boot/a,b.img"), true)))
        .contains("file=/vm/boot/a,,b.img,if=none,id=disk0,format=raw,snapshot=on");
  }

  @Test
  void kvmUsesTheHostCpu() {
    QemuCommandLine.Spec s = new QemuCommandLine.Spec(
        "qemu", List.of(), "ns/vm", "kvm", 1, 1L << 30, DmaBackend.IoUring, 0, QemuCommandLine.Boot.NONE, true);
    assertThat(joined(s)).contains("-accel kvm -cpu host");
  }

  @Test
  void refusesWhatCannotBe() {
    assertThatThrownBy(() -> spec(DmaBackend.Auto, 0, QemuCommandLine.Boot.NONE, true))
        .hasMessageContaining("must be decided");
    assertThatThrownBy(() -> spec(DmaBackend.IoUring, 1, QemuCommandLine.Boot.NONE, true))
        .hasMessageContaining("assigns no device");
  }

  @Test
  void reservesFreeRootPortsForHotPlugAfterTheBootDevicesOnIommufdOnly() {
    QemuCommandLine.Spec s = new QemuCommandLine.Spec(
        "qemu", List.of(), "ns/vm", "tcg", 1, 1L << 30, DmaBackend.Iommufd, 1, QemuCommandLine.Boot.NONE, true, 2);
    List<String> argv = QemuCommandLine.build(s);
    assertThat(String.join(" ", argv))
        .contains("-device pcie-root-port,id=rp0,bus=pcie.0,chassis=1 -device vfio-pci,id=hostdev0,iommufd=iommufd0,fd=8,bus=rp0"
            + " -device pcie-root-port,id=hotplug0,bus=pcie.0,chassis=2 -device pcie-root-port,id=hotplug1,bus=pcie.0,chassis=3");
    // nothing behind the reserved ports: exactly one vfio-pci, the boot-time one
    assertThat(argv.stream().filter(a -> a.startsWith("vfio-pci,")).toList()).hasSize(1);
    // io-uring assigns no device, so it reserves no port either
    QemuCommandLine.Spec io = new QemuCommandLine.Spec(
        "qemu", List.of(), "ns/vm", "tcg", 1, 1L << 30, DmaBackend.IoUring, 0, QemuCommandLine.Boot.NONE, true, 2);
    assertThat(String.join(" ", QemuCommandLine.build(io))).doesNotContain("pcie-root-port");
    assertThatThrownBy(() -> new QemuCommandLine.Spec(
        "qemu", List.of(), "ns/vm", "tcg", 1, 1L << 30, DmaBackend.Iommufd, 0, QemuCommandLine.Boot.NONE, true, -1))
        .hasMessageContaining("--hotplug-slots");
    assertThat(QemuCommandLine.hotplugBus(1)).isEqualTo("hotplug1");
    assertThat(QemuCommandLine.hotplugDeviceId(0)).isEqualTo("hotdev0");
  }
}
