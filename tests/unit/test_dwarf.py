"""DWARF source lines and inlined frames (unwind/dwarf.py) against addr2line, and the symbolizer hook.

Programs are built here from tests/fixtures/src/inline.c with gcc (and clang when present) -O2 -g;
``addr2line -f -i`` (binutils) is the reference for gcc output, ``llvm-addr2line`` for clang's and as
the tie-breaker on libc, where binutils 2.40 names the wrong file for some DWARF 5 rows (it takes
file 1 to be the primary source file, which glibc's ``#include "../nss/getXXbyYY_r.c"`` files are not).
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.folded import parse_folded, sanitize_name, write_folded_stacks
from tests.unit.conftest import run
from unwind.dwarf import DwarfInfo, SourceFrame
from unwind.elf import ElfFile
from unwind.frame import Frame, FrameKind, Reason
from unwind.maps import load_maps
from unwind.symbolizer import Symbolizer, _same_function
from unwind.symcache import SymbolCache

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "tests" / "fixtures" / "src"
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
INLINED = ("hdr_mix", "add3", "twice")

Expected = list[tuple[str | None, str | None, int | None]]  # (function, file basename, line)


# -- building and reference output -------------------------------------------------------------------


@pytest.fixture(scope="session")
def progs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """inline.c built several ways; clang builds only when clang is installed."""
    out = tmp_path_factory.mktemp("dwarf")
    src = str(SRC / "inline.c")

    def gcc(name: str, *flags: str) -> None:
        run("gcc", "-O2", "-I", SRC, "-Wl,--build-id=sha1", *flags, "-o", out / name, src)

    gcc("inline4", "-g", "-gdwarf-4")
    gcc("inline5", "-g", "-gdwarf-5")
    gcc("inline_z", "-g", "-gdwarf-5", "-gz=zlib")  # SHF_COMPRESSED .debug_* sections
    gcc("inline_zgnu", "-g", "-gdwarf-4", "-gz=zlib-gnu")  # legacy .zdebug_* sections
    gcc("inline_nodwarf")
    run("strip", "--strip-all", "-o", out / "inline_stripped", out / "inline5")
    run("objcopy", "--only-keep-debug", out / "inline5", out / "inline5.debug")
    # .symtab kept, DWARF moved out behind a .gnu_debuglink (a case load_symbols never looks up)
    run("strip", "--strip-debug", "-o", out / "inline_linked", out / "inline5")
    run("objcopy", "--add-gnu-debuglink=" + str(out / "inline5.debug"), out / "inline_linked")
    if shutil.which("g++"):  # mangled names; an inlined member function found through its declaration
        run("g++", "-O2", "-g", "-o", out / "inline_cxx", SRC / "inline_cxx.cc")
    if shutil.which("clang"):
        for v in ("4", "5"):  # clang: no .debug_aranges; DWARF 5 with strx/addrx/rnglistx forms
            run("clang", "-O2", f"-gdwarf-{v}", "-I", SRC, "-o", out / f"inline_clang{v}", src)
    return out


def function_addresses(path: Path, names: tuple[str, ...]) -> list[int]:
    """Every instruction address inside the named functions (by ``nm -S`` extent and ``objdump -d``)."""
    extents = {}
    for line in run("nm", "-S", path).splitlines():
        p = line.split()
        if len(p) == 4 and p[3] in names:
            extents[p[3]] = (int(p[0], 16), int(p[0], 16) + int(p[1], 16))
    assert set(extents) == set(names), f"{names} not all in nm -S {path}"
    out = []
    for line in run("objdump", "-d", "--no-show-raw-insn", path).splitlines():
        m = re.match(r"^\s+([0-9a-f]+):\t", line)
        if m and any(lo <= int(m[1], 16) < hi for lo, hi in extents.values()):
            out.append(int(m[1], 16))
    return out


def addr2line(path: Path | str, addrs: list[int], tool: str = "addr2line") -> list[Expected]:
    """``TOOL -f -i -a -e PATH`` for each address: (function, file basename, line), innermost first.

    ``??`` becomes None, line 0 or ``?`` None, and a ``(discriminator N)`` suffix is dropped.
    """
    text = subprocess.run(
        [tool, "-f", "-i", "-a", "-e", str(path)],
        input="".join(f"{a:#x}\n" for a in addrs),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out: list[Expected] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if re.fullmatch(r"0x[0-9a-f]+", lines[i]):
            out.append([])
            i += 1
            continue
        func, loc = lines[i], re.sub(r" \(discriminator \d+\)$", "", lines[i + 1])
        i += 2
        file, _, line = loc.rpartition(":")
        out[-1].append(
            (
                None if func == "??" else func,
                None if file in ("??", "") else os.path.basename(file),
                int(line) if line.isdigit() and line != "0" else None,
            )
        )
    assert len(out) == len(addrs)
    return out


def ours(frames: list[SourceFrame]) -> Expected:
    return [(f.function, f.file and os.path.basename(f.file), f.line) for f in frames]


def assert_inlined_flags(frames: list[SourceFrame]) -> None:
    assert [f.inlined for f in frames] == [True] * (len(frames) - 1) + [False]


# -- lookups against addr2line ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["inline4", "inline5", "inline_z", "inline_zgnu"])
def test_every_instruction_matches_addr2line(progs: Path, name: str) -> None:
    path = progs / name
    assert not set(INLINED) & {line.split()[-1] for line in run("nm", path).splitlines()}, "not inlined"
    addrs = function_addresses(path, ("outer", "main"))
    expected = addr2line(path, addrs)
    with ElfFile.open(path) as elf:
        dwarf = DwarfInfo(elf)
        got = dwarf.lookup_many(addrs)
    for addr, exp, frames in zip(addrs, expected, got, strict=True):
        assert ours(frames) == exp, f"{name} at {addr:#x}"
        assert_inlined_flags(frames)
    # Not vacuous: the header's code, three calls deep, and the files of each level are there.
    deepest = max(got, key=len)
    assert ours(deepest)[:3] == [
        ("hdr_mix", "inline.h", 3),
        ("add3", "inline.c", 9),
        ("twice", "inline.c", 15),
    ]
    assert deepest[-1].function in ("outer", "main")
    assert sum(len(f) >= 3 for f in got) >= 5


@pytest.mark.parametrize("version", ["4", "5"])
def test_clang_builds_match_llvm_addr2line(progs: Path, version: str) -> None:
    path = progs / f"inline_clang{version}"
    if not path.exists() or not shutil.which("llvm-addr2line"):
        pytest.skip("needs clang and llvm-addr2line (Debian packages clang, llvm)")
    with ElfFile.open(path) as elf:
        assert elf.section(".debug_aranges") is None  # CUs are found through their own ranges
    addrs = function_addresses(path, ("outer", "main"))
    expected = addr2line(path, addrs, "llvm-addr2line")
    got = DwarfInfo(path.read_bytes()).lookup_many(addrs)
    assert [ours(f) for f in got] == expected
    assert max(len(f) for f in got) == 4


CXX_OUTER = "_ZN4work5outerERKNS_5MixerEi"


def test_cxx_linkage_names_match_addr2line(progs: Path) -> None:
    path = progs / "inline_cxx"
    if not path.exists():
        pytest.skip("needs g++ (Debian package g++)")
    addrs = function_addresses(path, (CXX_OUTER,))
    got = DwarfInfo(path.read_bytes()).lookup_many(addrs)
    assert [ours(f) for f in got] == addr2line(path, addrs)
    assert any(f[0].function == "_ZNK4work5Mixer3mixEi" and f[0].inlined for f in got)


def test_symbolizer_demangles_dwarf_names(progs: Path, spawn: Spawn) -> None:
    exe = progs / "inline_cxx"
    if not exe.exists():
        pytest.skip("needs g++ (Debian package g++)")
    addrs, frames = function_addresses(exe, (CXX_OUTER,)), DwarfInfo(exe.read_bytes())
    leaf = next(a for a in addrs if len(frames.lookup(a)) == 2)
    child = spawn(exe)
    with Symbolizer(lines=True, cache=False, debuginfod=False) as sym:
        ip = child.outer - nm_value(exe, CXX_OUTER) + leaf
        (plain,) = sym.symbolize_user(child.pid, [ip])
        (got,) = sym.symbolize_user_lines(child.pid, [ip])
    assert [f.name for f in got] == ["work::Mixer::mix(int) const", plain.name]
    assert plain.name == "work::outer(work::Mixer const&, int)"
    assert [f.inlined for f in got] == [True, False]


def test_full_file_names_as_addr2line_prints_them(progs: Path) -> None:
    addr = next(a for a, f in zip(*_lookups(progs / "inline5"), strict=True) if len(f) == 4)
    text = run("addr2line", "-i", "-e", progs / "inline5", hex(addr)).splitlines()
    frames = DwarfInfo(ElfFile.open(progs / "inline5")).lookup(addr)
    assert [f"{f.file}:{f.line}" for f in frames] == [re.sub(r" \(discriminator \d+\)$", "", t) for t in text]
    assert frames[0].file == str(SRC / "inline.h")


def _lookups(path: Path) -> tuple[list[int], list[list[SourceFrame]]]:
    addrs = function_addresses(path, ("outer",))
    with ElfFile.open(path) as elf:
        return addrs, DwarfInfo(elf).lookup_many(addrs)


def test_no_dwarf_gives_nothing(progs: Path) -> None:
    addrs = function_addresses(progs / "inline_nodwarf", ("outer",))
    with ElfFile.open(progs / "inline_nodwarf") as elf:
        dwarf = DwarfInfo(elf)
        assert not dwarf.has_debug_info
        assert dwarf.lookup_many(addrs) == [[] for _ in addrs]
    assert DwarfInfo(b"not an ELF file").lookup(0x1000) == []
    assert DwarfInfo(b"").lookup_many([1, 2]) == [[], []]


def test_outside_any_unit_gives_nothing(progs: Path) -> None:
    dwarf = DwarfInfo(ElfFile.open(progs / "inline5"))
    assert dwarf.lookup(0) == []
    assert dwarf.lookup(2**64 - 1) == []
    assert dwarf.lookup(-5) == []


def test_closed_elf_or_dwarf_gives_nothing(progs: Path) -> None:
    addr = function_addresses(progs / "inline5", ("outer",))[3]
    elf = ElfFile.open(progs / "inline5")
    dwarf = DwarfInfo(elf)
    elf.close()  # before the first lookup: the sections cannot be read any more
    assert dwarf.lookup(addr) == []
    dwarf = DwarfInfo(ElfFile.open(progs / "inline5"))
    assert dwarf.lookup(addr)
    dwarf.close()
    assert dwarf.lookup(addr) == []


# -- libc (libc6-dbg) ---------------------------------------------------------------------------------


def libc_debug_file() -> str:
    with ElfFile.open(LIBC) as elf:
        build_id = elf.build_id
    assert build_id is not None
    hexid = build_id.hex()
    path = f"/usr/lib/debug/.build-id/{hexid[:2]}/{hexid[2:]}.debug"
    if not os.path.exists(path):
        pytest.skip(f"libc's debug file {path} is not installed (Debian package libc6-dbg)")
    return path


def text_range(path: str) -> tuple[int, int]:
    with ElfFile.open(path) as elf:
        text = elf.section(".text")
        assert text is not None
        return text.addr, text.addr + text.size


def symbol_addresses(path: str) -> dict[str, int]:
    out = {}
    for line in run("readelf", "-sW", path).splitlines():
        p = line.split()
        if len(p) >= 8 and p[3] in ("FUNC", "IFUNC") and p[1] != "0000000000000000":
            out[p[7].split("@")[0]] = int(p[1], 16)
    return out


def test_lookup_many_parses_each_unit_once_however_few_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Addresses of many libc compile units in random order, with 4 units kept: each unit hit is parsed
    once (its addresses are looked up together), and the answers are those of single lookups."""
    debug = libc_debug_file()
    lo, hi = text_range(debug)
    addrs = random.Random(11).sample(range(lo, hi), 300)
    parsed: list[int] = []
    real = DwarfInfo._line_table
    monkeypatch.setattr(
        DwarfInfo, "_line_table", lambda self, unit: parsed.append(unit.offset) or real(self, unit)
    )
    with ElfFile.open(debug) as elf:
        got = DwarfInfo(elf, max_units=4).lookup_many(addrs)
        # (a unit whose code lies in two places, .text and .text.unlikely, can be parsed twice)
        assert len(set(parsed)) > 100
        assert len(parsed) <= len(set(parsed)) * 1.05  # in input order: ~300 parses
        alone = DwarfInfo(elf)
        assert got == [alone.lookup(a) for a in addrs]


def test_libc_sample_matches_addr2line() -> None:
    debug = libc_debug_file()
    lo, hi = text_range(debug)
    addrs = random.Random(7).sample(range(lo, hi), 400)
    expected = addr2line(debug, addrs)
    llvm = addr2line(debug, addrs, "llvm-addr2line") if shutil.which("llvm-addr2line") else None
    symbols = symbol_addresses(debug)
    dwarf = DwarfInfo(ElfFile.open(debug))
    got = dwarf.lookup_many(addrs)
    file_disagreements = 0
    for i, (addr, exp, frames) in enumerate(zip(addrs, expected, got, strict=True)):
        where = f"libc at {addr:#x}: {exp} vs {ours(frames)}"
        if exp[0][2] is None:  # no line row: addr2line names the symbol only (padding, assembly)
            assert all(f.line is None for f in frames), where
            continue
        assert len(frames) == len(exp), where
        assert [e[2] for e in exp] == [f.line for f in frames], where
        assert [e[0] for e in exp[:-1]] == [f.function for f in frames[:-1]], where
        # addr2line prints the ELF symbol for the real function; ours is DWARF's (None in padding).
        outer, sym = frames[-1].function, exp[-1][0] or ""
        assert outer is None or outer == sym or symbols.get(outer) == symbols.get(sym) is not None, where
        if [e[1] for e in exp] != [os.path.basename(f.file or "") for f in frames]:
            file_disagreements += 1
            if llvm is not None:
                assert [e[1] for e in llvm[i]] == [os.path.basename(f.file or "") for f in frames], where
        assert_inlined_flags(frames)
    assert file_disagreements < len(addrs) // 10
    assert sum(len(f) > 1 for f in got) > 20  # inlined frames were found


def test_libc_is_parsed_lazily_and_bounded() -> None:
    debug = libc_debug_file()
    lo, hi = text_range(debug)
    addrs = random.Random(3).sample(range(lo, hi), 200)
    with ElfFile.open(debug) as elf:
        dwarf = DwarfInfo(elf)
        t0 = time.perf_counter()
        first = dwarf.lookup(addrs[0])
        elapsed = time.perf_counter() - t0
        assert first
        assert len(dwarf._cache) == 1  # only the unit that was hit
        assert elapsed < 2.0  # 35 ms here; generous for slow CI
        full = dwarf.lookup_many(addrs)
        small = DwarfInfo(elf, max_units=4)
        assert small.lookup_many(addrs) == full
        assert len(small._cache) <= 4


def test_symbolizer_on_libc_keeps_symbol_names() -> None:
    libc_debug_file()
    import ctypes

    lib = ctypes.CDLL(None)
    names = ["printf", "qsort_r", "strtod", "getenv", "fopen"]
    ips = [ctypes.cast(getattr(lib, n), ctypes.c_void_p).value or 0 for n in names]
    with Symbolizer(lines=True, cache=False, debuginfod=False) as sym:
        plain = sym.symbolize_user(os.getpid(), [ip + 8 for ip in ips])
        expanded = sym.symbolize_user_lines(os.getpid(), [ip + 8 for ip in ips])
    assert [f.name for f in plain] == [e[-1].name for e in expanded]
    assert all(e[-1].line and e[-1].file and e[-1].file.endswith(".c") for e in expanded)


# -- the symbolizer hook --------------------------------------------------------------------------------


@dataclass
class Child:
    proc: subprocess.Popen[str]
    outer: int  # absolute address of outer() in the child

    @property
    def pid(self) -> int:
        return self.proc.pid


Spawn = Callable[[Path], Child]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    started: list[subprocess.Popen[str]] = []

    def factory(exe: Path) -> Child:
        proc = subprocess.Popen([str(exe), "wait"], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        return Child(proc, int(line.split("=")[1], 16))

    yield factory
    for proc in started:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def nm_value(path: Path, name: str) -> int:
    return next(int(p[0], 16) for p in map(str.split, run("nm", path).splitlines()) if p[-1] == name)


def probes(progs: Path) -> tuple[int, int]:
    """ELF vaddrs in outer(): one with 4 source frames (leaf) and one whose byte before has 3 or more."""
    addrs, frames = _lookups(progs / "inline5")
    deep = [a for a, f in zip(addrs, frames, strict=True) if len(f) == 4]
    return deep[0], deep[-1] + 1


def test_symbolize_user_lines_on_a_live_process(progs: Path, spawn: Spawn) -> None:
    exe = progs / "inline5"
    child = spawn(exe)
    base = child.outer - nm_value(exe, "outer")
    leaf, ret = probes(progs)
    with Symbolizer(lines=True, cache=False, debuginfod=False) as sym:
        plain = sym.symbolize_user(child.pid, [base + leaf, base + ret])
        got = sym.symbolize_user_lines(child.pid, [base + leaf, base + ret])
        again = sym.symbolize_user_lines(child.pid, [base + leaf, base + ret])  # from the cache
    assert got == again
    assert len(got) == 2
    expected = addr2line(exe, [leaf, ret - 1])  # the return address is looked up at ip - 1
    for frames, exp, symbol_frame in zip(got, expected, plain, strict=True):
        assert [(f.name, f.file and os.path.basename(f.file), f.line) for f in frames] == exp
        assert [f.inlined for f in frames] == [True] * (len(frames) - 1) + [False]
        assert all(f.module == str(exe) and f.kind is FrameKind.USER and f.unknown is None for f in frames)
        assert all(f.file_off == symbol_frame.file_off for f in frames)
        assert frames[-1].name == symbol_frame.name == "outer"
    labels = [f.label(lines=True) for f in got[0]]
    assert labels == ["hdr_mix (inline.h:3)", "add3 (inline.c:9)", "twice (inline.c:15)", labels[-1]]
    assert re.fullmatch(r"outer \(inline\.c:\d+\)", labels[-1])


@pytest.mark.parametrize("name", ["inline5", "inline_stripped"])
def test_a_second_run_takes_dwarf_answers_from_the_disk_cache(
    progs: Path, tmp_path: Path, spawn: Spawn, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """What a run read from DWARF (its own, or a debug file's by build-id) is kept on disk: a second run
    gives the same frames without reading DWARF at all; an address new to it is read and kept too."""
    exe = progs / name
    if name == "inline_stripped":  # its DWARF is in a debug file, found by build-id
        with ElfFile.open(exe) as elf:
            hexid = (elf.build_id or b"").hex()
        (tmp_path / "debug" / ".build-id" / hexid[:2]).mkdir(parents=True)
        shutil.copy(
            progs / "inline5.debug", tmp_path / "debug" / ".build-id" / hexid[:2] / f"{hexid[2:]}.debug"
        )
    child = spawn(exe)
    base = child.outer - nm_value(progs / "inline5", "outer")
    leaf, ret = probes(progs)
    addrs = function_addresses(progs / "inline5", ("outer",))
    cache = SymbolCache(str(tmp_path / "cache"))

    def run(ips: list[int]) -> list[list[Frame]]:
        with Symbolizer(lines=True, cache=cache, debuginfod=False, debug_dirs=[str(tmp_path / "debug")],
                        default_debug_dirs=()) as sym:  # fmt: skip
            return sym.symbolize_user_lines(child.pid, ips)

    read: list[int] = []
    real = DwarfInfo.lookup_many
    monkeypatch.setattr(DwarfInfo, "lookup_many", lambda self, v: read.extend(v) or real(self, v))
    first = run([base + leaf, base + ret])
    assert [f.name for f in first[0]] == [*INLINED, "outer"]
    assert len(read) == 2
    read.clear()
    assert run([base + leaf, base + ret]) == first
    assert read == []  # DWARF not read
    more = [base + leaf, *(base + a for a in addrs[::7])]  # the leaf is kept from the first run
    uncached = Symbolizer(lines=True, cache=False, debuginfod=False, debug_dirs=[str(tmp_path / "debug")],
                          default_debug_dirs=())  # fmt: skip
    with uncached:
        expected = uncached.symbolize_user_lines(child.pid, more)
    read.clear()
    assert run(more) == expected
    assert 0 < len(read) < len(more)  # the new ones alone
    read.clear()
    assert run(more) == expected
    assert read == []


def _with_flags(path: Path, section: str, flags: int, out: Path) -> Path:
    """A copy of the ELF file ``path`` with ``flags`` added to the sh_flags of ``section``."""
    data = bytearray(path.read_bytes())
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab_off = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)[0]
    for i in range(shnum):
        header = shoff + i * shentsize
        name_at = strtab_off + struct.unpack_from("<I", data, header)[0]
        if data[name_at : data.index(0, name_at)].decode() == section:
            (old,) = struct.unpack_from("<Q", data, header + 8)
            struct.pack_into("<Q", data, header + 8, old | flags)
            out.write_bytes(bytes(data))
            return out
    raise AssertionError(f"no {section} in {path}")


def test_answers_of_unreadable_dwarf_are_not_kept(progs: Path, tmp_path: Path, spawn: Spawn) -> None:
    """A debug file whose DWARF cannot be read (its .debug_info claims to be compressed and is not)
    gives no lines, and keeps no answers for its build-id: a good debug file later gives them."""
    with ElfFile.open(progs / "inline_stripped") as elf:
        hexid = (elf.build_id or b"").hex()
    where = tmp_path / "debug" / ".build-id" / hexid[:2] / f"{hexid[2:]}.debug"
    where.parent.mkdir(parents=True)
    _with_flags(progs / "inline5.debug", ".debug_info", 0x800, where)  # SHF_COMPRESSED
    child = spawn(progs / "inline_stripped")
    base = child.outer - nm_value(progs / "inline5", "outer")
    leaf, _ = probes(progs)
    cache = SymbolCache(str(tmp_path / "cache"))

    def run() -> list[Frame]:
        with Symbolizer(lines=True, cache=cache, debuginfod=False, debug_dirs=[str(tmp_path / "debug")],
                        default_debug_dirs=()) as sym:  # fmt: skip
            return sym.symbolize_user_lines(child.pid, [base + leaf])[0]

    assert [f.line for f in run()] == [None]
    shutil.copy(progs / "inline5.debug", where)
    assert [f.name for f in run()] == [*INLINED, "outer"]


def test_lines_off_gives_the_symbol_frames(progs: Path, spawn: Spawn) -> None:
    exe = progs / "inline5"
    child = spawn(exe)
    ips = [child.outer + 4, child.outer + 9, 0x10]
    with Symbolizer(cache=False, debuginfod=False) as sym:
        plain = sym.symbolize_user(child.pid, ips)
        assert sym.symbolize_user_lines(child.pid, ips) == [[f] for f in plain]


def test_no_dwarf_gives_the_symbol_frame(progs: Path, spawn: Spawn) -> None:
    child = spawn(progs / "inline_nodwarf")
    with Symbolizer(lines=True, cache=False, debuginfod=False) as sym:
        plain = sym.symbolize_user(child.pid, [child.outer + 4, 0x10])
        got = sym.symbolize_user_lines(child.pid, [child.outer + 4, 0x10])
    assert got == [[plain[0]], [plain[1]]]
    assert plain[0].name == "outer"
    assert plain[1].unknown is Reason.NO_MAPPING


def test_dwarf_from_a_separate_debug_file_by_build_id(progs: Path, tmp_path: Path, spawn: Spawn) -> None:
    with ElfFile.open(progs / "inline_stripped") as elf:
        assert elf.build_id is not None
        hexid = elf.build_id.hex()
        assert not DwarfInfo(elf).has_debug_info
    (tmp_path / ".build-id" / hexid[:2]).mkdir(parents=True)
    shutil.copy(progs / "inline5.debug", tmp_path / ".build-id" / hexid[:2] / f"{hexid[2:]}.debug")
    child = spawn(progs / "inline_stripped")
    base = child.outer - nm_value(progs / "inline5", "outer")
    leaf, _ = probes(progs)
    with Symbolizer(lines=True, debug_dirs=[str(tmp_path)], default_debug_dirs=(), cache=False,
                    debuginfod=False) as sym:  # fmt: skip
        (frames,) = sym.symbolize_user_lines(child.pid, [base + leaf])
    assert [f.name for f in frames] == [*INLINED, "outer"]
    assert [f.module for f in frames] == [str(progs / "inline_stripped")] * 4
    with Symbolizer(lines=True, default_debug_dirs=(), cache=False, debuginfod=False) as sym:
        (frames,) = sym.symbolize_user_lines(child.pid, [base + leaf])
    assert len(frames) == 1  # no debug file: the symbol frame alone (outer is not in .dynsym)
    assert frames[0].unknown is Reason.NO_SYMBOL
    assert frames[0].line is None


def test_dwarf_from_a_debuglink_when_the_binary_keeps_its_symtab(progs: Path, spawn: Spawn) -> None:
    with ElfFile.open(progs / "inline_linked") as elf:
        assert elf.has_symtab
        assert not DwarfInfo(elf).has_debug_info
    child = spawn(progs / "inline_linked")
    base = child.outer - nm_value(progs / "inline_linked", "outer")
    leaf, _ = probes(progs)
    with Symbolizer(lines=True, default_debug_dirs=(), cache=False, debuginfod=False) as sym:
        (frames,) = sym.symbolize_user_lines(child.pid, [base + leaf])
    assert [f.name for f in frames] == [*INLINED, "outer"]
    assert frames[0].file is not None
    assert frames[0].file.endswith("inline.h")


def test_same_function_rule() -> None:
    assert _same_function("outer", "outer")
    assert _same_function("outer.isra.0", "outer")
    assert _same_function("outer.cold", "outer")
    assert _same_function("ns::outer(int)", "outer")
    assert _same_function("ns::outer(int)", "ns::outer(int)")
    assert _same_function("ns::outer(int) [clone .constprop.0]", "ns::outer(int)")
    assert _same_function("__printf_fp_l", "__GI___printf_fp_l")
    assert _same_function("malloc", "__libc_malloc")
    assert not _same_function("outer", "inner")
    assert not _same_function("malloc", "xmalloc")  # no "_" between: another function
    assert not _same_function("tail", "detail")


# -- malformed DWARF ------------------------------------------------------------------------------------


def debug_spans(path: Path) -> list[tuple[int, int]]:
    with ElfFile.open(path) as elf:
        return [(s.offset, s.offset + s.size) for s in elf.sections if "debug" in s.name and s.size > 0]


@pytest.fixture(scope="module")
def fuzz_inputs(progs: Path) -> dict[str, tuple[bytes, list[tuple[int, int]], list[int]]]:
    out = {}
    for name in ("inline4", "inline5", "inline_z"):
        path = progs / name
        out[name] = (path.read_bytes(), debug_spans(path), function_addresses(path, ("outer", "main")))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["inline4", "inline5", "inline_z"]),
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.integers(1, 8)),
        min_size=1,
        max_size=12,
    ),
)
def test_mutated_debug_sections_never_raise(
    fuzz_inputs: dict[str, tuple[bytes, list[tuple[int, int]], list[int]]],
    which: str,
    edits: list[tuple[float, int, int]],
) -> None:
    data, spans, addrs = fuzz_inputs[which]
    total = sum(hi - lo for lo, hi in spans)
    buf = bytearray(data)
    for where, value, length in edits:  # a run of ``length`` bytes set to ``value`` in some .debug_*
        k = int(where * total)
        for lo, hi in spans:
            if k < hi - lo:
                buf[lo + k : min(lo + k + length, hi)] = bytes([value]) * min(length, hi - lo - k)
                break
            k -= hi - lo
    t0 = time.perf_counter()
    got = DwarfInfo(bytes(buf)).lookup_many(addrs)
    assert time.perf_counter() - t0 < 5.0
    assert len(got) == len(addrs)
    assert all(isinstance(f, SourceFrame) for frames in got for f in frames)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_debug_section_never_raises(
    fuzz_inputs: dict[str, tuple[bytes, list[tuple[int, int]], list[int]]], cut: float
) -> None:
    data, spans, addrs = fuzz_inputs["inline5"]
    lo, hi = spans[int(cut * len(spans))]
    buf = bytearray(data)
    mid = lo + int(cut * 7919) % (hi - lo)
    buf[mid:hi] = b"\xff" * (hi - mid)  # the section's tail is garbage from ``mid`` on
    assert len(DwarfInfo(bytes(buf)).lookup_many(addrs)) == len(addrs)


# -- display ----------------------------------------------------------------------------------------------


def test_label_with_a_line() -> None:
    foo = Frame("foo", "/bin/x", file="/src/dir/x.c", line=12)
    assert foo.label(lines=True) == "foo (x.c:12)"
    assert foo.label() == "foo"  # off by default: speedscope and pprof keep file and line apart
    assert Frame("foo", file="/src/dir/x.c", line=12, inlined=True).label(lines=True) == "foo (x.c:12)"
    unnamed = Frame(None, "/lib/libx.so", file="a.c", line=3, file_off=0x10, unknown=Reason.NO_SYMBOL)
    assert unnamed.label(lines=True) == "libx.so+0x10 (a.c:3)"
    assert Frame("foo", file=None, line=7).label(lines=True) == "foo (??:7)"
    assert Frame("foo", file="/src/x.c").label(lines=True) == "foo"  # a file but no line: as before
    assert Frame("foo").label(lines=True) == "foo"
    assert (
        Frame(None, kind=FrameKind.KERNEL, unknown=Reason.KALLSYMS_RESTRICTED).label(lines=True) == "[kernel]"
    )


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (Frame("outer", file="/s/x.c", line=18), "outer (x.c:18)"),
        (Frame("ns::f(int)", file="/s/my file.cc", line=7), "ns::f(int) (my file.cc:7)"),
        (Frame("g", file="/s/a;b.c", line=1), "g (a:b.c:1)"),  # ';' would split the stack
        (Frame("h 12", file="/s/x.c", line=3), "h 12 (x.c:3)"),  # the number is not trailing any more
    ],
)
def test_folded_names_keep_file_and_line(frame: Frame, expected: str) -> None:
    name = sanitize_name(frame.label(lines=True))
    assert name == expected
    stack = ("app", "main (x.c:40)", name)
    out = io.StringIO()
    write_folded_stacks({stack: 5}, out)
    assert out.getvalue() == f"app;main (x.c:40);{expected} 5\n"
    assert parse_folded(io.StringIO(out.getvalue())) == {stack: 5}


def test_load_maps_sees_the_fixture(progs: Path, spawn: Spawn) -> None:
    # The probes above assume the PIE is mapped once, at the base nm + maps agree on.
    child = spawn(progs / "inline5")
    base = child.outer - nm_value(progs / "inline5", "outer")
    real = os.path.realpath(progs / "inline5")
    assert any(m.start == base and os.path.realpath(m.path) == real for m in load_maps(child.pid))
