#!/usr/bin/env bash
# The e2e suite on a throw-away kind cluster, in one command:
#   create the cluster -> build the node base image with docker (node-base.Dockerfile: bookworm-slim +
#   QEMU 10.0.2 from bookworm-backports + JRE 17 + vfiovm-busybox) -> the operator image with Jib on that base
#   -> the demo guest images (guest-tiny, and guest-demo when the Linux guest kernel is built) with docker from
#   the payloads of e2e/guest/build.sh -> `kind load` them -> run the suite (it installs the chart with
#   helm-java, applies VfioVms, checks UIDs, limits, pins and the seed scenario, deletes, uninstalls) ->
#   delete the cluster.
#
# Needs: docker (running), kind, Java 17, Maven, gcc + binutils (the tiny guest). No helm or kubectl binary.
# Usage: hack/kind/run.sh
#   KIND_CLUSTER=vfiovm-e2e     cluster name
#   KIND_NODE_IMAGE=kindest/node:vX.Y.Z   node image (kind's default otherwise)
#   IMAGE_BASE=docker://vfiovm/node-base:<version>   Jib base image; the default is built here from
#                               node-base.Dockerfile (another: any image with java, qemu-system-x86_64 >= 9.0
#                               and /usr/local/bin/vfiovm-busybox; or tar:///path/base.tar)
#   KEEP_CLUSTER=1              keep the cluster afterwards (KUBECONFIG is printed)
#   extra arguments go to the Maven run of the suite (e.g. -De2e.timeout.seconds=600)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=${KIND_CLUSTER:-vfiovm-e2e}
work=$(mktemp -d)
export KUBECONFIG=$work/kubeconfig

for tool in docker kind java mvn gcc ld; do
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
version=$(sed -n 's:^  <version>\(.*\)</version>:\1:p' pom.xml | head -1)
cache=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
if [[ -z ${IMAGE_BASE:-} ]]; then
  echo "== building the node base image vfiovm/node-base:$version (docker, hack/kind/node-base.Dockerfile)"
  t0=$SECONDS
  docker build -t "vfiovm/node-base:$version" -f "$here/node-base.Dockerfile" "$root/e2e"
  echo "   node base built in $((SECONDS - t0)) s"
  IMAGE_BASE=docker://vfiovm/node-base:$version
fi
# image vfiovm/operator:<project version>; the suite installs the chart with that same tag (e2e profile)
echo "== building the operator image with Jib (base $IMAGE_BASE)"
mvn -B -ntp -pl operator -am package jib:buildTar -DskipTests "-Dimage.base=$IMAGE_BASE"
echo "== loading it into $cluster"
kind load image-archive operator/target/vfiovm-image.tar --name "$cluster"

echo "== demo guest images (e2e/guest/build.sh payloads, docker build FROM scratch)"
bash "$root/e2e/guest/build.sh" tiny >/dev/null
docker build -t "docker.io/vfiovm/guest-tiny:$version" -f "$here/guest-tiny.Dockerfile" "$cache/guest/tiny"
kind load docker-image "docker.io/vfiovm/guest-tiny:$version" --name "$cluster"
if [[ -f ${VFIOVM_GUEST_KERNEL:-$cache/iommufd-kernel/bzImage} ]]; then
  bash "$root/e2e/guest/build.sh" linux >/dev/null
  docker build -t "docker.io/vfiovm/guest-demo:$version" -f "$here/guest-demo.Dockerfile" "$cache/guest/linux"
  kind load docker-image "docker.io/vfiovm/guest-demo:$version" --name "$cluster"
else
  echo "   guest-demo (Linux) skipped: no guest kernel (hack/setup.sh 30-iommufd-kernel builds it)"
fi

echo "== running the e2e suite against $cluster"
# CI=true: a missing prerequisite (no cluster, unreachable) fails instead of skipping
CI=true mvn -B -ntp -Pe2e -pl e2e -am verify \
  -Dtest=none -Dsurefire.failIfNoSpecifiedTests=false \
  -Dit.test='VfioVmClusterE2E' -Dfailsafe.failIfNoSpecifiedTests=false \
  -De2e.image.pullPolicy=IfNotPresent \
  "$@"
echo "== e2e suite passed on kind"
