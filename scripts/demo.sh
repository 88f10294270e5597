#!/usr/bin/env bash
# The main job on an embedded default: set up, profile the bundled demo workload for a few seconds,
# write a flame graph (and folded stacks) under out/, and say where.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
mkdir -p out build
# clang keeps a frame pointer in leaf functions too (GCC 12 drops it there whatever the flags)
clang -O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -o build/demo scripts/demo/demo.c
.venv/bin/bpfprof record -F 999 -o out/demo.svg -o out/demo.folded -o out/demo.speedscope.json \
  --title "bpfprof demo" -- build/demo 3
echo
echo "flame graph: $(pwd)/out/demo.svg  (open it in a browser)"
echo "also: out/demo.folded (flamegraph.pl, inferno), out/demo.speedscope.json (speedscope.app)"
