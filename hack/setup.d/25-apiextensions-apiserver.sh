#!/usr/bin/env bash
# Builds upstream apiextensions-apiserver v1.36.4 -- the part of kube-apiserver that serves CRDs and custom
# resources, with real CEL validation (x-kubernetes-validations, transition rules on oldSelf), list-type map
# keys, server-side apply, the status subresource and watch -- offline from Debian sid's Go source packages
# (golang-k8s-* 0.36.4 and their dependencies: 82 pins in 25-apiextensions-apiserver.pins) with sid's Go 1.26.10, plus etcd
# 3.5.30 from sid. It is the current-apiserver tier for the CRD (operator's *CrdIT tests): a full current
# kube-apiserver cannot be had here (Debian strips it from its kubernetes source; no binary in a registry).
#
# Nothing is installed into the system: the .debs are downloaded through a private apt directory
# (lib/private-apt.sh: the machine's own mirror, its sources left alone) and unpacked.
# Output (VFIOVM_APIEXT_DIR, default $VFIOVM_CACHE/apiextensions-apiserver):
#   apiextensions-apiserver   v1.36.4, stripped (~78 MB)
#   etcd                      3.5.30
# Idempotent: a cached pair whose versions match is kept; the build tree is removed after a good build.
#
# What the server does NOT serve: the core API (no namespaces, pods, RBAC, leases, events), no discovery root
# (/apis is 404, so `kubectl get <crd>` fails; raw paths work); /readyz stays failing on informer sync (poll
# /livez). Authentication is client certificates only (system:masters). The tests start it as
# dev.vfiovm.testing.ApiExtensionsServerFixture shows.
#
# Usage: 25-apiextensions-apiserver.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
OUT=${VFIOVM_APIEXT_DIR:-$CACHE/apiextensions-apiserver}
WANT=v1.36.4
ETCD_WANT=3.5.30
GO_V=1.26.10-1
ETCD_V=3.5.30-2

fail() { echo "25-apiextensions-apiserver: $*" >&2; exit 1; }
log() { echo "25-apiextensions-apiserver: $*"; }

# the server has no --version flag: a good build leaves a stamp naming what it built, and its version string
# (set with -X at link time) must be in the binary
STAMP="apiextensions-apiserver $WANT, etcd $ETCD_WANT"
have() {
  [[ -x $OUT/apiextensions-apiserver && -x $OUT/etcd && -r $OUT/VERSION ]] || return 1
  [[ $(cat "$OUT/VERSION") == "$STAMP" ]] || return 1
  grep -qaF "$WANT" "$OUT/apiextensions-apiserver" || return 1
  # the output first, then the match: `etcd --version | grep -q` under pipefail fails whenever grep exits
  # before etcd's last line is written (SIGPIPE; 28 of 300 runs on a loaded machine), which threw the cache away
  local v; v=$("$OUT/etcd" --version 2>/dev/null) || return 1
  [[ $v == *"etcd Version: $ETCD_WANT"* ]]
}
if have; then
  log "already at $OUT ($STAMP)"; exit 0
fi
rm -f "$OUT/VERSION"

# The Go source packages (golang-k8s-* 0.36.4 and their dependencies) that `go build` in GOPATH mode needs:
# one PKG=VERSION a line in the pin list next to this script.
PINS=$here/25-apiextensions-apiserver.pins
[[ -r $PINS ]] || fail "missing pin list $PINS"
mapfile -t PKGS < <(grep -vE '^\s*(#|$)' "$PINS")
(( ${#PKGS[@]} == 82 )) || fail "pin list $PINS has ${#PKGS[@]} entries, expected 82"

W=$OUT/work
mkdir -p "$W/debs" "$W/root"
t0=$(date +%s)
log "[1/4] private apt directory for sid (the machine's mirror)"
bash "$here/../lib/private-apt.sh" "$W/apt" sid || fail "apt-get update of sid failed (private apt dir $W/apt)"

log "[2/4] downloading Go $GO_V, etcd $ETCD_V and ${#PKGS[@]} Go source packages"
# shellcheck disable=SC2046 # apt.opts is a list of options
(cd "$W/debs" && apt-get $(cat "$W/apt/apt.opts") download -qq \
    "golang-1.26-go=$GO_V" "golang-1.26-src=$GO_V" "etcd-server=$ETCD_V" "${PKGS[@]}") \
  || fail "download failed: sid moves; a pin no longer in the mirror is named above (apt-cache $(cat "$W/apt/apt.opts") policy PKG)"
t1=$(date +%s); log "      downloaded in $(( t1 - t0 )) s"

log "[3/4] unpacking $(ls "$W"/debs/*.deb | wc -l) packages"
rm -rf "$W/root"; mkdir -p "$W/root"
for d in "$W"/debs/*.deb; do dpkg-deb -x "$d" "$W/root"; done
t2=$(date +%s); log "      unpacked in $(( t2 - t1 )) s"

log "[4/4] go build k8s.io/apiextensions-apiserver (several minutes on 2 cores)"
export GOROOT=$W/root/usr/lib/go-1.26 PATH=$W/root/usr/lib/go-1.26/bin:$PATH GOCACHE=$W/gocache GOTOOLCHAIN=local \
  GOPROXY=off GOSUMDB=off GOFLAGS= GO111MODULE=off GOPATH=$W/root/usr/share/gocode CGO_ENABLED=0
V=k8s.io/component-base/version
go build -trimpath \
  -ldflags "-s -w -X $V.gitVersion=$WANT -X $V.gitMajor=1 -X $V.gitMinor=36 -X $V.gitTreeState=clean" \
  -o "$OUT/apiextensions-apiserver.new" k8s.io/apiextensions-apiserver || fail "go build failed"
mv "$OUT/apiextensions-apiserver.new" "$OUT/apiextensions-apiserver"
install -m 0755 "$W/root/usr/bin/etcd" "$OUT/etcd"
t3=$(date +%s); log "      built in $(( t3 - t2 )) s"

echo "$STAMP" > "$OUT/VERSION"
have || { rm -f "$OUT/VERSION"; fail "the built binaries are not $STAMP"; }
rm -rf "$W"
log "apiextensions-apiserver $WANT and etcd $ETCD_WANT at $OUT (cold: $(( t3 - t0 )) s)"
