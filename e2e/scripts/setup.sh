#!/usr/bin/env bash
# Installs everything the test tiers need, idempotently; builds are cached under $HOME/.cache/vfiovm,
# so a second run only checks. Runs every fragment in setup.d/ in order. Needs root (apt-get).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export VFIOVM_CACHE=${VFIOVM_CACHE:-$HOME/.cache/vfiovm}
mkdir -p "$VFIOVM_CACHE"
for step in "$here"/setup.d/*.sh; do
  start=$(date +%s)
  echo "== setup: $(basename "$step")"
  bash "$step"
  echo "== setup: $(basename "$step") done in $(( $(date +%s) - start )) s"
done
