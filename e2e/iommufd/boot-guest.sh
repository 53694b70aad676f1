#!/usr/bin/env bash
# Boots the iommufd tier's guest once: the cached iommufd kernel under QEMU TCG (KVM is unusable on these
# hosts), q35 + emulated VT-d, four e1000e NICs (03.0, 04.0 and 06.0 are rebound to vfio-pci, 05.0 keeps
# its own driver), the host's root visible read-only over 9p and OUT_DIR writable, then runs JOB (a host
# path, run inside the guest chrooted into the host's root) and powers off. A hung guest is killed after
# GUEST_TIMEOUT seconds (exit 124). The serial console goes to stdout and OUT_DIR/console.log.
#
# Usage: boot-guest.sh OUT_DIR JOB [NAME=VALUE...]   (NAME=VALUE pairs become the job's environment)
# Env:   VFIOVM_KERNEL (default ${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/iommufd-kernel/bzImage),
#        GUEST_TIMEOUT (300), GUEST_MEM_MB (2048), GUEST_CPUS (2)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
(( $# >= 2 )) || { echo "usage: $0 OUT_DIR JOB [NAME=VALUE...]" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd); job=$2; shift 2
kernel=${VFIOVM_KERNEL:-${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/iommufd-kernel/bzImage}
[[ -f $kernel ]] || { echo "no guest kernel at $kernel: run hack/setup.sh" >&2; exit 3; }
[[ -x /bin/busybox ]] && ldd /bin/busybox >/dev/null 2>&1 && { echo "/bin/busybox is not static: install busybox-static" >&2; exit 3; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 missing: install qemu-system-x86" >&2; exit 3; }

# PCI addresses are fixed so the job can name them: 03.0, 04.0 and 06.0 (a bystander VM's) go to vfio-pci,
# 05.0 stays on e1000e
vfio_devices="0000:00:03.0 0000:00:04.0 0000:00:06.0"
# the guest's /tmp is its own tmpfs: host paths under /tmp the job is given (JOB's dir, path values) are kept
keep="$(dirname "$job")"
for kv in "$@"; do v=${kv#*=}; [[ $v == /* && -e $v ]] && keep+=" $( [[ -d $v ]] && echo "$v" || dirname "$v")"; done
{
  echo "OUT_PATH='$out'"
  echo "KEEP_PATHS='$keep'"
  echo "VFIO_DEVICES='$vfio_devices'"
  echo "JOB='$job'"
  echo "JOB_ENV='$* VFIO_DEVICES=${vfio_devices// /,} OTHER_DEVICE=0000:00:05.0'"
} > "$out/guest.env"

# initramfs: static busybox + our /init, nothing else (everything else comes from the host over 9p)
initrd=$out/initramfs.cpio.gz
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev}
cp /bin/busybox "$root/bin/busybox"
cp "$here/init" "$root/init"; chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd"

# romfile=: the NICs carry no option ROM (QEMU's default is iPXE), so a nested VM that gets one assigned has
# no ROM for its BIOS to run under nested TCG
nics=()
for i in 3 4 5 6; do
  nics+=(-netdev "user,id=n$i,restrict=on" -device "e1000e,netdev=n$i,bus=pcie.0,addr=0x$i,romfile=")
done
# no_timer_check: on a loaded host the emulated timer can miss the kernel's IO-APIC timer check, which panics
# with interrupt remapping on ("timer doesn't work through Interrupt-remapped IO-APIC").
# thread=single: multi-threaded TCG once let a vCPU run stale code after the guest patched its own text
# (static keys): "Oops: int3" in sched_clock_cpu at boot. One TCG thread keeps self-patching coherent.
set +e
timeout --kill-after=10 "${GUEST_TIMEOUT:-300}" qemu-system-x86_64 \
  -accel tcg,thread=single -machine q35,kernel-irqchip=split -cpu max -smp "${GUEST_CPUS:-2}" -m "${GUEST_MEM_MB:-2048}" \
  -nodefaults -no-user-config -display none -no-reboot -serial stdio -monitor none \
  -device intel-iommu,intremap=on,caching-mode=on \
  "${nics[@]}" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$out,mount_tag=out,security_model=none,multidevs=remap" \
  -kernel "$kernel" -initrd "$initrd" \
  -append "console=ttyS0 intel_iommu=on iommu=pt no_timer_check panic=-1 oops=panic quiet loglevel=4 rdinit=/init" \
  < /dev/null 2>&1 | tee "$out/console.log"
rc=${PIPESTATUS[0]}
set -e
(( rc == 124 || rc == 137 )) && echo "VFIOVM-HOST guest timed out after ${GUEST_TIMEOUT:-300} s" | tee -a "$out/console.log"
exit "$rc"
