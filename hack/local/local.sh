#!/usr/bin/env bash
# The main job on a fresh machine:
#   local.sh up     cluster up (up.sh; builds what is not cached), operator jar + image, the chart
#                   installed (helm-java), examples.yaml applied, VM status printed
#   local.sh down   everything removed again (down.sh)
#   local.sh status what `up` prints at the end
source "$(dirname "$0")/lib.sh"
CHART=$REPO_DIR/helm/vfiovm-operator
RELEASE=vfiovm
# memlock overhead small enough for this machine's 8 MiB memlock hard limit (default 1Gi needs
# CAP_SYS_RESOURCE to be granted)
MEMLOCK_OVERHEAD=${VFIOVM_LOCAL_MEMLOCK_OVERHEAD:-1Mi}

status() {
  step "VfioVms (kubectl get vvm -A -o wide)"
  kubectl_ get vvm -A -o wide
  step "node pods (not privileged, in vfiovm-system)"
  kubectl_ -n vfiovm-system get pods -l app.kubernetes.io/name=vfiovm-node \
    -o custom-columns='POD:.metadata.name,VM:.metadata.annotations.vfiovm\.dev/vm,HOST-UID:.metadata.labels.vfiovm\.dev/host-uid,STATUS:.status.phase,PRIVILEGED:.spec.containers[0].securityContext.privileged,CAPS:.spec.containers[0].securityContext.capabilities.add'
  step "guest consoles (the serial console of each VM is its node pod's log)"
  local pods p
  pods=$(kubectl_ -n vfiovm-system get pods -l app.kubernetes.io/name=vfiovm-node -o name)
  if [[ -z $pods ]]; then info "no node pod yet"; fi
  for p in $pods; do
    info "kubectl logs -n vfiovm-system ${p#pod/} -c node-agent     (add -f to follow)"
    kubectl_ -n vfiovm-system logs "${p#pod/}" -c node-agent 2>/dev/null | grep -m1 '^vfiovm-guest: booted' | sed 's/^/        /' >&2 || true
  done
  step "why a VM is not running"
  kubectl_ get vvm -A -o jsonpath='{range .items[?(@.status.phase!="Running")]}{.metadata.namespace}/{.metadata.name}: {.status.phase}{range .status.conditions[?(@.status=="False")]} {.type}={.reason}: {.message}{end}{"\n"}{end}'
  echo
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN; alias kubectl=$BIN/kubectl" >&2
}

up() {
  local t0=$SECONDS
  [[ -d $CHART ]] || die "no chart at $CHART (helm/vfiovm-operator)"
  "$LOCAL_DIR/up.sh"
  step "operator jar (mvn package)"
  (cd "$REPO_DIR" && mvn -B -ntp -q -Dstyle.color=never package -DskipTests -pl operator -am)
  "$LOCAL_DIR/load-image.sh" "$REPO_DIR/operator/target/vfiovm.jar"
  step "helm upgrade --install $RELEASE $CHART"
  local out d
  out=$(helm_ install "$CHART" "$RELEASE" default \
    "image.repository=${OPERATOR_IMAGE%:*}" "image.tag=${OPERATOR_IMAGE##*:}" image.pullPolicy=Never \
    "operator.memlockOverhead=$MEMLOCK_OVERHEAD" $(local_chart_values))
  info "$out"
  if [[ $out != *"(revision 1)"* ]]; then
    # upgraded in place: the jar may be new under the same tag; roll the operator onto the image just imported
    for d in $(kubectl_ -n vfiovm-system get deployment -l app.kubernetes.io/component=operator -o name); do
      kubectl_ -n vfiovm-system rollout restart "$d" >/dev/null
      kubectl_ -n vfiovm-system rollout status "$d" --timeout=300s
    done
  fi
  step "examples ($LOCAL_DIR/examples.yaml)"
  # the guest images are imported under the project version (guest-images.sh)
  sed -E "s#(docker.io/vfiovm/guest-[a-z]+):[^ }]+#\1:$PROJECT_VERSION#" "$LOCAL_DIR/examples.yaml" | kubectl_ apply -f -
  wait_for 240 "vm-a and vm-b Running" sh -c \
    "$BIN/kubectl --kubeconfig $KUBECONFIG_ADMIN -n vfiovm-demo get vvm vm-a vm-b -o jsonpath='{.items[*].status.phase}' | grep -qx 'Running Running'"
  status
  step "local up done in $((SECONDS - t0))s"
}

case ${1:-} in
  up) up ;;
  down) "$LOCAL_DIR/down.sh" ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
