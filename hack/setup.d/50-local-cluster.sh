#!/usr/bin/env bash
# The local single-node cluster's parts (hack/local/build.sh, all cached under $VFIOVM_CACHE/local):
# Debian containerd/runc/CNI/etcd/umoci/debootstrap, kubelet + kube-scheduler + kube-controller-manager +
# kube-proxy built from the same Kubernetes 1.20.2 source as 20-kube-apiserver, the pause image from
# its build/pause, a busybox smoke image, the JRE 17 base of the operator image, the node base on top of it
# (QEMU 10.0.2 from bookworm-backports + /usr/local/bin/vfiovm-busybox) and the demo guest images.
set -euo pipefail
exec bash "$(dirname "$0")/../local/build.sh" all
