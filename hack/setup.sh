#!/usr/bin/env bash
# Installs everything the test tiers need, idempotently; builds are cached under $HOME/.cache/vfiovm,
# so a second run only checks. Runs every fragment in setup.d/ in order, or only those named
# (e.g. `setup.sh 10-packages 20-kube-apiserver`). Needs root (apt-get).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export VFIOVM_CACHE=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
mkdir -p "$VFIOVM_CACHE"
steps=("$here"/setup.d/*.sh)
if (( $# )); then steps=(); for name in "$@"; do steps+=("$here/setup.d/$name.sh"); done; fi
for step in "${steps[@]}"; do
  start=$(date +%s)
  echo "== setup: $(basename "$step")"
  bash "$step"
  echo "== setup: $(basename "$step") done in $(( $(date +%s) - start )) s"
done
