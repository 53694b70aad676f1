#!/usr/bin/env bash
# Tears the local cluster down and leaves nothing behind: no process, mount, cgroup, network
# namespace, bridge or iptables chain of ours; removes $LOCAL_STATE and $LOCAL_DATA.
# The build cache ($VFIOVM_CACHE/local) stays. Safe to run twice, or after a half-failed up.
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || die "must run as root"
T0=$SECONDS

stop() {  # stop NAME: SIGTERM, then SIGKILL after 20s, by the pid we recorded
  local name=$1 pid
  pid_alive "$name" || { rm -f "$PIDS/$name"; return 0; }
  pid=$(cat "$PIDS/$name")
  kill "$pid"
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$PIDS/$name"
  info "$name stopped"
}

# 1. Pods, through the kubelet, so every sandbox's network is torn down by CNI.
if pid_alive kubelet && pid_alive kube-apiserver && kubectl_ get --raw /readyz >/dev/null 2>&1; then
  step "deleting all pods"
  stop kube-controller-manager   # nothing recreates or reschedules them
  stop kube-scheduler
  kubectl_ delete pods --all --all-namespaces --grace-period=1 --wait=false >/dev/null 2>&1 || true
  for _ in $(seq 60); do
    [[ -z $(ctr_ tasks ls -q 2>/dev/null) ]] && break
    sleep 1
  done
fi

step "stopping components"
for (( i=${#COMPONENTS[@]}-1; i>=1; i-- )); do stop "${COMPONENTS[i]}"; done

# 2. Whatever the kubelet did not get to: kill tasks and remove containers (sandboxes included).
if pid_alive containerd; then
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1 || true; done
fi
stop containerd
# shims of our containerd outlive it by design; find them by the socket they were started for
for p in /proc/[0-9]*; do
  if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q "containerd-shim.*-address $CONTAINERD_SOCK"; then
    kill -9 "${p#/proc/}" 2>/dev/null && info "killed shim ${p#/proc/}" || true
  fi
done

step "unmounting"
for _ in 1 2 3; do
  mapfile -t mnts < <(findmnt -rn -o TARGET | grep -E "^($LOCAL_STATE|$LOCAL_DATA)(/|$)" | sort -r || true)
  (( ${#mnts[@]} )) || break
  for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
left=$(findmnt -rn -o TARGET | grep -cE "^($LOCAL_STATE|$LOCAL_DATA)(/|$)" || true)
(( left == 0 )) || die "$left mounts under $LOCAL_STATE or $LOCAL_DATA could not be unmounted; not removing them"

step "cgroups"
# cgroupfs driver: the kubelet's /kubepods tree in every v1 hierarchy; /k8s.io is containerd's own
# (ctr); remove deepest first, once their processes are gone.
for h in /sys/fs/cgroup/*/; do
  for top in kubepods k8s.io; do
    [[ -d $h$top ]] || continue
    for _ in $(seq 20); do
      find "$h$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d $h$top ]] || break
      sleep 0.5
    done
    [[ -d $h$top ]] && info "cgroup $h$top still busy: $(cat "$h$top"/cgroup.procs 2>/dev/null | head -3 | tr '\n' ' ')"
  done
done

step "network"
if [[ -x $BIN/kube-proxy ]]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
# kube-proxy --cleanup leaves a few chains; remove every remaining KUBE-* rule and chain
for table in nat filter mangle; do
  { iptables-save -t "$table" 2>/dev/null | grep -E '^-A .*KUBE-' || true; } | sed 's/^-A /-D /' | while read -r rule; do
    eval "iptables -t $table $rule" 2>/dev/null || true
  done
  for chain in $(iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p'); do
    iptables -t "$table" -F "$chain" 2>/dev/null || true
  done
  for chain in $(iptables-save -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p'); do
    iptables -t "$table" -X "$chain" 2>/dev/null || true
  done
done
ip link del "$BRIDGE" 2>/dev/null || true

step "state"
rm -rf "$LOCAL_STATE" "$LOCAL_DATA" /var/log/pods /var/log/containers
# 1.20's kubelet keeps its device-plugin socket (and the node daemon its plugins') in
# /var/lib/kubelet/device-plugins whatever its --root-dir
rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint \
  /var/lib/kubelet/device-plugins/DEPRECATION /var/lib/kubelet/device-plugins/vfiovm-*.sock
step "down in $((SECONDS - T0))s"
