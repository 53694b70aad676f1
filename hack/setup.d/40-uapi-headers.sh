#!/usr/bin/env bash
# The kernel uAPI headers the node agent's JNA facade is checked against (struct sizes, offsets, ioctl
# numbers): iommufd.h, vfio.h and io_uring.h of Linux 6.12, the kernel the iommufd tier boots. Taken from
# Debian's linux-source-6.12 (bookworm-security; the same package 30-iommufd-kernel.sh builds from), because
# bookworm's linux-libc-dev (6.1) predates the VFIO cdev / iommufd structs. Only the three headers are
# extracted, into the cache; the system's headers are left alone.
#
# Usage: 40-uapi-headers.sh   (output: ${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/uapi-headers-6.12/linux/*.h)
set -euo pipefail
OUT=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/uapi-headers-6.12
hdrs=(iommufd.h vfio.h io_uring.h)
have=1
for h in "${hdrs[@]}"; do [[ -s $OUT/linux/$h ]] || have=0; done
if (( have )); then echo "uAPI headers already at $OUT"; exit 0; fi
if ! dpkg -s linux-source-6.12 >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-source-6.12 >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
members=()
for h in "${hdrs[@]}"; do members+=("linux-source-6.12/include/uapi/linux/$h"); done
tar xJf /usr/src/linux-source-6.12.tar.xz -C "$tmp" "${members[@]}"
mkdir -p "$OUT/linux"
# what the kernel's scripts/headers_install.sh does to a uAPI header (drop __user & co., _UAPI guards)
for h in "${hdrs[@]}"; do
  sed -E -e '
    s/([[:space:](])(__user|__force|__iomem)[[:space:]]/\1/g
    s/__attribute_const__([[:space:]]|$)/\1/g
    s@^#include <linux/compiler(|_types).h>@@
    s/(^|[^a-zA-Z0-9])__packed([^a-zA-Z0-9_]|$)/\1__attribute__((packed))\2/g
    s/(^|[[:space:](])(inline|asm|volatile)([[:space:](]|$)/\1__\2__\3/g
    s@#(ifndef|define|endif[[:space:]]*/[*])[[:space:]]*_UAPI@#\1 @
  ' "$tmp/linux-source-6.12/include/uapi/linux/$h" > "$OUT/linux/$h.tmp"
  mv "$OUT/linux/$h.tmp" "$OUT/linux/$h"
done
echo "uAPI headers at $OUT"
