#!/usr/bin/env bash
# Build the small ELF fixtures of the unwind/ tests from tests/fixtures/src into OUTDIR.
#
#   prog            PIE, -g, with .symtab and a GNU build-id
#   prog_nopie      non-PIE executable (ET_EXEC), -g
#   prog_stripped   prog with every symbol table but .dynsym removed (strip --strip-all)
#   prog.debug      prog's separate debug file (objcopy --only-keep-debug), same build-id
#   prog_linked     prog_stripped plus a .gnu_debuglink to prog.debug
#   libfix.so       shared library, -g, no SONAME (so two copies can be dlopen'ed side by side)
#   libfix_stripped.so  libfix.so after strip --strip-all
#
# Usage: scripts/build_fixtures.sh OUTDIR        (needs gcc, strip, objcopy)
set -euo pipefail
out=${1:?usage: build_fixtures.sh OUTDIR}
src=$(cd "$(dirname "$0")/../tests/fixtures/src" && pwd)
mkdir -p "$out"
cd "$out"
cflags=(-O1 -g -fno-omit-frame-pointer -Wl,--build-id=sha1)
gcc "${cflags[@]}" -fPIE -pie -o prog "$src/prog.c"
gcc "${cflags[@]}" -fno-pie -no-pie -o prog_nopie "$src/prog.c"
strip --strip-all -o prog_stripped prog
objcopy --only-keep-debug prog prog.debug
cp prog_stripped prog_linked
objcopy --add-gnu-debuglink=prog.debug prog_linked
gcc "${cflags[@]}" -fPIC -shared -o libfix.so "$src/fixlib.c"
strip --strip-all -o libfix_stripped.so libfix.so
