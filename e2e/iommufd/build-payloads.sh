#!/usr/bin/env bash
# Builds, on the host before the L1 guest boots, what the iommufd tier's scenarios run inside it, into DIR:
#   l2.cpio.gz          the Linux L2 guest's initramfs (static busybox + l2-init)   (scenario 1)
#   tiny-guest.elf      the tiny Multiboot payload that prints one console line     (scenarios 2-4)
#   compromised-vm      the --vm-command of scenarios 5 and 7 (e2e/probes/compromised-vm.c)
#   pin, p6-classes/    p6's guest step (p6-pin.sh): bench/native/pin.c against the 6.12 uAPI headers of
#                       hack/setup.d/40-uapi-headers.sh, and dev.vfiovm.bench.GuestPin compiled against the jar
#   vfiovm.jar + agent.jsa  the agent jar and an AppCDS archive of it made with this machine's JVM (the guest
#                       runs the same JVM over 9p; the archive is valid only for this jar at this path, so both
#                       sit in DIR, which the guest sees at the same path). Saves most of each agent JVM's
#                       class loading under TCG.
# Usage: build-payloads.sh DIR JAR [AGENT_JAVA_OPTS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mkdir -p "$1" && cd "$1" && pwd); jar=$2; shift 2
[[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 || { echo "/bin/busybox missing or not static" >&2; exit 3; }

root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,proc,sys,dev,etc}
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$here/l2-init" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$dir/l2.cpio.gz"

as --32 -o "$root/tiny-guest.o" "$here/tiny-guest.S"
ld -m elf_i386 -Ttext=0x100000 -o "$dir/tiny-guest.elf" "$root/tiny-guest.o"

gcc -O2 -Wall -Werror -o "$dir/compromised-vm" "$here/../probes/compromised-vm.c"

uapi=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/uapi-headers-6.12
[[ -f $uapi/linux/iommufd.h ]] || { echo "no Linux 6.12 uAPI headers at $uapi: run hack/setup.d/40-uapi-headers.sh" >&2; exit 3; }
gcc -O2 -Wall -Werror -I "$uapi" -o "$dir/pin" "$here/../../bench/native/pin.c"
rm -rf "$dir/p6-classes"
javac -nowarn -cp "$jar" -d "$dir/p6-classes" "$here/../../bench/src/main/java/dev/vfiovm/bench/GuestPin.java"

install -m 0644 "$jar" "$dir/vfiovm.jar"
rm -f "$dir/agent.jsa"
# a run that fails early still loads the CLI, the report writer (Jackson) and the agent's plan classes
java "$@" -XX:ArchiveClassesAtExit="$dir/agent.jsa" -jar "$dir/vfiovm.jar" node-agent --vm e2e/cds \
  --host-uid 70999 --memory 32Mi --memlock 33Mi --device 0000:00:05.0 --report "$root/cds.json" \
  >"$dir/cds.log" 2>&1 || true
[[ -s $dir/agent.jsa ]] || { echo "no AppCDS archive made: $(tail -5 "$dir/cds.log")" >&2; exit 1; }
chmod 0644 "$dir"/*
chmod 0755 "$dir/compromised-vm" "$dir/pin" "$dir/p6-classes" "$dir"
ls -l "$dir"
