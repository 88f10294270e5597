"""Source lines and inlined frames from DWARF 2-5, parsed lazily: only the compile units that are hit.

``DwarfInfo(elf).lookup(elf_vaddr)`` answers what ``addr2line -f -i -e FILE ADDR`` prints: the inlined
leaf first, the real (out-of-line) function last, each with its file and line. Reading is lazy at three
levels: the ``.debug_*`` sections are read (and decompressed, SHF_COMPRESSED zlib) on first use, a
compile unit (CU) is found through ``.debug_aranges`` (or, for CUs it omits, their root DIE's ranges),
and only a hit CU's line program and top-level DIEs are parsed, then only the subtree of the function
that holds the address. Results are cached per CU (least recently used CUs are dropped beyond
``max_units``).

Failure mode: malformed or missing DWARF gives ``[]`` (or frames without what could not be read), never
an exception. References: DWARF 5 standard (dwarfstd.org), sections 6.2 (line programs), 6.1.2
(aranges), 2.17 (code addresses and ranges), 7.5 (forms); binutils ``bfd/dwarf2.c`` for what addr2line
prints (linkage names preferred, the last line row at an address wins, file names joined with
``DW_AT_comp_dir``).

Why a parser of our own (measured on Debian 12's libc6-dbg, 5.8 MB of .debug_info, and 10k random
.text addresses): lazy pyelftools 0.29 (aranges -> that CU's line program and DIEs) took 0.12 s to the
first frame and 17 s / 554 MB for the 10k; this module takes 0.04 s and 0.7 s / 72 MB RSS (0.09 s for a
profile-like set hitting 38 CUs); ``symbolic`` (Rust, PyPI only) 0.14-0.2 s and 0.22-0.34 s / 59 MB;
``addr2line -f -i`` 0.2 s. File, line and inlined names agree with llvm-addr2line and symbolic on all.
"""

from __future__ import annotations

import bisect
import importlib
import struct
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unwind.elf import ElfError, ElfFile
from unwind.leb128 import read_sleb as _sleb
from unwind.leb128 import read_uleb as _uleb

SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB = 1
ELFCOMPRESS_ZSTD = 2

# Tags (DWARF 5, 7.5.4).
DW_TAG_lexical_block = 0x0B
DW_TAG_compile_unit = 0x11
DW_TAG_inlined_subroutine = 0x1D
DW_TAG_module = 0x1E
DW_TAG_subprogram = 0x2E
DW_TAG_namespace = 0x39
DW_TAG_partial_unit = 0x3C
DW_TAG_skeleton_unit = 0x4A

# Attributes (7.5.5).
DW_AT_sibling = 0x01
DW_AT_name = 0x03
DW_AT_stmt_list = 0x10
DW_AT_low_pc = 0x11
DW_AT_high_pc = 0x12
DW_AT_comp_dir = 0x1B
DW_AT_abstract_origin = 0x31
DW_AT_specification = 0x47
DW_AT_ranges = 0x55
DW_AT_call_file = 0x58
DW_AT_call_line = 0x59
DW_AT_linkage_name = 0x6E
DW_AT_str_offsets_base = 0x72
DW_AT_addr_base = 0x73
DW_AT_rnglists_base = 0x74
DW_AT_MIPS_linkage_name = 0x2007
DW_AT_GNU_addr_base = 0x2133

# Forms (7.5.6).
DW_FORM_addr = 0x01
DW_FORM_block2 = 0x03
DW_FORM_block4 = 0x04
DW_FORM_data2 = 0x05
DW_FORM_data4 = 0x06
DW_FORM_data8 = 0x07
DW_FORM_string = 0x08
DW_FORM_block = 0x09
DW_FORM_block1 = 0x0A
DW_FORM_data1 = 0x0B
DW_FORM_flag = 0x0C
DW_FORM_sdata = 0x0D
DW_FORM_strp = 0x0E
DW_FORM_udata = 0x0F
DW_FORM_ref_addr = 0x10
DW_FORM_ref1 = 0x11
DW_FORM_ref2 = 0x12
DW_FORM_ref4 = 0x13
DW_FORM_ref8 = 0x14
DW_FORM_ref_udata = 0x15
DW_FORM_indirect = 0x16
DW_FORM_sec_offset = 0x17
DW_FORM_exprloc = 0x18
DW_FORM_flag_present = 0x19
DW_FORM_strx = 0x1A
DW_FORM_addrx = 0x1B
DW_FORM_ref_sup4 = 0x1C
DW_FORM_strp_sup = 0x1D
DW_FORM_data16 = 0x1E
DW_FORM_line_strp = 0x1F
DW_FORM_ref_sig8 = 0x20
DW_FORM_implicit_const = 0x21
DW_FORM_loclistx = 0x22
DW_FORM_rnglistx = 0x23
DW_FORM_ref_sup8 = 0x24
DW_FORM_strx1 = 0x25
DW_FORM_strx2 = 0x26
DW_FORM_strx3 = 0x27
DW_FORM_strx4 = 0x28
DW_FORM_addrx1 = 0x29
DW_FORM_addrx2 = 0x2A
DW_FORM_addrx3 = 0x2B
DW_FORM_addrx4 = 0x2C
DW_FORM_GNU_addr_index = 0x1F01
DW_FORM_GNU_str_index = 0x1F02
DW_FORM_GNU_ref_alt = 0x1F20
DW_FORM_GNU_strp_alt = 0x1F21

# Line number program content types (6.2.4.1) and range list entries (7.25).
DW_LNCT_path = 1
DW_LNCT_directory_index = 2
DW_RLE_end_of_list = 0
DW_RLE_base_addressx = 1
DW_RLE_startx_endx = 2
DW_RLE_startx_length = 3
DW_RLE_offset_pair = 4
DW_RLE_base_address = 5
DW_RLE_start_end = 6
DW_RLE_start_length = 7

_CHDR = struct.Struct("<IIQQ")
_MAX_RATIO = 1100  # more than deflate's (and zstd's usual) greatest expansion of its input
_ARANGES_HDR = struct.Struct("<IHIBB")  # unit_length, version, debug_info_offset, address/segment size
_ADDR_PAIR = struct.Struct("<QQ")  # Elf64_Chdr: ch_type, ch_reserved, ch_size, ch_addralign

# Sizes of the forms whose size does not depend on the unit; the others are handled in _form_size.
_FIXED = {
    DW_FORM_data1: 1, DW_FORM_ref1: 1, DW_FORM_flag: 1, DW_FORM_strx1: 1, DW_FORM_addrx1: 1,
    DW_FORM_data2: 2, DW_FORM_ref2: 2, DW_FORM_strx2: 2, DW_FORM_addrx2: 2,
    DW_FORM_strx3: 3, DW_FORM_addrx3: 3,
    DW_FORM_data4: 4, DW_FORM_ref4: 4, DW_FORM_ref_sup4: 4, DW_FORM_strx4: 4, DW_FORM_addrx4: 4,
    DW_FORM_data8: 8, DW_FORM_ref8: 8, DW_FORM_ref_sig8: 8, DW_FORM_ref_sup8: 8,
    DW_FORM_data16: 16, DW_FORM_flag_present: 0, DW_FORM_implicit_const: 0,
}  # fmt: skip
_OFFSET_FORMS = frozenset(
    {DW_FORM_strp, DW_FORM_sec_offset, DW_FORM_line_strp, DW_FORM_strp_sup, DW_FORM_GNU_ref_alt,
     DW_FORM_GNU_strp_alt}
)  # fmt: skip
_ULEB_FORMS = frozenset(
    {DW_FORM_udata, DW_FORM_ref_udata, DW_FORM_strx, DW_FORM_addrx, DW_FORM_loclistx, DW_FORM_rnglistx,
     DW_FORM_GNU_addr_index, DW_FORM_GNU_str_index}
)  # fmt: skip
_LOCAL_REFS = frozenset({DW_FORM_ref1, DW_FORM_ref2, DW_FORM_ref4, DW_FORM_ref8, DW_FORM_ref_udata})
_ADDRX_FORMS = frozenset(
    {DW_FORM_addrx, DW_FORM_addrx1, DW_FORM_addrx2, DW_FORM_addrx3, DW_FORM_addrx4, DW_FORM_GNU_addr_index}
)
_STRX_FORMS = frozenset(
    {DW_FORM_strx, DW_FORM_strx1, DW_FORM_strx2, DW_FORM_strx3, DW_FORM_strx4, DW_FORM_GNU_str_index}
)
_CONSTANT_FORMS = frozenset(
    {DW_FORM_data1, DW_FORM_data2, DW_FORM_data4, DW_FORM_data8, DW_FORM_udata, DW_FORM_sdata,
     DW_FORM_implicit_const}
)  # fmt: skip
# Containers whose children may hold function definitions (C++ namespaces, Rust modules).
_SCOPES = frozenset({DW_TAG_namespace, DW_TAG_module})
_MAX_ORIGIN_HOPS = 8  # abstract_origin/specification chain length (gcc needs 2); bounds a cyclic chain
# CUs kept parsed (line rows, function index, inline trees): all of libc's 1144 code CUs take ~30 MB.
# lookup_many parses each unit once however few are kept; 256 (against 2048 before 2026-12-07) took the
# 10k-address benchmark from 95 to 79 MB at the same speed (64: 75 MB; a call per address thrashes).
_MAX_UNITS = 256


class DwarfError(Exception):
    """Malformed DWARF: caught inside this module and turned into an empty or partial answer."""


# Everything malformed input can raise while it is parsed; turned into [] at the public methods.
_ERRORS = (DwarfError, ElfError, IndexError, KeyError, ValueError, struct.error, zlib.error, OverflowError)


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One source frame of an address: ``function`` (linkage name if DWARF has one, else the name),
    ``file`` (path as addr2line prints it: joined with the CU's directory), 1-based ``line``.

    ``inlined`` is True for a frame whose code was inlined into the next (outer) frame.
    """

    function: str | None
    file: str | None
    line: int | None
    inlined: bool


# -- primitive readers ------------------------------------------------------------------------------


def _uint(data: bytes, pos: int, size: int) -> int:
    if pos < 0 or pos + size > len(data):
        raise DwarfError(f"read of {size} bytes at {pos:#x} is past the end ({len(data):#x})")
    return int.from_bytes(data[pos : pos + size], "little")


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    """The NUL-terminated string at ``pos`` and the position after its NUL."""
    end = data.index(b"\0", pos)  # ValueError when unterminated
    return data[pos:end].decode("utf-8", "replace"), end + 1


def _str_at(data: bytes, pos: int) -> str:
    if not 0 <= pos < len(data):
        raise DwarfError(f"string offset {pos:#x} is outside its section ({len(data):#x})")
    return _cstr(data, pos)[0]


def _initial_length(data: bytes, pos: int) -> tuple[int, int, int]:
    """(length, offset size 4 or 8, position after the length field) of a unit header."""
    length = _uint(data, pos, 4)
    if length == 0xFFFF_FFFF:
        return _uint(data, pos + 4, 8), 8, pos + 12
    if length >= 0xFFFF_FFF0:
        raise DwarfError(f"reserved unit length {length:#x} at {pos:#x}")
    return length, 4, pos + 4


def _decompress(elf: ElfFile, name: str) -> bytes:
    """The contents of section ``name`` (or legacy ``.zdebug_*``), decompressed; b"" when absent."""
    sec = elf.section(name)
    if sec is not None and sec.has_data:
        data = elf.section_data(sec)
        if not sec.flags & SHF_COMPRESSED:
            return data
        if len(data) < _CHDR.size:
            raise DwarfError(f"{name}: compressed section shorter than its header")
        ch_type, _, ch_size, _ = _CHDR.unpack_from(data, 0)
        if ch_type == ELFCOMPRESS_ZLIB:
            out = _inflate(data[_CHDR.size :], ch_size)
        elif ch_type == ELFCOMPRESS_ZSTD:  # binutils >= 2.40 --compress-debug-sections=zstd
            out = _unzstd(data[_CHDR.size :], min(ch_size, _MAX_RATIO * len(data)))
        else:
            raise DwarfError(f"{name}: compression type {ch_type} is not supported")
        if len(out) != ch_size:
            raise DwarfError(f"{name}: decompressed to {len(out)} bytes, header says {ch_size}")
        return out
    legacy = elf.section(".z" + name[1:])
    if legacy is not None and legacy.has_data:
        data = elf.section_data(legacy)
        if data[:4] != b"ZLIB" or len(data) < 12:
            raise DwarfError(f".z{name[1:]}: no ZLIB header")
        size = int.from_bytes(data[4:12], "big")
        return _inflate(data[12:], size)
    return b""


def _unzstd(data: bytes, limit: int) -> bytes:
    """zstd-decompress through the optional ``zstandard`` module (not in Debian 12's Python)."""
    try:
        zstd: Any = importlib.import_module("zstandard")
    except ImportError as e:
        raise DwarfError("a zstd-compressed section needs the zstandard module") from e
    return bytes(zstd.ZstdDecompressor().decompress(data, max_output_size=limit))


def _inflate(data: bytes, size: int) -> bytes:
    """zlib-decompress ``data`` that says it holds ``size`` bytes; the whole stream, in one call (faster
    than a decompressobj). Memory stays bounded whatever ``size`` claims: deflate cannot expand more
    than ~1032 times."""
    return zlib.decompress(data, 15, max(1, min(size, _MAX_RATIO * len(data))))


# -- units and abbreviations ------------------------------------------------------------------------


@dataclass(slots=True)
class _Abbrev:
    """One abbreviation: tag, children flag, attribute specs, and precomputed ways to skip a DIE.

    ``fields`` holds (attribute, form, size, implicit const) with size -1 for variable-size forms;
    ``skip`` is a list of fixed byte counts (>= 0) and variable forms (negated) to step over the
    attributes; ``size`` their total when every form is fixed, else -1; ``sibling_at`` the offset of a
    DW_AT_sibling value from the start of the attributes (-1: none; -2: after a variable-size form).
    """

    tag: int
    children: bool
    fields: tuple[tuple[int, int, int, int], ...]
    skip: list[int]
    size: int
    sibling_at: int
    sibling_size: int


@dataclass(slots=True)
class _Unit:
    """A unit header and its root DIE's facts. Offsets are in ``.debug_info``."""

    offset: int
    end: int
    version: int
    unit_type: int
    addr_size: int
    offset_size: int
    abbrevs: dict[int, _Abbrev]
    die_start: int
    tag: int = 0
    base: int = 0  # DW_AT_low_pc of the root: the base of its range lists
    stmt_list: int | None = None
    comp_dir: str | None = None
    str_offsets_base: int = 8
    addr_base: int = 8
    rnglists_base: int | None = None
    root: dict[int, tuple[int, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class _Scope:
    """A function, inlined call or lexical block: its address ranges and its nested scopes."""

    offset: int  # DIE offset
    ranges: list[tuple[int, int]]
    inlined: bool
    origin: int | None = None  # DW_AT_abstract_origin (absolute .debug_info offset)
    call_file: int | None = None
    call_line: int | None = None
    children: list[_Scope] = field(default_factory=list)


@dataclass(slots=True)
class _LineTable:
    """A CU's line rows, sequences sorted by start address.

    ``files`` holds (path form, path value, directory index) by file index, ``dirs`` (form, value) by
    directory index, ``names`` the paths built so far.
    """

    version: int
    dirs: list[tuple[int, Any]]
    files: list[tuple[int, Any, int]]
    addrs: array[int]
    lines: array[int]
    file_idx: array[int]
    seq_starts: list[int]
    seq_ends_max: list[int]  # running max of sequence end addresses, for overlapping sequences
    seq_ends: list[int]
    seq_rows: list[tuple[int, int]]  # row index range [first, end) of each sequence, end row excluded
    names: dict[int, str | None] = field(default_factory=dict)

    def find(self, addr: int) -> tuple[int, int] | None:
        """(file index, line) of the last row at or before ``addr`` in a sequence holding it."""
        i = bisect.bisect_right(self.seq_starts, addr) - 1
        while i >= 0 and self.seq_ends_max[i] > addr:
            if self.seq_ends[i] > addr:
                first, end = self.seq_rows[i]
                r = bisect.bisect_right(self.addrs, addr, first, end) - 1
                if r >= first:
                    return self.file_idx[r], self.lines[r]
                return None
            i -= 1
        return None


@dataclass(slots=True)
class _UnitCache:
    """What was parsed of one CU: line table, top-level functions (sorted), function subtrees."""

    lines: _LineTable | None
    func_starts: list[int]
    func_ends_max: list[int]
    funcs: list[tuple[int, int, int]]  # (low, high, DIE offset)
    trees: dict[int, _Scope] = field(default_factory=dict)


class DwarfInfo:
    """Lazy DWARF source-line and inline-frame lookup for one ELF file (the binary or its debug file).

    Construction reads nothing; the first lookup reads the ``.debug_*`` sections it needs. Addresses
    are ELF vaddrs of that file. ``lookup`` never raises: malformed DWARF gives ``[]``.
    """

    def __init__(self, source: ElfFile | bytes, *, max_units: int = _MAX_UNITS) -> None:
        self._source: ElfFile | bytes | None = source
        self._max_units = max(1, max_units)
        self._sections: dict[str, bytes] = {}
        self._loaded = False
        self._broken = False
        self._aranges_starts: list[int] = []
        self._aranges: list[tuple[int, int, int]] = []  # (start, end, CU offset), sorted by start
        self._aranges_ends_max: list[int] = []
        self._fallback_scanned = False
        self._unit_offsets: list[int] | None = None
        self._units: dict[int, _Unit] = {}
        self._abbrev_tables: dict[tuple[int, int, int, int], dict[int, _Abbrev]] = {}
        self._abbrev_intern: dict[tuple[object, ...], _Abbrev] = {}
        self._cache: OrderedDict[int, _UnitCache] = OrderedDict()
        self._names: dict[int, str | None] = {}

    # -- public ---------------------------------------------------------------------------------

    @property
    def has_debug_info(self) -> bool:
        """True when the file has a ``.debug_info`` section (compressed or not); reads no DWARF."""
        elf = self._elf()
        return elf is not None and any(
            s.name in (".debug_info", ".zdebug_info") and s.has_data and s.size > 0 for s in elf.sections
        )

    @property
    def unreadable(self) -> bool:
        """True once a lookup found the DWARF unreadable as a whole (no ``.debug_info``, a section that
        cannot be decompressed, malformed ``.debug_aranges``): every answer is then ``[]``."""
        return self._loaded and self._broken

    def lookup(self, elf_vaddr: int) -> list[SourceFrame]:
        """Source frames of the code at ``elf_vaddr``, innermost (inlined leaf) first, the containing
        out-of-line function last; ``[]`` when DWARF has nothing for the address or is malformed."""
        if not self._ensure_loaded():
            return []
        try:
            return self._lookup(elf_vaddr)
        except _ERRORS:
            return []

    def lookup_many(self, elf_vaddrs: Iterable[int]) -> list[list[SourceFrame]]:
        """``lookup`` of each address, in input order. Repeated addresses are looked up once, and the
        others in ascending order: the addresses of one compile unit come together, so each unit hit is
        parsed once however few units are kept (``max_units``)."""
        addrs = list(elf_vaddrs)
        answers = {a: self.lookup(a) for a in sorted(set(addrs))}
        return [answers[a] for a in addrs]

    def close(self) -> None:
        """Drop every cache and section copy (the ElfFile given is not closed: the caller owns it)."""
        self._sections.clear()
        self._cache.clear()
        self._units.clear()
        self._abbrev_tables.clear()
        self._names.clear()
        self._source = None
        self._broken = True

    # -- loading --------------------------------------------------------------------------------

    def _elf(self) -> ElfFile | None:
        src = self._source
        if isinstance(src, bytes | bytearray | memoryview):
            try:
                self._source = src = ElfFile.from_bytes(src)
            except ElfError:
                self._source = None
                return None
        return src if isinstance(src, ElfFile) else None

    def _ensure_loaded(self) -> bool:
        if self._loaded:
            return not self._broken
        self._loaded = True
        try:
            if not self._sec(".debug_info"):
                raise DwarfError("no .debug_info")
            self._read_aranges()
        except _ERRORS:
            self._broken = True
            self._sections.clear()
        return not self._broken

    def _sec(self, name: str) -> bytes:
        """The (decompressed) contents of a ``.debug_*`` section, read on first use; b"" if absent.

        A section that cannot be read is remembered as empty, so later reads fail at once.
        """
        data = self._sections.get(name)
        if data is None:
            data = b""
            try:
                elf = self._elf()
                if elf is not None:
                    data = _decompress(elf, name)
            finally:
                self._sections[name] = data
        return data

    def _read_aranges(self) -> None:
        """Address ranges -> CU offset from ``.debug_aranges`` (6.1.2); a malformed set ends the read."""
        data = self._sec(".debug_aranges")
        entries: list[tuple[int, int, int]] = []
        pos = 0
        size = len(data)
        try:
            while pos + 4 <= size:
                if pos + 16 <= size:
                    # The usual set (32-bit DWARF, 8-byte addresses): a 12-byte header padded to 16.
                    length, version, cu_off, asize, seg_size = _ARANGES_HDR.unpack_from(data, pos)
                    if length < 0xFFFF_FFF0 and version == 2 and asize == 8 and not seg_size:
                        end = min(pos + 4 + length, size)
                        for start, n in _ADDR_PAIR.iter_unpack(data[pos + 16 : end - (end - pos) % 16]):
                            if start == 0 and n == 0:
                                break
                            if n:
                                entries.append((start, start + n, cu_off))
                        pos += 4 + length
                        continue
                length, osize, body = _initial_length(data, pos)
                end = min(body + length, size)
                version = _uint(data, body, 2)
                cu_off = _uint(data, body + 2, osize)
                asize = data[body + 2 + osize]
                seg_size = data[body + 3 + osize]
                if version != 2 or asize not in (4, 8) or seg_size:
                    raise DwarfError(f"aranges set at {pos:#x}: version {version}, address size {asize}")
                tuple_size = 2 * asize
                p = pos + ((body + 4 + osize - pos + tuple_size - 1) // tuple_size) * tuple_size
                while p + tuple_size <= end:
                    start = _uint(data, p, asize)
                    n = _uint(data, p + asize, asize)
                    p += tuple_size
                    if start == 0 and n == 0:
                        break
                    if n:
                        entries.append((start, start + n, cu_off))
                pos = body + length
        except _ERRORS:
            pass  # keep the sets read so far; the fallback scan covers the CUs that were not
        self._set_aranges(entries)

    def _set_aranges(self, entries: list[tuple[int, int, int]]) -> None:
        entries.sort()
        self._aranges = entries
        self._aranges_starts = [e[0] for e in entries]
        self._aranges_ends_max = _running_max([e[1] for e in entries])

    def _scan_unit_ranges(self) -> None:
        """Add the ranges of every CU that ``.debug_aranges`` did not list (clang omits it by default)."""
        self._fallback_scanned = True
        listed = {e[2] for e in self._aranges}
        entries = list(self._aranges)
        for off in self._all_unit_offsets():
            if off in listed:
                continue
            try:
                unit = self._unit(off)
                if unit.tag not in (DW_TAG_compile_unit, DW_TAG_partial_unit, DW_TAG_skeleton_unit):
                    continue
                entries.extend((lo, hi, off) for lo, hi in self._ranges(unit, unit.root) if hi > lo)
            except _ERRORS:
                continue
        self._set_aranges(entries)

    def _all_unit_offsets(self) -> list[int]:
        """Offsets of every unit header in ``.debug_info`` (hops by unit length; stops at damage)."""
        if self._unit_offsets is None:
            data = self._sec(".debug_info")
            offs = []
            pos = 0
            try:
                while pos + 11 <= len(data):
                    length, _, body = _initial_length(data, pos)
                    offs.append(pos)
                    pos = body + length
            except _ERRORS:
                pass
            self._unit_offsets = offs
        return self._unit_offsets

    def _unit(self, off: int) -> _Unit:
        """The unit whose header is at ``off`` (parsed once): header, abbreviations, root attributes."""
        unit = self._units.get(off)
        if unit is not None:
            return unit
        data = self._sec(".debug_info")
        length, osize, pos = _initial_length(data, off)
        end = pos + length
        if end > len(data):
            raise DwarfError(f"unit at {off:#x} runs past the end of .debug_info")
        version = _uint(data, pos, 2)
        pos += 2
        unit_type = 1
        if version >= 5:
            unit_type = data[pos]
            addr_size = data[pos + 1]
            abbrev_off = _uint(data, pos + 2, osize)
            pos += 2 + osize
            if unit_type in (2, 6):  # type units: signature and type offset
                pos += 8 + osize
            elif unit_type in (4, 5):  # skeleton and split units: dwo_id
                pos += 8
        elif version >= 2:
            abbrev_off = _uint(data, pos, osize)
            addr_size = data[pos + osize]
            pos += osize + 1
        else:
            raise DwarfError(f"unit at {off:#x}: DWARF version {version} is not supported")
        if version > 5 or addr_size not in (4, 8):
            raise DwarfError(f"unit at {off:#x}: version {version}, address size {addr_size}")
        unit = _Unit(off, end, version, unit_type, addr_size, osize, {}, pos)
        unit.abbrevs = self._abbrevs(abbrev_off, unit)
        code, p = _uleb(data, pos)
        if code:
            ab = unit.abbrevs[code]
            unit.tag = ab.tag
            unit.root, _ = _read_attrs(data, p, ab, unit)
            root = unit.root
            # Bases first: the other attributes may be indices that need them (DWARF 5, 3.1.1).
            for at, slot in (
                (DW_AT_str_offsets_base, "str_offsets_base"),
                (DW_AT_addr_base, "addr_base"),
                (DW_AT_GNU_addr_base, "addr_base"),
                (DW_AT_rnglists_base, "rnglists_base"),
            ):
                if at in root:
                    setattr(unit, slot, root[at][1])
            if DW_AT_low_pc in root:
                unit.base = self._address(unit, *root[DW_AT_low_pc])
            if DW_AT_stmt_list in root:
                unit.stmt_list = root[DW_AT_stmt_list][1]
            if DW_AT_comp_dir in root:
                unit.comp_dir = self._string(unit, *root[DW_AT_comp_dir])
        self._units[off] = unit
        return unit

    def _abbrevs(self, off: int, unit: _Unit) -> dict[int, _Abbrev]:
        """The abbreviation table at ``off`` of ``.debug_abbrev`` (7.5.3), shared by units alike."""
        key = (off, unit.addr_size, unit.offset_size, unit.version)
        table = self._abbrev_tables.get(key)
        if table is not None:
            return table
        data = self._sec(".debug_abbrev")
        table = {}
        interned = self._abbrev_intern
        pos = off
        while True:
            code = data[pos]  # LEB128 values below 128 (nearly all here) are one byte: read them inline
            code, pos = (code, pos + 1) if code < 0x80 else _uleb(data, pos)
            if code == 0:
                break
            tag = data[pos]
            tag, pos = (tag, pos + 1) if tag < 0x80 else _uleb(data, pos)
            children = data[pos] != 0
            pos += 1
            specs = []
            while True:
                at = data[pos]
                at, pos = (at, pos + 1) if at < 0x80 else _uleb(data, pos)
                form = data[pos]
                form, pos = (form, pos + 1) if form < 0x80 else _uleb(data, pos)
                if at == 0 and form == 0:
                    break
                implicit = 0
                if form == DW_FORM_implicit_const:
                    implicit, pos = _sleb(data, pos)
                specs.append((at, form, implicit))
            # The same declarations recur in every CU's table; their sizes depend on the unit's kind.
            decl = (key[1:], tag, children, tuple(specs))
            ab = interned.get(decl)
            if ab is None:
                ab = interned[decl] = _make_abbrev(tag, children, decl[3], unit)
            table[code] = ab
        self._abbrev_tables[key] = table
        return table

    # -- attribute values -----------------------------------------------------------------------

    def _string(self, unit: _Unit, form: int, value: Any) -> str | None:
        if form == DW_FORM_string:
            return value  # type: ignore[no-any-return]
        if form == DW_FORM_strp:
            return _str_at(self._sec(".debug_str"), value)
        if form == DW_FORM_line_strp:
            return _str_at(self._sec(".debug_line_str"), value)
        if form in _STRX_FORMS:
            table = self._sec(".debug_str_offsets")
            off = _uint(table, unit.str_offsets_base + value * unit.offset_size, unit.offset_size)
            return _str_at(self._sec(".debug_str"), off)
        return None  # DW_FORM_GNU_strp_alt / strp_sup: in a supplementary (dwz) file we do not read

    def _address(self, unit: _Unit, form: int, value: int) -> int:
        if form in _ADDRX_FORMS:
            size = unit.addr_size
            return _uint(self._sec(".debug_addr"), unit.addr_base + value * size, size)
        return value

    def _ranges(self, unit: _Unit, attrs: dict[int, tuple[int, Any]]) -> list[tuple[int, int]]:
        """The code ranges [low, high) of a DIE: DW_AT_low_pc/high_pc or DW_AT_ranges (2.17)."""
        low = attrs.get(DW_AT_low_pc)
        if low is not None:
            lo = self._address(unit, *low)
            high = attrs.get(DW_AT_high_pc)
            if high is None:
                return [(lo, lo + 1)]
            hi = lo + high[1] if high[0] in _CONSTANT_FORMS else self._address(unit, *high)
            return [(lo, hi)]
        rng = attrs.get(DW_AT_ranges)
        if rng is None:
            return []
        form, value = rng
        if unit.version < 5:
            return self._debug_ranges(unit, value)
        if form == DW_FORM_rnglistx:
            if unit.rnglists_base is None:
                raise DwarfError("DW_FORM_rnglistx without DW_AT_rnglists_base")
            table = self._sec(".debug_rnglists")
            base = unit.rnglists_base
            value = base + _uint(table, base + value * unit.offset_size, unit.offset_size)
        return self._rnglist(unit, value)

    def _debug_ranges(self, unit: _Unit, off: int) -> list[tuple[int, int]]:
        """A DWARF 2-4 ``.debug_ranges`` list: address pairs, base selections, (0, 0) at the end."""
        data = self._sec(".debug_ranges")
        size = unit.addr_size
        top = (1 << (8 * size)) - 1
        base = unit.base
        out: list[tuple[int, int]] = []
        pos = off
        while True:
            begin = _uint(data, pos, size)
            end = _uint(data, pos + size, size)
            pos += 2 * size
            if begin == 0 and end == 0:
                return out
            if begin == top:
                base = end
            elif end > begin:
                out.append((base + begin, base + end))

    def _rnglist(self, unit: _Unit, off: int) -> list[tuple[int, int]]:
        """A DWARF 5 ``.debug_rnglists`` list (2.17.3, 7.25) starting at ``off``."""
        data = self._sec(".debug_rnglists")
        size = unit.addr_size
        base = unit.base
        out: list[tuple[int, int]] = []
        pos = off
        while True:
            kind = data[pos]
            pos += 1
            if kind == DW_RLE_end_of_list:
                return out
            if kind == DW_RLE_offset_pair:
                a, pos = _uleb(data, pos)
                b, pos = _uleb(data, pos)
                lo, hi = base + a, base + b
            elif kind == DW_RLE_base_address:
                base = _uint(data, pos, size)
                pos += size
                continue
            elif kind == DW_RLE_base_addressx:
                i, pos = _uleb(data, pos)
                base = self._address(unit, DW_FORM_addrx, i)
                continue
            elif kind == DW_RLE_start_end:
                lo, hi = _uint(data, pos, size), _uint(data, pos + size, size)
                pos += 2 * size
            elif kind == DW_RLE_start_length:
                lo = _uint(data, pos, size)
                n, pos = _uleb(data, pos + size)
                hi = lo + n
            elif kind == DW_RLE_startx_endx:
                i, pos = _uleb(data, pos)
                j, pos = _uleb(data, pos)
                lo, hi = self._address(unit, DW_FORM_addrx, i), self._address(unit, DW_FORM_addrx, j)
            elif kind == DW_RLE_startx_length:
                i, pos = _uleb(data, pos)
                n, pos = _uleb(data, pos)
                lo = self._address(unit, DW_FORM_addrx, i)
                hi = lo + n
            else:
                raise DwarfError(f"range list entry kind {kind:#x} at {pos - 1:#x}")
            if hi > lo:
                out.append((lo, hi))

    # -- lookup ---------------------------------------------------------------------------------

    def _unit_for(self, addr: int) -> int | None:
        found = _find_range(self._aranges_starts, self._aranges_ends_max, self._aranges, addr)
        if found is None and not self._fallback_scanned:
            self._scan_unit_ranges()
            found = _find_range(self._aranges_starts, self._aranges_ends_max, self._aranges, addr)
        return None if found is None else found[2]

    def _unit_cache(self, off: int) -> _UnitCache:
        cache = self._cache.get(off)
        if cache is not None:
            self._cache.move_to_end(off)
            return cache
        unit = self._unit(off)
        try:
            lines = self._line_table(unit) if unit.stmt_list is not None else None
        except _ERRORS:
            lines = None
        try:
            funcs = self._functions(unit)
        except _ERRORS:
            funcs = []
        funcs.sort()
        cache = _UnitCache(lines, [f[0] for f in funcs], _running_max([f[1] for f in funcs]), funcs)
        self._cache[off] = cache
        if len(self._cache) > self._max_units:
            old, _ = self._cache.popitem(last=False)
            self._units.pop(old, None)
        return cache

    def _lookup(self, addr: int) -> list[SourceFrame]:
        off = self._unit_for(addr)
        if off is None:
            return []
        unit = self._unit(off)
        cache = self._unit_cache(off)
        table = cache.lines
        row = table.find(addr) if table is not None else None
        file = line = None
        if row is not None and table is not None:
            file, line = self._file(unit, table, row[0]), row[1] or None
        chain: list[_Scope] = []
        func = _find_range(cache.func_starts, cache.func_ends_max, cache.funcs, addr)
        if func is not None:
            tree = cache.trees.get(func[2])
            if tree is None:
                try:
                    tree = self._function_tree(unit, func[2])
                except _ERRORS:
                    tree = _Scope(func[2], [(func[0], func[1])], False)
                cache.trees[func[2]] = tree
            chain = _scope_chain(tree, addr)
        if not chain:
            return [] if row is None else [SourceFrame(None, file, line, False)]
        frames = []
        for k in range(len(chain) - 1, -1, -1):
            scope = chain[k]
            frames.append(SourceFrame(self._name(unit, scope), file, line, scope.inlined))
            if scope.inlined:
                file = self._file(unit, table, scope.call_file) if table is not None else None
                line = scope.call_line or None
        return frames

    def _name(self, unit: _Unit, scope: _Scope) -> str | None:
        """The function name of a scope (via its abstract origin): linkage name first, as addr2line."""
        start = scope.origin if scope.origin is not None else scope.offset
        if start in self._names:
            return self._names[start]
        name = linkage = None
        off: int | None = start
        try:
            for _ in range(_MAX_ORIGIN_HOPS):
                if off is None:
                    break
                die_unit = unit if unit.offset <= off < unit.end else self._unit_holding(off)
                attrs = self._die_attrs(die_unit, off)
                for at in (DW_AT_linkage_name, DW_AT_MIPS_linkage_name):
                    if at in attrs:
                        linkage = self._string(die_unit, *attrs[at])
                        break
                if linkage:
                    break
                if name is None and DW_AT_name in attrs:
                    name = self._string(die_unit, *attrs[DW_AT_name])
                ref = attrs.get(DW_AT_abstract_origin) or attrs.get(DW_AT_specification)
                off = None if ref is None else self._ref(die_unit, *ref)
        except _ERRORS:
            pass
        result = linkage or name
        self._names[start] = result
        return result

    def _unit_holding(self, off: int) -> _Unit:
        offs = self._all_unit_offsets()
        i = bisect.bisect_right(offs, off) - 1
        if i < 0:
            raise DwarfError(f"DIE offset {off:#x} is in no unit")
        unit = self._unit(offs[i])
        if not unit.offset <= off < unit.end:
            raise DwarfError(f"DIE offset {off:#x} is in no unit")
        return unit

    @staticmethod
    def _ref(unit: _Unit, form: int, value: int) -> int | None:
        if form in _LOCAL_REFS:
            return unit.offset + value
        if form == DW_FORM_ref_addr:
            return value
        return None  # a reference into a type unit or a supplementary file

    def _die_attrs(self, unit: _Unit, off: int) -> dict[int, tuple[int, Any]]:
        data = self._sec(".debug_info")
        code, pos = _uleb(data, off)
        if code == 0:
            return {}
        return _read_attrs(data, pos, unit.abbrevs[code], unit)[0]

    def _functions(self, unit: _Unit) -> list[tuple[int, int, int]]:
        """(low, high, DIE offset) of each function definition of the unit, children not parsed.

        Walks the unit's DIEs, stepping over subtrees through DW_AT_sibling where present, and descends
        only into namespaces and modules (where C++ and Rust put function definitions).
        """
        data = self._sec(".debug_info")
        out: list[tuple[int, int, int]] = []
        end = unit.end
        abbrevs = unit.abbrevs
        code, pos = _uleb(data, unit.die_start)
        if code == 0 or not abbrevs[code].children:
            return out
        pos = _skip_attrs(data, pos, abbrevs[code], unit)
        depth = 1  # open DIEs with children, the root included
        skip_to = 0  # when > 0, every DIE is skipped until depth falls back to this
        while pos < end:
            die = pos
            code, pos = _uleb(data, pos)
            if code == 0:
                depth -= 1
                if depth == 0:
                    break
                if depth == skip_to:
                    skip_to = 0
                continue
            ab = abbrevs[code]
            tag = ab.tag
            if not skip_to and tag == DW_TAG_subprogram:
                attrs, after = _read_attrs(data, pos, ab, unit)
                out.extend((lo, hi, die) for lo, hi in self._ranges(unit, attrs) if hi > lo)
                if ab.children:
                    sib = attrs.get(DW_AT_sibling)
                    target = self._ref(unit, *sib) if sib is not None else None
                    if target is not None and after <= target <= end:
                        pos = target
                    else:
                        pos = after
                        skip_to = depth
                        depth += 1
                else:
                    pos = after
                continue
            pos, descend = _skip_die(data, pos, ab, unit, end)
            if descend:
                if not skip_to and tag not in _SCOPES:
                    skip_to = depth
                depth += 1
        return out

    def _function_tree(self, unit: _Unit, off: int) -> _Scope:
        """The inlined calls and lexical blocks under the function DIE at ``off``, nested as in DWARF."""
        data = self._sec(".debug_info")
        end = unit.end
        abbrevs = unit.abbrevs
        code, pos = _uleb(data, off)
        ab = abbrevs[code]
        attrs, pos = _read_attrs(data, pos, ab, unit)
        root = _Scope(off, self._ranges(unit, attrs), False, origin=self._origin(unit, attrs))
        if not ab.children:
            return root
        stack = [root]  # stack[d] is the scope open at depth d + 1
        depth = 1
        skip_to = 0
        while pos < end:
            die = pos
            code, pos = _uleb(data, pos)
            if code == 0:
                depth -= 1
                if depth == 0:
                    break
                if depth == skip_to:
                    skip_to = 0
                if depth < len(stack):
                    del stack[depth:]
                continue
            ab = abbrevs[code]
            tag = ab.tag
            if not skip_to and tag in (DW_TAG_inlined_subroutine, DW_TAG_lexical_block):
                attrs, pos = _read_attrs(data, pos, ab, unit)
                scope = _Scope(die, self._ranges(unit, attrs), tag == DW_TAG_inlined_subroutine)
                if scope.inlined:
                    scope.origin = self._origin(unit, attrs)
                    cf = attrs.get(DW_AT_call_file)
                    cl = attrs.get(DW_AT_call_line)
                    scope.call_file = cf[1] if cf is not None and isinstance(cf[1], int) else None
                    scope.call_line = cl[1] if cl is not None and isinstance(cl[1], int) else None
                stack[-1].children.append(scope)
                if ab.children:
                    depth += 1
                    stack.append(scope)
                continue
            pos, descend = _skip_die(data, pos, ab, unit, end)
            if descend:
                if not skip_to:
                    skip_to = depth
                depth += 1
        return root

    def _origin(self, unit: _Unit, attrs: dict[int, tuple[int, Any]]) -> int | None:
        ref = attrs.get(DW_AT_abstract_origin) or attrs.get(DW_AT_specification)
        return None if ref is None else self._ref(unit, *ref)

    def _line_table(self, unit: _Unit) -> _LineTable:
        """Run the unit's line number program (6.2) into rows; sequences are sorted by start address.

        File names are kept raw (string form and offset, directory index) and built on first use.
        """
        assert unit.stmt_list is not None
        data = self._sec(".debug_line")
        off = unit.stmt_list
        length, osize, pos = _initial_length(data, off)
        end = pos + length
        if end > len(data):
            raise DwarfError(f"line program at {off:#x} runs past the end of .debug_line")
        version = _uint(data, pos, 2)
        pos += 2
        if not 2 <= version <= 5:
            raise DwarfError(f"line program at {off:#x}: version {version}")
        if version >= 5:
            pos += 2  # address_size, segment_selector_size: DW_LNE_set_address carries its own size
        header_length = _uint(data, pos, osize)
        pos += osize
        program = pos + header_length
        min_inst = data[pos]
        pos += 1
        if version >= 4:
            pos += 1  # maximum_operations_per_instruction: VLIW only, ignored
        # default_is_stmt (data[pos]) is not needed: addr2line ignores is_stmt, and so do we.
        line_base = data[pos + 1] - 256 if data[pos + 1] >= 128 else data[pos + 1]
        line_range = data[pos + 2]
        opcode_base = data[pos + 3]
        pos += 4
        if line_range == 0 or opcode_base == 0:
            raise DwarfError(f"line program at {off:#x}: line_range {line_range}, opcode_base {opcode_base}")
        arg_counts = [0, *data[pos : pos + opcode_base - 1]]  # indexed by standard opcode
        pos += opcode_base - 1

        dirs: list[tuple[int, Any]]
        files: list[tuple[int, Any, int]]
        if version >= 5:
            dir_entries, pos = self._entry_table(unit, data, pos, osize)
            dirs = [(f, v) for f, v, _ in dir_entries]
            files, pos = self._entry_table(unit, data, pos, osize)
        else:
            dirs = [(DW_FORM_string, None)]  # index 0: the compilation directory
            while data[pos]:
                d, pos = _cstr(data, pos)
                dirs.append((DW_FORM_string, d))
            pos += 1
            files = [(DW_FORM_string, None, 0)]  # DWARF 2-4 file indices are 1-based
            while data[pos]:
                name, pos = _cstr(data, pos)
                dir_idx, pos = _uleb(data, pos)
                _, pos = _uleb(data, pos)
                _, pos = _uleb(data, pos)
                files.append((DW_FORM_string, name, dir_idx))
        pos = program

        # Special opcodes, precomputed: address and line advance of each.
        special_addr = [0] * 256
        special_line = [0] * 256
        for op in range(opcode_base, 256):
            adj = op - opcode_base
            special_addr[op] = (adj // line_range) * min_inst
            special_line[op] = line_base + adj % line_range
        const_add = special_addr[255]

        addrs: array[int] = array("Q")
        lines: array[int] = array("L")
        fidx: array[int] = array("L")
        add_addr, add_line, add_file = addrs.append, lines.append, fidx.append
        seqs: list[tuple[int, int, int, int]] = []  # (start addr, end addr, first row, end row)
        address = 0
        file = line = 1
        seq_first = 0
        # Values out of range (a negative line, an address past 2**64) raise OverflowError in append:
        # only malformed programs have them, and the unit then has no line table.
        while pos < end:
            op = data[pos]
            pos += 1
            if op >= opcode_base:
                address += special_addr[op]
                line += special_line[op]
                add_addr(address)
                add_line(line)
                add_file(file)
            elif op in (5, 2):  # DW_LNS_set_column (ignored), DW_LNS_advance_pc
                n = data[pos]
                n, pos = (n, pos + 1) if n < 0x80 else _uleb(data, pos)
                if op == 2:
                    address += n * min_inst
            elif op == 3:  # DW_LNS_advance_line
                n = data[pos]
                if n < 0x40:
                    line += n
                    pos += 1
                else:
                    n, pos = _sleb(data, pos)
                    line += n
            elif op == 1:  # DW_LNS_copy
                add_addr(address)
                add_line(line)
                add_file(file)
            elif op == 0:
                n, pos = _uleb(data, pos)
                if n == 0:
                    continue
                sub = data[pos]
                nxt = pos + n
                if sub == 1:  # DW_LNE_end_sequence
                    if len(addrs) > seq_first:
                        seqs.append((addrs[seq_first], address, seq_first, len(addrs)))
                    seq_first = len(addrs)
                    address = 0
                    file = line = 1
                elif sub == 2:  # DW_LNE_set_address: the operand is the rest of the instruction
                    if not 1 <= n - 1 <= 8:
                        raise DwarfError(f"DW_LNE_set_address of {n - 1} bytes at {pos:#x}")
                    address = _uint(data, pos + 1, n - 1)
                elif sub == 3 and version < 5:  # DW_LNE_define_file
                    name, p = _cstr(data, pos + 1)
                    dir_idx, _ = _uleb(data, p)
                    files.append((DW_FORM_string, name, dir_idx))
                pos = nxt
            elif op == 4:  # DW_LNS_set_file
                file, pos = _uleb(data, pos)
            elif op == 8:  # DW_LNS_const_add_pc
                address += const_add
            elif op == 9:  # DW_LNS_fixed_advance_pc
                address += _uint(data, pos, 2)
                pos += 2
            else:  # negate_stmt, basic_block, prologue_end, set_isa, ...: skip their operands
                for _ in range(arg_counts[op]):
                    _, pos = _uleb(data, pos)
        return _sorted_table(version, dirs, files, addrs, lines, fidx, seqs)

    def _entry_table(
        self, unit: _Unit, data: bytes, pos: int, osize: int
    ) -> tuple[list[tuple[int, Any, int]], int]:
        """A DWARF 5 directory or file name table (6.2.4, items 14-20): (path form, path value,
        directory index) per entry, and the position after the table."""
        nformats = data[pos]
        pos += 1
        formats = []
        for _ in range(nformats):
            ct, pos = _uleb(data, pos)
            form, pos = _uleb(data, pos)
            size = _form_size(form, unit)
            if form in _OFFSET_FORMS:
                size = osize
            formats.append((ct, form, size))
        count, pos = _uleb(data, pos)
        entries = []
        for _ in range(count):
            path_form, path, dir_idx = 0, None, 0
            for ct, form, size in formats:
                if size >= 0:
                    value = int.from_bytes(data[pos : pos + size], "little")
                    pos += size
                else:
                    value, pos = _read_form(data, pos, form, unit, osize)
                if ct == DW_LNCT_path:
                    path_form, path = form, value
                elif ct == DW_LNCT_directory_index:
                    dir_idx = value
            entries.append((path_form, path, dir_idx))
        if pos > len(data):
            raise DwarfError("line program file table runs past the end of .debug_line")
        return entries, pos

    def _file(self, unit: _Unit, table: _LineTable, idx: int | None) -> str | None:
        """The path of file ``idx`` of a line table, joined as addr2line joins it; None if unknown."""
        if idx is None or not 0 <= idx < len(table.files):
            return None
        if idx in table.names:
            return table.names[idx]
        try:
            form, value, dir_idx = table.files[idx]
            name = self._string(unit, form, value)
            dirs: list[str | None] = [None] * len(table.dirs)
            if isinstance(dir_idx, int) and 0 <= dir_idx < len(dirs):
                dirs[dir_idx] = self._string(unit, *table.dirs[dir_idx])
            comp_dir = unit.comp_dir
            if comp_dir is None and table.version >= 5 and table.dirs:
                comp_dir = self._string(unit, *table.dirs[0])
            path = _join_path(comp_dir, dirs, name, dir_idx)
        except _ERRORS:
            path = None
        table.names[idx] = path
        return path


# -- helpers -----------------------------------------------------------------------------------------


def _running_max(values: list[int]) -> list[int]:
    out = []
    top = -1
    for v in values:
        top = max(top, v)
        out.append(top)
    return out


def _find_range(
    starts: list[int], ends_max: list[int], entries: list[tuple[int, int, int]], addr: int
) -> tuple[int, int, int] | None:
    """The entry (start, end, x) holding ``addr`` with the greatest start, from start-sorted entries."""
    i = bisect.bisect_right(starts, addr) - 1
    while i >= 0 and ends_max[i] > addr:
        if entries[i][1] > addr:
            return entries[i]
        i -= 1
    return None


def _scope_chain(root: _Scope, addr: int) -> list[_Scope]:
    """The function, then each inlined call holding ``addr``, outermost first (lexical blocks dropped)."""
    chain = [root]
    scope = root
    while True:
        for child in scope.children:
            if any(lo <= addr < hi for lo, hi in child.ranges):
                if child.inlined:
                    chain.append(child)
                scope = child
                break
        else:
            return chain


def _join_path(comp_dir: str | None, dirs: list[str | None], name: Any, dir_idx: Any) -> str | None:
    """A file name as binutils' ``concat_filename`` builds it: COMP_DIR/DIR/NAME unless absolute."""
    if not isinstance(name, str):
        return None
    if name.startswith("/"):
        return name
    sub = dirs[dir_idx] if isinstance(dir_idx, int) and 0 <= dir_idx < len(dirs) else None
    if sub is not None and sub.startswith("/"):
        return f"{sub}/{name}"
    if comp_dir and sub and sub != comp_dir:
        return f"{comp_dir}/{sub}/{name}"
    base = comp_dir or sub
    return f"{base}/{name}" if base else name


def _sorted_table(
    version: int,
    dirs: list[tuple[int, Any]],
    files: list[tuple[int, Any, int]],
    addrs: array[int],
    lines: array[int],
    fidx: array[int],
    seqs: list[tuple[int, int, int, int]],
) -> _LineTable:
    """Order sequences by start address (rows inside a sequence by address, stably) into one table."""
    ordered = all(seqs[i][0] <= seqs[i + 1][0] for i in range(len(seqs) - 1))
    if ordered and len(addrs) > 1:
        # Rows must not go down inside a sequence; a drop is fine only where a sequence starts.
        a = np.frombuffer(addrs, dtype=np.uint64)
        drops = np.flatnonzero(a[1:] < a[:-1]) + 1
        ordered = not set(drops.tolist()) - {s[2] for s in seqs}
    if not ordered:
        new_addrs: array[int] = array("Q")
        new_lines: array[int] = array("L")
        new_fidx: array[int] = array("L")
        new_seqs = []
        for start, stop_addr, first, stop in sorted(seqs, key=lambda s: s[0]):
            rows = sorted(range(first, stop), key=addrs.__getitem__)
            at = len(new_addrs)
            new_addrs.extend(addrs[r] for r in rows)
            new_lines.extend(lines[r] for r in rows)
            new_fidx.extend(fidx[r] for r in rows)
            new_seqs.append((min(start, new_addrs[at]), stop_addr, at, len(new_addrs)))
        addrs, lines, fidx, seqs = new_addrs, new_lines, new_fidx, new_seqs
    return _LineTable(
        version,
        dirs,
        files,
        addrs,
        lines,
        fidx,
        [s[0] for s in seqs],
        _running_max([s[1] for s in seqs]),
        [s[1] for s in seqs],
        [(s[2], s[3]) for s in seqs],
    )


def _form_size(form: int, unit: _Unit) -> int:
    """Size of a form's value in bytes, -1 when it varies (LEB128, strings, blocks, indirect)."""
    size = _FIXED.get(form)
    if size is not None:
        return size
    if form == DW_FORM_addr:
        return unit.addr_size
    if form in _OFFSET_FORMS:
        return unit.offset_size
    if form == DW_FORM_ref_addr:
        return unit.addr_size if unit.version <= 2 else unit.offset_size
    return -1


def _make_abbrev(tag: int, children: bool, specs: tuple[tuple[int, int, int], ...], unit: _Unit) -> _Abbrev:
    fields = []
    skip: list[int] = []
    fixed = 0
    total = 0
    sibling_at = -1
    sibling_size = 0
    for at, form, implicit in specs:
        size = _form_size(form, unit)
        fields.append((at, form, size, implicit))
        if at == DW_AT_sibling and form in _LOCAL_REFS:
            sibling_at, sibling_size = (total, size) if total >= 0 and size > 0 else (-2, 0)
        if size >= 0:
            fixed += size
            if total >= 0:
                total += size
        else:
            if fixed:
                skip.append(fixed)
            fixed = 0
            skip.append(-form)
            total = -1
    if fixed:
        skip.append(fixed)
    return _Abbrev(tag, children, tuple(fields), skip, total, sibling_at, sibling_size)


def _read_form(data: bytes, pos: int, form: int, unit: _Unit, osize: int | None = None) -> tuple[Any, int]:
    """The raw value of one attribute (integers, strings for DW_FORM_string, bytes for blocks)."""
    if form in (DW_FORM_implicit_const, DW_FORM_flag_present):
        return 0, pos
    size = _FIXED.get(form)
    if size is None:
        if form == DW_FORM_addr:
            size = unit.addr_size
        elif form in _OFFSET_FORMS:
            size = osize or unit.offset_size
        elif form == DW_FORM_ref_addr:
            size = unit.addr_size if unit.version <= 2 else unit.offset_size
    if size is not None:
        if pos + size > len(data):
            raise DwarfError(f"form {form:#x} at {pos:#x} runs past the end")
        return int.from_bytes(data[pos : pos + size], "little"), pos + size
    if form in _ULEB_FORMS:
        return _uleb(data, pos)
    if form == DW_FORM_sdata:
        return _sleb(data, pos)
    if form == DW_FORM_string:
        return _cstr(data, pos)
    if form in (DW_FORM_exprloc, DW_FORM_block):
        n, pos = _uleb(data, pos)
    elif form == DW_FORM_block1:
        n, pos = data[pos], pos + 1
    elif form == DW_FORM_block2:
        n, pos = _uint(data, pos, 2), pos + 2
    elif form == DW_FORM_block4:
        n, pos = _uint(data, pos, 4), pos + 4
    elif form == DW_FORM_indirect:
        real, pos = _uleb(data, pos)
        if real == DW_FORM_indirect:
            raise DwarfError(f"nested DW_FORM_indirect at {pos:#x}")
        return _read_form(data, pos, real, unit, osize)
    else:
        raise DwarfError(f"unknown form {form:#x} at {pos:#x}")
    if pos + n > len(data):
        raise DwarfError(f"block of {n} bytes at {pos:#x} runs past the end")
    return data[pos : pos + n], pos + n


def _read_attrs(data: bytes, pos: int, ab: _Abbrev, unit: _Unit) -> tuple[dict[int, tuple[int, Any]], int]:
    """Attribute -> (form, raw value) of one DIE whose attributes start at ``pos``; and the end."""
    attrs: dict[int, tuple[int, Any]] = {}
    for at, form, size, implicit in ab.fields:
        if size > 0:
            attrs[at] = (form, int.from_bytes(data[pos : pos + size], "little"))
            pos += size
        elif size == 0:  # implicit_const, flag_present
            attrs[at] = (form, implicit)
        else:
            real = form
            if form == DW_FORM_indirect:
                real, pos = _uleb(data, pos)
            value, pos = _read_form(data, pos, real, unit)
            attrs[at] = (real, value)
    if pos > len(data):
        raise DwarfError(f"DIE attributes run past the end of the section ({len(data):#x})")
    return attrs, pos


def _skip_attrs(data: bytes, pos: int, ab: _Abbrev, unit: _Unit) -> int:
    """The position after one DIE's attributes, skipping fixed runs at once."""
    if ab.size >= 0:
        return pos + ab.size
    for step in ab.skip:
        if step >= 0:
            pos += step
            continue
        form = -step
        if form in _ULEB_FORMS or form == DW_FORM_sdata:
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        elif form == DW_FORM_string:
            pos = data.index(b"\0", pos) + 1
        elif form in (DW_FORM_exprloc, DW_FORM_block):
            n, pos = _uleb(data, pos)
            pos += n
        else:
            pos = _read_form(data, pos, form, unit)[1]
    return pos


def _skip_die(data: bytes, pos: int, ab: _Abbrev, unit: _Unit, end: int) -> tuple[int, bool]:
    """Step over a DIE whose attributes start at ``pos``: (next position, whether its children follow).

    A DIE with children and a usable DW_AT_sibling jumps past its subtree; else the children follow.
    """
    if ab.children and ab.sibling_at >= 0:
        at = pos + ab.sibling_at
        target = unit.offset + int.from_bytes(data[at : at + ab.sibling_size], "little")
        after = _skip_attrs(data, pos, ab, unit)
        if after <= target <= end:
            return target, False
        return after, True
    if ab.children and ab.sibling_at == -2:
        attrs, after = _read_attrs(data, pos, ab, unit)
        target = unit.offset + attrs[DW_AT_sibling][1]
        if after <= target <= end:
            return target, False
        return after, True
    return _skip_attrs(data, pos, ab, unit), ab.children
