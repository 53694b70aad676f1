#!/usr/bin/env bash
# Brings up a real single-node Kubernetes 1.20 cluster on this machine from Debian parts:
# containerd + runc + CNI bridge, etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet (cgroupfs driver) and kube-proxy (iptables), all as plain background processes.
# Idempotent: components already running are left alone. Builds what is not cached yet (build.sh).
# Afterwards: export KUBECONFIG=/var/lib/vfiovm-local/admin.kubeconfig   (down.sh removes it all)
source "$(dirname "$0")/lib.sh"
source "$LOCAL_DIR/pki.sh"
[[ $(id -u) == 0 ]] || die "must run as root (containerd, kubelet and the node pods need it)"
T0=$SECONDS

"$LOCAL_DIR/build.sh" all
mkdir -p "$LOCAL_STATE" "$LOCAL_DATA" "$LOGS" "$PIDS"

step "network: bridge $BRIDGE with the node address $NODE_IP"
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then ip link add "$BRIDGE" type bridge; fi
ip addr show dev "$BRIDGE" | grep -q "inet $NODE_IP/" || ip addr add "$NODE_IP/16" dev "$BRIDGE"
ip link set "$BRIDGE" up
mkdir -p "$LOCAL_STATE/cni/net.d"
# No ipMasq/portmap: pods only talk to this node, so the CNI plugins add no iptables rules.
write_file "$LOCAL_STATE/cni/net.d/10-vfiovm-local.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "vfiovm-local",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$LOCAL_STATE/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "rangeStart": "10.85.1.1", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
JSON

step "containerd"
mkdir -p "$LOCAL_STATE/containerd"
write_file "$LOCAL_STATE/containerd/config.toml" <<TOML
version = 2
root = "$LOCAL_DATA/containerd"
state = "$LOCAL_STATE/containerd"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # runc cannot lower oom_score_adj without CAP_SYS_RESOURCE, which this machine's root lacks.
  restrict_oom_score_adj = true
  # pod network namespaces under our state dir, so down.sh finds (and unmounts) exactly ours
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$LOCAL_STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
TOML
start_bg containerd containerd --config "$LOCAL_STATE/containerd/config.toml"
wait_for 60 "containerd answers" ctr_ version

step "images (imported offline into containerd's k8s.io namespace)"
ctr_ images import --base-name k8s.gcr.io/pause "$IMAGES/pause-3.4.tar" >/dev/null
ctr_ images import --base-name docker.io/vfiovm-local/busybox "$IMAGES/busybox.tar" >/dev/null
info "$PAUSE_IMAGE, docker.io/vfiovm-local/busybox:1"
jar=${OPERATOR_JAR:-$REPO_DIR/operator/target/vfiovm.jar}
if [[ -f $jar ]]; then
  "$LOCAL_DIR/load-image.sh" "$jar"
else
  info "$jar not built: operator image skipped (mvn -pl operator -am package, then hack/local/load-image.sh)"
fi

step "certificates and kubeconfigs ($PKI)"
make_pki

step "etcd (127.0.0.1:$ETCD_CLIENT_PORT)"
start_bg etcd etcd --name "$NODE_NAME" --data-dir "$LOCAL_DATA/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "$NODE_NAME=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" --log-level warn
wait_for 60 "etcd healthy" curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

step "kube-apiserver ($APISERVER_URL)"
start_bg kube-apiserver "$BIN/kube-apiserver" \
  --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port="$APISERVER_PORT" --insecure-port=0 \
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true --kubelet-preferred-address-types=InternalIP \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --feature-gates=ProcMountType=true
wait_for 120 "kube-apiserver ready" kubectl_ get --raw /readyz

step "kube-controller-manager, kube-scheduler"
start_bg kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$LOCAL_DATA/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$LOCAL_DATA/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$LOCAL_DATA/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --port=0 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --controllers='*,-nodeipam,-route,-service,-cloud-node-lifecycle'
start_bg kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$LOCAL_DATA/scheduler.kubeconfig" \
  --authentication-kubeconfig="$LOCAL_DATA/scheduler.kubeconfig" \
  --authorization-kubeconfig="$LOCAL_DATA/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --port=0 --leader-elect=false

step "kubelet (node $NODE_NAME, cgroupfs, containerd CRI)"
mkdir -p "$LOCAL_DATA/kubelet"
write_file "$LOCAL_DATA/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
resolvConf: /etc/resolv.conf
# kube-proxy makes its own chains; no kubelet chains means down.sh has less to undo.
makeIPTablesUtilChains: false
# a shared build machine's disk: never evict or garbage-collect the offline-imported images
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# node pods' procMount: Unmasked (the VM sandbox mounts a fresh proc; docs/node-pod.md) is alpha in 1.20
featureGates: {ProcMountType: true}
YAML
start_bg kubelet "$BIN/kubelet" --config="$LOCAL_DATA/kubelet/config.yaml" \
  --kubeconfig="$LOCAL_DATA/kubelet.kubeconfig" --root-dir="$LOCAL_DATA/kubelet" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" \
  --runtime-request-timeout=10m
wait_for 120 "node $NODE_NAME registered" kubectl_ get node "$NODE_NAME"

step "kube-proxy (iptables)"
write_file "$LOCAL_DATA/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $LOCAL_DATA/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0}
YAML
start_bg kube-proxy "$BIN/kube-proxy" --config="$LOCAL_DATA/kube-proxy.yaml"

wait_for 180 "node $NODE_NAME Ready" kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
wait_for 60 "service account default/default" kubectl_ -n default get serviceaccount default
step "cluster up in $((SECONDS - T0))s"
echo "export KUBECONFIG=$KUBECONFIG_ADMIN   # kubectl: $BIN/kubectl" >&2
