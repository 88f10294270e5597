#!/usr/bin/env bash
# Builds profiler/bpf/*.bpf.o (CO-RE) from source with clang, against a vmlinux.h dumped from this
# kernel's BTF. Needs clang, llvm-strip, bpftool and libbpf-dev's headers (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bpf
mkdir -p "$out"
if [ ! -s "$out/vmlinux.h" ]; then
  bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$out/vmlinux.h.tmp"
  mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
fi
arch=$(uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
strip=$(command -v llvm-strip || ls /usr/bin/llvm-strip-* 2>/dev/null | head -1)
for src in profiler/bpf/*.bpf.c; do
  obj=${src%.c}.o
  clang -O2 -g -target bpf -D__TARGET_ARCH_"$arch" -I "$out" -I profiler/bpf \
    -Wall -Werror -c "$src" -o "$obj.tmp"
  "$strip" -g "$obj.tmp"   # keep .BTF/.BTF.ext, drop DWARF
  mv "$obj.tmp" "$obj"
  echo "built $obj"
done
