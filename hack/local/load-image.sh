#!/usr/bin/env bash
# Packs the operator jar as the chart's image (operator-image.sh) and imports it, with the demo guest images
# (guest-images.sh: docker.io/vfiovm/guest-tiny and guest-demo), into the running local cluster's containerd
# (namespace k8s.io), where the kubelet finds them without any registry.
# Usage: load-image.sh [JAR]   (default $OPERATOR_JAR, else operator/target/vfiovm.jar)
source "$(dirname "$0")/lib.sh"
JAR=${1:-${OPERATOR_JAR:-$REPO_DIR/operator/target/vfiovm.jar}}
pid_alive containerd || die "the local cluster is not up (hack/local/up.sh)"
tar=$("$LOCAL_DIR/operator-image.sh" "$JAR")
ctr_ images import --base-name "${OPERATOR_IMAGE%:*}" "$tar" >/dev/null
info "$OPERATOR_IMAGE imported (from $JAR)"
guests=$("$LOCAL_DIR/guest-images.sh")
while read -r image gtar; do
  ctr_ images import --base-name "${image%:*}" "$gtar" >/dev/null
  info "$image imported"
done <<< "$guests"
