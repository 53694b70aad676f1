#!/usr/bin/env bash
# The iommufd tier's scenarios, run INSIDE the guest (in the host's root, switch_root'ed, as guest root, so
# /dev/iommu, /dev/vfio/devices/* and CAP_SYS_RESOURCE are real). Each VM is one real `node-agent` run;
# everything observable is written under $OUT/vms/<name>/ for the JUnit side (IommufdScenariosIT) to assert:
#   report.json  the agent's last NodeAgentReport        exit     the agent's exit code
#   running.json the report when the snapshot was taken
#   stdout/err   the agent's output                       status   /proc/<vmPid>/status while it ran
#   limits       /proc/<vmPid>/limits while it ran        gone     "yes" if <vmPid> was gone after the agent
# and $OUT/timings (name seconds). This script only drives and records; it asserts nothing itself, except
# that it never waits unboundedly (AGENT_TIMEOUT per agent).
# Scenario 5 (teardown) reuses scenario 1's VMs as the ones torn down, to save two JVM starts under TCG.
# Env: VFIOVM_JAR, VFIO_DEVICES (two BDFs, comma-separated, bound to vfio-pci), OTHER_DEVICE (not bound),
#      OVERMAP (overmap.c built: a --vm-command that pins its guest memory twice more),
#      S4_MEMLOCK (bytes: the operator's limit for a 2-device viommu VM of S4_MEMORY), S4_MEMORY,
#      AGENT_TIMEOUT (s, bound of every wait on an agent), AGENT_JAVA_OPTS
set -uo pipefail
: "${OUT:?}" "${VFIOVM_JAR:?}" "${VFIO_DEVICES:?}" "${OTHER_DEVICE:?}" "${OVERMAP:?}" "${S4_MEMORY:?}" "${S4_MEMLOCK:?}"
AGENT_TIMEOUT=${AGENT_TIMEOUT:-240}
# the agent as a node pod runs it; C1 only and serial GC because TCG makes JIT work expensive
AGENT_JAVA_OPTS=${AGENT_JAVA_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData}
DEV_A=${VFIO_DEVICES%%,*}
DEV_B=${VFIO_DEVICES##*,}
L=16Mi        # memlock limit of every VM below, except where noted
M=12Mi        # guest memory: 3/4 L, so two VMs charged to one counter (24Mi) exceed L
L2=24Mi       # room for pinning M twice
mkdir -p "$OUT/vms"
# Each VM's files live on the guest's tmpfs while it runs and are copied to $OUT (9p) when the script ends:
# polling a report on 9p while the agent renames a new one over it once hung the guest's reader for good.
VMS=/tmp/vfiovm-e2e/vms
mkdir -p "$VMS"
trap 'cp -r "$VMS"/. "$OUT/vms/"' EXIT
# VM processes run as their own host UIDs: give them copies they can read wherever the checkout lives
# (a checkout under /root is not traversable by UID 70001)
mkdir -p -m 0755 /tmp/vfiovm-e2e
install -m 0644 "$VFIOVM_JAR" /tmp/vfiovm-e2e/vfiovm.jar && VFIOVM_JAR=/tmp/vfiovm-e2e/vfiovm.jar
install -m 0755 "$OVERMAP" /tmp/vfiovm-e2e/overmap && OVERMAP=/tmp/vfiovm-e2e/overmap
declare -A PID

now() { date +%s.%N; }
log() { echo "scenario: [$(cut -d' ' -f1 /proc/uptime)] $*"; }
timing() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%s %.2f\n", n, b - a }' >> "$OUT/timings"; }

field() { # field NAME KEY: a scalar of the VM's report (the report is one JSON object)
  sed -n "s/.*\"$2\" *: *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$VMS/$1/report.json" 2>/dev/null | head -1
}

agent() { # agent NAME ARGS...: one node-agent, in the background, output under $VMS/NAME
  local name=$1; shift
  local dir=$VMS/$name; mkdir -p "$dir"
  echo "$*" > "$dir/args"
  ( exec timeout -s TERM -k 5 "$AGENT_TIMEOUT" java $AGENT_JAVA_OPTS -jar "$VFIOVM_JAR" node-agent --vm "e2e/$name" \
      --dma-backend iommufd --report "$dir/report.json" "$@" >"$dir/stdout" 2>"$dir/stderr" ) &
  PID[$name]=$!
  log "$name started: $*"
}

await() { # await NAME PHASE...: until the report's phase is one of PHASE or the agent exits (bounded)
  local name=$1; shift
  local deadline=$(( $(date +%s) + AGENT_TIMEOUT ))
  while (( $(date +%s) < deadline )); do
    local phase; phase=$(field "$name" phase)
    for want in "$@"; do [[ $phase == "$want" ]] && { log "$name is $phase"; return 0; }; done
    kill -0 "${PID[$name]}" 2>/dev/null || { log "$name exited in phase '${phase}'"; return 1; }
    sleep 0.1
  done
  log "$name: timed out waiting for $*"; return 1
}

snapshot() { # snapshot NAME: the kernel's own view of the running VM process
  local name=$1 pid; pid=$(field "$name" vmPid)
  [[ -n $pid ]] || { log "$name: no vmPid in report"; return 1; }
  cp "$VMS/$name/report.json" "$VMS/$name/running.json"
  cp "/proc/$pid/status" "$VMS/$name/status" 2>/dev/null
  cp "/proc/$pid/limits" "$VMS/$name/limits" 2>/dev/null
  log "$name vmPid=$pid $(grep -E '^(VmPin|VmLck)' "/proc/$pid/status" 2>/dev/null | tr -s ' \n' ' ')"
}

finish() { # finish NAME: wait for the agent's exit, record its code and whether its VM process is gone
  local name=$1 rc pid; wait "${PID[$name]}"; rc=$?
  echo "$rc" > "$VMS/$name/exit"
  pid=$(field "$name" vmPid)
  if [[ -n $pid ]] && [[ -d /proc/$pid ]]; then echo no; else echo yes; fi > "$VMS/$name/gone"
  log "$name exited $rc"
}

overmapped() { # overmapped NAME: until the VM's overmap has printed its outcome (bounded)
  local deadline=$(( $(date +%s) + AGENT_TIMEOUT ))
  while (( $(date +%s) < deadline )); do
    grep -qh '^overmap: done' "$VMS/$1/stdout" "$VMS/$1/stderr" 2>/dev/null && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop() { # stop NAME: SIGTERM the agent as the kubelet would, then finish
  kill -TERM "${PID[$1]}" 2>/dev/null
  finish "$1"
}

run() { # run NAME ARGS...: an agent expected to end by itself (failure or --exit-after-map)
  local name=$1; shift
  agent "$name" "$@"; finish "$name"
}

t0=$(now)
java -version > "$OUT/java-version" 2>&1; timing jvm-start "$t0" "$(now)"

# 1 per-user accounting, same UID: the second VM's pins exceed the shared counter -> ENOMEM; the first keeps its pins
s=$(now)
agent s1-a --host-uid 70001 --memory $M --memlock $L --accounting per-user --device "$DEV_A"
await s1-a Running Failed
run s1-b --host-uid 70001 --memory $M --memlock $L --accounting per-user --device "$DEV_B"
snapshot s1-a
stop s1-a
timing scenario-1 "$s" "$(now)"

# 5 teardown: after s1-a's SIGTERM (device A) and s1-b's failure (device B) nothing stays pinned or bound: a new
#   VM of the same UID binds both devices and maps M again, which per-user accounting would refuse (ENOMEM)
#   if any of s1-a's pins were still charged to UID 70001
s=$(now)
agent s5 --host-uid 70001 --memory $M --memlock $L --accounting per-user --device "$DEV_A" --device "$DEV_B"
await s5 Running Failed
snapshot s5
stop s5
timing scenario-5 "$s" "$(now)"

# 2 per-user accounting, distinct UIDs: both map, each charged to its own UID
s=$(now)
agent s2-a --host-uid 70011 --memory $M --memlock $L --accounting per-user --device "$DEV_A"
agent s2-b --host-uid 70012 --memory $M --memlock $L --accounting per-user --device "$DEV_B"
await s2-a Running Failed; await s2-b Running Failed
snapshot s2-a; snapshot s2-b
stop s2-a; stop s2-b
timing scenario-2 "$s" "$(now)"

# 3 per-process accounting (RLIMIT_MODE=1), same UID: both map (2 x M > L under one UID). Each is bounded by its
#   own limit: both VMs' VMMs (overmap, exec'd by the VM process) pin the memory twice more; under L (s3-a) the
#   kernel refuses the pin that goes past L (ENOMEM), under 2 x M (s3-b) it pins both
s=$(now)
agent s3-a --host-uid 70021 --memory $M --memlock $L --accounting per-process --device "$DEV_A" \
  --vm-command "$OVERMAP"
agent s3-b --host-uid 70021 --memory $M --memlock $L2 --accounting per-process --device "$DEV_B" \
  --vm-command "$OVERMAP"
await s3-a Running Failed; await s3-b Running Failed
overmapped s3-a; overmapped s3-b
snapshot s3-a; snapshot s3-b
stop s3-a; stop s3-b
timing scenario-3 "$s" "$(now)"

# 4 two devices on one IOAS pin guest memory once; the limit applied is the operator's (viommu: factor 2)
s=$(now)
agent s4 --host-uid 70031 --memory "$S4_MEMORY" --memlock "$S4_MEMLOCK" --accounting per-process \
  --device "$DEV_A" --device "$DEV_B"
await s4 Running Failed
snapshot s4
stop s4
timing scenario-4 "$s" "$(now)"

# 7 contrast to 3: per-user accounting bounds the VM as a whole, across the exec of its VMM. The VMM asks to pin
#   M once more; with M already charged to the UID, M + M > L -> ENOMEM
s=$(now)
agent s7 --host-uid 70061 --memory $M --memlock $L --accounting per-user --device "$DEV_A" --vm-command "$OVERMAP" 1
await s7 Running Failed
overmapped s7
snapshot s7
stop s7
timing scenario-7 "$s" "$(now)"

# 6 clear errors: a device not bound to vfio-pci; no /dev/iommu (the node renamed away meanwhile, then restored;
#   the unbound device is refused before /dev/iommu is looked at)
s=$(now)
mv /dev/iommu /dev/iommu.hidden
agent s6-unbound --host-uid 70051 --memory $M --memlock $L --accounting per-user --device "$OTHER_DEVICE"
agent s6-noiommu --host-uid 70052 --memory $M --memlock $L --accounting per-user --device "$DEV_A"
finish s6-unbound; finish s6-noiommu
mv /dev/iommu.hidden /dev/iommu
timing scenario-6 "$s" "$(now)"

timing all "$t0" "$(now)"
cp -r "$VMS"/. "$OUT/vms/"
echo done > "$OUT/done"
