#!/usr/bin/env bash
# The test command: sets up everything the tiers need (cached under $HOME/.cache/vfiovm), then runs every
# tier: unit (*Test), real kube-apiserver (*IT), real kernel (*KernelIT), iommufd in a QEMU guest
# (Iommufd*IT) through `mvn verify`, then the e2e suite (*E2E) on a real local single-node cluster.
# Needs root. Extra arguments go to the `mvn verify` run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh
mvn -B -ntp verify "$@"
bash hack/local/e2e.sh
