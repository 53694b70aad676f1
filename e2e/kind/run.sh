#!/usr/bin/env bash
# The e2e suite on a throw-away kind cluster, in one command:
#   create the cluster -> build the operator image with Jib (no Docker daemon needed for the build) ->
#   `kind load image-archive` -> run the suite (it installs the chart with helm-java, applies VfioVms,
#   checks UIDs, limits, pins and the seed scenario, deletes, uninstalls) -> delete the cluster.
#
# Needs: docker (running), kind, Java 17, Maven. No helm or kubectl binary is needed.
# Usage: e2e/kind/run.sh
#   KIND_CLUSTER=vfiovm-e2e     cluster name
#   KIND_NODE_IMAGE=kindest/node:vX.Y.Z   node image (kind's default otherwise)
#   IMAGE_BASE=eclipse-temurin:17-jre     Jib base image (or tar:///path/base.tar, a docker-archive tar)
#   KEEP_CLUSTER=1              keep the cluster afterwards (KUBECONFIG is printed)
#   extra arguments go to the Maven run of the suite (e.g. -De2e.timeout.seconds=600)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=${KIND_CLUSTER:-vfiovm-e2e}
work=$(mktemp -d)
export KUBECONFIG=$work/kubeconfig

for tool in docker kind java mvn; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is not installed; it is needed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "run.sh: the Docker engine is not running (kind needs it)" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
    echo "== keeping cluster $cluster; KUBECONFIG=$KUBECONFIG"
  else
    echo "== deleting cluster $cluster"
    kind delete cluster --name "$cluster" --kubeconfig "$KUBECONFIG" || true
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT

# cluster config: cluster.yaml plus the device mounts this host has
config=$work/cluster.yaml
cp "$here/cluster.yaml" "$config"
mounts=()
for dev in /dev/vfio /dev/iommu; do [[ -e $dev ]] && mounts+=("$dev"); done
if (( ${#mounts[@]} )); then
  echo "    extraMounts:" >>"$config"
  for dev in "${mounts[@]}"; do
    printf '      - hostPath: %s\n        containerPath: %s\n' "$dev" "$dev" >>"$config"
  done
fi
echo "== creating kind cluster $cluster (device mounts: ${mounts[*]:-none})"
kind create cluster --name "$cluster" --config "$config" --kubeconfig "$KUBECONFIG" --wait 180s \
  ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}

cd "$root"
image_args=()
[[ -n ${IMAGE_BASE:-} ]] && image_args+=("-Dimage.base=$IMAGE_BASE")
# image vfiovm/operator:<project version>; the suite installs the chart with that same tag (e2e profile)
echo "== building the operator image with Jib"
mvn -B -ntp -pl operator -am package jib:buildTar -DskipTests "${image_args[@]}"
echo "== loading it into $cluster"
kind load image-archive operator/target/vfiovm-image.tar --name "$cluster"

echo "== running the e2e suite against $cluster"
# CI=true: a missing prerequisite (no cluster, unreachable) fails instead of skipping
CI=true mvn -B -ntp -Pe2e -pl e2e -am verify \
  -Dtest=none -Dsurefire.failIfNoSpecifiedTests=false \
  -Dit.test='VfioVmClusterE2E' -Dfailsafe.failIfNoSpecifiedTests=false \
  -De2e.image.pullPolicy=IfNotPresent \
  "$@"
echo "== e2e suite passed on kind"
