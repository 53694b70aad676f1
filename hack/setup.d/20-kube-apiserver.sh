#!/usr/bin/env bash
# Builds a real kube-apiserver (and kubectl) v1.20.2 from Debian's own `kubernetes` source package,
# with Go 1.15 from Debian bullseye, and lays the binaries out the way io.fabric8:kube-api-test
# looks for them offline:  $KUBE_API_TEST_DIR/k8s/1.20.2-linux-amd64/{kube-apiserver,etcd,kubectl}
#
# Proven on this kind of machine: ~6 min of build on 2 cores, then cached.
# Why these versions: the only Kubernetes source with a vendor/ tree in Debian is bookworm's 1.20.2;
# building it with Go >= 1.18 compiles, but the server segfaults in vendored reflect2 1.0.1
# (json-iterator map encoding), so Go 1.15 (bullseye's golang-1.15-go) is required.
#
# Usage: 20-kube-apiserver.sh   (DEST: ${KUBE_API_TEST_DIR:-$VFIOVM_CACHE/kubeapitest})
set -euo pipefail
DEST=${KUBE_API_TEST_DIR:-${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/kubeapitest}
OUT=$DEST/k8s/1.20.2-linux-amd64
if [[ -x $OUT/kube-apiserver && -x $OUT/kubectl && -e $OUT/etcd ]]; then
  echo "kube-apiserver already at $OUT"; exit 0
fi
WORK=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/k8s-src
mkdir -p "$WORK" "$OUT"

# Debian sources: deb-src for bookworm (the kubernetes source) and bullseye binaries (Go 1.15), pinned low,
# from the mirror the machine's apt configuration already uses (no host name in the repository)
mirror=$(bash "$(cd "$(dirname "$0")" && pwd)/../lib/private-apt.sh" --mirror)
cat > /etc/apt/sources.list.d/k8s-build.sources <<EOF
Types: deb-src
URIs: $mirror
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $mirror
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat > /etc/apt/preferences.d/k8s-build-bullseye <<'EOF'
Package: *
Pin: release n=bullseye
Pin-Priority: 100
EOF
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev rsync jq etcd-server >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bullseye golang-1.15-go >/dev/null

cd "$WORK"
if [[ ! -d kubernetes-1.20.2 ]]; then
  apt-get source --download-only kubernetes=1.20.5+really1.20.2-1.1+deb12u1
  tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
fi
cd kubernetes-1.20.2
mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
export GOPATH=$PWD/.go CGO_ENABLED=0 PATH=/usr/lib/go-1.15/bin:$PATH HOME=${HOME}
make WHAT="cmd/kube-apiserver cmd/kubectl"
install -m 0755 _output/bin/kube-apiserver _output/bin/kubectl "$OUT/"
ln -sfn /usr/bin/etcd "$OUT/etcd"
"$OUT/kube-apiserver" --version
echo "binaries at $OUT"
