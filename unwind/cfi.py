"""DWARF call frame information (``.eh_frame``, ``.debug_frame``) as compact per-binary unwind tables.

``build_unwind_table(elf)`` parses every CIE and FDE of a binary, runs the CFA programs, and keeps, for
each program counter range, the three rules an x86_64 unwinder needs: how to compute the CFA (the
caller's rsp), where the return address is, and how to recover the caller's rbp. Rows are numpy arrays
sorted by ELF vaddr; a row holds from its ``pc`` up to the next row's (an FDE's end is a row of kind
``CFA_NONE``, so a pc past every FDE finds no row).

Accepted input (DWARF 5 section 6.4, LSB 5.0 "Exception Frames", ``readelf --debug-dump=frames``):

    section   := entry* [zero terminator]
    entry     := length:u32 [u64 if length == 0xffffffff] (CIE | FDE)
    CIE       := id (0 in .eh_frame; 0xffffffff / 0xffffffffffffffff in .debug_frame) version:u8
                 augmentation:cstr [address_size:u8 segment_size:u8 (version >= 4)] code_align:uleb
                 data_align:sleb ra_register:(u8 if version 1 else uleb) ['z' aug_length:uleb 'L' 'P' 'R'
                 'S' data] initial_instructions
    FDE       := cie_pointer pc_begin pc_range ['z' aug_length:uleb aug_data] instructions

Pointer encodings: absptr, udata2/4/8, sdata2/4/8, uleb128, sleb128; applied pcrel, datarel (base: the
``.got`` vaddr for ``.eh_frame``, the header for ``.eh_frame_hdr``), textrel (``.text``), aligned. CFA
instructions: all of DWARF 5 plus ``DW_CFA_GNU_args_size`` and ``DW_CFA_GNU_negative_offset_extended``.
Expressions are recognised, not evaluated: the PLT pattern ld writes (``rsp+N``, plus 8 when
``(rip & 15) >= K``), ``*(rsp+N)`` / ``*(rbp+N)`` for the CFA (signal frames, gcc's stack realignment),
``rsp+N`` / ``rbp+N`` as the address of a saved register; anything else is a kind the unwinder stops on.

Failure mode: a malformed entry is skipped and counted (``UnwindTable.errors``); a section whose entry
lengths run past its end stops there. ``CfiError`` is raised only by the low-level ``parse_*`` functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from unwind.elf import ElfError, ElfFile
from unwind.leb128 import read_sleb as _sleb
from unwind.leb128 import read_uleb as _uleb
from unwind.symcache import default_cache_dir

# -- row kinds (the values are stored in the tables and in the cache: append, never renumber) ----------

CFA_RSP = 0  # CFA = rsp + cfa_off
CFA_RBP = 1  # CFA = rbp + cfa_off
CFA_PLT = 2  # CFA = rsp + (cfa_off & 0xff) + (8 if (rip & 15) >= (cfa_off >> 8) else 0): ld's PLT CFI
CFA_DEREF_RSP = 3  # CFA = *(rsp + cfa_off): signal trampolines (__restore_rt)
CFA_DEREF_RBP = 4  # CFA = *(rbp + cfa_off): gcc's dynamic stack realignment (DRAP)
CFA_UNSUPPORTED = 5  # another expression, or a register the sample does not carry: stop
CFA_NONE = 6  # no FDE covers the pc

RBP_SAME = 0  # unchanged (the default of a callee-saved register)
RBP_CFA = 1  # saved at CFA + rbp_off
RBP_VAL_CFA = 2  # value is CFA + rbp_off
RBP_AT_RSP = 3  # saved at rsp + rbp_off (expression DW_OP_breg7)
RBP_AT_RBP = 4  # saved at rbp + rbp_off (expression DW_OP_breg6)
RBP_UNDEFINED = 5  # DW_CFA_undefined
RBP_UNSUPPORTED = 6  # another rule (register, other expressions): the value is lost

RA_CFA = 0  # return address saved at CFA + ra_off (-8 in every ordinary frame)
RA_AT_RSP = 1  # saved at rsp + ra_off (expression DW_OP_breg7: signal frames)
RA_UNDEFINED = 2  # DW_CFA_undefined: the outermost frame (_start, clone3)
RA_UNSUPPORTED = 3  # another rule

FLAG_SIGNAL = 1  # the CIE has 'S': the caller's pc is exact, not a return address (no pc-1 lookup)

# DWARF register numbers on x86_64 (System V psABI, figure 3.36).
REG_RBP = 6
REG_RSP = 7
REG_RIP = 16

# Pointer encodings (LSB 5.0, 10.5.1).
DW_EH_PE_absptr = 0x00
DW_EH_PE_uleb128 = 0x01
DW_EH_PE_udata2 = 0x02
DW_EH_PE_udata4 = 0x03
DW_EH_PE_udata8 = 0x04
DW_EH_PE_sleb128 = 0x09
DW_EH_PE_sdata2 = 0x0A
DW_EH_PE_sdata4 = 0x0B
DW_EH_PE_sdata8 = 0x0C
DW_EH_PE_pcrel = 0x10
DW_EH_PE_textrel = 0x20
DW_EH_PE_datarel = 0x30
DW_EH_PE_funcrel = 0x40
DW_EH_PE_aligned = 0x50
DW_EH_PE_indirect = 0x80
DW_EH_PE_omit = 0xFF

SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB = 1
CACHE_FORMAT = 1
_U64 = 2**64 - 1
_log = logging.getLogger(__name__)

# The rules at one location of a CFA program: (cfa_kind, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off).
Rule = tuple[int, int, int, int, int, int]
# A row of a CFA program: (loc relative to the FDE's pc_begin, rules from there on).
RawRow = tuple[int, Rule]


class CfiError(Exception):
    """Call frame information that cannot be read; the message says what and where."""


class Row(NamedTuple):
    """One unwind rule set; offsets in bytes. See the ``CFA_*``, ``RBP_*``, ``RA_*`` kinds."""

    cfa_kind: int
    cfa_off: int
    rbp_kind: int
    rbp_off: int
    ra_kind: int
    ra_off: int
    flags: int


@dataclass(frozen=True, slots=True)
class Cie:
    """A Common Information Entry. ``offset`` is its position in its section; ``initial`` is the rule
    set its initial instructions leave (what ``DW_CFA_restore`` returns to)."""

    offset: int
    version: int
    augmentation: str
    code_align: int
    data_align: int
    ra_register: int
    fde_encoding: int
    lsda_encoding: int
    signal: bool
    address_size: int
    initial: Rule
    instructions: bytes


@dataclass(frozen=True, slots=True)
class Fde:
    """A Frame Description Entry: ``[pc_begin, pc_end)`` in ELF vaddrs, its CIE and its instructions.

    ``instructions_vaddr`` is where the instructions sit (for pc-relative ``DW_CFA_set_loc``).
    """

    offset: int
    cie: Cie
    pc_begin: int
    pc_end: int
    instructions: bytes
    instructions_vaddr: int


# -- primitive readers --------------------------------------------------------------------------------


_FIXED = {
    DW_EH_PE_absptr: struct.Struct("<Q"),
    DW_EH_PE_udata2: struct.Struct("<H"),
    DW_EH_PE_udata4: struct.Struct("<I"),
    DW_EH_PE_udata8: struct.Struct("<Q"),
    DW_EH_PE_sdata2: struct.Struct("<h"),
    DW_EH_PE_sdata4: struct.Struct("<i"),
    DW_EH_PE_sdata8: struct.Struct("<q"),
}


@dataclass(frozen=True, slots=True)
class Bases:
    """Where a CFI section is and the bases of relative pointers, in ELF vaddrs (LSB 5.0, 10.5.1)."""

    section: int  # vaddr of the section's first byte (pcrel base = section + position)
    data: int = 0  # datarel base
    text: int = 0  # textrel base


def read_pointer(data: bytes, pos: int, enc: int, bases: Bases, func: int = 0) -> tuple[int, int]:
    """Decode a pointer in encoding ``enc`` at ``pos``: (value, position after it). CfiError if unknown."""
    if enc == DW_EH_PE_omit:
        return 0, pos
    fmt, app = enc & 0x0F, enc & 0x70
    if app == DW_EH_PE_aligned:
        pos = (pos + 7) & ~7
    at = pos
    if fmt == DW_EH_PE_uleb128:
        value, pos = _uleb(data, pos)
    elif fmt == DW_EH_PE_sleb128:
        value, pos = _sleb(data, pos)
    else:
        s = _FIXED.get(fmt)
        if s is None:
            raise CfiError(f"pointer encoding {enc:#x} at {pos:#x}: unknown format")
        if pos + s.size > len(data):
            raise CfiError(f"pointer at {pos:#x} runs past the end of the section")
        (value,) = s.unpack_from(data, pos)
        pos += s.size
    if app == DW_EH_PE_pcrel:
        value += bases.section + at
    elif app == DW_EH_PE_datarel:
        value += bases.data
    elif app == DW_EH_PE_textrel:
        value += bases.text
    elif app == DW_EH_PE_funcrel:
        value += func
    elif app not in (0, DW_EH_PE_aligned):
        raise CfiError(f"pointer encoding {enc:#x} at {at:#x}: unknown application")
    if enc & DW_EH_PE_indirect:
        raise CfiError(f"indirect pointer at {at:#x}: needs process memory")
    return value & _U64, pos


def _range_value(data: bytes, pos: int, enc: int) -> tuple[int, int]:
    """An FDE's pc_range: the format of ``enc`` only, never applied (LSB 5.0, 10.6.1.1)."""
    return read_pointer(data, pos, enc & 0x0F, Bases(0))


# -- expressions -------------------------------------------------------------------------------------

DW_OP_deref = 0x06
DW_OP_breg0 = 0x70
DW_OP_bregx = 0x92
# ld's CFA expression of lazy PLT entries (bfd/elf64-x86-64.c, elf_x86_64_eh_frame_lazy_plt and the
# IBT/BND variants): DW_OP_breg7 N; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_litK; DW_OP_ge;
# DW_OP_lit3; DW_OP_shl; DW_OP_plus  -> rsp + N + ((rip & 15) >= K) * 8.
_PLT_EXPR = re.compile(rb"\x77([\x00-\x7f])\x80\x00\x3f\x1a([\x30-\x3f])\x2a\x33\x24\x22\Z", re.DOTALL)


def _breg(expr: bytes) -> tuple[int, int, int] | None:
    """(register, offset, position after) for an expression starting with DW_OP_bregN / DW_OP_bregx."""
    if not expr:
        return None
    op = expr[0]
    try:
        if DW_OP_breg0 <= op < DW_OP_breg0 + 32:
            off, pos = _sleb(expr, 1)
            return op - DW_OP_breg0, off, pos
        if op == DW_OP_bregx:
            reg, pos = _uleb(expr, 1)
            off, pos = _sleb(expr, pos)
            return reg, off, pos
    except IndexError:
        return None
    return None


def classify_cfa_expression(expr: bytes) -> tuple[int, int]:
    """The (cfa_kind, cfa_off) a ``DW_CFA_def_cfa_expression`` block stands for; CFA_UNSUPPORTED if
    it is not one of the recognised patterns (see the module docstring)."""
    m = _PLT_EXPR.match(expr)
    if m is not None:
        return CFA_PLT, m.group(1)[0] | (m.group(2)[0] - 0x30) << 8
    b = _breg(expr)
    if b is not None:
        reg, off, pos = b
        rest = expr[pos:]
        if reg in (REG_RSP, REG_RBP):
            if rest == b"":
                return (CFA_RSP if reg == REG_RSP else CFA_RBP), off
            if rest == bytes((DW_OP_deref,)):
                return (CFA_DEREF_RSP if reg == REG_RSP else CFA_DEREF_RBP), off
    return CFA_UNSUPPORTED, 0


def _register_expression(expr: bytes) -> tuple[int, int] | None:
    """(register, offset) when a ``DW_CFA_expression`` block is just ``DW_OP_breg{rsp,rbp} off``."""
    b = _breg(expr)
    if b is not None and b[2] == len(expr) and b[0] in (REG_RSP, REG_RBP):
        return b[0], b[1]
    return None


# -- CIE / FDE parsing ------------------------------------------------------------------------------


def _entry_header(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(entry end, offset size, position of the id / CIE pointer, length) of the entry at ``pos``."""
    if pos < 0 or pos + 4 > len(data):
        raise CfiError(f"entry at {pos:#x}: outside the section, or its length runs past the end")
    (length,) = struct.unpack_from("<I", data, pos)
    if length == 0xFFFF_FFFF:
        if pos + 12 > len(data):
            raise CfiError(f"entry at {pos:#x}: 64-bit length runs past the end of the section")
        (length,) = struct.unpack_from("<Q", data, pos + 4)
        start, size = pos + 12, 8
    else:
        start, size = pos + 4, 4
    end = start + length
    if end > len(data):
        raise CfiError(f"entry at {pos:#x}: length {length:#x} runs past the end of the section")
    return end, size, start, length


def parse_cie(data: bytes, pos: int, *, is_eh: bool, bases: Bases | None = None) -> Cie:
    """Parse the CIE at offset ``pos`` of a ``.eh_frame`` (``is_eh``) or ``.debug_frame`` section."""
    bases = bases or Bases(0)
    end, size, start, _length = _entry_header(data, pos)
    try:
        cie_id = int.from_bytes(data[start : start + size], "little")
        expected = 0 if is_eh else (1 << (8 * size)) - 1
        if cie_id != expected:
            raise CfiError(f"entry at {pos:#x} is not a CIE (id {cie_id:#x})")
        p = start + size
        version = data[p]
        p += 1
        if version not in (1, 3, 4):
            raise CfiError(f"CIE at {pos:#x}: version {version} is not supported")
        nul = data.index(b"\0", p, end)
        aug = data[p:nul].decode("ascii", "replace")
        p = nul + 1
        address_size = 8
        if version >= 4:
            address_size, segment_size = data[p], data[p + 1]
            p += 2
            if segment_size:
                raise CfiError(f"CIE at {pos:#x}: segment selectors are not supported")
        if aug == "eh":  # pre-2.95 g++: a pointer-size eh_data field
            p += 8
        code_align, p = _uleb(data, p)
        data_align, p = _sleb(data, p)
        if version == 1:
            ra_register = data[p]
            p += 1
        else:
            ra_register, p = _uleb(data, p)
        fde_enc = DW_EH_PE_absptr
        lsda_enc = DW_EH_PE_omit
        signal = False
        if aug.startswith("z"):
            aug_len, p = _uleb(data, p)
            aug_end = p + aug_len
            for c in aug[1:]:
                if c == "R":
                    fde_enc = data[p]
                    p += 1
                elif c == "L":
                    lsda_enc = data[p]
                    p += 1
                elif c == "P":
                    penc = data[p]
                    _, p = read_pointer(data, p + 1, penc & ~DW_EH_PE_indirect, bases)
                elif c == "S":
                    signal = True
                elif c in "BG":  # AArch64 B-key / MTE tagged frames: no data
                    pass
                else:
                    break  # unknown: the 'z' length still says where the instructions start
            p = aug_end
        elif aug not in ("", "eh"):
            raise CfiError(f"CIE at {pos:#x}: augmentation {aug!r} without 'z' cannot be skipped")
        if p > end:
            raise CfiError(f"CIE at {pos:#x}: header runs past its end")
        instructions = data[p:end]
        head = _CieHead(pos, code_align, data_align, ra_register, fde_enc, address_size, signal)
        initial = _run(instructions, head, None)[-1][1]
    except (IndexError, ValueError, struct.error) as e:
        raise CfiError(f"CIE at {pos:#x} is truncated or malformed ({e})") from e
    return Cie(
        pos,
        version,
        aug,
        code_align,
        data_align,
        ra_register,
        fde_enc,
        lsda_enc,
        signal,
        address_size,
        initial,
        instructions,
    )


class _CieHead(NamedTuple):
    """What running a CFA program needs from its CIE."""

    offset: int
    code_align: int
    data_align: int
    ra_register: int
    fde_encoding: int
    address_size: int
    signal: bool


def iter_entries(
    data: bytes, *, is_eh: bool, bases: Bases | None = None, errors: list[str] | None = None
) -> Iterator[Cie | Fde]:
    """Every CIE and FDE of a section, in order. Malformed entries are skipped (their message appended
    to ``errors``); entry lengths running past the section end stop the walk (also noted)."""
    bases = bases or Bases(0)
    cies: dict[int, Cie | None] = {}
    pos = 0
    n = len(data)
    while pos + 4 <= n:
        try:
            end, size, start, length = _entry_header(data, pos)
        except CfiError as e:
            if errors is not None:
                errors.append(str(e))
            return
        if length == 0:
            if is_eh:
                return  # the terminator (crtend.o)
            pos = end
            continue
        ident = int.from_bytes(data[start : start + size], "little")
        try:
            if ident == (0 if is_eh else (1 << (8 * size)) - 1):
                cie = parse_cie(data, pos, is_eh=is_eh, bases=bases)
                cies[pos] = cie
                yield cie
            else:
                cie_off = start - ident if is_eh else ident
                cie = _cie_at(data, cie_off, cies, is_eh, bases)
                yield _parse_fde(data, pos, end, start + size, cie, bases, is_eh)
        except CfiError as e:
            if errors is not None:
                errors.append(str(e))
        except (IndexError, ValueError, struct.error) as e:
            if errors is not None:
                errors.append(f"entry at {pos:#x} is malformed ({e})")
        pos = end


def _cie_at(data: bytes, off: int, cies: dict[int, Cie | None], is_eh: bool, bases: Bases) -> Cie:
    if off not in cies:
        try:
            cies[off] = parse_cie(data, off, is_eh=is_eh, bases=bases)
        except CfiError:
            cies[off] = None
            raise
    cie = cies[off]
    if cie is None:
        raise CfiError(f"CIE at {off:#x} is malformed")
    return cie


def _parse_fde(data: bytes, pos: int, end: int, p: int, cie: Cie, bases: Bases, is_eh: bool) -> Fde:
    enc = cie.fde_encoding if is_eh else (DW_EH_PE_udata4 if cie.address_size == 4 else DW_EH_PE_absptr)
    pc_begin, p = read_pointer(data, p, enc, bases)
    pc_range, p = _range_value(data, p, enc)
    if cie.augmentation.startswith("z"):
        aug_len, p = _uleb(data, p)
        p += aug_len
    if p > end:
        raise CfiError(f"FDE at {pos:#x}: header runs past its end")
    return Fde(pos, cie, pc_begin, (pc_begin + pc_range) & _U64, data[p:end], bases.section + p)


def _head(cie: Cie) -> _CieHead:
    """The parts of a CIE that running a CFA program needs."""
    return _CieHead(
        cie.offset,
        cie.code_align,
        cie.data_align,
        cie.ra_register,
        cie.fde_encoding,
        cie.address_size,
        cie.signal,
    )


def fde_table(fde: Fde) -> list[tuple[int, Row]]:
    """The rows one FDE defines, ``(elf_vaddr, Row)`` in address order, without the end marker.

    Consecutive rows with equal rules are merged; rows at or past ``pc_end`` are dropped.
    """
    cie = fde.cie
    head = _head(cie)
    flags = FLAG_SIGNAL if cie.signal else 0
    raw = _run(fde.instructions, head, cie.initial, fde.pc_begin, fde.instructions_vaddr)
    length = fde.pc_end - fde.pc_begin
    out: list[tuple[int, Row]] = []
    for loc, rule in raw:
        if loc >= length and out:
            break
        row = Row(*rule, flags)
        if out and out[-1][1] == row:
            continue
        if out and out[-1][0] == fde.pc_begin + loc:
            out[-1] = (fde.pc_begin + loc, row)
        else:
            out.append((fde.pc_begin + loc, row))
    return out


# -- the CFA program interpreter ---------------------------------------------------------------------

_RULE_INIT: Rule = (CFA_UNSUPPORTED, 0, RBP_SAME, 0, RA_UNSUPPORTED, 0)
_U16 = struct.Struct("<H").unpack_from
_LOC_MAX = 1 << 48  # a location this far from its FDE's start is damage (FDEs span at most 4 GiB)
_U32 = struct.Struct("<I").unpack_from


def _execute(
    ins: bytes,
    cie: _CieHead,
    initial: Rule | None,
    pc_begin: int,
    ins_vaddr: int,
    dependent: list[bool] | None,
    locs: list[int],
    rules: list[Any],
    ids: dict[Rule, int] | None = None,
) -> None:
    """Run a CFA program: append to ``locs`` and ``rules`` one row per location where the rules change.

    ``loc`` is relative to ``pc_begin``. A rule is appended as a ``Rule`` tuple, or as its index in
    ``ids`` (interned there) when ``ids`` is given. For a CIE (``initial`` None) the last row is its
    initial rule set. ``dependent[0]`` is set when the rows depend on where the FDE is
    (``DW_CFA_set_loc``), so they cannot be shared with another FDE with the same instruction bytes.
    """
    init = initial if initial is not None else _RULE_INIT
    ck, co, bk, bo, rk, ro = init
    creg = REG_RSP if ck in (CFA_RSP, CFA_PLT, CFA_DEREF_RSP) else REG_RBP if ck == CFA_RBP else -1
    ra_reg = cie.ra_register
    caf = cie.code_align
    daf = cie.data_align
    stack: list[tuple[int, int, int, int, int, int, int]] = []
    loc = 0
    last: Rule = (-1, 0, 0, 0, 0, 0)  # matches no rule set
    p = 0
    n = len(ins)

    def reg_rule(reg: int, kind: str, value: int) -> None:
        nonlocal bk, bo, rk, ro
        if reg == REG_RBP:
            if kind == "off":
                bk, bo = RBP_CFA, value
            elif kind == "val":
                bk, bo = RBP_VAL_CFA, value
            elif kind == "undef":
                bk, bo = RBP_UNDEFINED, 0
            elif kind == "same":
                bk, bo = RBP_SAME, 0
            elif kind == "at_rsp":
                bk, bo = RBP_AT_RSP, value
            elif kind == "at_rbp":
                bk, bo = RBP_AT_RBP, value
            elif kind == "restore":
                bk, bo = init[2], init[3]
            else:
                bk, bo = RBP_UNSUPPORTED, 0
        if reg == ra_reg:
            if kind == "off":
                rk, ro = RA_CFA, value
            elif kind == "undef":
                rk, ro = RA_UNDEFINED, 0
            elif kind == "at_rsp":
                rk, ro = RA_AT_RSP, value
            elif kind == "restore":
                rk, ro = init[4], init[5]
            else:
                rk, ro = RA_UNSUPPORTED, 0

    def expression_rule(reg: int, block: bytes, val: bool) -> None:
        if reg not in (REG_RBP, ra_reg):
            return
        found = None if val else _register_expression(block)
        if found is None:
            reg_rule(reg, "other", 0)
        else:
            reg_rule(reg, "at_rsp" if found[0] == REG_RSP else "at_rbp", found[1])

    while p < n:
        op = ins[p]
        p += 1
        if op >= 0x40:
            hi = op & 0xC0
            if hi == 0x40:  # DW_CFA_advance_loc
                cur = (ck, co, bk, bo, rk, ro)
                if cur != last:
                    last = cur
                    locs.append(loc)
                    rules.append(cur if ids is None else ids.setdefault(cur, len(ids)))
                loc += (op & 0x3F) * caf
                if loc > _LOC_MAX:
                    break
            elif hi == 0x80:  # DW_CFA_offset
                off = ins[p]
                p += 1
                if off >= 0x80:
                    off, p = _uleb(ins, p - 1)
                reg = op & 0x3F
                if reg == REG_RBP:
                    bk, bo = RBP_CFA, off * daf
                elif reg == ra_reg:
                    rk, ro = RA_CFA, off * daf
            else:  # DW_CFA_restore
                reg_rule(op & 0x3F, "restore", 0)
            continue
        if 0x01 <= op <= 0x04:  # DW_CFA_set_loc, advance_loc1/2/4
            cur = (ck, co, bk, bo, rk, ro)
            if cur != last:
                last = cur
                locs.append(loc)
                rules.append(cur if ids is None else ids.setdefault(cur, len(ids)))
            if op == 0x02:
                loc += ins[p] * caf
                p += 1
            elif op == 0x03:
                loc += _U16(ins, p)[0] * caf
                p += 2
            elif op == 0x04:
                loc += _U32(ins, p)[0] * caf
                p += 4
            else:  # DW_CFA_set_loc: an address in the FDE's encoding
                enc = cie.fde_encoding if cie.address_size == 8 else DW_EH_PE_udata4
                addr, p = read_pointer(ins, p, enc, Bases(ins_vaddr))
                loc = addr - pc_begin
                if dependent is not None:
                    dependent[0] = True
            if not -_LOC_MAX < loc < _LOC_MAX:
                break  # past any FDE: damaged input
            continue
        if op == 0x0E:  # DW_CFA_def_cfa_offset
            co = ins[p]
            p += 1
            if co >= 0x80:
                co, p = _uleb(ins, p - 1)
            continue
        if op == 0x00:  # DW_CFA_nop
            continue
        if op == 0x0A:  # DW_CFA_remember_state
            stack.append((ck, co, creg, bk, bo, rk, ro))
            continue
        if op == 0x0B:  # DW_CFA_restore_state
            if stack:
                ck, co, creg, bk, bo, rk, ro = stack.pop()
            continue
        if op in (0x0C, 0x0D, 0x12):  # def_cfa, def_cfa_register, def_cfa_sf
            creg, p = _uleb(ins, p)
            if op == 0x0C:
                co, p = _uleb(ins, p)
            elif op == 0x12:
                co, p = _sleb(ins, p)
                co *= daf
            ck = CFA_RSP if creg == REG_RSP else CFA_RBP if creg == REG_RBP else CFA_UNSUPPORTED
            continue
        if op == 0x13:  # DW_CFA_def_cfa_offset_sf
            co, p = _sleb(ins, p)
            co *= daf
            continue
        if op == 0x0F:  # DW_CFA_def_cfa_expression
            size, p = _uleb(ins, p)
            ck, co = classify_cfa_expression(ins[p : p + size])
            creg = -1
            p += size
            continue
        if op in (0x05, 0x11, 0x14, 0x15, 0x2F):  # offset_extended(_sf), val_offset(_sf), GNU negative
            reg, p = _uleb(ins, p)
            if op in (0x11, 0x15):
                off, p = _sleb(ins, p)
            else:
                off, p = _uleb(ins, p)
            off = -off * daf if op == 0x2F else off * daf
            reg_rule(reg, "val" if op in (0x14, 0x15) else "off", off)
            continue
        if op in (0x06, 0x07, 0x08):  # restore_extended, undefined, same_value
            reg, p = _uleb(ins, p)
            reg_rule(reg, "restore" if op == 0x06 else "undef" if op == 0x07 else "same", 0)
            continue
        if op == 0x09:  # DW_CFA_register
            reg, p = _uleb(ins, p)
            _, p = _uleb(ins, p)
            reg_rule(reg, "other", 0)
            continue
        if op in (0x10, 0x16):  # DW_CFA_expression, DW_CFA_val_expression
            reg, p = _uleb(ins, p)
            size, p = _uleb(ins, p)
            expression_rule(reg, ins[p : p + size], op == 0x16)
            p += size
            continue
        if op == 0x2E:  # DW_CFA_GNU_args_size
            _, p = _uleb(ins, p)
            continue
        if op == 0x2D:  # DW_CFA_GNU_window_save / AARCH64_negate_ra_state: no operands
            continue
        # An unknown opcode: its operands cannot be skipped. Nothing past here is trustworthy.
        ck, co = CFA_UNSUPPORTED, 0
        break
    if p > n:
        raise CfiError("CFA program runs past the end of its entry")
    cur = (ck, co, bk, bo, rk, ro)
    if cur != last:
        locs.append(loc)
        rules.append(cur if ids is None else ids.setdefault(cur, len(ids)))


def _run(
    ins: bytes, cie: _CieHead, initial: Rule | None, pc_begin: int = 0, ins_vaddr: int = 0
) -> list[RawRow]:
    """``_execute`` returning ``(loc, Rule)`` rows."""
    locs: list[int] = []
    rules: list[Rule] = []
    _execute(ins, cie, initial, pc_begin, ins_vaddr, None, locs, rules)
    return list(zip(locs, rules, strict=True))


# -- .eh_frame_hdr ----------------------------------------------------------------------------------


def parse_eh_frame_hdr(data: bytes, vaddr: int) -> tuple[int, np.ndarray, np.ndarray]:
    """``.eh_frame_hdr`` at ELF vaddr ``vaddr``: (eh_frame vaddr, initial pcs, FDE vaddrs), the two
    arrays uint64 in the header's (sorted) order. CfiError when the header is malformed."""
    if len(data) < 4 or data[0] != 1:
        raise CfiError(".eh_frame_hdr: missing or version is not 1")
    ptr_enc, count_enc, table_enc = data[1], data[2], data[3]
    bases = Bases(vaddr, data=vaddr)
    try:
        eh_frame, p = read_pointer(data, 4, ptr_enc, bases)
        if count_enc == DW_EH_PE_omit or table_enc == DW_EH_PE_omit:
            return eh_frame, np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        count, p = read_pointer(data, p, count_enc, bases)
    except IndexError as e:
        raise CfiError(".eh_frame_hdr is truncated") from e
    if table_enc == (DW_EH_PE_datarel | DW_EH_PE_sdata4):  # what every linker writes: vectorised
        if p + 8 * count > len(data):
            raise CfiError(f".eh_frame_hdr: table of {count} entries runs past its end")
        table = np.frombuffer(data, "<i4", 2 * count, p).astype(np.int64).reshape(-1, 2) + vaddr
        table &= np.int64(-1)
        return eh_frame, table[:, 0].astype(np.uint64), table[:, 1].astype(np.uint64)
    locs, fdes = np.zeros(count, np.uint64), np.zeros(count, np.uint64)
    try:
        for i in range(count):
            loc, p = read_pointer(data, p, table_enc, bases)
            fde, p = read_pointer(data, p, table_enc, bases)
            locs[i], fdes[i] = loc, fde
    except IndexError as e:
        raise CfiError(".eh_frame_hdr: table runs past its end") from e
    return eh_frame, locs, fdes


# -- the per-binary table ----------------------------------------------------------------------------

_FIELDS = ("cfa_kind", "cfa_off", "rbp_kind", "rbp_off", "ra_kind", "ra_off", "flags")
_ROW_CACHE_MAX = 1 << 18


class UnwindTable:
    """The unwind rows of one binary: parallel numpy arrays sorted by ``pc`` (ELF vaddrs).

    Columns: ``pc`` uint64 (strictly increasing); ``cfa_kind``/``rbp_kind``/``ra_kind`` uint8 (the
    ``CFA_*``, ``RBP_*``, ``RA_*`` kinds); ``cfa_off``/``rbp_off``/``ra_off`` int32 bytes; ``flags`` uint8
    (``FLAG_SIGNAL``). Row ``i`` holds for ELF vaddrs in ``[pc[i], pc[i+1])``; consecutive equal rows are
    merged; a row of kind ``CFA_NONE`` (an FDE's end) means no FDE, as does a pc before the first row.
    ``fde_count`` FDEs went in (``debug_fdes`` of them from ``.debug_frame``); ``errors`` entries could
    not be read. ``row_cache`` maps an ELF vaddr to its ``Row`` (or None) for the unwinder's hot loop.
    """

    __slots__ = (
        "cfa_kind",
        "cfa_off",
        "debug_fdes",
        "errors",
        "fde_count",
        "flags",
        "pc",
        "ra_kind",
        "ra_off",
        "rbp_kind",
        "rbp_off",
        "row_cache",
    )

    def __init__(
        self,
        pc: np.ndarray,
        cfa_kind: np.ndarray,
        cfa_off: np.ndarray,
        rbp_kind: np.ndarray,
        rbp_off: np.ndarray,
        ra_kind: np.ndarray,
        ra_off: np.ndarray,
        flags: np.ndarray,
        *,
        fde_count: int = 0,
        debug_fdes: int = 0,
        errors: int = 0,
    ) -> None:
        self.pc = np.ascontiguousarray(pc, np.uint64)
        self.cfa_kind = np.ascontiguousarray(cfa_kind, np.uint8)
        self.cfa_off = np.ascontiguousarray(cfa_off, np.int32)
        self.rbp_kind = np.ascontiguousarray(rbp_kind, np.uint8)
        self.rbp_off = np.ascontiguousarray(rbp_off, np.int32)
        self.ra_kind = np.ascontiguousarray(ra_kind, np.uint8)
        self.ra_off = np.ascontiguousarray(ra_off, np.int32)
        self.flags = np.ascontiguousarray(flags, np.uint8)
        n = len(self.pc)
        if any(len(getattr(self, f)) != n for f in _FIELDS):
            raise ValueError("unwind table arrays differ in length")
        if n > 1 and not bool(np.all(self.pc[1:] > self.pc[:-1])):
            raise ValueError("unwind table pcs are not strictly increasing")
        self.fde_count = fde_count
        self.debug_fdes = debug_fdes
        self.errors = errors
        self.row_cache: dict[int, Row | None] = {}

    @classmethod
    def empty(cls) -> UnwindTable:
        z = np.zeros(0, np.uint8)
        return cls(np.zeros(0, np.uint64), z, z, z, z, z, z, z)

    def __len__(self) -> int:
        return len(self.pc)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in ("pc", *_FIELDS))

    def lookup(self, elf_vaddrs: np.ndarray | list[int]) -> np.ndarray:
        """The row index for each ELF vaddr (int64 array); -1 where no FDE covers it."""
        q = np.asarray(elf_vaddrs, dtype=np.uint64)
        idx = np.searchsorted(self.pc, q, side="right").astype(np.int64) - 1
        if len(self.pc):
            safe = np.maximum(idx, 0)
            idx[(idx >= 0) & (self.cfa_kind[safe] == CFA_NONE)] = -1
        return idx

    def row(self, index: int) -> Row:
        """The rules of row ``index`` as plain ints."""
        return Row(
            int(self.cfa_kind[index]),
            int(self.cfa_off[index]),
            int(self.rbp_kind[index]),
            int(self.rbp_off[index]),
            int(self.ra_kind[index]),
            int(self.ra_off[index]),
            int(self.flags[index]),
        )

    def find(self, elf_vaddr: int) -> Row | None:
        """The rules that hold at ``elf_vaddr`` (cached in ``row_cache``), or None when no FDE covers it."""
        cache = self.row_cache
        if elf_vaddr in cache:
            return cache[elf_vaddr]
        row = None
        if 0 <= elf_vaddr <= _U64:
            i = int(np.searchsorted(self.pc, np.uint64(elf_vaddr), side="right")) - 1
            if i >= 0 and self.cfa_kind[i] != CFA_NONE:
                row = self.row(i)
        if len(cache) >= _ROW_CACHE_MAX:
            cache.clear()
        cache[elf_vaddr] = row
        return row

    def arrays(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in ("pc", *_FIELDS)}


class _Collected(NamedTuple):
    """FDEs of one section: per FDE its template (a unique row program), pc_begin and pc_end."""

    template: list[int]
    begin: list[int]
    end: list[int]
    errors: int


class _Pool:
    """Unique row programs shared by FDEs: ``locs`` (relative to the FDE start) and ``rule_ids`` of all
    programs concatenated (program ``t`` at ``starts[t]``, ``lens[t]`` rows, CIE flags ``flags[t]``),
    and the distinct rule sets they point to (``ids``, in order). Rule 0 is the no-FDE marker."""

    def __init__(self) -> None:
        self.memo: dict[tuple[int, int, bytes], int] = {}
        self.starts: list[int] = []
        self.lens: list[int] = []
        self.flags: list[int] = []
        self.locs: list[int] = []
        self.rule_ids: list[int] = []
        self.ids: dict[Rule, int] = {(CFA_NONE, 0, RBP_SAME, 0, RA_UNSUPPORTED, 0): 0}


def _collect(data: bytes, *, is_eh: bool, bases: Bases, pool: _Pool, section_id: int) -> _Collected:
    """Walk one CFI section; run each FDE's program once per distinct (CIE, instruction bytes)."""
    out = _Collected([], [], [], 0)
    errors = 0
    cies: dict[int, tuple[Cie, _CieHead] | None] = {}
    memo = pool.memo
    unpack_i32 = struct.Struct("<i").unpack_from
    unpack_u32 = struct.Struct("<I").unpack_from
    t_append, b_append, e_append = out.template.append, out.begin.append, out.end.append
    pos = 0
    n = len(data)
    cie_ident = 0 if is_eh else 0xFFFF_FFFF
    while pos + 4 <= n:
        (length,) = unpack_u32(data, pos)
        if length == 0:
            if is_eh:
                break
            pos += 4
            continue
        if length == 0xFFFF_FFFF or pos + 4 + length > n:  # 64-bit DWARF, or damage: the slow path
            try:
                end, size, start, _ = _entry_header(data, pos)
            except CfiError:
                errors += 1
                break
        else:
            end, size, start = pos + 4 + length, 4, pos + 4
        if end - start < size:  # too short for its own id
            errors += 1
            pos = end
            continue
        ident = unpack_u32(data, start)[0] if size == 4 else int.from_bytes(data[start : start + 8], "little")
        if ident == (cie_ident if size == 4 or is_eh else 0xFFFF_FFFF_FFFF_FFFF):
            pos = end
            continue  # CIEs are parsed when an FDE needs them
        cie_off = start - ident if is_eh else ident
        entry = cies.get(cie_off, 0)
        if entry == 0:
            try:
                cie = parse_cie(data, cie_off, is_eh=is_eh, bases=bases)
                head = _head(cie)
                entry = cies[cie_off] = (cie, head)
            except CfiError:
                entry = cies[cie_off] = None
        if entry is None:
            errors += 1
            pos = end
            continue
        cie, head = entry  # type: ignore[misc]
        p = start + size
        try:
            enc = cie.fde_encoding if is_eh else (DW_EH_PE_udata4 if cie.address_size == 4 else 0)
            if enc == 0x1B and p + 8 <= end:  # pcrel|sdata4: what gcc and every linker write
                begin = (bases.section + p + unpack_i32(data, p)[0]) & _U64
                size_ = unpack_i32(data, p + 4)[0]
                p += 8
            else:
                begin, p = read_pointer(data, p, enc, bases)
                size_, p = _range_value(data, p, enc)
            if cie.augmentation.startswith("z"):
                aug_len = data[p]
                p += 1
                if aug_len >= 0x80:
                    aug_len, p = _uleb(data, p - 1)
                p += aug_len
            if p > end:
                raise CfiError(f"FDE at {pos:#x}: header runs past its end")
            if size_ <= 0:
                pos = end
                continue
            ins = data[p:end]
            key = (section_id, cie_off, ins)
            tid = memo.get(key)
            if tid is None:
                dependent = [False]
                start_ = len(pool.locs)
                _execute(
                    ins,
                    head,
                    cie.initial,
                    begin,
                    bases.section + p,
                    dependent,
                    pool.locs,
                    pool.rule_ids,
                    pool.ids,
                )
                tid = len(pool.starts)
                pool.starts.append(start_)
                pool.lens.append(len(pool.locs) - start_)
                pool.flags.append(FLAG_SIGNAL if cie.signal else 0)
                if not dependent[0]:
                    memo[key] = tid
        except (CfiError, IndexError, ValueError, struct.error):
            errors += 1
            pos = end
            continue
        t_append(tid)
        b_append(begin)
        e_append((begin + size_) & _U64)
        pos = end
    return out._replace(errors=errors)


_BAD_RULE: Rule = (CFA_UNSUPPORTED, 0, RBP_UNSUPPORTED, 0, RA_UNSUPPORTED, 0)


def _fits(rule: Rule) -> bool:
    """True when every offset of ``rule`` fits the table's int32 columns (else the input is damaged)."""
    return all(-(1 << 31) <= v < 1 << 31 for v in rule)


def _table_from(
    pool: _Pool,
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    fde_count: int,
    debug_fdes: int,
    errors: int,
) -> UnwindTable:
    """Expand FDEs (template, begin, end) into rows, add FDE end markers, sort, merge equal neighbours."""
    if not parts or fde_count == 0:
        t = UnwindTable.empty()
        t.errors = errors
        return t
    tid = np.concatenate([p[0] for p in parts])
    begin = np.concatenate([p[1] for p in parts])
    end = np.concatenate([p[2] for p in parts])
    locs = np.array(pool.locs, np.int64)
    rids = np.array(pool.rule_ids, np.int32)
    p_start = np.array(pool.starts, np.int64)
    p_len = np.array(pool.lens, np.int64)

    lens = p_len[tid]
    total = int(lens.sum())
    fde_of = np.repeat(np.arange(len(tid)), lens)
    first = np.cumsum(lens) - lens
    src = p_start[tid][fde_of] + (np.arange(total) - first[fde_of])
    loc = locs[src]
    # Rows at or past the FDE's end are dropped, except the first (loc 0 always holds).
    keep = (loc.astype(np.uint64) < (end - begin)[fde_of]) | (np.arange(total) == first[fde_of])
    pcs = begin[fde_of[keep]] + loc[keep].astype(np.uint64)
    row_rule = rids[src[keep]]
    row_flags = np.array(pool.flags, np.uint8)[tid][fde_of[keep]]

    # End markers (rule 0) first: at an equal pc, a real row (later in the stable sort) wins.
    all_pc = np.concatenate([end, pcs])
    all_rule = np.concatenate([np.zeros(len(end), np.int32), row_rule])
    order = np.argsort(all_pc, kind="stable")
    all_flags = np.concatenate([np.zeros(len(end), np.uint8), row_flags])[order]
    all_pc, all_rule = all_pc[order], all_rule[order]
    # Keep the last row at each pc, then drop rows whose rules equal the previous row's.
    last = np.ones(len(all_pc), bool)
    last[:-1] = all_pc[1:] != all_pc[:-1]
    all_pc, all_rule, all_flags = all_pc[last], all_rule[last], all_flags[last]
    changed = np.ones(len(all_pc), bool)
    changed[1:] = (all_rule[1:] != all_rule[:-1]) | (all_flags[1:] != all_flags[:-1])
    all_pc, all_rule, all_flags = all_pc[changed], all_rule[changed], all_flags[changed]
    catalogue = np.array([r if _fits(r) else _BAD_RULE for r in pool.ids], np.int64).reshape(-1, 6)[all_rule]
    columns = [*(catalogue[:, i] for i in range(6)), all_flags]
    return UnwindTable(all_pc, *columns, fde_count=fde_count, debug_fdes=debug_fdes, errors=errors)


def _section_bytes(elf: ElfFile, name: str) -> tuple[bytes, int] | None:
    """(contents, vaddr) of a section with data, decompressed when SHF_COMPRESSED (zlib); else None."""
    sec = elf.section(name)
    if sec is None or not sec.has_data or sec.size == 0:
        return None
    data = elf.section_data(sec)
    if sec.flags & SHF_COMPRESSED:
        if len(data) < 24:
            return None
        ch_type, _, ch_size, _ = struct.unpack_from("<IIQQ", data, 0)
        if ch_type != ELFCOMPRESS_ZLIB:
            return None
        try:
            data = zlib.decompressobj().decompress(data[24:], ch_size)
        except zlib.error:
            return None
    return data, sec.addr


@dataclass(frozen=True, slots=True)
class CfiSection:
    """The bytes of one ``.eh_frame`` (``is_eh``) or ``.debug_frame`` and where they are (ELF vaddrs)."""

    data: bytes
    vaddr: int
    is_eh: bool
    data_base: int = 0  # DW_EH_PE_datarel base (the .got for .eh_frame)
    text_base: int = 0  # DW_EH_PE_textrel base (.text)


def elf_cfi_sections(elf: ElfFile, debug: ElfFile | None = None) -> tuple[list[CfiSection], int]:
    """The CFI sections of ``elf`` in order of preference: its ``.eh_frame``, its ``.debug_frame``, the
    ``.debug_frame`` of its separate debug file ``debug``. Also how many could not be read."""
    out: list[CfiSection] = []
    errors = 0
    sources: list[tuple[ElfFile, str]] = [(elf, ".eh_frame"), (elf, ".debug_frame")]
    if debug is not None:
        sources.append((debug, ".debug_frame"))
    for src, name in sources:
        try:
            found = _section_bytes(src, name)
        except ElfError:
            errors += 1
            continue
        if found is not None:
            got, text = src.section(".got"), src.section(".text")
            out.append(
                CfiSection(
                    found[0], found[1], name == ".eh_frame", got.addr if got else 0, text.addr if text else 0
                )
            )
    return out, errors


def table_from_sections(sections: Sequence[CfiSection], errors: int = 0) -> UnwindTable:
    """The unwind table of CFI ``sections``: every FDE of the first, then those of each later one for
    code no earlier FDE covers (a pc with no ``.eh_frame`` FDE may have a ``.debug_frame`` one).

    ``errors`` (entries that could not be read) is added to the table's count. Never raises.
    """
    pool = _Pool()
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    fde_count = debug_fdes = 0
    covered_begin = np.zeros(0, np.uint64)
    covered_end = np.zeros(0, np.uint64)
    for section_id, sec in enumerate(sections):
        bases = Bases(sec.vaddr, sec.data_base, sec.text_base)
        got = _collect(sec.data, is_eh=sec.is_eh, bases=bases, pool=pool, section_id=section_id)
        errors += got.errors
        tid = np.array(got.template, np.int64)
        begin = np.array(got.begin, np.uint64)
        end = np.array(got.end, np.uint64)
        if len(covered_begin):
            # Only FDEs for code no earlier FDE covers: [begin, end) must not meet a covered interval.
            j = np.searchsorted(covered_begin, end, side="left").astype(np.int64) - 1
            hit = (j >= 0) & (covered_end[np.maximum(j, 0)] > begin)
            tid, begin, end = tid[~hit], begin[~hit], end[~hit]
        if len(tid) == 0:
            continue
        parts.append((tid, begin, end))
        fde_count += len(tid)
        if not sec.is_eh:
            debug_fdes += len(tid)
        all_b = np.concatenate([covered_begin, begin])
        all_e = np.concatenate([covered_end, end])
        order = np.argsort(all_b, kind="stable")
        covered_begin, covered_end = all_b[order], np.maximum.accumulate(all_e[order])
    return _table_from(pool, parts, fde_count, debug_fdes, errors)


def build_unwind_table(
    elf: ElfFile,
    debug: ElfFile | None = None,
    *,
    cache_dir: str | None = None,
    use_cache: bool = True,
) -> UnwindTable:
    """The unwind table of ``elf``: ``.eh_frame`` FDEs, plus ``.debug_frame`` FDEs (of ``elf``, then of its
    separate debug file ``debug``) for code no ``.eh_frame`` FDE covers. Addresses are ELF vaddrs.

    Cached on disk by build-id (``cache_dir``, default ``$XDG_CACHE_HOME/bpfprof``); a cache that
    cannot be read or written only costs time. Never raises: what cannot be read is counted in
    ``UnwindTable.errors``.
    """
    try:
        build_id = elf.build_id
    except ElfError:
        build_id = None
    key = None
    if use_cache and build_id:
        key = _cache_key(build_id, debug is not None)
        cached = _cache_load(cache_dir, key)
        if cached is not None:
            return cached
    sections, errors = elf_cfi_sections(elf, debug)
    table = table_from_sections(sections, errors)
    if key is not None:
        _cache_store(cache_dir, key, table)
    return table


# -- the disk cache ----------------------------------------------------------------------------------


def _cache_key(build_id: bytes, with_debug: bool) -> str:
    """``unwind-v1-<build-id>``; ``-d`` when a separate debug file was merged in."""
    return f"unwind-v{CACHE_FORMAT}-{build_id.hex()}" + ("-d" if with_debug else "")


def cache_path(key: str, cache_dir: str | None = None) -> str:
    """Where the table named ``key`` is stored."""
    return os.path.join(cache_dir or default_cache_dir(), key + ".npz")


def _cache_load(cache_dir: str | None, key: str) -> UnwindTable | None:
    path = cache_path(key, cache_dir)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = z["meta"]
            if len(meta) != 4 or int(meta[0]) != CACHE_FORMAT:
                return None
            arrays = {f: z[f] for f in ("pc", *_FIELDS)}
        return UnwindTable(**arrays, fde_count=int(meta[1]), debug_fdes=int(meta[2]), errors=int(meta[3]))
    except FileNotFoundError:
        return None
    except Exception:  # a corrupt entry (zipfile, numpy, value errors alike) is a miss
        _log.debug("bpfprof: unwind cache entry %s is unreadable; rebuilding it", path, exc_info=True)
        return None


def _cache_store(cache_dir: str | None, key: str, table: UnwindTable) -> None:
    path = cache_path(key, cache_dir)
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-unwind-", suffix=".npz", dir=os.path.dirname(path))
        meta = np.array([CACHE_FORMAT, table.fde_count, table.debug_fdes, table.errors], np.int64)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=meta, **table.arrays())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        _log.debug("bpfprof: cannot write the unwind cache %s (%s); tables are not cached", path, e)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
