#!/usr/bin/env bash
# The demo guest payloads (e2e/guest/build.sh), cached under $VFIOVM_CACHE/guest:
#   tiny/kernel.elf                  bare-metal multiboot kernel: boots in 2-6 MiB (fits an 8 MiB memlock limit)
#   linux/vmlinuz, linux/initrd.img  the 6.12 kernel of 30-iommufd-kernel + a static busybox initramfs
# and, once per new build, a boot check of each under the QEMU of 35-qemu (tiny: -m 2M and on a memfd;
# Linux: -m 128M, TCG, ~5 s here). The local cluster's guest images are packed from these (hack/local).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
build=$here/../../e2e/guest/build.sh
bash "$build" all >/dev/null
stamp=$CACHE/guest/.checked
keys=$(cat "$CACHE/guest/tiny/.key" "$CACHE/guest/linux/.key" "${VFIOVM_QEMU_DIR:-/opt/vfiovm/qemu10}/usr/bin/qemu-system-x86_64" 2>/dev/null | sha256sum | cut -c1-16)
if [[ $(cat "$stamp" 2>/dev/null) != "$keys" ]]; then
  bash "$build" check >/dev/null
  bash "$build" check-linux >/dev/null
  echo "$keys" > "$stamp"
fi
echo "guest payloads at $CACHE/guest: tiny/kernel.elf, linux/vmlinuz, linux/initrd.img"
