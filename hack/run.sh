#!/usr/bin/env bash
# The main job. Needs root. Builds what is not cached yet (under $HOME/.cache/vfiovm), with progress.
#   hack/run.sh [up]          no cluster configured (no KUBECONFIG): a real single-node Kubernetes on this
#                            machine (hack/local), the operator installed from the Helm chart, example VfioVms
#                            applied and their status printed (UIDs, limits, pinned bytes).
#                            KUBECONFIG set: runs the operator against that cluster (CRD: kubectl apply -f crds/;
#                            in production install the Helm chart instead).
#   hack/run.sh down          removes the local cluster (no process, mount or cgroup left)
#   hack/run.sh status        the local VMs' status again, and where each guest's console is
#                            (kubectl logs -n vfiovm-system <node pod> -c node-agent)
#   hack/run.sh standalone [--check]
#                            lighter, no containers: embedded kube-apiserver, this host as the node, node
#                            pods as local processes (`vfiovm standalone`)
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-up}
[[ $# -gt 0 ]] && shift
case $cmd in
  up)
    if [[ -n ${KUBECONFIG:-} ]]; then
      bash hack/setup.sh 10-packages
      mvn -B -ntp -q package -DskipTests -pl operator -am
      exec java -jar operator/target/vfiovm.jar operator "$@"
    fi
    bash hack/setup.sh 10-packages 20-kube-apiserver 50-local-cluster
    exec bash hack/local/local.sh up ;;
  down|status) exec bash hack/local/local.sh "$cmd" ;;
  standalone)
    # node pods run here as local processes: their VM process is QEMU 10 from /opt/vfiovm/qemu10,
    # booting the tiny demo guest ($VFIOVM_CACHE/guest/tiny/kernel.elf)
    bash hack/setup.sh 10-packages 20-kube-apiserver 35-qemu
    export VFIOVM_QEMU=${VFIOVM_QEMU:-/opt/vfiovm/qemu10/usr/bin/qemu-system-x86_64}
    export VFIOVM_QEMU_DATA=${VFIOVM_QEMU_DATA:-/opt/vfiovm/qemu10/usr/share/qemu:/usr/share/seabios}
    bash e2e/guest/build.sh tiny >/dev/null
    mvn -B -ntp -q package -DskipTests -pl operator -am
    # no container runtime here: the guest-tiny image is a directory holding what the image holds
    version=$(sed -n 's:^  <version>\(.*\)</version>:\1:p' pom.xml | head -1)
    root=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/guest/tiny-image
    mkdir -p "$root/boot" && cp "${VFIOVM_CACHE:-$HOME/.cache/vfiovm}/guest/tiny/kernel.elf" "$root/boot/kernel.elf"
    extra=(--image-dir "docker.io/vfiovm/guest-tiny:$version=$root")
    # the VM processes run as their own host UIDs and read their boot files from the pods' directories:
    # keep those out of $HOME (0700)
    [[ " $* " == *" --work-dir "* ]] || extra+=(--work-dir /var/lib/vfiovm-standalone)
    if [[ " $* " != *" --examples "* ]]; then
      examples=$(mktemp --suffix=.yaml)
      sed "s/guest-tiny:VERSION/guest-tiny:$version/" e2e/guest/standalone-examples.yaml > "$examples"
      extra+=(--examples "$examples")
    fi
    exec java -jar operator/target/vfiovm.jar standalone "${extra[@]}" "$@" ;;
  *) sed -n '2,15s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
