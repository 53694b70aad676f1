#!/usr/bin/env bash
# Builds (once, cached under $VFIOVM_CACHE/local) everything the local cluster needs:
#   packages   containerd, runc, CNI plugins, etcd, umoci, debootstrap, iptables (Debian)
#   binaries   kubelet, kube-scheduler, kube-controller-manager, kube-proxy, kube-apiserver, kubectl
#              from Debian bookworm's kubernetes 1.20.2 source with Go 1.15 (see setup.d/20-kube-apiserver.sh)
#   pause      k8s.gcr.io/pause:3.4 from the source's build/pause/linux/pause.c, static, as an OCI image
#   busybox    a busybox-static image for the smoke pod
#   jre-base   a Debian bookworm minbase rootfs with openjdk-17-jre-headless, as an OCI image
# Usage: build.sh [packages|binaries|pause|jre-base|all]   (default all)
source "$(dirname "$0")/lib.sh"

build_packages() {
  local missing=()
  for p in containerd runc containernetworking-plugins etcd-server umoci debootstrap iptables conntrack openssl jq busybox-static gcc libc6-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    step "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build_binaries() {
  local want=(kubelet kube-scheduler kube-controller-manager kube-proxy kube-apiserver kubectl) todo=() b
  mkdir -p "$BIN"
  for b in "${want[@]}"; do [[ -x $BIN/$b ]] || todo+=("$b"); done
  (( ${#todo[@]} )) || return 0
  step "building ${todo[*]} (Kubernetes $K8S_VERSION, Go 1.15; ~15-25 min on 2 busy cores)"
  if [[ ! -d $K8S_SRC || ! -x /usr/lib/go-1.15/bin/go ]]; then
    # The apiserver fragment sets up the Debian sources, Go 1.15 and unpacks the source tree.
    nice -n 19 bash "$REPO_DIR/e2e/scripts/setup.d/20-kube-apiserver.sh"
    for d in "$VFIOVM_CACHE/k8s-src/kubernetes-$K8S_VERSION" "$HOME/.cache/k8s-src/kubernetes-$K8S_VERSION"; do
      if [[ -d $d ]]; then K8S_SRC=$d; break; fi
    done
  fi
  local what=() out=$K8S_SRC/_output/bin
  for b in "${todo[@]}"; do [[ -x $out/$b ]] || what+=("cmd/$b"); done
  if (( ${#what[@]} )); then
    (
      cd "$K8S_SRC"
      mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
      export GOPATH=$PWD/.go CGO_ENABLED=0 PATH=/usr/lib/go-1.15/bin:$PATH
      nice -n 19 make WHAT="${what[*]}"
    )
  fi
  for b in "${todo[@]}"; do install -m 0755 "$out/$b" "$BIN/$b"; done
  "$BIN/kubelet" --version
}

# oci_layout_tar DIR TAR: packs an OCI image layout directory into a tar `ctr images import` reads.
oci_layout_tar() { tar -C "$1" -cf "$2.tmp" . && mv "$2.tmp" "$2"; }

build_pause() {
  local tar=$IMAGES/pause-3.4.tar
  [[ -f $tar ]] && return 0
  step "building the pause image from $K8S_SRC/build/pause"
  local w; w=$(mktemp -d); mkdir -p "$IMAGES"
  gcc -Os -Wall -Werror -static -DVERSION=v3.4-vfiovm-local -o "$w/pause" "$K8S_SRC/build/pause/linux/pause.c"
  umoci init --layout "$w/oci"
  umoci new --image "$w/oci:3.4"
  umoci unpack --image "$w/oci:3.4" "$w/bundle"
  install -m 0755 "$w/pause" "$w/bundle/rootfs/pause"
  umoci repack --image "$w/oci:3.4" "$w/bundle"
  umoci config --image "$w/oci:3.4" --config.entrypoint /pause --config.user 65535:65535
  oci_layout_tar "$w/oci" "$tar"
  rm -rf "$w"
  info "pause image at $tar"
}

# A busybox image for the smoke pod (Debian's busybox-static; no registry needed).
build_busybox() {
  local tar=$IMAGES/busybox.tar
  [[ -f $tar ]] && return 0
  step "building the busybox smoke-test image"
  [[ -x /bin/busybox ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  local w; w=$(mktemp -d)
  umoci init --layout "$w/oci"
  umoci new --image "$w/oci:1"
  umoci unpack --image "$w/oci:1" "$w/bundle"
  mkdir -p "$w/bundle/rootfs/bin"
  cp /bin/busybox "$w/bundle/rootfs/bin/busybox"
  chroot "$w/bundle/rootfs" /bin/busybox --install -s /bin
  umoci repack --image "$w/oci:1" "$w/bundle"
  umoci config --image "$w/oci:1" --config.cmd /bin/sh
  oci_layout_tar "$w/oci" "$tar"
  rm -rf "$w"
}

build_jre_base() {
  local layout=$IMAGES/jre17-base
  [[ -f $layout/.done ]] && return 0
  step "building the JRE 17 base image (debootstrap bookworm minbase + openjdk-17-jre-headless; ~5-10 min)"
  mkdir -p "$IMAGES"; local w; w=$(mktemp -d -p "$LOCAL_CACHE")
  nice -n 19 debootstrap --variant=minbase --include=openjdk-17-jre-headless,ca-certificates \
    bookworm "$w/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$w/debootstrap.log" 2>&1 \
    || { tail -20 "$w/debootstrap.log"; die "debootstrap failed (log $w/debootstrap.log)"; }
  # Trim what an image does not need.
  chroot "$w/rootfs" apt-get clean
  rm -rf "$w/rootfs"/var/lib/apt/lists/* "$w/rootfs"/usr/share/doc/* "$w/rootfs"/usr/share/man/* \
    "$w/rootfs"/var/cache/debconf/*-old "$w/rootfs"/var/log/*
  # The operator runs as 65532 (the chart's runAsUser); give it a name and home.
  echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >> "$w/rootfs/etc/passwd"
  echo 'nonroot:x:65532:' >> "$w/rootfs/etc/group"
  install -d -o 65532 -g 65532 "$w/rootfs/home/nonroot"
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:base"
  umoci unpack --image "$layout:base" "$w/bundle"
  rm -rf "$w/bundle/rootfs" && mv "$w/rootfs" "$w/bundle/rootfs"
  nice -n 19 umoci repack --image "$layout:base" "$w/bundle"
  umoci config --image "$layout:base" --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env LANG=C.UTF-8
  rm -rf "$w"
  touch "$layout/.done"
  info "JRE base image at $layout ($(du -sh "$layout" | cut -f1))"
}

case ${1:-all} in
  packages) build_packages ;;
  binaries) build_packages; build_binaries ;;
  pause) build_packages; build_pause ;;
  jre-base) build_packages; build_jre_base ;;
  all) build_packages; build_binaries; build_pause; build_busybox; build_jre_base ;;
  *) die "usage: $0 [packages|binaries|pause|jre-base|all]" ;;
esac
