#!/usr/bin/env bash
# Builds a Linux 6.12 guest kernel with iommufd and VFIO cdev enabled, from Debian's linux-source-6.12
# package. Debian's own kernels ship with CONFIG_IOMMUFD unset (checked: 6.1, 6.12, 7.2), so a test
# of real iommufd needs this kernel, booted under QEMU (TCG) with an emulated Intel VT-d.
#
# Proven on this kind of machine: the kernel boots under `qemu-system-x86_64 -accel tcg` in ~6 s with
#   -machine q35,kernel-irqchip=split -cpu max -device intel-iommu,intremap=on,caching-mode=on
#   -device e1000e,netdev=n0 -netdev user,id=n0,restrict=on
#   -append "console=ttyS0 intel_iommu=on iommu=pt"
# and the e1000e, rebound to vfio-pci (driver_override + drivers_probe), appears as
# /dev/vfio/devices/vfio0; /dev/iommu is there. See iommufd-accounting-probe.c for what was run.
# The host's own files (JVM, jars) reach the guest over 9p, built in:
#   -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
#   guest: mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /host; mount proc, sys,
#   devtmpfs and a tmpfs (/tmp) under /host; chroot /host java ...  -> `java -version` in ~2.5 s under TCG;
#   boot + two JVM starts + power-off took 7.7 s. Build time: ~13 min on 2 cores (with another build running).
# KVM is NOT usable here (/dev/kvm exists but the host is a PVM hypervisor: stock kernels crash).
#
# Usage: 30-iommufd-kernel.sh   (output: ${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/iommufd-kernel/bzImage)
set -euo pipefail
OUTDIR=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/iommufd-kernel
# what the tier runs the guest with (e2e/iommufd/boot-guest.sh), needed even when the kernel is cached
run_pkgs=(qemu-system-x86 busybox-static cpio)
build_pkgs=(linux-source-6.12 bc bison flex libelf-dev libssl-dev)
install_missing() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  (( ${#missing[@]} )) || return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
install_missing "${run_pkgs[@]}"
# what the tests need: iommufd + VFIO cdev + emulated VT-d + a PCI NIC to hand to vfio-pci,
# 9p/virtiofs to see the host's files (the JVM, the project's jars), user namespaces and io_uring;
# PCIe native and ACPI hot-plug for the L2 guest that gets a device plugged while it runs (hot-plug scenario).
# IOMMUFD_TEST adds the kernel's mock iommu domains (selftest ioctls), optional.
OPTIONS=(-e IOMMUFD -e VFIO -e VFIO_PCI -e VFIO_PCI_CORE -e VFIO_DEVICE_CDEV -e VFIO_GROUP
  -e INTEL_IOMMU -e INTEL_IOMMU_DEFAULT_ON -e IRQ_REMAP -e E1000E
  -e HOTPLUG_PCI -e HOTPLUG_PCI_PCIE -e HOTPLUG_PCI_ACPI
  -e DEBUG_KERNEL -e FAULT_INJECTION -e RUNTIME_TESTING_MENU -e IOMMUFD_TEST
  -e NET_9P -e NET_9P_VIRTIO -e 9P_FS -e 9P_FS_POSIX_ACL -e VIRTIO_FS -e FUSE_FS
  -e IO_URING -e USER_NS -e MEMCG -e DEVTMPFS -e DEVTMPFS_MOUNT
  -d DEBUG_INFO -d DEBUG_INFO_DWARF5 -e DEBUG_INFO_NONE
  -d DRM -d SOUND -d USB_SUPPORT -d WLAN -d WIRELESS -d CFG80211 -d MAC80211 -d HID -d INPUT_JOYSTICK
  -d INPUT_TABLET -d INPUT_TOUCHSCREEN -d AGP -d FB -d MEDIA_SUPPORT -d NFS_FS -d BT)
# a cached kernel built with other options is rebuilt (incrementally, in the kept source tree)
STAMP=$OUTDIR/options
[[ -f $OUTDIR/bzImage && "$(cat "$STAMP" 2>/dev/null)" == "${OPTIONS[*]}" ]] && { echo "kernel already at $OUTDIR/bzImage"; exit 0; }
mkdir -p "$OUTDIR"
install_missing "${build_pkgs[@]}"
SRC=$OUTDIR/src
if [[ ! -d $SRC ]]; then
  mkdir -p "$SRC" && tar xf /usr/src/linux-source-6.12.tar.xz -C "$SRC" --strip-components=1
fi
cd "$SRC"
make x86_64_defconfig >/dev/null
make kvm_guest.config >/dev/null
./scripts/config "${OPTIONS[@]}"
make olddefconfig >/dev/null
for opt in IOMMUFD VFIO_DEVICE_CDEV VFIO_PCI INTEL_IOMMU 9P_FS HOTPLUG_PCI_PCIE; do
  grep -q "^CONFIG_$opt=y" .config || { echo "CONFIG_$opt did not stick" >&2; exit 1; }
done
make -j"$(nproc)" bzImage
cp arch/x86/boot/bzImage "$OUTDIR/bzImage"
echo "${OPTIONS[*]}" > "$STAMP"
echo "kernel at $OUTDIR/bzImage"
