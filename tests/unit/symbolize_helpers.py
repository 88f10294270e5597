"""Helpers of the debug-info and symbol-cache tests: symbolize a file through a fake /proc, build binaries."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Any

from tests.unit.conftest import run
from unwind.elf import ElfFile
from unwind.frame import Frame
from unwind.symbolizer import Symbolizer

BASE = 0x10000000  # where the fake process has its executable mapped (ELF vaddr 0 is here)
_pids = itertools.count(5000)


def fake_process(exe: Path, root: Path) -> tuple[str, int]:
    """A fake /proc under ``root`` holding one process that maps the text of ``exe`` at ``BASE``.

    Returns (proc dir, pid). The file is reached by its path (no map_files), as for a non-root user.
    """
    with ElfFile.open(exe) as elf:
        text = next(s for s in elf.load_segments if s.is_exec)
    pid = next(_pids)
    proc = root / f"proc-{pid}"
    (proc / str(pid)).mkdir(parents=True)
    start = BASE + text.vaddr - text.offset % 4096
    end = start + ((text.offset % 4096 + text.filesz + 4095) & ~4095)
    line = (
        f"{start:x}-{end:x} r-xp {text.offset - text.offset % 4096:08x} fe:00 {os.stat(exe).st_ino} {exe}\n"
    )
    (proc / str(pid) / "maps").write_text(line)
    return str(proc), pid


def frames_of(exe: Path, root: Path, vaddrs: list[int], **options: Any) -> list[Frame]:
    """The frames of ELF vaddrs of ``exe`` (each looked up as a leaf) from a new Symbolizer(**options)."""
    proc, pid = fake_process(exe, root)
    with Symbolizer(proc=proc, **options) as sym:
        return [sym.symbolize_user(pid, [BASE + v])[0] for v in vaddrs]


def names_of(exe: Path, root: Path, vaddrs: list[int], **options: Any) -> list[str | None]:
    return [f.name for f in frames_of(exe, root, vaddrs, **options)]


def build_id_path(debug_dir: Path, exe: Path) -> Path:
    """Where ``exe``'s debug file goes under ``debug_dir`` in the build-id layout."""
    with ElfFile.open(exe) as elf:
        build_id = elf.build_id
    assert build_id is not None
    hexid = build_id.hex()
    return debug_dir / ".build-id" / hexid[:2] / f"{hexid[2:]}.debug"


def place(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    return dest


def renamed_debug(debug: Path, out: Path, new_name: str) -> Path:
    """A copy of ``debug`` where ``static_helper`` is called ``new_name``; same build-id, new CRC."""
    run("objcopy", f"--redefine-sym=static_helper={new_name}", debug, out)
    return out


def with_debuglink(stripped: Path, debug: Path, out: Path) -> Path:
    """A copy of ``stripped`` whose .gnu_debuglink names ``debug`` (and holds its CRC-32)."""
    run("objcopy", f"--add-gnu-debuglink={debug}", stripped, out)
    return out


def minidebuginfo_binary(exe: Path, work: Path, out: Path) -> Path:
    """``exe`` stripped, with a MiniDebugInfo section made as Fedora does (GDB manual, "MiniDebugInfo").

    The function symbols not already in .dynsym are kept in a symbol-only copy of the debug info,
    xz-compressed into ``.gnu_debugdata`` of the stripped binary.
    """
    work.mkdir(parents=True, exist_ok=True)
    dynsyms = {
        line.split()[0] for line in run("nm", "-D", "--format=posix", "--defined-only", exe).splitlines()
    }
    funcsyms = {
        p[0]
        for p in (line.split() for line in run("nm", "--format=posix", "--defined-only", exe).splitlines())
        if len(p) >= 2 and p[1] in ("T", "t", "D")
    }
    keep = work / "keep_symbols"
    keep.write_text("".join(f"{name}\n" for name in sorted(funcsyms - dynsyms)))
    run("objcopy", "--only-keep-debug", exe, work / "debug")
    mini = work / "mini_debuginfo"
    run("objcopy", "-S", "--remove-section", ".gdb_index", "--remove-section", ".comment",
        f"--keep-symbols={keep}", work / "debug", mini)  # fmt: skip
    run("strip", "--strip-all", "-R", ".comment", "-o", out, exe)
    run("xz", "-f", mini)
    run("objcopy", f"--add-section=.gnu_debugdata={mini}.xz", out)
    return out
