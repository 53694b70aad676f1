#!/usr/bin/env bash
# Builds (once, cached under $VFIOVM_CACHE/local) everything the local cluster needs:
#   packages   containerd, runc, CNI plugins, etcd, umoci, debootstrap, iptables (Debian)
#   binaries   kubelet, kube-scheduler, kube-controller-manager, kube-proxy, kube-apiserver, kubectl
#              from Debian bookworm's kubernetes 1.20.2 source with Go 1.15 (see setup.d/20-kube-apiserver.sh)
#   pause      k8s.gcr.io/pause:3.4 from the source's build/pause/linux/pause.c, static, as an OCI image
#   busybox    a busybox-static image for the smoke pod
#   jre-base   a Debian bookworm minbase rootfs with openjdk-17-jre-headless, as an OCI image
#   node-base  jre-base + one layer: QEMU 10.0.2 (qemu-system-x86 from bookworm-backports, installed with apt
#              inside the image's root) and busybox-static as /usr/local/bin/vfiovm-busybox; the base of the
#              operator image, which is also the node pods' image
#   guests     the demo guest images docker.io/vfiovm/guest-tiny and guest-demo (hack/local/guest-images.sh)
# Usage: build.sh [packages|binaries|pause|jre-base|node-base|guests|all]   (default all)
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
    nice -n 19 bash "$REPO_DIR/hack/setup.d/20-kube-apiserver.sh"
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
  # the machine's own Debian mirror (its apt configuration; DEBIAN_MIRROR or VFIOVM_DEBIAN_MIRROR override it)
  local mirror=${DEBIAN_MIRROR:-}
  [[ -n $mirror ]] || mirror=$(bash "$REPO_DIR/hack/lib/private-apt.sh" --mirror) || die "no Debian mirror"
  mkdir -p "$IMAGES"; local w; w=$(mktemp -d -p "$LOCAL_CACHE")
  nice -n 19 debootstrap --variant=minbase --include=openjdk-17-jre-headless,ca-certificates \
    bookworm "$w/rootfs" "$mirror" > "$w/debootstrap.log" 2>&1 \
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

# QEMU of the node image: the same version setup.d/35-qemu.sh unpacks for the tests
QEMU_DEB_VERSION=1:10.0.2+ds-2+deb13u1~bpo12+1

build_node_base() {
  build_jre_base
  local layout=$IMAGES/node-base key
  # content only (no path: the same sources in another checkout or cache directory hit the same cache)
  key=$( { echo "$QEMU_DEB_VERSION"; sha256sum < "$IMAGES/jre17-base/index.json"
           sha256sum < "$REPO_DIR/e2e/node-image/vfiovm-busybox.c"; declare -f build_node_base; } | sha256sum | cut -c1-16)
  [[ -f $layout/.done && $(cat "$layout/.done") == "$key" ]] && return 0
  step "building the node base image (JRE base + QEMU $QEMU_DEB_VERSION from bookworm-backports + busybox-static; ~2-5 min)"
  local t0=$SECONDS w; w=$(mktemp -d -p "$LOCAL_CACHE")
  cp -a "$IMAGES/jre17-base" "$w/oci"; rm -f "$w/oci/.done"
  umoci unpack --image "$w/oci:base" "$w/bundle"
  local r=$w/bundle/rootfs mirror
  # the image's own mirror (what debootstrap wrote), plus its backports suite: a source inside the image root
  mirror=$(sed -nE 's/^deb[[:space:]]+([^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\1/p' "$r/etc/apt/sources.list" | head -1)
  [[ -n $mirror ]] || die "no bookworm source in the image's /etc/apt/sources.list"
  echo "deb $mirror bookworm-backports main" > "$r/etc/apt/sources.list.d/bookworm-backports.list"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  mount -t proc proc "$r/proc"
  local rc=0
  {
    chroot "$r" apt-get update -qq &&
    chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "qemu-system-x86=$QEMU_DEB_VERSION" "qemu-system-common=$QEMU_DEB_VERSION" "qemu-system-data=$QEMU_DEB_VERSION" \
      seabios/bookworm-backports busybox-static bubblewrap libseccomp2
  } > "$w/apt.log" 2>&1 || rc=$?
  umount "$r/proc"
  # (QEMU 10 needs seabios > 1.16.3 from backports too; its libraries are bookworm's)
  (( rc == 0 )) || { tail -20 "$w/apt.log" >&2; cp "$w/apt.log" "$LOCAL_CACHE/node-base-apt.log"; rm -rf "$w"
                     die "apt-get in the node image failed (log $LOCAL_CACHE/node-base-apt.log)"; }
  # node pods copy it into an emptyDir, so a tenant's boot-file image needs no shell of its own; a launcher
  # that carries the image's static busybox (a plain copy under this name says "applet not found")
  gcc -static -Os -Wall -Werror -DBUSYBOX="\"$r/bin/busybox\"" -o "$r/usr/local/bin/vfiovm-busybox" \
    "$REPO_DIR/e2e/node-image/vfiovm-busybox.c"
  chroot "$r" /usr/local/bin/vfiovm-busybox true || die "vfiovm-busybox does not run in the node image"
  local v; v=$(chroot "$r" qemu-system-x86_64 --version | head -1)
  [[ $v == "QEMU emulator version 10.0.2 "* ]] || die "QEMU in the node image says '$v', not 10.0.2"
  chroot "$r" apt-get clean
  : > "$r/etc/resolv.conf"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/var/log/* "$r"/var/cache/debconf/*-old
  nice -n 19 umoci repack --image "$w/oci:base" --history.comment "qemu-system-x86 $QEMU_DEB_VERSION (bookworm-backports), vfiovm-busybox" "$w/bundle"
  umoci config --image "$w/oci:base" --config.label "dev.vfiovm.qemu=$QEMU_DEB_VERSION"
  umoci gc --layout "$w/oci"
  rm -rf "$layout"; mv "$w/oci" "$layout"; rm -rf "$w"
  echo "$key" > "$layout/.done"
  info "node base image at $layout ($(du -sh "$layout" | cut -f1); $v; $((SECONDS - t0)) s)"
}

case ${1:-all} in
  packages) build_packages ;;
  binaries) build_packages; build_binaries ;;
  pause) build_packages; build_pause ;;
  jre-base) build_packages; build_jre_base ;;
  node-base) build_packages; build_node_base ;;
  guests) build_packages; "$LOCAL_DIR/guest-images.sh" >/dev/null ;;
  all) build_packages; build_binaries; build_pause; build_busybox; build_jre_base; build_node_base
       "$LOCAL_DIR/guest-images.sh" >/dev/null ;;
  *) die "usage: $0 [packages|binaries|pause|jre-base|node-base|guests|all]" ;;
esac
