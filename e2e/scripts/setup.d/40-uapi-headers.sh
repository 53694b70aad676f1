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
for h in "${hdrs[@]}"; do install -m 0644 "$tmp/linux-source-6.12/include/uapi/linux/$h" "$OUT/linux/$h"; done
echo "uAPI headers at $OUT"
