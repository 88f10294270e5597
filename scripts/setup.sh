#!/usr/bin/env bash
# Installs what bpfprof needs on Debian/Ubuntu (as root), makes .venv with bpfprof installed, and
# rebuilds the BPF object from source. Safe to run again: it skips what is already there.
# usage: scripts/setup.sh [--test | --bench]
#
# Python dependencies come from Debian's packages (numpy, psutil, pytest, hypothesis) into a venv
# with --system-site-packages, so set-up works without reaching PyPI; only the linter (ruff, not
# packaged in Debian 12) comes from PyPI, and only when it can be reached.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(python3 python3-venv python3-pip python3-setuptools python3-numpy python3-psutil python3-pytest
      python3-hypothesis libbpf1 libbpf-dev clang llvm bpftool gcc libc6-dev util-linux)
# --test: also what only the tests use: chromium and python3-websocket (the SVG in a real browser, over
# the DevTools protocol), node (the flame graph's JavaScript; JIT perf maps), debuginfod
# (a real server for the client), g++ (demangling), gdb (unwinder reference), libc6-dbg (libc lines),
# xz-utils (MiniDebugInfo fixtures), golang-go (`go tool pprof` reads the pprof output), tmux (a real
# terminal for `bpfprof top` and the progress line), linux-perf (`perf stat -vv` is the reference for
# event attrs)
case "${1:-}" in --test|--bench)
  pkgs+=(nodejs debuginfod g++ gdb libc6-dbg binutils xz-utils golang-go tmux linux-perf chromium
         python3-websocket) ;;
esac
# --bench: also the tools the benchmarks compare with (bcc's profile runs only where the kernel's
# headers are installed; scripts/bench/run_all.py says so when it cannot)
[ "${1:-}" = --bench ] && pkgs+=(bpftrace bpfcc-tools)
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

# Debian's interpreter, whatever else is first on PATH, so its packages are the venv's
py=/usr/bin/python3
if [ ! -x .venv/bin/python ] || [ "$(readlink -f .venv/bin/python)" != "$(readlink -f $py)" ]; then
  rm -rf .venv
  "$py" -m venv --system-site-packages .venv
fi
stamp=.venv/.bpfprof-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # compat: a plain path entry; the default import hook costs ~13 ms at every start
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps \
    --config-settings editable_mode=compat -e .
  touch "$stamp"
fi
if [ ! -x .venv/bin/ruff ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check ruff 2>/dev/null \
    || echo "setup: could not install ruff from PyPI; lint will be skipped" >&2
fi

# bytecode written now: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every start would
# otherwise compile bpfprof's modules again (~40 ms of `stat`'s or `record`'s start here)
.venv/bin/python -m compileall -q -j 0 profiler unwind exporters >/dev/null

# the committed object is rebuilt from source so it never drifts from profile.bpf.c
./scripts/build_bpf.sh >/dev/null
