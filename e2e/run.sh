#!/usr/bin/env bash
# The main job. Builds the jar (and, first time, the kube-apiserver it needs; cached), then:
#  - a cluster configured (KUBECONFIG, or ~/.kube/config): runs the operator against it
#    (install the CRD first: kubectl apply -f crds/; in production use the Helm chart);
#  - no cluster: `standalone` on this host: embedded kube-apiserver, this host as the node, node pods as
#    local processes, example VfioVms applied and their status printed. Needs root. Ctrl-C stops it.
# Extra arguments go to the subcommand (e.g. `e2e/run.sh --check`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/scripts/setup.sh 10-packages 20-kube-apiserver
mvn -B -ntp -q package -DskipTests -pl operator
if [[ -n ${KUBECONFIG:-} || -f $HOME/.kube/config ]]; then
  exec java -jar operator/target/vfiovm.jar operator "$@"
fi
exec java -jar operator/target/vfiovm.jar standalone "$@"
