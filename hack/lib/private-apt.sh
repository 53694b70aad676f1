#!/usr/bin/env bash
# A private apt directory for other Debian suites (e.g. bookworm-backports), so a step can download packages
# of that suite without touching the machine's own apt sources, preferences or state. The mirror is the one
# the machine's apt configuration already uses for bookworm (deb822 *.sources or one-line *.list), so no host
# name lives in the repository; VFIOVM_DEBIAN_MIRROR overrides it.
#   private-apt.sh DIR SUITE...     set up DIR and `apt-get update` it (idempotent)
#   private-apt.sh --mirror         print the mirror only
# then:  apt-get $(cat DIR/apt.opts) download PKG=VERSION ...   or   apt-cache $(cat DIR/apt.opts) policy PKG
set -euo pipefail

debian_mirror() {
  if [[ -n ${VFIOVM_DEBIAN_MIRROR:-} ]]; then echo "$VFIOVM_DEBIAN_MIRROR"; return; fi
  local m=""
  shopt -s nullglob
  local sources=(/etc/apt/sources.list.d/*.sources) lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  shopt -u nullglob
  if (( ${#sources[@]} )); then
    # deb822: the first stanza of Types deb whose Suites has bookworm (not -security)
    m=$(awk '
      function flush() { if (deb && suite && uri != "" && out == "") out = uri; deb = 0; suite = 0; uri = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/   { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      /^URIs:/    { uri = $2 }
      /^Suites:/  { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
      END { flush(); print out }' "${sources[@]}")
  fi
  if [[ -z $m ]]; then
    local f
    for f in "${lists[@]}"; do
      [[ -r $f ]] || continue
      m=$(sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\2/p' "$f" | head -1)
      [[ -n $m ]] && break
    done
  fi
  [[ -n $m ]] || { echo "private-apt: no Debian bookworm mirror in the machine's apt configuration (/etc/apt/sources.list*); set VFIOVM_DEBIAN_MIRROR" >&2; return 1; }
  echo "${m%/}"
}

if [[ ${1:-} == --mirror ]]; then debian_mirror; exit; fi
dir=${1:?usage: private-apt.sh DIR SUITE... | --mirror}; shift
(( $# )) || { echo "usage: private-apt.sh DIR SUITE..." >&2; exit 2; }
mirror=$(debian_mirror)
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
{
  for s in "$@"; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main"
  done
} > "$dir/sources.list"
echo "-o Dir::Etc::SourceList=$dir/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null -o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir/cache -o Debug::NoLocking=1 -o APT::Sandbox::User=root" > "$dir/apt.opts"
# shellcheck disable=SC2046 # apt.opts is a list of options
apt-get $(cat "$dir/apt.opts") update -qq
