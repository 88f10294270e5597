"""ElfFile and SymbolTable against readelf / nm / addr2line on gcc-built fixtures, and on corrupt input."""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import nm_addr, run
from unwind.elf import PT_LOAD, ElfError, ElfFile
from unwind.maps import load_maps
from unwind.symtab import SymbolTable

ROOT = Path(__file__).resolve().parents[2]
FUNCS = ("leaf_work", "static_helper", "middle_work", "main")


# -- readelf / nm as the reference -------------------------------------------------------------

_SEC = re.compile(
    r"^\s*\[\s*(\d+)\]\s+(\S*)\s+([A-Z_0-9+]+|<unknown>:\s*\S+|LOPROC\S*)\s+([0-9a-f]{16})\s+([0-9a-f]+)\s+([0-9a-f]+)"
)
_SYM = re.compile(r"^\s*\d+:\s+([0-9a-f]+)\s+(\S+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)")


def readelf_sections(path: Path) -> list[tuple[int, str, int, int, int]]:
    """(index, name, addr, offset, size) for each section, from ``readelf -SW``."""
    rows = []
    for line in run("readelf", "-SW", path).splitlines():
        m = _SEC.match(line)
        if m:
            rows.append((int(m[1]), m[2], int(m[4], 16), int(m[5], 16), int(m[6], 16)))
    return rows


def readelf_loads(path: Path) -> list[tuple[int, int, int, int]]:
    """(offset, vaddr, filesz, memsz) of each LOAD program header, from ``readelf -lW``."""
    rows = []
    for line in run("readelf", "-lW", path).splitlines():
        parts = line.split()
        if parts[:1] == ["LOAD"]:
            rows.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16), int(parts[5], 16)))
    return rows


def readelf_funcs(path: Path, *flags: str) -> list[tuple[int, int, str]]:
    """(value, size, name) of defined FUNC/IFUNC symbols, from ``readelf -sW`` (``--dyn-syms`` etc.)."""
    rows = []
    for line in run("readelf", "-W", *(flags or ("-s",)), path).splitlines():
        m = _SYM.match(line)
        if m and m[3] in ("FUNC", "IFUNC") and m[5] not in ("UND", "ABS"):
            rows.append((int(m[1], 16), int(m[2], 0), m[6].split("@")[0]))
    return rows


def names_by_addr(rows: list[tuple[int, int, str]]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for value, _size, name in rows:
        out.setdefault(value, set()).add(name)
    return out


def lookup1(table: SymbolTable, vaddr: int) -> str | None:
    return table.lookup(np.array([vaddr], dtype=np.uint64))[0]


# -- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prog", "prog_nopie", "prog_stripped", "prog.debug", "libfix.so"])
def test_sections_match_readelf(fx: Path, name: str) -> None:
    with ElfFile.open(fx / name) as elf:
        ours = [(s.index, s.name, s.addr, s.offset, s.size) for s in elf.sections]
    assert ours == readelf_sections(fx / name)


@pytest.mark.parametrize("name", ["prog", "prog_nopie", "prog.debug", "libfix.so"])
def test_load_segments_match_readelf(fx: Path, name: str) -> None:
    with ElfFile.open(fx / name) as elf:
        ours = [(s.offset, s.vaddr, s.filesz, s.memsz) for s in elf.load_segments]
        assert all(s.type == PT_LOAD for s in elf.load_segments)
    assert ours == readelf_loads(fx / name)


def test_elf_types(fx: Path) -> None:
    with (
        ElfFile.open(fx / "prog") as pie,
        ElfFile.open(fx / "prog_nopie") as exe,
        ElfFile.open(fx / "libfix.so") as so,
    ):
        assert (pie.elf_type, exe.elf_type, so.elf_type) == (3, 2, 3)  # ET_DYN, ET_EXEC, ET_DYN
        assert pie.machine == 62  # EM_X86_64


@pytest.mark.parametrize("name", ["prog", "prog_stripped", "prog.debug", "prog_linked", "libfix.so"])
def test_build_id_matches_readelf(fx: Path, name: str) -> None:
    m = re.search(r"Build ID: ([0-9a-f]+)", run("readelf", "-n", fx / name))
    assert m is not None
    with ElfFile.open(fx / name) as elf:
        assert elf.build_id == bytes.fromhex(m[1])


def test_build_id_of_system_libc() -> None:
    libc = next(m.path for m in load_maps(os.getpid()) if m.is_exec and m.name.startswith("libc.so"))
    m = re.search(r"Build ID: ([0-9a-f]+)", run("readelf", "-n", libc))
    with ElfFile.open(libc) as elf:
        assert elf.build_id == (bytes.fromhex(m[1]) if m else None)


def test_debuglink(fx: Path) -> None:
    with ElfFile.open(fx / "prog_linked") as elf:
        link = elf.debuglink
    assert link is not None
    assert link.name == "prog.debug"
    assert link.crc == zlib.crc32((fx / "prog.debug").read_bytes())
    assert re.search(rf"CRC value: {link.crc:#x}", run("readelf", "--debug-dump=links", fx / "prog_linked"))
    with ElfFile.open(fx / "prog") as elf:
        assert elf.debuglink is None


def test_file_offset_to_vaddr(fx: Path) -> None:
    for name in ("prog", "prog_nopie", "libfix.so"):
        loads = readelf_loads(fx / name)
        with ElfFile.open(fx / name) as elf:
            for off, vaddr, filesz, _ in loads:
                if filesz == 0:
                    continue
                assert elf.file_offset_to_vaddr(off) == vaddr
                assert elf.file_offset_to_vaddr(off + filesz - 1) == vaddr + filesz - 1
            beyond = max(o + f for o, _, f, _ in loads)
            assert elf.file_offset_to_vaddr(beyond + 0x10000) is None
            offs = np.array([o for o, _, f, _ in loads if f] + [beyond + 0x10000])
            vaddrs, found = elf.file_offsets_to_vaddrs(offs)
            assert vaddrs[found].tolist() == [v for _, v, f, _ in loads if f]
            assert found.tolist() == [True] * (len(offs) - 1) + [False]


def test_from_bytes_equals_open(fx: Path) -> None:
    data = (fx / "prog").read_bytes()
    with ElfFile.open(fx / "prog") as mapped:
        inmem = ElfFile.from_bytes(data)
        assert inmem.sections == mapped.sections
        assert inmem.segments == mapped.segments
        assert inmem.build_id == mapped.build_id
        assert inmem.symbols().addrs.tolist() == mapped.symbols().addrs.tolist()
    assert ElfFile.from_bytes(bytearray(data)).build_id == ElfFile.from_bytes(memoryview(data)).build_id


# -- symbols -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prog", "prog_nopie", "libfix.so", "prog.debug"])
def test_symbols_match_readelf(fx: Path, name: str) -> None:
    funcs = readelf_funcs(fx / name)
    assert funcs
    at = names_by_addr(funcs)
    with ElfFile.open(fx / name) as elf:
        table = elf.symbols()
        assert table.addrs.dtype == np.uint64
        assert np.all(table.addrs[1:] > table.addrs[:-1])
        assert set(table.addrs.tolist()) == set(at)
        starts = sorted(at)
        for value, size, _ in funcs:
            assert lookup1(table, value) in at[value]
            if size and not any(value < s < value + size for s in starts):
                assert lookup1(table, value + size - 1) in at[value]


def test_symbol_names_and_sizes_exact(fx: Path) -> None:
    with ElfFile.open(fx / "prog") as elf:
        table = elf.symbols()
        for name in FUNCS:
            addr = nm_addr(fx / "prog", name)
            (i,) = table.lookup_indices(np.array([addr], dtype=np.uint64)).tolist()
            assert table.name(i) == name
            assert int(table.addrs[i]) == addr
        size = next(s for v, s, n in readelf_funcs(fx / "prog") if n == "leaf_work")
        assert (
            int(table.sizes[table.lookup_indices(np.array([nm_addr(fx / "prog", "leaf_work")]))[0]]) == size
        )


def test_address_past_a_sized_symbol_is_not_that_symbol(fx: Path) -> None:
    funcs = {n: (v, s) for v, s, n in readelf_funcs(fx / "prog")}
    value, size = funcs["leaf_work"]
    with ElfFile.open(fx / "prog") as elf:
        table = elf.symbols()
        assert lookup1(table, value + size - 1) == "leaf_work"
        after = lookup1(table, value + size)
        starts_there = {n for n, (v, _) in funcs.items() if v == value + size}
        assert after != "leaf_work"
        assert after is None or after in starts_there


def test_addr2line_agrees(fx: Path) -> None:
    funcs = readelf_funcs(fx / "prog")
    probes = [v + s // 2 for v, s, n in funcs if n in FUNCS]
    out = run("addr2line", "-f", "-e", fx / "prog", *(hex(p) for p in probes)).splitlines()
    expected = out[0::2]
    with ElfFile.open(fx / "prog") as elf:
        assert elf.symbols().lookup(np.array(probes, dtype=np.uint64)) == expected


def _mapped_rss_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, ours = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            ours = line.rstrip().endswith(" " + str(path))
        elif ours and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_a_big_read_gives_the_mapped_pages_back(fx: Path, tmp_path: Path) -> None:
    """A section of 4 MiB read from a mapped file is copied out, and its pages leave the process's RSS
    (they would count twice); the copy is exact, and a second read faults them in again."""
    blob = tmp_path / "blob"
    blob.write_bytes(random.Random(3).randbytes(4 << 20))
    big = tmp_path / "big.elf"
    run("objcopy", "--add-section", f".bpfprof_big={blob}", fx / "prog", big)
    with ElfFile.open(big) as elf:
        sec = elf.section(".bpfprof_big")
        assert sec is not None
        assert elf.section_data(sec) == blob.read_bytes()
        assert _mapped_rss_kib(big) < 1024  # of the 4096 KiB just read
        assert elf.section_data(sec) == blob.read_bytes()


def test_stripped_has_no_local_functions(fx: Path) -> None:
    with ElfFile.open(fx / "prog_stripped") as elf:
        assert not elf.has_symtab
        table = elf.symbols()
        for name in FUNCS:
            assert lookup1(table, nm_addr(fx / "prog", name)) is None
    with ElfFile.open(fx / "libfix_stripped.so") as elf:
        table = elf.symbols()
        assert lookup1(table, nm_addr(fx / "libfix.so", "fixlib_exported")) == "fixlib_exported"  # .dynsym
        assert lookup1(table, nm_addr(fx / "libfix.so", "fixlib_local")) is None


def test_system_libc_dynsym_matches_readelf() -> None:
    libc = next(m.path for m in load_maps(os.getpid()) if m.is_exec and m.name.startswith("libc.so"))
    funcs = readelf_funcs(Path(libc), "--dyn-syms")
    at = names_by_addr(funcs)
    with ElfFile.open(libc) as elf:
        table = elf.symbols()
        values = np.array([v for v, _, _ in funcs], dtype=np.uint64)
        for (value, _, _), name in zip(funcs, table.lookup(values), strict=True):
            assert name in at[value]
        # Aliases resolve to the plainest name: getpid over __getpid.
        if "getpid" in at.get(next(v for v, _, n in funcs if n == "getpid"), set()):
            assert lookup1(table, next(v for v, _, n in funcs if n == "getpid")) == "getpid"


def test_zero_size_symbol_covers_up_to_next_only_if_nothing_better() -> None:
    # A hand-made table: sized A [0x100, 0x140), zero-size Z at 0x120 inside A, zero-size Y at 0x200,
    # sized B [0x300, 0x310), section of Y ends at 0x280.
    from unwind.symtab import RawSymbols, StringSource

    strings = b"\0A\0Z\0Y\0B\0"
    part = RawSymbols(
        addrs=np.array([0x100, 0x120, 0x200, 0x300], np.uint64),
        sizes=np.array([0x40, 0, 0, 0x10], np.uint64),
        name_offs=np.array([1, 3, 5, 7], np.uint32),
        rank=np.zeros(4, np.uint16),
        strings=StringSource(strings, 0, len(strings)),
        section_ends=np.array([0x1000, 0x1000, 0x280, 0x1000], np.uint64),
    )
    table = SymbolTable([part])
    probes = [0xFF, 0x100, 0x130, 0x13F, 0x140, 0x150, 0x200, 0x27F, 0x280, 0x300, 0x30F, 0x310]
    assert table.lookup(np.array(probes, np.uint64)) == [
        None,
        "A",
        "A",
        "A",
        "Z",
        "Z",
        "Y",
        "Y",
        None,
        "B",
        "B",
        None,
    ]
    assert SymbolTable([]).lookup(np.array([1], np.uint64)) == [None]


# -- corrupt input -----------------------------------------------------------------------------


def _u16(data: bytearray, off: int, value: int) -> None:
    struct.pack_into("<H", data, off, value)


def _u64(data: bytearray, off: int, value: int) -> None:
    struct.pack_into("<Q", data, off, value)


def exercise(data: bytes) -> None:
    """Parse and use everything; only ElfError may escape."""
    elf = ElfFile.from_bytes(data)
    _ = (elf.build_id, elf.debuglink, elf.load_segments, elf.has_symtab)
    for s in elf.sections[:50]:
        elf.section_data(s)
    table = elf.symbols()
    probes = np.concatenate(
        [table.addrs[:20], table.addrs[:20] + np.uint64(1), np.array([0, 2**63], np.uint64)]
    )
    table.lookup(probes)
    offsets = [0, 0x1000, 0x1100, len(data) - 1, 2**40]
    for off in offsets:
        elf.file_offset_to_vaddr(off)
    elf.file_offsets_to_vaddrs(np.array(offsets, dtype=np.uint64))


@pytest.fixture(scope="module")
def prog_bytes(fx: Path) -> bytes:
    return (fx / "prog").read_bytes()


def shdr_offset(data: bytes, index: int) -> int:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    return shoff + 64 * index


def test_valid_fixture_is_exercised_cleanly(prog_bytes: bytes) -> None:
    exercise(prog_bytes)


@pytest.mark.parametrize("frac", [0.0, 0.2, 0.5, 0.9, 0.999])
def test_truncated(prog_bytes: bytes, frac: float) -> None:
    with pytest.raises(ElfError):
        exercise(prog_bytes[: int(len(prog_bytes) * frac)])


@pytest.mark.parametrize("cut", [1, 4, 5, 16, 63, 64, 100, 0x40 + 56 * 2 + 3])
def test_truncated_in_headers(prog_bytes: bytes, cut: int) -> None:
    with pytest.raises(ElfError):
        ElfFile.from_bytes(prog_bytes[:cut])


def test_every_truncation_point_near_the_end(prog_bytes: bytes) -> None:
    # Section headers sit at the end of the file: any cut there must be noticed.
    for cut in range(len(prog_bytes) - 64 * 3, len(prog_bytes)):
        with pytest.raises(ElfError):
            ElfFile.from_bytes(prog_bytes[:cut])


def test_bad_magic_class_and_encoding(prog_bytes: bytes) -> None:
    for off, value, message in [(0, 0x7E, "magic"), (4, 1, "class"), (5, 2, "encoding")]:
        data = bytearray(prog_bytes)
        data[off] = value
        with pytest.raises(ElfError, match=message):
            ElfFile.from_bytes(data)


@pytest.mark.parametrize("field_off", [24, 32])  # sh_offset, sh_size
def test_huge_section_offset_or_size(prog_bytes: bytes, field_off: int) -> None:
    data = bytearray(prog_bytes)
    text = next(s.index for s in ElfFile.from_bytes(prog_bytes).sections if s.name == ".text")
    _u64(data, shdr_offset(prog_bytes, text) + field_off, 2**63)
    with pytest.raises(ElfError, match="past the end"):
        ElfFile.from_bytes(data)


def test_huge_table_offsets(prog_bytes: bytes) -> None:
    for off in (0x20, 0x28):  # e_phoff, e_shoff
        data = bytearray(prog_bytes)
        _u64(data, off, 2**64 - 8)
        with pytest.raises(ElfError):
            ElfFile.from_bytes(data)
    data = bytearray(prog_bytes)
    _u16(data, 0x38, 0xFFFE)  # e_phnum
    with pytest.raises(ElfError):
        ElfFile.from_bytes(data)


def test_segment_past_the_end(prog_bytes: bytes) -> None:
    phoff = struct.unpack_from("<Q", prog_bytes, 0x20)[0]
    load = next(i for i, s in enumerate(ElfFile.from_bytes(prog_bytes).segments) if s.type == PT_LOAD)
    data = bytearray(prog_bytes)
    _u64(data, phoff + 56 * load + 32, len(prog_bytes) + 1)  # p_filesz
    with pytest.raises(ElfError, match=f"segment {load} .* past the end"):
        ElfFile.from_bytes(data)


def test_without_section_headers_segments_are_still_checked(prog_bytes: bytes) -> None:
    # Like a vDSO image or an sstrip'ed binary: no section header table, only program headers.
    data = bytearray(prog_bytes)
    _u64(data, 0x28, 0)  # e_shoff
    _u16(data, 0x3C, 0)  # e_shnum
    _u16(data, 0x3E, 0)  # e_shstrndx
    elf = ElfFile.from_bytes(data)
    assert elf.sections == ()
    assert elf.build_id == ElfFile.from_bytes(prog_bytes).build_id  # from PT_NOTE
    assert len(elf.symbols()) == 0
    last_load_end = max(s.offset + s.filesz for s in elf.load_segments)
    with pytest.raises(ElfError, match="segment"):
        ElfFile.from_bytes(data[: last_load_end - 1])


def test_high_segment_vaddrs_do_not_overflow(prog_bytes: bytes) -> None:
    # vmlinux and kernel modules load at 0xffffffff8...: vaddrs past the int64 range.
    elf0 = ElfFile.from_bytes(prog_bytes)
    phoff = struct.unpack_from("<Q", prog_bytes, 0x20)[0]
    index, seg = next((i, s) for i, s in enumerate(elf0.segments) if s.type == PT_LOAD and s.filesz)
    data = bytearray(prog_bytes)
    high = 0xFFFFFFFF81000000
    _u64(data, phoff + 56 * index + 16, high)  # p_vaddr
    elf = ElfFile.from_bytes(data)
    assert elf.file_offset_to_vaddr(seg.offset + 5) == high + 5
    vaddrs, found = elf.file_offsets_to_vaddrs(np.array([seg.offset + 5], dtype=np.uint64))
    assert vaddrs.tolist() == [high + 5]
    assert found.tolist() == [True]


def test_bad_header_entry_sizes(prog_bytes: bytes) -> None:
    for off in (0x36, 0x3A):  # e_phentsize, e_shentsize
        data = bytearray(prog_bytes)
        _u16(data, off, 12)
        with pytest.raises(ElfError, match="header size"):
            ElfFile.from_bytes(data)


def test_bad_shstrndx(prog_bytes: bytes) -> None:
    shnum = struct.unpack_from("<H", prog_bytes, 0x3C)[0]
    data = bytearray(prog_bytes)
    _u16(data, 0x3E, shnum + 3)
    with pytest.raises(ElfError, match="name table index"):
        ElfFile.from_bytes(data)
    data = bytearray(prog_bytes)
    _u16(data, 0x3E, 1)  # .interp: not a string table
    with pytest.raises(ElfError, match="not SHT_STRTAB"):
        ElfFile.from_bytes(data)


def test_section_name_outside_string_table(prog_bytes: bytes) -> None:
    data = bytearray(prog_bytes)
    struct.pack_into("<I", data, shdr_offset(prog_bytes, 3), 0xFFFFFF)
    with pytest.raises(ElfError, match="name of section 3"):
        ElfFile.from_bytes(data)


def _symtab(prog_bytes: bytes) -> int:
    return next(s.index for s in ElfFile.from_bytes(prog_bytes).sections if s.name == ".symtab")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("link", 9999, "string table 9999"), ("link", 1, "not a string table"), ("entsize", 0, "entry size")],
)
def test_bad_symbol_table_header(prog_bytes: bytes, field: str, value: int, message: str) -> None:
    data = bytearray(prog_bytes)
    base = shdr_offset(prog_bytes, _symtab(prog_bytes))
    if field == "link":
        struct.pack_into("<I", data, base + 40, value)
    else:
        _u64(data, base + 56, value)
    elf = ElfFile.from_bytes(data)
    with pytest.raises(ElfError, match=message):
        elf.symbols()


def test_symbol_name_past_string_table(prog_bytes: bytes) -> None:
    elf = ElfFile.from_bytes(prog_bytes)
    symtab = elf.sections[_symtab(prog_bytes)]
    raw = np.frombuffer(prog_bytes, dtype="<u8", count=symtab.size // 8, offset=symtab.offset).reshape(-1, 3)
    func = int(np.flatnonzero(((raw[:, 0] >> np.uint64(32)) & np.uint64(0xF)) == 2)[0])
    data = bytearray(prog_bytes)
    struct.pack_into("<I", data, symtab.offset + 24 * func, 0xFFFFFFF0)
    with pytest.raises(ElfError, match="past the end of string table"):
        ElfFile.from_bytes(data).symbols()


def test_overrunning_build_id_note(prog_bytes: bytes) -> None:
    note = ElfFile.from_bytes(prog_bytes).section(".note.gnu.build-id")
    assert note is not None
    data = bytearray(prog_bytes)
    struct.pack_into("<I", data, note.offset + 4, 0x7FFFFFFF)  # descsz
    with pytest.raises(ElfError, match="overruns"):
        _ = ElfFile.from_bytes(data).build_id


def test_debuglink_without_terminator(fx: Path) -> None:
    data = bytearray((fx / "prog_linked").read_bytes())
    sec = ElfFile.from_bytes(bytes(data)).section(".gnu_debuglink")
    assert sec is not None
    data[sec.offset : sec.offset + sec.size] = b"A" * sec.size
    with pytest.raises(ElfError, match="debuglink"):
        _ = ElfFile.from_bytes(data).debuglink


def test_not_elf_files(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "text").write_text("#!/bin/sh\necho hi\n" * 10)
    for name in ("empty", "text"):
        with pytest.raises(ElfError):
            ElfFile.open(tmp_path / name)
    with pytest.raises(ElfError):
        ElfFile.open(tmp_path)  # a directory cannot be mapped
    with pytest.raises(FileNotFoundError):
        ElfFile.open(tmp_path / "missing")


def test_random_bytes() -> None:
    rng = random.Random(1234)
    for size in (0, 1, 63, 64, 65, 4096, 65536):
        with pytest.raises(ElfError):
            ElfFile.from_bytes(bytes(rng.getrandbits(8) for _ in range(size)))
    # Random bytes behind a valid ELF64 LE identification: still only ElfError (or a clean parse).
    for _ in range(50):
        blob = b"\x7fELF\x02\x01\x01" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(60, 3000)))
        try:
            exercise(blob)
        except ElfError:
            pass


def test_close_is_idempotent_and_unmaps(fx: Path, tmp_path: Path) -> None:
    copy = tmp_path / "prog"
    shutil.copy(fx / "prog", copy)
    elf = ElfFile.open(copy)
    table = elf.symbols()
    assert lookup1(table, nm_addr(copy, "leaf_work")) == "leaf_work"
    elf.close()
    elf.close()
    # Names not decoded before close() can no longer be read: the mapping is gone.
    middle = int(table.lookup_indices(np.array([nm_addr(copy, "middle_work")], np.uint64))[0])
    with pytest.raises(ValueError, match="closed"):
        table.name(middle)
    assert lookup1(table, nm_addr(copy, "leaf_work")) == "leaf_work"  # decoded before: cached


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_mutations_raise_only_elf_error(prog_bytes: bytes, data: st.DataObject) -> None:
    blob = bytearray(prog_bytes)
    shoff = struct.unpack_from("<Q", prog_bytes, 0x28)[0]
    # Bias mutations to where structure lives: ELF header, program headers, section headers, symtab.
    regions = [(0, 64), (64, 64 + 56 * 13), (shoff, len(prog_bytes)), (0, len(prog_bytes))]
    for _ in range(data.draw(st.integers(1, 8))):
        lo, hi = data.draw(st.sampled_from(regions))
        pos = data.draw(st.integers(lo, hi - 1))
        width = data.draw(st.sampled_from([1, 2, 4, 8]))
        value = data.draw(st.integers(0, 2 ** (8 * width) - 1) | st.sampled_from([0, 2 ** (8 * width) - 1]))
        blob[pos : pos + width] = value.to_bytes(width, "little")[: len(blob) - pos]
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    started = time.monotonic()
    try:
        exercise(bytes(blob))
    except ElfError:
        pass
    assert time.monotonic() - started < 5.0
