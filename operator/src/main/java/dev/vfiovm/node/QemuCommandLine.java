package dev.vfiovm.node;

import dev.vfiovm.api.DmaBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The QEMU command line of one VM, built from what the agent decided; pure. Everything QEMU needs from the
 * host arrives as inherited fds at the numbers of {@link VmFds} (the iommufd, each VFIO cdev unbound, the QMP
 * and console sockets, the io_uring-pinned guest RAM memfd), so QEMU opens no host device path itself:
 *
 * <ul>
 *   <li>iommufd: {@code -object iommufd,fd=4}; each device {@code -device vfio-pci,iommufd=..,fd=N} behind its
 *       own {@code pcie-root-port}; QEMU binds, attaches and maps guest RAM itself, so the kernel charges
 *       those pins to the VMM (its UID, or its mm in per-process mode);
 *   <li>io_uring: guest RAM is the memfd the VM-side launcher registered as an io_uring buffer (charged to the
 *       VM's UID) before exec'ing QEMU: {@code memory-backend-file,mem-path=/proc/self/fd/7,share=on};
 *   <li>QMP and the serial console are socket fds ({@code -chardev socket,fd=}), so QEMU creates no socket
 *       file anywhere;
 *   <li>{@code -sandbox on,...}: QEMU's own seccomp filter (no obsolete syscalls, no set*id, no fork/exec,
 *       no scheduler/affinity changes); {@code -nodefaults -no-user-config}: no device or config not listed.
 * </ul>
 */
public final class QemuCommandLine {
  private QemuCommandLine() {}

  /** QEMU's seccomp sandbox as vfiovm runs it: everything it offers to deny. */
  public static final String SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

  /** What to boot and how; paths are the node pod's (the agent checked they exist). */
  public record Boot(String kernel, String initrd, String cmdline, String disk) {
    public static final Boot NONE = new Boot(null, null, null, null);

    public boolean direct() {
      return kernel != null;
    }
  }

  /** One VM's QEMU, as decided: every input of the command line. */
  public record Spec(
      String qemu,
      List<String> dataDirs,
      String name,
      String accel,
      int cpus,
      long memoryBytes,
      DmaBackend backend,
      int deviceCount,
      Boot boot,
      boolean serialConsole,
      int hotplugSlots) {
    /** No hot-plug slot reserved. */
    public Spec(String qemu, List<String> dataDirs, String name, String accel, int cpus, long memoryBytes,
        DmaBackend backend, int deviceCount, Boot boot, boolean serialConsole) {
      this(qemu, dataDirs, name, accel, cpus, memoryBytes, backend, deviceCount, boot, serialConsole, 0);
    }

    public Spec {
      if (hotplugSlots < 0 || hotplugSlots > 16) {
        throw new IllegalArgumentException("--hotplug-slots " + hotplugSlots + " must be 0..16");
      }
      dataDirs = List.copyOf(dataDirs);
      if (cpus < 1) {
        throw new IllegalArgumentException("cpus " + cpus + " must be at least 1");
      }
      if (backend == DmaBackend.Auto) {
        throw new IllegalArgumentException("the backend must be decided (Iommufd or IoUring) before QEMU is");
      }
      if (backend == DmaBackend.IoUring && deviceCount > 0) {
        throw new IllegalArgumentException("the io-uring backend assigns no device");
      }
    }
  }

  public static List<String> build(Spec s) {
    List<String> a = new ArrayList<>();
    a.add(s.qemu());
    for (String dir : s.dataDirs()) {
      a.add("-L");
      a.add(dir);
    }
    a.addAll(List.of("-name", "guest=" + s.name().replace(",", ",,") + ",debug-threads=on"));
    a.addAll(List.of("-machine", "q35,memory-backend=ram"));
    a.addAll(List.of("-accel", s.accel()));
    a.addAll(List.of("-cpu", s.accel().startsWith("kvm") ? "host" : "max"));
    a.addAll(List.of("-smp", Integer.toString(s.cpus())));
    long kib = s.memoryBytes() / 1024;
    a.addAll(List.of("-m", kib + "K"));
    a.add("-object");
    a.add(switch (s.backend()) {
      case IoUring -> "memory-backend-file,id=ram,size=" + kib + "K,mem-path=/proc/self/fd/" + VmFds.MEMFD + ",share=on";
      default -> "memory-backend-memfd,id=ram,size=" + kib + "K,share=on";
    });
    a.addAll(List.of("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"));
    a.addAll(List.of("-sandbox", SANDBOX));
    a.addAll(List.of("-chardev", "socket,id=qmp,fd=" + VmFds.QMP, "-mon", "chardev=qmp,mode=control"));
    if (s.serialConsole()) {
      a.addAll(List.of("-chardev", "socket,id=console,fd=" + VmFds.CONSOLE, "-serial", "chardev:console"));
    }
    if (s.backend() == DmaBackend.Iommufd) {
      a.addAll(List.of("-object", "iommufd,id=iommufd0,fd=" + VmFds.IOMMUFD));
      for (int i = 0; i < s.deviceCount(); i++) {
        a.addAll(List.of("-device", "pcie-root-port,id=rp" + i + ",bus=pcie.0,chassis=" + (i + 1)));
        a.addAll(List.of(
            "-device",
            "vfio-pci,id=" + deviceId(i) + ",iommufd=iommufd0,fd=" + (VmFds.FIRST_DEVICE + i) + ",bus=rp" + i));
      }
      // free root ports for hot-plug (QMP device_add ...,bus=hotplugK): a port cannot be added to a running q35
      for (int k = 0; k < s.hotplugSlots(); k++) {
        a.addAll(List.of("-device", "pcie-root-port,id=" + hotplugBus(k) + ",bus=pcie.0,chassis=" + (s.deviceCount() + 1 + k)));
      }
    }
    Boot boot = s.boot();
    if (boot.direct()) {
      a.addAll(List.of("-kernel", boot.kernel()));
      if (boot.initrd() != null) {
        a.addAll(List.of("-initrd", boot.initrd()));
      }
      if (boot.cmdline() != null) {
        a.addAll(List.of("-append", boot.cmdline()));
      }
    } else if (boot.disk() != null) {
      // the format is named, never probed: a raw image could otherwise pose as qcow2 with a backing file;
      // snapshot=on: the delivered image stays read-only, the guest's writes go to a throwaway overlay
      String format = boot.disk().toLowerCase(Locale.ROOT).endsWith(".qcow2") ? "qcow2" : "raw";
      a.addAll(List.of(
          "-drive", "file=" + boot.disk().replace(",", ",,") + ",if=none,id=disk0,format=" + format + ",snapshot=on",
          "-device", "virtio-blk-pci,drive=disk0,bootindex=1"));
    }
    return a;
  }

  /** The k-th root port reserved for hot-plug. */
  public static String hotplugBus(int k) {
    return "hotplug" + k;
  }

  /** QEMU's id of the i-th hot-plugged device (qdev_id). */
  public static String hotplugDeviceId(int i) {
    return "hotdev" + i;
  }

  /** QEMU's id of the i-th assigned device, as query-pci reports it (qdev_id). */
  public static String deviceId(int i) {
    return "hostdev" + i;
  }
}
