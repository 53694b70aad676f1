#!/usr/bin/env bash
# The iommufd tier's scenarios, run INSIDE the L1 guest (the host's root, switch_root'ed, as guest root, so
# /dev/iommu, /dev/vfio/devices/* and CAP_SYS_RESOURCE are real). Each VM is one real `node-agent` run whose VM
# process is QEMU 10 (or, in scenario 5, a compromised VMM): the agent opens the iommufd and the devices' cdevs
# unbound, sets RLIMIT_MEMLOCK from outside, drops to the VM's host UID in its own user namespace, and QEMU
# binds, attaches and maps guest RAM itself. Everything observable is written under $OUT/vms/<name>/ for the
# JUnit side (IommufdScenariosIT) to assert:
#   args          the agent's arguments          exit     the agent's exit code
#   report.json   the agent's last report        running.json  the report when status/limits were recorded
#   console.log   the guest's serial console (--console-log)   stdout/stderr  the agent's output
#   status[.TAG]  /proc/<vmPid>/status   limits  /proc/<vmPid>/limits   cmdline  the VMM's argv (one a line)
#   userns        "own" if the VMM's user namespace is not the initial one
#   gone          "yes" if <vmPid> was gone once the agent had exited
# and $OUT/timings (name seconds). This script drives and records; it asserts nothing itself, except that it
# never waits unboundedly (AGENT_TIMEOUT per agent, L2_TIMEOUT for the Linux L2's DHCP lease).
#
# Order (one L1 boot; the Linux L2 of scenario 1 takes minutes under nested TCG, so everything else runs while
# it boots, on the other device):
#   1  s1-linux: Linux L2 on DEV_A, UID 70001, limit = its need                  (runs until its lease)
#   2  s2-same-uid: a second VM of UID 70001 on DEV_B, limit = its own need -> ENOMEM; s1 keeps running
#      s2-other-uid: the same VM under UID 70002 -> Running (QMP running + the tiny guest's console line)
#   3  s3-below: limit below guest RAM -> ENOMEM; s3-below-need: limit = guest RAM, below RAM + BIOS -> ENOMEM
#   5  s5-compromised: --vm-command compromised-vmm, per-user: pins its memory, READY, then a forked child and
#      an exec'd image each try to pin more -> ENOMEM
#   7  s7-probe: --vm-command compromised-vm probe (e2e/probes), per-user, next to s1 (the victim): every
#      PROBE line refused or nothing (RLIMIT_MODE on the real iommufd: EPERM); after SIGTERM no process of UID
#      70007 is left (uid-left), and s7-again of the same UID pins its whole limit (memory = limit) at once
#   6  s6-unbound, s6-noiommu: cheap refusals before any VMM starts
#   8  s8-bystander: a tiny VM of its own UID on DEV_C, running through the hot-plug below
#   1  (s1's lease)  hp  hot-plug into s1: `attach-device` plugs DEV_B with memlock = s1's limit + its guest RAM
#      (the operator's plan for a vIOMMU VM); L2 shows the new e1000e and gets a lease through it; snapshots of
#      s1 and the bystander; SIGTERM attach-device -> device_del -> DEVICE_DELETED, limit back, exit 0;
#      s9-third: a new VM (UID 70009) boots with DEV_B
#   4  SIGTERM s1 -> Stopped, pins 0, QEMU gone; s4-next: a new VM of UID 70001 on DEV_A
#      boots right after (per-user accounting would refuse it if any of s1's pins were still charged)
#   p6 with every VM gone: the p6 figure (docs/performance.md) - p6-pin.sh, 1 GiB (P6_BYTES) memfd + iommufd
#      IOAS_MAP through the Java facade vs bench/native/pin.c, interleaved rounds on DEV_A, each round's VmPin
#      checked; figures in $OUT/p6/p6-pin.json
#
# Env: VFIOVM_JAR, BIN (built by build-payloads.sh: vfiovm.jar, agent.jsa, l2.cpio.gz, tiny-guest.elf,
#      compromised-vm), KERNEL (the L2 kernel: the same bzImage as L1's), QEMU_DIR (QEMU 10 unpacked: DIR/usr/bin),
#      VFIO_DEVICES (three BDFs bound to vfio-pci, comma-separated: DEV_A, DEV_B, DEV_C), OTHER_DEVICE (kept on its driver),
#      PIN_EXTRA (bytes QEMU pins beyond -m: the BIOS), AGENT_TIMEOUT (s), L2_TIMEOUT (s), AGENT_JAVA_OPTS
set -uo pipefail
: "${OUT:?}" "${BIN:?}" "${KERNEL:?}" "${QEMU_DIR:?}" "${VFIO_DEVICES:?}" "${OTHER_DEVICE:?}" "${PIN_EXTRA:?}"
VFIOVM_JAR=${VFIOVM_JAR:-$BIN/vfiovm.jar}
AGENT_TIMEOUT=${AGENT_TIMEOUT:-300}
L2_TIMEOUT=${L2_TIMEOUT:-1500}
# C1 only and serial GC (TCG makes JIT work expensive); the AppCDS archive made on the host for this very jar
AGENT_JAVA_OPTS=${AGENT_JAVA_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData}
[[ -s $BIN/agent.jsa ]] && AGENT_JAVA_OPTS+=" -XX:SharedArchiveFile=$BIN/agent.jsa"
IFS=, read -r DEV_A DEV_B DEV_C <<< "$VFIO_DEVICES"
[[ -n $DEV_C ]] || { echo "scenario: VFIO_DEVICES needs three devices (the bystander's: DEV_C)" >&2; exit 3; }
MI=$((1024 * 1024))
need() { echo $(( $1 + PIN_EXTRA )); }   # what a QEMU VM of $1 bytes of RAM pins: RAM + BIOS
M1=$((128 * MI))        # the Linux L2
MT=$((32 * MI))         # the tiny guests
M5=$((16 * MI)); L5=$((24 * MI))   # the compromised VMM: guest memory, limit (room for 8 MiB more, not 16)
M7=$((8 * MI)); L7=$((16 * MI))    # the probe: guest memory, limit
LINUX_CMDLINE="console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check rdinit=/init"
TINY_MARKER=VFIOVM-TINY-GUEST

mkdir -p "$OUT/vms"
# Each VM's files live on the guest's tmpfs while it runs and are copied to $OUT (9p) when the script ends:
# polling a report on 9p while the agent renames a new one over it once hung the guest's reader for good.
W=/tmp/vfiovm-e2e
VMS=$W/vms
mkdir -p -m 0755 "$W" "$VMS"
trap 'cp -r "$VMS"/. "$OUT/vms/"' EXIT
# QEMU runs as the VM's host UID: it must reach its binary, firmware and boot files. The host's /root (where
# the cache lives) is not traversable by those UIDs, so QEMU is bind-mounted and the boot files copied here.
mkdir -p "$W/qemu" "$W/boot"
mount --bind "$QEMU_DIR" "$W/qemu" || { echo "scenario: cannot bind $QEMU_DIR" >&2; exit 3; }
install -m 0644 "$KERNEL" "$W/boot/bzImage"
install -m 0644 "$BIN/l2.cpio.gz" "$BIN/tiny-guest.elf" "$W/boot/"
install -m 0755 "$BIN/compromised-vm" "$W/boot/"
export VFIOVM_QEMU=$W/qemu/usr/bin/qemu-system-x86_64
export VFIOVM_QEMU_DATA=$W/qemu/usr/share/qemu:/usr/share/seabios
LINUX=(--kernel "$W/boot/bzImage" --initrd "$W/boot/l2.cpio.gz" --cmdline "$LINUX_CMDLINE")
# the tiny guest has no power button handler: give system_powerdown 2 s, not the agent's default 10, before quit
TINY=(--kernel "$W/boot/tiny-guest.elf" --powerdown-timeout 2)
declare -A PID START

now() { date +%s.%N; }
up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "scenario: [$(up)] $*"; }
show() { # show NAME: the tail of an agent's output on the console (visible on the host while the guest runs)
  tail -n 25 "$VMS/$1/stdout" "$VMS/$1/stderr" 2>/dev/null | cut -c1-400 | sed "s/^/scenario: $1| /"
}
timing() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%s %.2f\n", n, b - a }' >> "$OUT/timings"; }

field() { # field NAME KEY: a scalar of the VM's report (the report is one JSON object)
  sed -n "s/.*\"$2\" *: *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$VMS/$1/report.json" 2>/dev/null | head -1
}

agent() { # agent NAME TIMEOUT ARGS...: one node-agent, in the background, output under $VMS/NAME
  local name=$1 t=$2; shift 2
  local dir=$VMS/$name; mkdir -p "$dir"
  printf '%s\n' "$@" > "$dir/args"
  START[$name]=$(now)
  ( exec timeout -s TERM -k 60 "$t" java $AGENT_JAVA_OPTS -jar "$VFIOVM_JAR" node-agent --vm "e2e/$name" \
      --dma-backend iommufd --report "$dir/report.json" --console-log "$dir/console.log" "$@" >"$dir/stdout" 2>"$dir/stderr" ) &
  PID[$name]=$!
  log "$name started: $*"
}

await() { # await NAME PHASE...: until the report's phase is one of PHASE or the agent exits (bounded)
  local name=$1; shift
  local deadline=$(( $(date +%s) + AGENT_TIMEOUT ))
  while (( $(date +%s) < deadline )); do
    local phase; phase=$(field "$name" phase)
    for want in "$@"; do
      [[ $phase == "$want" ]] && { log "$name is $phase"; timing "$name-to-$phase" "${START[$name]}" "$(now)"; return 0; }
    done
    kill -0 "${PID[$name]}" 2>/dev/null || { log "$name exited in phase '${phase}'"; show "$name"; return 1; }
    sleep 0.2
  done
  log "$name: timed out waiting for $*"; show "$name"; return 1
}

console_has() { # console_has NAME TEXT TIMEOUT: until the VM's console shows TEXT (bounded)
  local name=$1 text=$2 deadline=$(( $(date +%s) + $3 ))
  while (( $(date +%s) < deadline )); do
    grep -q -- "$text" "$VMS/$name/console.log" 2>/dev/null && {
      log "$name console: $text"; timing "$name-to-$text" "${START[$name]}" "$(now)"; return 0; }
    kill -0 "${PID[$name]}" 2>/dev/null || { log "$name exited before its console showed $text"; return 1; }
    sleep 0.5
  done
  log "$name: console never showed $text"; show "$name"; return 1
}

output_has() { # output_has NAME TEXT: until the agent's output (its VM process's) shows TEXT (bounded)
  local deadline=$(( $(date +%s) + AGENT_TIMEOUT ))
  while (( $(date +%s) < deadline )); do
    grep -qh -- "$2" "$VMS/$1/stdout" "$VMS/$1/stderr" 2>/dev/null && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

snapshot() { # snapshot NAME [TAG]: the kernel's own view of the running VM process
  local name=$1 tag=${2:+.$2} pid dir=$VMS/$1; pid=$(field "$name" vmPid)
  [[ -n $pid ]] || { log "$name: no vmPid in report"; return 1; }
  cp "$dir/report.json" "$dir/running$tag.json"
  cp "/proc/$pid/status" "$dir/status$tag" 2>/dev/null
  cp "/proc/$pid/limits" "$dir/limits$tag" 2>/dev/null
  tr '\0' '\n' < "/proc/$pid/cmdline" > "$dir/cmdline" 2>/dev/null
  [[ $(readlink "/proc/$pid/ns/user") != "$(readlink /proc/1/ns/user)" ]] && echo own > "$dir/userns"
  log "$name$tag vmPid=$pid $(grep -E '^(Uid|VmPin|VmLck)' "$dir/status$tag" 2>/dev/null | tr -s ' \t\n' ' ')"
}

finish() { # finish NAME: wait for the agent's exit, record its code and whether its VM process is gone
  local name=$1 rc pid; wait "${PID[$name]}"; rc=$?
  echo "$rc" > "$VMS/$name/exit"
  pid=$(field "$name" vmPid)
  if [[ -n $pid ]] && [[ -d /proc/$pid ]]; then echo no; else echo yes; fi > "$VMS/$name/gone"
  timing "$name-total" "${START[$name]}" "$(now)"
  log "$name exited $rc: $(field "$name" phase) $(field "$name" error)"
}

stop() { # stop NAME: SIGTERM the agent (the JVM, not its `timeout` wrapper, which would SIGKILL it 60 s later
  #   while the guest may still be powering off) as the kubelet would, then finish
  local s java; s=$(now)
  java=$(pgrep -P "${PID[$1]}" java | head -1)
  kill -TERM "${java:-${PID[$1]}}" 2>/dev/null
  finish "$1"
  timing "$1-stop" "$s" "$(now)"
}

run() { # run NAME ARGS...: an agent expected to end by itself (a refusal)
  local name=$1; shift
  agent "$name" "$AGENT_TIMEOUT" "$@"; finish "$name"
}

t0=$(now)
java $AGENT_JAVA_OPTS -version > "$OUT/java-version" 2>&1; timing jvm-start "$t0" "$(now)"

# 1 one VM with one assigned e1000e boots Linux (L2); its limit is exactly its need
s1=$(now)
S1_SOCKET=$VMS/s1-linux/control/agent.sock
agent s1-linux $(( L2_TIMEOUT + 3 * AGENT_TIMEOUT )) --host-uid 70001 --memory $M1 --memlock "$(need $M1)" \
  --accounting per-user --device "$DEV_A" "${LINUX[@]}" --powerdown-timeout "$AGENT_TIMEOUT" --control-socket "$S1_SOCKET"
await s1-linux Running Failed && snapshot s1-linux

# 2 the seed: a second VM forced under UID 70001 with a limit = its own need: the UID's counter already holds
#   s1's pins, so its VMM's map fails (ENOMEM); s1 keeps running. Under its own UID the same VM runs.
s=$(now)
run s2-same-uid --host-uid 70001 --memory $MT --memlock "$(need $MT)" --accounting per-user --device "$DEV_B" "${TINY[@]}"
snapshot s1-linux after-s2
agent s2-other-uid "$AGENT_TIMEOUT" --host-uid 70002 --memory $MT --memlock "$(need $MT)" --accounting per-user \
  --device "$DEV_B" "${TINY[@]}"
await s2-other-uid Running Failed && console_has s2-other-uid "$TINY_MARKER" "$AGENT_TIMEOUT"
snapshot s2-other-uid
snapshot s1-linux both-running
stop s2-other-uid
timing scenario-2 "$s" "$(now)"

# 3 a limit below guest RAM: ENOMEM at QEMU's start-up
s=$(now)
run s3-below --host-uid 70003 --memory $MT --memlock $((16 * MI)) --accounting per-user --device "$DEV_B" "${TINY[@]}"
# 3 (kernel) a limit of exactly guest RAM is below the VM's need (RAM + BIOS): the kernel refuses QEMU's map
run s3-below-need --host-uid 70004 --memory $MT --memlock $MT --accounting per-user --device "$DEV_B" "${TINY[@]}"
timing scenario-3 "$s" "$(now)"

# 5 a compromised VMM (per-user): pins its memory, READY, then tries to pin more from a forked child and from an
#   exec'd image; each is refused (ENOMEM) because the UID's counter holds what was pinned first
s=$(now)
agent s5-compromised "$AGENT_TIMEOUT" --host-uid 70005 --memory $M5 --memlock $L5 --accounting per-user \
  --device "$DEV_B" --vm-command "$W/boot/compromised-vm" "$M5" $((4 * MI))
await s5-compromised Running Failed && snapshot s5-compromised ready
kill -USR1 "$(field s5-compromised vmPid)"   # the agent has read its pins: now the attack
output_has s5-compromised 'compromised-vmm: done'
snapshot s5-compromised
stop s5-compromised
timing scenario-5 "$s" "$(now)"

# 7 the compromised-VM probe in its sandbox, with a real iommufd and VFIO cdev, next to s1 (the victim); then
#   the kernel's view: no process of its UID left; the same UID pins its whole limit again
s=$(now)
s1_agent=$(pgrep -P "${PID[s1-linux]}" java | head -1)
agent s7-probe "$AGENT_TIMEOUT" --host-uid 70007 --memory $M7 --memlock $L7 --accounting per-user \
  --device "$DEV_B" --vm-command "$W/boot/compromised-vm" probe victim="$(field s1-linux vmPid)" agent="$s1_agent" \
  secret="$VMS/s1-linux/report.json" secret="$VMS/s7-probe/report.json" secret="$BIN/vfiovm.jar" \
  readonly="$W/boot/compromised-vm" readonly="$W/boot/bzImage"
await s7-probe Running Failed && output_has s7-probe PROBE-DONE && snapshot s7-probe
stop s7-probe
for st in /proc/[0-9]*/status; do
  awk -v f="$st" '/^Uid:/ { for (i = 2; i <= 5; i++) if ($i == 70007) { print f; exit } }' "$st" 2>/dev/null
done > "$VMS/s7-probe/uid-left"
log "s7-probe: processes of UID 70007 left: $(wc -l < "$VMS/s7-probe/uid-left")"
run s7-again --host-uid 70007 --memory $L7 --memlock $L7 --accounting per-user --device "$DEV_B" \
  --exit-when-running --vm-command "$W/boot/compromised-vm"
timing scenario-7 "$s" "$(now)"

# 6 clear refusals: a device not bound to vfio-pci; no /dev/iommu (renamed away meanwhile, then restored; s1's
#   agent opened its iommufd long ago)
s=$(now)
run s6-unbound --host-uid 70061 --memory $MT --memlock "$(need $MT)" --device "$OTHER_DEVICE" "${TINY[@]}"
mv /dev/iommu /dev/iommu.hidden
run s6-noiommu --host-uid 70062 --memory $MT --memlock "$(need $MT)" --device "$DEV_B" "${TINY[@]}"
mv /dev/iommu.hidden /dev/iommu
timing scenario-6 "$s" "$(now)"

# 8 the bystander: its own UID and device, running (halted tiny guest) while s1 gets a device hot-plugged
agent s8-bystander $(( L2_TIMEOUT + 3 * AGENT_TIMEOUT )) --host-uid 70008 --memory $MT --memlock "$(need $MT)" \
  --accounting per-user --device "$DEV_C" "${TINY[@]}"
await s8-bystander Running Failed && console_has s8-bystander "$TINY_MARKER" "$AGENT_TIMEOUT"

# 1 (cont.) the L2 reaches its DHCP lease through the assigned NIC
console_has s1-linux L2-BOOTED "$L2_TIMEOUT"
console_has s1-linux L2-DONE "$L2_TIMEOUT"
snapshot s1-linux lease
timing scenario-1 "$s1" "$(now)"

# hp hot-plug DEV_B into the running s1 (its L2 watches for new PCI devices), the way an attachment pod does:
#   attach-device opens the cdev and hands it to s1's agent over its control socket; the limit rises to s1's +
#   one guest RAM (what the operator plans for a vIOMMU VM) before device_add; nobody else's limit changes
s=$(now)
snapshot s1-linux before-plug
snapshot s8-bystander before-plug
HP=$VMS/hp-attach; mkdir -p "$HP"
HP_MEMLOCK=$(( $(need $M1) + M1 ))
echo "$HP_MEMLOCK" > "$HP/memlock"
START[hp-attach]=$(now)
( exec timeout -s TERM -k 60 $(( 3 * AGENT_TIMEOUT )) java $AGENT_JAVA_OPTS -jar "$VFIOVM_JAR" attach-device \
    --control-socket "$S1_SOCKET" --device "$DEV_B" --memlock "$HP_MEMLOCK" >"$HP/stdout" 2>"$HP/stderr" ) &
PID[hp-attach]=$!
log "hp-attach started: $DEV_B into s1-linux, memlock $HP_MEMLOCK"
if output_has hp-attach 'attached; holding it'; then
  timing hp-attach-to-attached "${START[hp-attach]}" "$(now)"
  log "hp-attach: $(grep '<-' "$HP/stdout" | head -1)"
  console_has s1-linux L2-DHCP2 "$AGENT_TIMEOUT"
  snapshot s1-linux plugged
  snapshot s8-bystander plugged
else
  log "hp-attach: no attachment"; show hp-attach
fi
# unplug: SIGTERM to attach-device (its JVM, as the kubelet would) -> unplug request -> device_del ->
#   DEVICE_DELETED -> the limit back to what it was; attach-device exits 0 once the agent replied
u=$(now)
hp_java=$(pgrep -P "${PID[hp-attach]}" java | head -1)
kill -TERM "${hp_java:-${PID[hp-attach]}}" 2>/dev/null
wait "${PID[hp-attach]}"; echo $? > "$HP/exit"
timing hp-unplug "$u" "$(now)"
log "hp-attach exited $(cat "$HP/exit"): $(grep '<-' "$HP/stdout" | tail -1)"
console_has s1-linux L2-HOTUNPLUG 60
snapshot s1-linux unplugged
snapshot s8-bystander unplugged
# the device is free again: a third VM (its own UID) boots with it
agent s9-third "$AGENT_TIMEOUT" --host-uid 70009 --memory $MT --memlock "$(need $MT)" --accounting per-user \
  --device "$DEV_B" "${TINY[@]}"
await s9-third Running Failed && console_has s9-third "$TINY_MARKER" "$AGENT_TIMEOUT"
snapshot s9-third
stop s9-third
stop s8-bystander
timing scenario-hp "$s" "$(now)"

# 4 teardown: SIGTERM -> the guest powers off (QMP system_powerdown), pins released, QEMU gone; right after, a
#   new VM of the same UID, limit = its own need, binds and maps the same device and boots
s=$(now)
stop s1-linux
agent s4-next "$AGENT_TIMEOUT" --host-uid 70001 --memory $MT --memlock "$(need $MT)" --accounting per-user \
  --device "$DEV_A" "${TINY[@]}"
await s4-next Running Failed && console_has s4-next "$TINY_MARKER" "$AGENT_TIMEOUT"
snapshot s4-next
stop s4-next
timing scenario-4 "$s" "$(now)"

# p6 the pin figure, alone in the guest (every VM above is gone, DEV_A is free)
s=$(now)
log "p6 started"
# the agents' JVM options and AppCDS archive (valid: the archive's classpath, the jar, is a prefix of this one);
# 2 rounds of 1 GiB keep the step within its ~90 s of guest time (docs/testing.md)
P6_CP="$VFIOVM_JAR:$BIN/p6-classes" P6_PIN="$BIN/pin" P6_ROUNDS=${P6_ROUNDS:-2} P6_JAVA_OPTS="$AGENT_JAVA_OPTS -Xmx64m" \
  bash "$(dirname "$0")/p6-pin.sh" 2>&1 | sed 's/^/scenario: /'
timing p6-pin "$s" "$(now)"

timing all "$t0" "$(now)"
cp -r "$VMS"/. "$OUT/vms/"
echo done > "$OUT/done"
