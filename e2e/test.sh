#!/usr/bin/env bash
# The test command: set up everything the tiers need (cached), then run every tier.
#   unit (*Test), real kube-apiserver (*IT), real kernel (*KernelIT), iommufd in a QEMU guest (Iommufd*IT)
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/scripts/setup.sh
exec mvn -B -ntp verify "$@"
