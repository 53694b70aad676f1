#!/usr/bin/env bash
# p6 in the iommufd guest (docs/performance.md): runs dev.vfiovm.bench.GuestPin - the iommufd pin path through
# the JNA facade (memfd + IOAS_ALLOC + VFIO bind/attach + IOMMU_IOAS_MAP of P6_BYTES) against bench/native/pin.c
# making the same syscalls on the same size, interleaved rounds, each checked against VmPin - INSIDE the L1
# guest, as guest root, on the first of VFIO_DEVICES while nothing else holds it. Writes $OUT/p6/p6-pin.json
# (the figures), $OUT/p6/stdout and stderr, $OUT/p6/exit. Asserts nothing itself; never waits unboundedly.
#   - a step of scenarios.sh (P6_CP=$BIN/vfiovm.jar:$BIN/p6-classes P6_PIN=$BIN/pin, built by build-payloads.sh)
#   - alone: boot-guest.sh OUT e2e/iommufd/p6-pin.sh P6_CP=CLASSPATH P6_PIN=PIN [P6_BYTES=..] [P6_ROUNDS=..]
#     (what `bash bench/run.sh --p6-guest` does, with the bench's own classpath and pin binary)
# Env: OUT, VFIO_DEVICES, P6_CP, P6_PIN, P6_BYTES (1 GiB), P6_ROUNDS (3), P6_TIMEOUT (s, 300), P6_JAVA_OPTS,
#      P6_CDS (an AppCDS archive to add, e.g. build-payloads.sh's agent.jsa: boot-guest.sh's NAME=VALUE pairs
#      cannot carry spaces)
set -uo pipefail
: "${OUT:?}" "${VFIO_DEVICES:?}" "${P6_CP:?}" "${P6_PIN:?}"
P6_BYTES=${P6_BYTES:-1073741824}
P6_ROUNDS=${P6_ROUNDS:-3}
P6_TIMEOUT=${P6_TIMEOUT:-300}
# C1 only and serial GC, as the agents in this tier (TCG makes JIT work expensive); a small heap: the 1 GiB is
# a memfd, not the heap
P6_JAVA_OPTS=${P6_JAVA_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData -Xmx64m}
[[ -n ${P6_CDS:-} && -s $P6_CDS ]] && P6_JAVA_OPTS+=" -XX:SharedArchiveFile=$P6_CDS"
dir=$OUT/p6
mkdir -p "$dir"
dev=${VFIO_DEVICES%%,*}
echo "p6: [$(cut -d' ' -f1 /proc/uptime)] GuestPin on $dev, $P6_BYTES bytes, $P6_ROUNDS rounds; $(nproc) vCPUs," \
  "load $(cut -d' ' -f1-3 /proc/loadavg), MemAvailable $(awk '/MemAvailable/ {print $2 " kB"}' /proc/meminfo)"
# written on the guest's tmpfs, copied to $OUT (9p) at the end
w=$(mktemp -d)
timeout -s TERM -k 10 "$P6_TIMEOUT" java $P6_JAVA_OPTS -cp "$P6_CP" dev.vfiovm.bench.GuestPin "$w/p6-pin.json" \
  "$P6_PIN" "$dev" "$P6_BYTES" "$P6_ROUNDS" >"$w/stdout" 2>"$w/stderr"
rc=$?
echo "$rc" > "$w/exit"
cp "$w"/* "$dir/"
sed 's/^/p6| /' "$w/stdout"; tail -n 20 "$w/stderr" | sed 's/^/p6| /'
echo "p6: [$(cut -d' ' -f1 /proc/uptime)] exit $rc"
exit "$rc"
