#!/usr/bin/env bash
# vfiovm's demo guest payloads, cached under $VFIOVM_CACHE/guest (rebuilt only when their inputs change):
#   tiny/kernel.elf   a bare-metal multiboot (v1) kernel (tiny/kernel.S, GNU as, 32-bit): QEMU's `-kernel`
#                     boots it in 2-6 MiB of guest RAM, so it fits this machine's 8 MiB memlock hard limit,
#                     where Linux does not. Prints "vfiovm-guest: booted (bare-metal multiboot payload) ..." on
#                     COM1, then a heartbeat every 5 s (idle in `hlt` between PIT ticks).
#   linux/vmlinuz     the 6.12 kernel of setup.d/30-iommufd-kernel.sh ($VFIOVM_CACHE/iommufd-kernel/bzImage)
#   linux/initrd.img  a static busybox initramfs with linux/init: banner, PCI devices, heartbeat
# Usage: build.sh [tiny|linux|all|check|check-linux]   (default all; prints the output directory)
#   check        boots tiny/kernel.elf under QEMU (-m 2M, then on RAM from an inherited memfd) and waits for
#                its banner; check-linux boots the Linux payload (TCG, -m 128M) the same way.
#   QEMU=/path/qemu-system-x86_64 QEMU_ARGS="-L ..." choose the QEMU (default /opt/vfiovm/qemu10)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
OUT=$CACHE/guest
KERNEL=${VFIOVM_GUEST_KERNEL:-$CACHE/iommufd-kernel/bzImage}
die() { echo "guest/build.sh: $*" >&2; exit 1; }

need() { # need CMD PACKAGE...
  command -v "$1" >/dev/null && return 0
  shift
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "needs $* (apt-get install failed)"
}

build_tiny() {
  local d=$OUT/tiny key
  key=$(cat "$here/tiny/kernel.S" "$here/tiny/link.ld" <(declare -f build_tiny) | sha256sum | cut -c1-16)
  [[ -f $d/kernel.elf && $(cat "$d/.key" 2>/dev/null) == "$key" ]] && return 0
  need gcc gcc; need ld binutils
  local w; w=$(mktemp -d); mkdir -p "$d"
  gcc -m32 -c -o "$w/kernel.o" "$here/tiny/kernel.S"
  ld -m elf_i386 -z max-page-size=0x1000 --no-warn-rwx-segments -T "$here/tiny/link.ld" -o "$w/kernel.elf" "$w/kernel.o"
  mv "$w/kernel.elf" "$d/kernel.elf"; rm -rf "$w"
  echo "$key" > "$d/.key"
  echo "tiny guest at $d/kernel.elf ($(stat -c %s "$d/kernel.elf") bytes)" >&2
}

build_linux() {
  local d=$OUT/linux key
  [[ -f $KERNEL ]] || die "no guest kernel at $KERNEL: build it first (e2e/scripts/setup.sh 30-iommufd-kernel)"
  if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null \
      || die "needs busybox-static (apt-get install failed)"
  fi
  ldd /bin/busybox >/dev/null 2>&1 && die "/bin/busybox is not static: install busybox-static"
  need cpio cpio
  key=$(cat "$here/linux/init" /bin/busybox "$KERNEL" <(declare -f build_linux) | sha256sum | cut -c1-16)
  [[ -f $d/vmlinuz && -f $d/initrd.img && $(cat "$d/.key" 2>/dev/null) == "$key" ]] && return 0
  local w; w=$(mktemp -d); mkdir -p "$d"
  mkdir -p "$w/root"/{bin,dev,proc,sys,tmp}
  cp /bin/busybox "$w/root/bin/busybox"
  install -m 0755 "$here/linux/init" "$w/root/init"
  find "$w/root" -exec touch -h -d @0 {} +   # same inputs, same initrd
  (cd "$w/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible -R 0:0 | gzip -9n) > "$w/initrd.img"
  cp "$KERNEL" "$w/vmlinuz"
  mv "$w/vmlinuz" "$w/initrd.img" "$d/"; rm -rf "$w"
  echo "$key" > "$d/.key"
  echo "Linux guest at $d (vmlinuz $(stat -c %s "$d/vmlinuz") bytes, initrd.img $(stat -c %s "$d/initrd.img") bytes)" >&2
}

# boot_check SECONDS WHAT QEMU-ARGS...: runs QEMU until its serial console shows the banner
boot_check() {
  local timeout=$1 what=$2; shift 2
  local q=${QEMU:-${VFIOVM_QEMU_DIR:-/opt/vfiovm/qemu10}/usr/bin/qemu-system-x86_64} qargs log
  # shellcheck disable=SC2206 # QEMU_ARGS is a list of words
  qargs=(${QEMU_ARGS:--L ${VFIOVM_QEMU_DIR:-/opt/vfiovm/qemu10}/usr/share/qemu -L /usr/share/seabios})
  [[ -x $q ]] || die "no QEMU at $q (hack/setup.sh 35-qemu)"
  log=$(mktemp)
  local t0=$SECONDS
  "$q" "${qargs[@]}" -accel tcg -nodefaults -no-user-config -display none -serial "file:$log" "$@" 2>"$log.err" &
  local pid=$! ok=0
  while (( SECONDS - t0 < timeout )); do
    if grep -q '^vfiovm-guest: booted' "$log"; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  if (( ok )); then
    echo "boot check ($what): $(grep -m1 '^vfiovm-guest: booted' "$log" | tr -d '\r') [$((SECONDS - t0)) s]" >&2
    rm -f "$log" "$log.err"
  else
    echo "--- console:" >&2; cat "$log" >&2; echo "--- QEMU:" >&2; cat "$log.err" >&2; rm -f "$log" "$log.err"
    die "boot check ($what): no 'vfiovm-guest: booted' line within ${timeout}s"
  fi
}

check_tiny() {
  build_tiny
  local k=$OUT/tiny/kernel.elf
  boot_check 30 "tiny, -m 2M" -M q35 -m 2M -kernel "$k" -append check
  # guest RAM from an inherited memfd, the way the VM-side launcher hands it to QEMU (fd 3 here)
  command -v python3 >/dev/null || { echo "boot check (tiny, memfd RAM): skipped, no python3" >&2; return 0; }
  python3 - "$k" <<'PY' || die "boot check (tiny, memfd RAM) failed"
import os, subprocess, sys, time
q = os.environ.get("QEMU") or os.environ.get("VFIOVM_QEMU_DIR", "/opt/vfiovm/qemu10") + "/usr/bin/qemu-system-x86_64"
qargs = (os.environ.get("QEMU_ARGS") or "-L %s -L /usr/share/seabios" % (os.path.dirname(os.path.dirname(q)) + "/share/qemu")).split()
fd = os.memfd_create("guest-ram", 0)
os.ftruncate(fd, 4 << 20)
r, w = os.pipe()
p = subprocess.Popen([q, *qargs, "-accel", "tcg", "-M", "q35", "-m", "4M", "-nodefaults", "-no-user-config",
                      "-display", "none", "-serial", "stdio", "-kernel", sys.argv[1],
                      "-object", "memory-backend-file,id=ram,size=4M,mem-path=/proc/self/fd/%d,share=on" % fd,
                      "-machine", "memory-backend=ram"], pass_fds=(fd,), stdout=w, stderr=subprocess.DEVNULL)
os.close(w)
t0, buf, ok = time.time(), b"", False
os.set_blocking(r, False)
while time.time() - t0 < 30 and p.poll() is None:
    try:
        buf += os.read(r, 4096) or b""
    except BlockingIOError:
        time.sleep(0.2)
    if b"vfiovm-guest: booted" in buf:
        ok = True
        break
p.terminate(); p.wait()
line = next((l for l in buf.decode(errors="replace").splitlines() if l.startswith("vfiovm-guest: booted")), "")
print("boot check (tiny, -m 4M on a memfd, share=on): %s [%.1f s]" % (line.strip(), time.time() - t0) if ok
      else "no banner; console: %r" % buf, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

check_linux() {
  build_linux
  boot_check 180 "Linux, -m 128M" -M q35 -m 128M -kernel "$OUT/linux/vmlinuz" -initrd "$OUT/linux/initrd.img" \
    -append "console=ttyS0 panic=-1"
}

# The bodies of build_tiny and build_linux are part of their payloads' cache keys (declare -f): a change of
# their text rebuilds the payload and re-runs the boot checks. So build_linux keeps its old message text (the
# pre-hack/ path), and this check, with the current path, runs before it.
kernel_or_die() { [[ -f $KERNEL ]] || die "no guest kernel at $KERNEL: build it first (hack/setup.sh 30-iommufd-kernel)"; }

case ${1:-all} in
  tiny) build_tiny ;;
  linux) kernel_or_die; build_linux ;;
  all) build_tiny; kernel_or_die; build_linux ;;
  check) check_tiny ;;
  check-linux) kernel_or_die; check_linux ;;
  *) sed -n '2,12s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
echo "$OUT"
