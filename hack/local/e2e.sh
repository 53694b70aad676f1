#!/usr/bin/env bash
# The e2e tier on a real local node: builds (cached) what the cluster needs and the operator jar, starts
# a clean cluster (up.sh), proves a pod runs (smoke.sh), imports the operator and guest images, boots the
# tiny guest in a pod with the node image's QEMU (guest-smoke.sh), runs the cluster
# suite (*E2E, Maven profile e2e) with KUBECONFIG on it, and tears the cluster down whatever happens.
# Needs root. VFIOVM_LOCAL_KEEP=1 keeps the cluster afterwards. Extra arguments go to mvn.
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || die "must run as root"
export CI=${CI:-true}
T0=$SECONDS
"$LOCAL_DIR/build.sh" all
step "operator jar"
(cd "$REPO_DIR" && mvn -B -ntp -q -Dstyle.color=never package -DskipTests -pl operator -am)
"$LOCAL_DIR/down.sh"   # a cluster left by an interrupted run
if [[ ${VFIOVM_LOCAL_KEEP:-} != 1 ]]; then trap '"$LOCAL_DIR/down.sh"' EXIT; fi
"$LOCAL_DIR/up.sh"
"$LOCAL_DIR/smoke.sh"
"$LOCAL_DIR/load-image.sh" "$REPO_DIR/operator/target/vfiovm.jar"
"$LOCAL_DIR/guest-smoke.sh"
step "e2e suite (mvn -Pe2e -pl e2e verify, KUBECONFIG=$KUBECONFIG_ADMIN)"
cd "$REPO_DIR"
KUBECONFIG=$KUBECONFIG_ADMIN mvn -B -ntp -Pe2e -pl e2e -am verify \
  -Dtest=NONE -Dsurefire.failIfNoSpecifiedTests=false \
  -Dit.test='*E2E' -Dfailsafe.failIfNoSpecifiedTests=false \
  -De2e.helm.set="$(local_chart_values | tr '\n' ' ')" -De2e.node.devicePluginDir=/var/lib/kubelet/device-plugins "$@"
step "e2e on the local node passed in $((SECONDS - T0))s"
