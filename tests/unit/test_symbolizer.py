"""Symbolizer on this test process, on gcc-built programs that exit before symbolization, and on kallsyms."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from profiler.symbolize import LazySymbolizer
from tests.unit.conftest import nm_addr, run
from unwind.elf import ElfFile
from unwind.frame import Frame, FrameKind, Reason
from unwind.kallsyms import parse_kallsyms
from unwind.maps import Mapping, capture_early, find_mapping, load_maps
from unwind.symbolizer import Symbolizer

ROOT = Path(__file__).resolve().parents[2]
KALLSYMS = ROOT / "tests" / "fixtures" / "kallsyms"


def readelf_funcs(path: str | Path) -> dict[int, set[str]]:
    """Names of defined FUNC/IFUNC symbols by value, from ``readelf -sW --dyn-syms``."""
    out: dict[int, set[str]] = {}
    for line in run("readelf", "-sW", "--dyn-syms", path).splitlines():
        m = re.match(r"^\s*\d+:\s+([0-9a-f]+)\s+\S+\s+(I?FUNC)\s+\w+\s+\w+\s+(\d+)\s+(\S+)", line)
        if m:
            out.setdefault(int(m[1], 16), set()).add(m[4].split("@")[0])
    return out


def readelf_size(path: Path, name: str) -> tuple[int, int]:
    """(value, size) of symbol ``name``, from ``readelf -sW``."""
    for line in run("readelf", "-sW", path).splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[7] == name:
            return int(parts[1], 16), int(parts[2], 0)
    raise AssertionError(f"{name} not in {path}")


def load_base(pid: int, path: Path) -> int:
    """Start of the offset-0 mapping of ``path`` in ``pid``: the load base of a PIE linked at 0."""
    real = os.path.realpath(path)
    return next(m.start for m in load_maps(pid) if m.offset == 0 and os.path.realpath(m.path) == real)


def vaddr_of(path: str, file_off: int) -> int:
    """ELF vaddr of a file offset, computed from ``readelf -lW`` LOAD lines."""
    for line in run("readelf", "-lW", path).splitlines():
        p = line.split()
        if p[:1] == ["LOAD"] and int(p[1], 16) <= file_off < int(p[1], 16) + int(p[4], 16):
            return file_off - int(p[1], 16) + int(p[2], 16)
    raise AssertionError(f"offset {file_off:#x} in no LOAD segment of {path}")


class Spawned:
    """A fixture program started with an argument so it prints its function addresses and waits."""

    def __init__(self, exe: Path) -> None:
        self.proc = subprocess.Popen([str(exe), "wait"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.addrs = {k: int(v, 16) for k, v in (item.split("=") for item in line.split())}
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def spawn() -> Iterator[type[Spawned]]:
    started: list[Spawned] = []

    def factory(exe: Path) -> Spawned:
        s = Spawned(exe)
        started.append(s)
        return s

    yield factory  # type: ignore[misc]
    for s in started:
        s.stop()


def libc_mapping() -> Mapping:
    return next(m for m in load_maps(os.getpid()) if m.is_exec and m.name.startswith("libc.so"))


def fn_addr(fn: Any) -> int:
    value = ctypes.cast(fn, ctypes.c_void_p).value
    assert value is not None
    return value


# -- this process --------------------------------------------------------------------------------


def test_libc_function_of_this_process() -> None:
    addr = fn_addr(ctypes.CDLL(None).getpid)
    libc = libc_mapping()
    assert libc.contains(addr)
    expected = readelf_funcs(libc.path)[vaddr_of(libc.path, libc.to_file_offset(addr))]
    with Symbolizer() as sym:
        (frame,) = sym.symbolize_user(os.getpid(), [addr])
    assert "getpid" in expected
    assert frame.name in expected
    assert frame.name == "getpid"  # the plainest alias (over __getpid)
    assert frame.kind is FrameKind.USER
    assert frame.module == libc.path
    assert frame.file_off == libc.to_file_offset(addr)
    assert frame.unknown is None


def test_known_addresses_come_from_the_per_process_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    addr = fn_addr(ctypes.CDLL(None).getpid)
    with Symbolizer() as sym:
        (first,) = sym.symbolize_user(os.getpid(), [addr])

        def no_placing(*args: object) -> None:
            raise AssertionError("a known address was looked up again")

        monkeypatch.setattr(sym, "_place", no_placing)
        (again,) = sym.symbolize_user(os.getpid(), [addr])
    assert again is first


def test_shared_library_exported_and_local(fx: Path) -> None:
    lib = ctypes.CDLL(str(fx / "libfix.so"))
    lib.fixlib_local_addr.restype = ctypes.c_void_p
    exported, local = fn_addr(lib.fixlib_exported), lib.fixlib_local_addr()
    with Symbolizer() as sym:
        frames = sym.symbolize_user(os.getpid(), [exported + 2, local + 1])  # [1] is looked up at ip - 1
    assert [f.name for f in frames] == ["fixlib_exported", "fixlib_local"]
    assert all(f.module is not None and f.module.endswith("/libfix.so") for f in frames)


def test_stripped_library_keeps_module_and_offset(fx: Path) -> None:
    lib = ctypes.CDLL(str(fx / "libfix_stripped.so"))
    lib.fixlib_local_addr.restype = ctypes.c_void_p
    local = lib.fixlib_local_addr()
    mapping = find_mapping(load_maps(os.getpid()), local)
    assert mapping is not None
    with Symbolizer(debug_dirs=()) as sym:
        exported, unnamed = sym.symbolize_user(os.getpid(), [fn_addr(lib.fixlib_exported), local + 1])
    assert exported.name == "fixlib_exported"  # from .dynsym
    assert unnamed.name is None
    assert unnamed.unknown is Reason.NO_SYMBOL
    assert unnamed.file_off == mapping.to_file_offset(local)
    # strip keeps the loaded layout: the offset is where the unstripped library has fixlib_local.
    with ElfFile.open(fx / "libfix.so") as elf:
        seg = next(
            s
            for s in elf.load_segments
            if s.vaddr <= nm_addr(fx / "libfix.so", "fixlib_local") < s.vaddr + s.memsz
        )
        assert unnamed.file_off == nm_addr(fx / "libfix.so", "fixlib_local") - seg.vaddr + seg.offset
    assert unnamed.label() == f"libfix_stripped.so+0x{unnamed.file_off:x}"


def test_vdso_function(tmp_path: Path) -> None:
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    base = libc.getauxval(33)  # AT_SYSINFO_EHDR: where the kernel mapped the vDSO
    vdso = next(m for m in load_maps(os.getpid()) if m.path == "[vdso]")
    assert vdso.start == base
    with open(f"/proc/{os.getpid()}/mem", "rb") as mem:
        mem.seek(vdso.start)
        (tmp_path / "vdso.so").write_bytes(mem.read(vdso.end - vdso.start))
    funcs = readelf_funcs(tmp_path / "vdso.so")  # readelf, not our reader, says where clock_gettime is
    value = next(v for v, names in funcs.items() if names & {"clock_gettime", "__vdso_clock_gettime"})
    with Symbolizer() as sym:
        (frame,) = sym.symbolize_user(os.getpid(), [base + value + 1])
    assert frame.name in funcs[value]
    assert frame.module == "[vdso]"
    assert frame.unknown is None


@pytest.mark.parametrize("shared", [False, True])  # MAP_SHARED anonymous memory shows as /dev/zero (deleted)
def test_anonymous_executable_memory(shared: bool) -> None:
    flags = (mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE) | mmap.MAP_ANONYMOUS
    with mmap.mmap(-1, 4096, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC) as anon:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(anon))  # the temporary export ends here
        mapping = find_mapping(load_maps(os.getpid()), addr)
        assert mapping is not None
        assert mapping.is_exec
        with Symbolizer() as sym:
            (frame,) = sym.symbolize_user(os.getpid(), [addr + 16])
    assert frame.unknown is Reason.ANON
    assert frame.name is None
    assert frame.label() == "[unknown]"


def test_corrupt_elf_mapped_executable(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.so"
    bad.write_bytes(b"\x7fELF\x02\x01\x01" + b"\xff" * 8185)
    with open(bad, "rb") as f, mmap.mmap(f.fileno(), 8192, prot=mmap.PROT_READ | mmap.PROT_EXEC):
        start = next(m.start for m in load_maps(os.getpid()) if m.path == str(bad) and m.is_exec)
        with Symbolizer() as sym:
            frames = sym.symbolize_user(os.getpid(), [start + 0x10, start + 0x20])
            summary = sym.unknown_by_module()
    assert [f.unknown for f in frames] == [Reason.BAD_ELF, Reason.BAD_ELF]
    assert frames[0].module == str(bad)
    assert frames[0].label() == "corrupt.so+0x10"
    assert frames[1].label() == "corrupt.so+0x1f"  # a return address, looked up at ip - 1
    assert summary == {str(bad): 2}


def test_no_mapping_and_order_preserved() -> None:
    getpid = fn_addr(ctypes.CDLL(None).getpid)
    with Symbolizer() as sym:
        frames = sym.symbolize_user(os.getpid(), [getpid, 0x8, getpid + 1, 0x10, getpid])
    assert len(frames) == 5
    assert frames[1].unknown is Reason.NO_MAPPING
    assert frames[3].unknown is Reason.NO_MAPPING
    assert frames[0].name == frames[2].name == "getpid"  # the leaf as is; getpid+1 at ip - 1
    assert frames[4].name != "getpid"  # a return address at the very start: the byte before getpid
    assert frames[1].label() == "[unknown]"


def test_capture_is_idempotent_and_reports_missing_processes() -> None:
    with Symbolizer() as sym:
        assert sym.capture(os.getpid()) is True
        assert sym.capture(os.getpid()) is False
        gone = _dead_pid()
        assert sym.capture(gone) is False
        frames = sym.symbolize_user(gone, [0x401000, 0x401010])
        assert [f.unknown for f in frames] == [Reason.NO_PROCESS, Reason.NO_PROCESS]
        assert sym.symbolize_user(gone, []) == []
        assert sym.unknown_by_module() == {"[unknown]": 2}


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# -- programs that exit before symbolization -------------------------------------------------------


def test_exited_and_deleted_program_still_symbolizes(fx: Path, tmp_path: Path, spawn: type[Spawned]) -> None:
    exe = tmp_path / "prog"
    shutil.copy(fx / "prog", exe)
    child = spawn(exe)
    base = load_base(child.pid, exe)
    for name in ("leaf_work", "static_helper", "middle_work"):  # nm + maps agree with the program
        assert child.addrs[name] == base + nm_addr(exe, name)
    with Symbolizer() as sym:
        assert sym.capture(child.pid)
        exe.unlink()
        child.stop()
        with pytest.raises(ProcessLookupError):
            os.kill(child.pid, 0)
        leaf, caller = child.addrs["leaf_work"], child.addrs["middle_work"]
        frames = sym.symbolize_user(child.pid, [leaf + 4, caller + 6, child.addrs["static_helper"] + 3])
    assert [f.name for f in frames] == ["leaf_work", "middle_work", "static_helper"]
    assert all(f.module == str(exe) and f.unknown is None for f in frames)
    # A symbolizer that never saw the process alive cannot do it.
    with Symbolizer() as late:
        assert late.symbolize_user(child.pid, [leaf])[0].unknown is Reason.NO_PROCESS


def test_an_early_capture_symbolizes_a_program_that_exited_and_was_deleted_before_the_symbolizer(
    fx: Path, tmp_path: Path, spawn: type[Spawned]
) -> None:
    """unwind.maps.capture_early (taken at exec while the recording's symbolizer is still being made)
    keeps the maps and the executable files open: handed over later, the process long gone and its
    binary deleted, its frames are named; a vDSO address too."""
    exe = tmp_path / "prog"
    shutil.copy(fx / "prog", exe)
    child = spawn(exe)
    early = capture_early(child.pid)
    assert early is not None
    text = next(m for m in early.maps if m.is_exec and m.path == str(exe))
    if text.start not in early.fds:
        pytest.skip("opening /proc/PID/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE")
    vdso = next((m for m in early.maps if m.path == "[vdso]"), None)
    child.stop()
    exe.unlink()
    assert capture_early(child.pid) is None  # gone
    try:
        with Symbolizer() as sym:
            assert sym.capture(child.pid, 0, early)
            (frame,) = sym.symbolize_user(child.pid, [child.addrs["leaf_work"] + 1])
            assert (frame.name, frame.module) == ("leaf_work", str(exe))
            if vdso is not None and early.vdso is not None:
                (v,) = sym.symbolize_user_addrs(child.pid, [vdso.start + 0x800])
                assert v.module == "[vdso]", v
                assert v.unknown is not Reason.NO_FILE, v  # its bytes were kept
    finally:
        early.close()
    assert early.fds == {}


@contextlib.contextmanager
def slow_warm_up(release: threading.Event) -> Iterator[LazySymbolizer]:
    """A LazySymbolizer whose warm-up thread makes nothing until ``release`` is set."""
    with LazySymbolizer() as symbolizers:
        symbolizers._warming = threading.Thread(target=release.wait, daemon=True)
        symbolizers._warming.start()
        yield symbolizers


def test_processes_seen_during_the_warm_up_are_captured_without_waiting_for_it(
    fx: Path, spawn: type[Spawned]
) -> None:
    """While the warm-up thread still makes the symbolizer, a new process is captured early (nothing
    waits for the warm-up); once it is done the capture is handed over, and the process, exited
    meanwhile, is named."""
    release = threading.Event()
    with slow_warm_up(release) as symbolizers:
        child = spawn(fx / "prog")
        symbolizers.on_new_process(child.pid, 0)
        assert symbolizers._symbolizer is None  # it did not make (or wait for) the symbolizer
        child.stop()
        release.set()
        sym = symbolizers.wait()
        (frame,) = sym.symbolize_user(child.pid, [child.addrs["leaf_work"] + 1])
        assert frame.name == "leaf_work", frame


def test_program_deleted_before_capture_is_read_through_map_files(
    fx: Path, tmp_path: Path, spawn: type[Spawned]
) -> None:
    exe = tmp_path / "prog"
    shutil.copy(fx / "prog", exe)
    child = spawn(exe)
    exe.unlink()  # maps now says "(deleted)": only /proc/PID/map_files still reaches the file
    text = next(m for m in load_maps(child.pid) if m.is_exec and m.path == str(exe))
    assert text.deleted
    try:
        os.close(os.open(f"/proc/{child.pid}/map_files/{text.start:x}-{text.end:x}", os.O_RDONLY))
    except PermissionError:
        pytest.skip("opening /proc/PID/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE")
    with Symbolizer() as sym:
        assert sym.capture(child.pid)
        child.stop()
        (frame,) = sym.symbolize_user(child.pid, [child.addrs["leaf_work"] + 1])
    assert frame.name == "leaf_work"
    assert frame.module == str(exe)


def test_fallback_to_path_checks_inode_and_skips_deleted_files(fx: Path, tmp_path: Path) -> None:
    # A fake /proc without map_files (as for a non-root user): the file is found by its path, but
    # only if it is the mapped inode and the mapping is not of a deleted file.
    exe = fx / "prog"
    ino = os.stat(exe).st_ino
    text = next(s for s in ElfFile.open(exe).load_segments if s.is_exec)
    leaf = nm_addr(exe, "leaf_work")
    lines = {
        0x10000000: f"{text.offset:08x} fe:00 {ino} {exe}",
        0x20000000: f"{text.offset:08x} fe:00 {ino + 1} {exe}",
        0x30000000: f"{text.offset:08x} fe:00 {ino} {exe} (deleted)",
    }
    for pid, (start, rest) in enumerate(lines.items(), start=4242):  # one process per case
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "maps").write_text(f"{start:x}-{start + 0x1000:x} r-xp {rest}\n")
    with Symbolizer(proc=str(tmp_path)) as sym:
        frames = [
            sym.symbolize_user(pid, [start + leaf - text.vaddr])[0]
            for pid, start in enumerate(lines, start=4242)
        ]
    assert frames[0].name == "leaf_work"
    assert [f.unknown for f in frames[1:]] == [Reason.NO_FILE, Reason.NO_FILE]
    assert frames[2].label() == f"prog+0x{leaf - text.vaddr + text.offset:x}"


def test_return_address_is_looked_up_at_ip_minus_one(fx: Path, spawn: type[Spawned]) -> None:
    child = spawn(fx / "prog")
    value, size = readelf_size(fx / "prog", "leaf_work")
    assert value == nm_addr(fx / "prog", "leaf_work")
    end = child.addrs["leaf_work"] + size  # first byte after leaf_work: a return address of a tail call
    with Symbolizer() as sym:
        as_return = sym.symbolize_user(child.pid, [child.addrs["leaf_work"], end])[1]
        as_leaf = sym.symbolize_user(child.pid, [end])[0]
    assert as_return.name == "leaf_work"
    assert as_leaf.name != "leaf_work"


def test_non_pie_executable(fx: Path, spawn: type[Spawned]) -> None:
    child = spawn(fx / "prog_nopie")
    assert child.addrs["leaf_work"] == nm_addr(fx / "prog_nopie", "leaf_work")  # ET_EXEC: no relocation
    with Symbolizer() as sym:
        frames = sym.symbolize_user(child.pid, [child.addrs["leaf_work"], child.addrs["middle_work"] + 5])
    assert [f.name for f in frames] == ["leaf_work", "middle_work"]


def test_separate_debug_file_by_build_id(fx: Path, tmp_path: Path, spawn: type[Spawned]) -> None:
    with ElfFile.open(fx / "prog_stripped") as elf:
        build_id = elf.build_id
    assert build_id is not None
    hexid = build_id.hex()
    debug_dir = tmp_path / "debug"
    (debug_dir / ".build-id" / hexid[:2]).mkdir(parents=True)
    shutil.copy(fx / "prog.debug", debug_dir / ".build-id" / hexid[:2] / f"{hexid[2:]}.debug")
    child = spawn(fx / "prog_stripped")
    probes = [child.addrs["static_helper"] + 2, child.addrs["leaf_work"] + 9]
    with Symbolizer(debug_dirs=[str(tmp_path / "nowhere"), str(debug_dir)]) as sym:
        assert [f.name for f in sym.symbolize_user(child.pid, probes)] == ["static_helper", "leaf_work"]
    with Symbolizer(debug_dirs=()) as sym:
        frames = sym.symbolize_user(child.pid, probes)
        assert [f.unknown for f in frames] == [Reason.NO_SYMBOL, Reason.NO_SYMBOL]
        assert frames[0].label().startswith("prog_stripped+0x")
        assert sym.unknown_by_module() == {str(fx / "prog_stripped"): 2}


def test_separate_debug_file_by_debuglink(fx: Path, tmp_path: Path, spawn: type[Spawned]) -> None:
    shutil.copy(fx / "prog_linked", tmp_path / "prog_linked")
    (tmp_path / ".debug").mkdir()
    shutil.copy(fx / "prog.debug", tmp_path / ".debug" / "prog.debug")
    child = spawn(tmp_path / "prog_linked")
    probe = [child.addrs["static_helper"] + 2]
    with Symbolizer(debug_dirs=()) as sym:
        assert sym.symbolize_user(child.pid, probe)[0].name == "static_helper"
    # A debug file whose CRC does not match the link is not used.
    with open(tmp_path / ".debug" / "prog.debug", "ab") as f:
        f.write(b"\0")
    with Symbolizer(debug_dirs=()) as sym:
        assert sym.symbolize_user(child.pid, probe)[0].unknown is Reason.NO_SYMBOL


def test_a_library_mapped_by_many_processes_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = ElfFile.from_mmap.__func__  # type: ignore[attr-defined]

    def counting(cls: type[ElfFile], mm: mmap.mmap) -> ElfFile:
        calls.append(len(mm))
        return original(cls, mm)

    monkeypatch.setattr(ElfFile, "from_mmap", classmethod(counting))
    children = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    try:
        libcs = [_wait_for_libc(child.pid) for child in children]
        offset_in_text = fn_addr(ctypes.CDLL(None).getpid) - libc_mapping().start  # same libc file
        with Symbolizer() as sym:
            for child in children:
                assert sym.capture(child.pid)
            names = [
                sym.symbolize_user(child.pid, [libc.start + offset_in_text])[0].name
                for child, libc in zip(children, libcs, strict=True)
            ]
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert names == ["getpid"] * 3
    assert len(calls) == 1


def _wait_for_libc(pid: int) -> Mapping:
    """The libc text mapping of a just-started process, once its dynamic loader has mapped it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [m for m in load_maps(pid) if m.is_exec and m.name.startswith("libc.so")]
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"libc never appeared in the maps of {pid}")


def test_library_loaded_after_capture_is_found(fx: Path, tmp_path: Path) -> None:
    copy = tmp_path / "libfix_late.so"
    shutil.copy(fx / "libfix.so", copy)
    with Symbolizer() as sym:
        assert sym.capture(os.getpid())
        lib = ctypes.CDLL(str(copy))  # mapped after the snapshot: found by re-reading the maps
        (frame,) = sym.symbolize_user(os.getpid(), [fn_addr(lib.fixlib_exported)])
    assert frame.name == "fixlib_exported"
    assert frame.module == str(copy)


def test_revisit_learns_late_mappings_while_the_process_lives(
    fx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process first sampled while ld.so still maps its libraries: the recording loop's revisit
    re-reads its maps, so they are known even when it is gone by symbolization time."""
    import unwind.symbolizer as symbolizer_module

    copy = tmp_path / "libfix_revisit.so"
    shutil.copy(fx / "libfix.so", copy)
    with Symbolizer() as sym:
        assert sym.capture(os.getpid())
        lib = ctypes.CDLL(str(copy))
        sym.revisit()

        def gone(*args: object) -> None:
            raise OSError("the process has exited")

        monkeypatch.setattr(symbolizer_module, "load_maps", gone)
        (frame,) = sym.symbolize_user(os.getpid(), [fn_addr(lib.fixlib_exported)])
    assert frame.name == "fixlib_exported"


def test_revisit_follows_the_latest_exec_even_when_an_earlier_image_is_captured_after_it(
    fx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command launched with ``--`` is sampled before its exec (image 0) and after (image 1); both may be
    captured early and handed over together, or image 0 only when retired. The revisits still follow
    image 1: the JIT code it maps later is known (a CI run named 0% of node's JIT frames when the
    hand-over ran newest first and the revisits went to image 0)."""
    import unwind.symbolizer as symbolizer_module

    copy = tmp_path / "libfix_latest.so"
    shutil.copy(fx / "libfix.so", copy)
    with Symbolizer() as sym:
        assert sym.capture(os.getpid(), 1)
        assert sym.capture(os.getpid(), 0)  # the earlier image, captured after
        lib = ctypes.CDLL(str(copy))
        sym.revisit()

        def gone(*args: object) -> None:
            raise OSError("the process has exited")

        monkeypatch.setattr(symbolizer_module, "load_maps", gone)
        (frame,) = sym.symbolize_user(os.getpid(), [fn_addr(lib.fixlib_exported)], 1)
    assert frame.name == "fixlib_exported"


def test_early_captures_of_two_execs_leave_the_later_one_revisited(fx: Path, spawn: type[Spawned]) -> None:
    """Handed over together (newest first, as a dict pops them), a pid's two early-captured images
    leave the later exec as the one the revisits follow."""
    release = threading.Event()
    with slow_warm_up(release) as symbolizers:
        child = spawn(fx / "prog")
        symbolizers.on_new_process(child.pid, 0)
        symbolizers.on_new_process(child.pid, 1)
        release.set()
        sym = symbolizers.wait()
        assert sym._recent[child.pid].gen == 1
        child.stop()


def test_closed_symbolizer_forgets_everything(fx: Path, spawn: type[Spawned]) -> None:
    child = spawn(fx / "prog")
    sym = Symbolizer()
    with sym:
        sym.capture(child.pid)
    child.stop()
    assert sym.symbolize_user(child.pid, [child.addrs["leaf_work"]])[0].unknown is Reason.NO_PROCESS


# -- kernel ---------------------------------------------------------------------------------------


def test_kernel_frames_from_fixture_kallsyms() -> None:
    ksyms = parse_kallsyms((KALLSYMS / "sample.txt").read_text())
    with Symbolizer(kallsyms=ksyms) as sym:
        frames = sym.symbolize_kernel(
            [0xFFFFFFFF81000300, 0xFFFFFFFF81000300, 0xFFFFFFFFC0200260, 0xFFFFFFFF81100300]
        )
        assert sym.unknown_by_module() == {"[kernel]": 1}
    leaf, ret, module_fn, unknown = frames
    assert leaf == Frame("run_init_process", None, FrameKind.KERNEL)  # its __pfx_ padding
    assert ret == Frame("do_one_initcall", None, FrameKind.KERNEL)  # looked up at ip - 1
    assert module_fn == Frame("ext4_readdir", "ext4", FrameKind.KERNEL)
    assert unknown.unknown is Reason.NO_KERNEL_SYMBOL
    assert unknown.label() == "[unknown]"


def test_zero_and_out_of_range_addresses_are_data_not_errors() -> None:
    ksyms = parse_kallsyms((KALLSYMS / "sample.txt").read_text())
    with Symbolizer(kallsyms=ksyms) as sym:
        kernel = sym.symbolize_kernel([0, 0, 2**64 - 1])
        user = sym.symbolize_user(os.getpid(), [0, 0, 2**64 - 1, 2**70])
    assert [f.unknown for f in kernel] == [Reason.NO_KERNEL_SYMBOL] * 3
    assert [f.unknown for f in user] == [Reason.NO_MAPPING] * 4


def test_kernel_restricted_kallsyms() -> None:
    ksyms = parse_kallsyms((KALLSYMS / "restricted.txt").read_text())
    with Symbolizer(kallsyms=ksyms) as sym:
        frames = sym.symbolize_kernel([0xFFFFFFFF81100010, 0xFFFFFFFF81100020])
    assert all(f.unknown is Reason.KALLSYMS_RESTRICTED and f.name is None for f in frames)
    assert [f.label() for f in frames] == ["[kernel]", "[kernel]"]
    assert all(f.kind is FrameKind.KERNEL for f in frames)


def test_kallsyms_loaded_lazily_from_proc(tmp_path: Path) -> None:
    (tmp_path / "kallsyms").write_text((KALLSYMS / "sample.txt").read_text())
    with Symbolizer(proc=str(tmp_path)) as sym:
        assert sym.symbolize_kernel([0xFFFFFFFF81100010])[0].name == "schedule"
    with Symbolizer(proc=str(tmp_path / "missing")) as sym:
        assert sym.symbolize_kernel([0xFFFFFFFF81100010])[0].unknown is Reason.NO_KERNEL_SYMBOL
