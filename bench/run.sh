#!/usr/bin/env bash
# The benchmark of issue 13 (docs/performance.md): builds what it needs (reactor, offline when ~/.m2 is warm)
# and runs dev.vfiovm.bench.Benchmark in its own JVM. Prints the table; writes bench/target/bench/summary.json.
#   bash bench/run.sh                 full run (1,000-VM burst, 10 VMs/s for 60 s, 10,000 VMs converged)
#   bash bench/run.sh --short         the CI variant's counts (a few minutes)
#   bash bench/run.sh --heap-vms 3000 fewer converged VMs for p4/p5 (also --burst N, --rate-seconds S, --no-native)
#   bash bench/run.sh --p6-guest      p6 from the iommufd guest (boots L1: e2e/iommufd/p6-pin.sh); --p6-guest DIR reads
#                                     a guest run's DIR/p6/p6-pin.json (e.g. the guest tier's e2e/target/iommufd)
# Needs the kube-apiserver/etcd binaries of hack/setup.d (bash hack/setup.sh), cc, and for p7
# QEMU 10 + the tiny guest (setup.d/35-qemu.sh, 36-guest.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
offline=-o
[ "${BENCH_ONLINE:-}" = 1 ] && offline=
exec mvn -B -q $offline -Pbench -pl bench -am package -DskipTests \
  -Dbench.args="--out $PWD/bench/target/bench $*"
