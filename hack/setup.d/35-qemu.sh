#!/usr/bin/env bash
# QEMU 10.0.2 from Debian bookworm-backports, for the VM process (the node agent's VMM needs QEMU >= 9.0:
# `-object iommufd,fd=N` and `-device vfio-pci,fd=M`; bookworm's own 7.2 has neither). It installs on bookworm
# with no libc change (trixie's 10.0.x needs libc 2.38 and t64 libraries: not an option).
#
# The three packages (qemu-system-x86, qemu-system-common, qemu-system-data) are downloaded through a private
# apt directory (hack/lib/private-apt.sh: the machine's own mirror, its sources left alone) and unpacked
# into /opt/vfiovm/qemu10 (VFIOVM_QEMU_DIR), without installing them: outside $HOME because QEMU runs as each
# VM's own host UID, which must be able to read it (a home directory is 0700). Their shared libraries are
# bookworm's, so bookworm's qemu-system-x86 (7.2) and seabios are installed for those. The tests run it as
#   /opt/vfiovm/qemu10/usr/bin/qemu-system-x86_64 -L /opt/vfiovm/qemu10/usr/share/qemu -L /usr/share/seabios ...
# (the node agent: VFIOVM_QEMU and VFIOVM_QEMU_DATA, set by the poms).
# Idempotent: a cached tree whose binary says 10.0.2 and whose libraries resolve is kept.
#
# Usage: 35-qemu.sh   (output: ${VFIOVM_QEMU_DIR:-/opt/vfiovm/qemu10})
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
DIR=${VFIOVM_QEMU_DIR:-/opt/vfiovm/qemu10}
V=1:10.0.2+ds-2+deb13u1~bpo12+1
WANT=10.0.2
QEMU=$DIR/usr/bin/qemu-system-x86_64

fail() { echo "35-qemu: $*" >&2; exit 1; }

missing=()
for p in qemu-system-x86 seabios; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "could not install ${missing[*]} (bookworm's QEMU 7.2 provides the libraries QEMU 10 links against)"
fi

# check QEMU: prints nothing and fails unless the binary runs (all libraries found) and says $WANT
check() {
  local q=$1 v
  [[ -x $q ]] || return 1
  if ldd "$q" | grep -q 'not found'; then
    echo "35-qemu: $q misses libraries:" >&2; ldd "$q" | grep 'not found' >&2; return 1
  fi
  v=$("$q" --version 2>/dev/null) || return 1   # no `| head -1`: under pipefail a SIGPIPE would fail the check
  v=${v%%$'\n'*}
  [[ $v == "QEMU emulator version $WANT "* ]]
}

if check "$QEMU"; then
  echo "QEMU already at $DIR: $("$QEMU" --version | head -1)"; exit 0
fi

echo "fetching qemu-system-x86 $V (bookworm-backports) into $DIR"
new=$DIR.new
rm -rf "$new"
mkdir -p "$(dirname "$DIR")" "$new/debs"
# keep the private apt lists next to the tree (re-used on a later run)
[[ -d $DIR/apt ]] && cp -a "$DIR/apt" "$new/apt"
bash "$here/../lib/private-apt.sh" "$new/apt" bookworm bookworm-backports \
  || fail "apt-get update of bookworm-backports failed (private apt dir $new/apt)"
# shellcheck disable=SC2046 # apt.opts is a list of options
(cd "$new/debs" && apt-get $(cat "$new/apt/apt.opts") download -q \
    "qemu-system-x86=$V" "qemu-system-common=$V" "qemu-system-data=$V") \
  || fail "could not download QEMU $V from bookworm-backports (is the version still in the archive? apt-cache $(cat "$new/apt/apt.opts") policy qemu-system-x86)"
for d in "$new"/debs/*.deb; do dpkg-deb -x "$d" "$new"; done
check "$new/usr/bin/qemu-system-x86_64" \
  || fail "the unpacked QEMU does not run or is not $WANT: $("$new/usr/bin/qemu-system-x86_64" --version 2>&1 | head -1)"
chmod -R go+rX "$new" && chmod go+rx "$(dirname "$DIR")"
rm -rf "$DIR"
mv "$new" "$DIR"
echo "QEMU at $DIR: $("$QEMU" --version | head -1)"
