"""Command lines, parent pids and build-id notes read for the outputs (profiler/procinfo.py)."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

from exporters.model import ProfileMeta
from profiler.procinfo import kernel_build_id, parse_build_id_note, parse_cmdline, parse_ppid, read_process
from tests.unit.conftest import run
from unwind.elf import ElfFile


def note(name: bytes, desc: bytes, n_type: int) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), n_type) + pad(name) + pad(desc)


def test_parse_cmdline_joins_arguments_with_spaces() -> None:
    assert parse_cmdline(b"python3\0app.py\0--x\0") == "python3 app.py --x"
    assert parse_cmdline(b"nginx: worker process") == "nginx: worker process"  # rewritten argv
    assert parse_cmdline(b"a\0\0b\0") == "a  b"  # an empty argument
    assert parse_cmdline(b"") == ""  # a kernel thread
    assert parse_cmdline(b"\xff\0") == "\ufffd"


def test_parse_ppid_after_the_last_parenthesis() -> None:
    assert parse_ppid(b"42 (a) b (c)) S 7 42 42 0 -1") == 7
    assert parse_ppid(b"1 (systemd) S 0 1 1 0") == 0


def test_read_process_of_this_process_and_a_gone_one() -> None:
    cmdline, ppid = read_process(os.getpid())  # type: ignore[misc]
    assert ppid == os.getppid()
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
        assert cmdline == " ".join(a.decode() for a in f.read().rstrip(b"\0").split(b"\0"))
    child = subprocess.Popen(["true"])
    child.wait()
    assert read_process(child.pid) is None


def test_build_id_note_parsing() -> None:
    gnu = note(b"GNU\0", bytes(range(20)), 3)
    assert parse_build_id_note(note(b"Linux\0", b"\1\2\3", 6) + gnu) == bytes(range(20))
    assert parse_build_id_note(note(b"Xen\0", b"abcd", 3)) is None  # type 3 of another owner
    assert parse_build_id_note(gnu[:-4]) is None  # truncated
    assert parse_build_id_note(b"") is None


def test_build_id_of_an_elf_files_notes_matches_readelf(fx: Path) -> None:
    exe = next(p for p in sorted(fx.iterdir()) if p.is_file() and p.read_bytes()[:4] == b"\x7fELF")
    with ElfFile.open(exe) as elf:
        expected = elf.build_id
        section = elf.section(".note.gnu.build-id")
        assert section is not None
        data = elf.section_data(section)
    assert expected is not None
    assert parse_build_id_note(data) == expected
    assert expected.hex() in run("readelf", "-n", exe)


def test_kernel_build_id() -> None:
    """The running kernel's build-id as ``perf buildid-list -k`` prints it (when perf is here)."""
    found = kernel_build_id()
    if os.access("/sys/kernel/notes", os.R_OK):
        assert found is not None
        assert re.fullmatch(r"[0-9a-f]{40}", found), found  # a SHA-1 build-id (ld --build-id)
        perf = shutil.which("perf")
        if perf is not None:
            assert run(perf, "buildid-list", "-k").strip() == found
    assert kernel_build_id("/nonexistent/notes") is None


def test_symbolize_profile_fills_build_ids_from_what_the_symbolizer_read() -> None:
    """libc's build-id (this process's getpid) as readelf shows it; no entry for modules not in frames."""
    from profiler.raw import RawProfile, RawStack, StackStatus
    from profiler.symbolize import symbolize_profile
    from unwind.symbolizer import Symbolizer

    addr = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value
    assert addr is not None
    raw = RawProfile()
    stack = RawStack(os.getpid(), os.getpid(), "python", (addr,), (), StackStatus.OK, StackStatus.SKIPPED)
    raw.add(stack, 3, 30)
    meta = ProfileMeta()
    with Symbolizer(cache=False) as sym:
        profile = symbolize_profile(raw, sym, meta)
    ((sample, _),) = profile.samples.items()
    libc = sample.frames[0].module
    assert libc is not None
    assert "libc" in os.path.basename(libc)
    assert list(meta.build_ids) == [libc]
    assert f"Build ID: {meta.build_ids[libc]}" in run("readelf", "-n", libc)


def test_lazy_symbolizer_captures_command_lines_and_parents() -> None:
    from profiler.symbolize import LazySymbolizer

    with LazySymbolizer(cache=False) as lazy:
        lazy.on_new_process(os.getpid(), 0)
        lazy.on_new_process(2**22 + 1, 0)  # above PID_MAX_LIMIT (2**22): never a live process
        meta = ProfileMeta()
        lazy.fill_processes(meta)
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
        assert meta.process_names == {os.getpid(): parse_cmdline(f.read())}
    assert meta.parents == {os.getpid(): os.getppid()}
