#!/usr/bin/env bash
# Installs what bpfprof needs on Debian/Ubuntu (as root), makes .venv with bpfprof installed, and
# rebuilds the BPF object from source. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(python3 python3-venv python3-pip libbpf1 libbpf-dev clang llvm bpftool gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py=python3
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  rm -rf .venv
  "$py" -m venv .venv
fi
stamp=.venv/.bpfprof-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

# the committed object is rebuilt from source so it never drifts from profile.bpf.c
./scripts/build_bpf.sh >/dev/null
