#!/usr/bin/env bash
# Debian packages the build and the test tiers use (JDK 17 and Maven are on the machine image already,
# installed here too so a bare Debian machine works).
set -euo pipefail
pkgs=(openjdk-17-jdk-headless maven gcc libc6-dev util-linux procps bubblewrap libseccomp2)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "packages present: ${pkgs[*]}"
