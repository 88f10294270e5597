"""Builds the test workloads with gcc into tests/workloads/bin/ (once per source change)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
BIN = HERE / "bin"

# Frame pointers everywhere: -fno-shrink-wrap so GCC sets rbp up at entry, not on a slow path.
FP_FLAGS = [
    "-O2",
    "-g",
    "-fno-omit-frame-pointer",
    "-fno-shrink-wrap",
    "-fno-inline",
    "-fno-optimize-sibling-calls",
    "-pthread",
]


# No frame pointers, as distributions build: only DWARF CFI can unwind it.
NOFP_FLAGS = [
    "-O2",
    "-g",
    "-fomit-frame-pointer",
    "-fno-inline",
    "-fno-optimize-sibling-calls",
    "-pthread",
]


def build(name: str, flags: list[str] | None = None, suffix: str = "", src: Path | None = None) -> Path:
    """Compile tests/workloads/NAME.c (or ``src``); returns the binary's path."""
    src = src or HERE / f"{name}.c"
    flags = FP_FLAGS if flags is None else flags
    digest = hashlib.sha256(src.read_bytes() + " ".join(flags).encode()).hexdigest()[:12]
    out = BIN / f"{name}{suffix}-{digest}"
    if not out.exists():
        BIN.mkdir(exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run(["gcc", *flags, "-o", str(tmp), str(src)], check=True)
        tmp.rename(out)
    return out
