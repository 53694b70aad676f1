#!/usr/bin/env bash
# The demo guest images, OCI, from scratch (no shell, no libraries: only boot files), packed offline with
# umoci from the payloads of e2e/guest/build.sh, cached per content under $VFIOVM_CACHE/local/images:
#   docker.io/vfiovm/guest-tiny:<project version>   /boot/kernel.elf  (bare-metal multiboot; boots in 2-6 MiB:
#                                                     what the local examples use, as this machine's memlock
#                                                     hard limit of 8 MiB is too little for Linux)
#   docker.io/vfiovm/guest-demo:<project version>   /boot/vmlinuz + /boot/initrd.img (Linux 6.12 + busybox
#                                                     initramfs; built only when setup.d/30's kernel is there)
# Prints one "IMAGE TAR" line per image; import with  ctr -n k8s.io images import --base-name IMAGE-REPO TAR
# Usage: guest-images.sh
source "$(dirname "$0")/lib.sh"
GUEST_OUT=$VFIOVM_CACHE/guest
TAG=${PROJECT_VERSION:-0.1.0-SNAPSHOT}
mkdir -p "$IMAGES"

# pack NAME FILE... : an image holding FILEs under /boot; echoes "IMAGE TAR"
pack() {
  local name=$1; shift
  local image=docker.io/vfiovm/$name:$TAG sum tar f
  sum=$( { for f in "$@"; do basename "$f"; sha256sum < "$f"; done; declare -f pack; } | sha256sum | cut -c1-16)
  tar=$IMAGES/$name-$TAG-$sum.tar
  if [[ ! -f $tar ]]; then
    local t0=$SECONDS w; w=$(mktemp -d)
    mkdir -p "$w/add/boot"
    for f in "$@"; do install -m 0644 "$f" "$w/add/boot/$(basename "$f")"; done
    umoci init --layout "$w/oci"
    umoci new --image "$w/oci:$TAG"
    umoci insert --image "$w/oci:$TAG" --history.comment "vfiovm demo guest: $(cd "$w/add" && echo boot/*)" "$w/add/boot" /boot
    umoci config --image "$w/oci:$TAG" --config.label "org.opencontainers.image.title=vfiovm $name" \
      --config.label "org.opencontainers.image.version=$TAG"
    umoci gc --layout "$w/oci"
    rm -f "$IMAGES/$name-$TAG-"*.tar
    tar -C "$w/oci" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$w"
    info "$image at $tar ($(du -h "$tar" | cut -f1); $((SECONDS - t0)) s)"
  fi
  echo "$image $tar"
}

bash "$REPO_DIR/e2e/guest/build.sh" tiny >/dev/null
pack guest-tiny "$GUEST_OUT/tiny/kernel.elf"
if [[ -f ${VFIOVM_GUEST_KERNEL:-$VFIOVM_CACHE/iommufd-kernel/bzImage} ]]; then
  bash "$REPO_DIR/e2e/guest/build.sh" linux >/dev/null
  pack guest-demo "$GUEST_OUT/linux/vmlinuz" "$GUEST_OUT/linux/initrd.img"
else
  info "guest-demo (Linux) skipped: no guest kernel yet (hack/setup.sh 30-iommufd-kernel)"
fi
