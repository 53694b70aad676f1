# Shared settings and helpers for the local single-node cluster (sourced by the hack/local scripts).
# Everything the cluster creates lives under $LOCAL_STATE (sockets, pids, netns) and $LOCAL_DATA
# (etcd, containerd, kubelet, certs, logs); everything built once is cached under $LOCAL_CACHE.
# shellcheck shell=bash
set -euo pipefail

LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LOCAL_DIR/../.." && pwd)
VFIOVM_CACHE=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
LOCAL_CACHE=$VFIOVM_CACHE/local
LOCAL_STATE=${LOCAL_STATE:-/run/vfiovm-local}
LOCAL_DATA=${LOCAL_DATA:-/var/lib/vfiovm-local}
K8S_VERSION=1.20.2
K8S_SRC_PARENT=$VFIOVM_CACHE/k8s-src
# Reuse an already unpacked (and partly built) source tree if one exists.
if [[ -z ${K8S_SRC:-} ]]; then
  for d in "$VFIOVM_CACHE/k8s-src/kubernetes-$K8S_VERSION" "$HOME/.cache/k8s-src/kubernetes-$K8S_VERSION"; do
    if [[ -d $d ]]; then K8S_SRC=$d; break; fi
  done
fi
K8S_SRC=${K8S_SRC:-$K8S_SRC_PARENT/kubernetes-$K8S_VERSION}
BIN=$LOCAL_CACHE/bin
IMAGES=$LOCAL_CACHE/images

# Network: the pods' bridge carries the node's own address, so pods reach the API server directly
# (a loopback address would point at the pod itself). Nothing here is routed off the machine.
NODE_NAME=${NODE_NAME:-vfiovm-local}
BRIDGE=vfiovm0
NODE_IP=10.85.0.1
POD_CIDR=10.85.0.0/16
SERVICE_CIDR=10.86.0.0/16
KUBERNETES_SVC_IP=10.86.0.1
APISERVER_PORT=16443
ETCD_CLIENT_PORT=12379
ETCD_PEER_PORT=12380
APISERVER_URL=https://$NODE_IP:$APISERVER_PORT

CONTAINERD_SOCK=$LOCAL_STATE/containerd/containerd.sock
PKI=$LOCAL_DATA/pki
LOGS=$LOCAL_DATA/logs
PIDS=$LOCAL_STATE/pids
KUBECONFIG_ADMIN=$LOCAL_DATA/admin.kubeconfig
# Pause image built from the Kubernetes source's build/pause (its Makefile's TAG).
PAUSE_IMAGE=k8s.gcr.io/pause:3.4
# The chart's default image: values.yaml image.repository vfiovm/operator, tag = Chart appVersion, which
# follows the project version (the e2e profile's e2e.image.tag is ${project.version} too).
PROJECT_VERSION=$(sed -n 's:^  <version>\(.*\)</version>:\1:p' "$REPO_DIR/pom.xml" | head -1)
OPERATOR_IMAGE=${OPERATOR_IMAGE:-docker.io/vfiovm/operator:${PROJECT_VERSION:-0.1.0-SNAPSHOT}}
# Start order; stopped in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
ctr_() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND once a second until it succeeds.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start >= timeout )); then die "timed out after ${timeout}s waiting for $what"; fi
    sleep 1
  done
  info "$what ($((SECONDS - start))s)"
}

pid_alive() { [[ -f $PIDS/$1 ]] && kill -0 "$(cat "$PIDS/$1")" 2>/dev/null; }

# start_bg NAME COMMAND...: runs COMMAND detached in its own session, logging to $LOGS/NAME.log.
start_bg() {
  local name=$1; shift
  if pid_alive "$name"; then info "$name already running (pid $(cat "$PIDS/$name"))"; return; fi
  mkdir -p "$PIDS" "$LOGS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name"
  info "$name started (pid $!, log $LOGS/$name.log)"
}

# write_file PATH < CONTENT: replaces PATH only when the content differs (kube-proxy exits when its
# config file changes under it).
write_file() {
  local tmp; tmp=$(mktemp)
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; chmod 0644 "$1"; fi
}

# helm_ install CHART RELEASE NS [k=v]... | helm_ uninstall RELEASE NS: helm-java, no helm binary needed.
helm_() {
  local cp=$LOCAL_CACHE/helm-java.classpath
  if [[ ! -s $cp ]]; then
    mvn -B -ntp -q -Dstyle.color=never -f "$LOCAL_DIR/helm/pom.xml" dependency:build-classpath -Dmdep.outputFile="$cp" >&2
  fi
  local cmd=$1; shift
  case $cmd in
    install) java -cp "$(cat "$cp")" "$LOCAL_DIR/helm/HelmRelease.java" install "$1" "$2" "$3" "$KUBECONFIG_ADMIN" "${@:4}" ;;
    uninstall) java -cp "$(cat "$cp")" "$LOCAL_DIR/helm/HelmRelease.java" uninstall "$1" "$2" "$KUBECONFIG_ADMIN" ;;
  esac
}

# The node-agent capabilities this host's root can grant (containerd cannot give a container a capability its
# own bounding set lacks): the chart's production set (nodePods.capabilities) minus what CapBnd lacks. This
# machine's root has no CAP_SYS_RESOURCE, so here it is SETUID SETGID SETPCAP KILL SYS_PTRACE.
node_pod_capabilities() {
  local bnd cap bit out=()
  bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  for cap in SETUID:7 SETGID:6 SETPCAP:8 KILL:5 SYS_PTRACE:19 SYS_RESOURCE:24; do
    bit=${cap#*:}
    if (( (bnd >> bit) & 1 )); then out+=("${cap%:*}"); fi
  done
  echo "${out[*]}"
}

# Chart values every install on this cluster needs (helm --set KEY=VALUE): the capability set above. (The
# kubelet runs with --root-dir=$LOCAL_DATA/kubelet, but 1.20's kubelet keeps its device-plugin socket in
# /var/lib/kubelet/device-plugins whatever the root dir, which is the chart's default nodeDaemon.kubeletDir.)
local_chart_values() {
  local i=0 cap
  for cap in $(node_pod_capabilities); do
    echo "nodePods.capabilities[$i]=$cap"
    i=$((i + 1))
  done
}
