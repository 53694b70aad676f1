#!/usr/bin/env bash
# Packs the operator jar onto the cached node base (build.sh node-base: JRE 17, QEMU 10.0.2 from
# bookworm-backports, /usr/local/bin/vfiovm-busybox) as an OCI image, without a daemon or registry, and
# prints the path of the OCI layout tar (cached per jar and base content). The same image runs the operator
# Deployment and the node pods (whose VM process is that QEMU).
# The tar's index names the tag only; import it with
#   ctr -n k8s.io images import --base-name docker.io/vfiovm/operator TAR
# Usage: operator-image.sh [JAR]   (default operator/target/vfiovm.jar; tag from $OPERATOR_IMAGE)
source "$(dirname "$0")/lib.sh"
JAR=${1:-$REPO_DIR/operator/target/vfiovm.jar}
[[ -f $JAR ]] || die "$JAR not found: build it with mvn -pl operator -am package"
"$LOCAL_DIR/build.sh" node-base >&2
TAG=${OPERATOR_IMAGE##*:}
SUM=$(cat "$JAR" "$IMAGES/node-base/index.json" | sha256sum | cut -c1-16)
TAR=$IMAGES/operator-$TAG-$SUM.tar
if [[ ! -f $TAR ]]; then
  step "operator image $OPERATOR_IMAGE from $JAR"
  w=$(mktemp -d)
  trap 'rm -rf "$w"' EXIT
  cp -a "$IMAGES/node-base" "$w/oci"
  rm -f "$w/oci/.done"
  mkdir -p "$w/add/opt/vfiovm"
  cp "$JAR" "$w/add/opt/vfiovm/vfiovm.jar"
  umoci insert --image "$w/oci:base" "$w/add/opt" /opt
  # One jar, two entry points (picocli): the chart passes "operator", node pods "node-agent ...".
  # The image user stays root: node pods must be root; the chart runs the operator as 65532.
  umoci config --image "$w/oci:base" --tag "$TAG" \
    --config.entrypoint java --config.entrypoint -jar --config.entrypoint /opt/vfiovm/vfiovm.jar \
    --config.workingdir /opt/vfiovm
  umoci rm --image "$w/oci:base"
  umoci gc --layout "$w/oci"
  rm -f "$IMAGES"/operator-"$TAG"-*.tar
  tar -C "$w/oci" -cf "$TAR.tmp" . && mv "$TAR.tmp" "$TAR"
  info "operator image at $TAR ($(du -h "$TAR" | cut -f1))"
fi
echo "$TAR"
