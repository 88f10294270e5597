"""unwind/cfi.py: CIE/FDE parsing and CFA programs, checked against readelf and hand-made sections."""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.unit.conftest import run
from tests.unit.unwind_helpers import cfi_fixtures, plt_symbols, readelf_fdes, rule_matches
from unwind import cfi
from unwind.cfi import (
    Bases,
    CfiError,
    CfiSection,
    Fde,
    Row,
    UnwindTable,
    build_unwind_table,
    classify_cfa_expression,
    fde_table,
    iter_entries,
    parse_cie,
    parse_eh_frame_hdr,
    read_pointer,
    table_from_sections,
)
from unwind.elf import ElfFile

VADDR = 0x10000  # where the hand-made sections sit


@pytest.fixture(scope="session")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return cfi_fixtures(tmp_path_factory.getbasetemp())


def _loaded_library(name: str) -> Path:
    """The path of a shared library this Python process has mapped (e.g. its libc)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if os.path.basename(path).startswith(name):
                return Path(path)
    pytest.skip(f"{name} is not mapped in this process")


def _table(path: Path, debug: Path | None = None) -> UnwindTable:
    with ElfFile.open(path) as elf:
        if debug is None:
            return build_unwind_table(elf, use_cache=False)
        with ElfFile.open(debug) as dbg:
            return build_unwind_table(elf, dbg, use_cache=False)


def check_against_readelf(path: Path, every: int = 1) -> int:
    """Compare every row of every ``every``-th FDE with readelf's: at each LOC, at the byte before the
    next one, and no row at the FDE's end unless another FDE starts there. Returns the checks made."""
    table = _table(path)
    fdes = [f for f in readelf_fdes(path) if f.pc_end > f.pc_begin]
    assert table.fde_count == len(fdes)
    begins = {f.pc_begin for f in fdes}
    failures: list[str] = []
    checks = 0
    for fde in fdes[::every]:
        rows = [r for r in fde.rows if r[0] < fde.pc_end]
        assert rows, f"readelf shows no rows for the FDE at {fde.pc_begin:#x}"
        for i, (loc, rules) in enumerate(rows):
            nxt = rows[i + 1][0] if i + 1 < len(rows) else fde.pc_end
            lo, hi = table.lookup([loc, nxt - 1]).tolist()
            for index in range(lo, hi + 1) if lo >= 0 else [-1]:
                checks += 1
                why = "no row" if index < 0 else rule_matches(table.row(index), rules)
                if why:
                    failures.append(f"{path.name} FDE {fde.pc_begin:#x} row {loc:#x}: {why}")
        if fde.pc_end not in begins:
            checks += 1
            if table.lookup([fde.pc_end])[0] >= 0:
                failures.append(
                    f"{path.name}: a row at the end {fde.pc_end:#x} of the FDE at {fde.pc_begin:#x}"
                )
    assert not failures, "\n".join(failures[:20])
    return checks


# -- against readelf ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fp", "nofp", "cases", "mixed"])
def test_rows_match_readelf(bins: dict[str, Path], name: str) -> None:
    assert check_against_readelf(bins[name]) >= 10


def test_libc_rows_match_readelf() -> None:
    assert check_against_readelf(_loaded_library("libc.so")) > 10000


def test_python_rows_match_readelf() -> None:
    """The interpreter (Debian's python3.11 has .eh_frame and no frame pointers): every 7th FDE."""
    assert check_against_readelf(Path(os.path.realpath("/proc/self/exe")), every=7) > 5000


def test_vdso_rows_match_readelf(tmp_path: Path) -> None:
    with open("/proc/self/maps") as f:
        line = next((x for x in f if x.rstrip().endswith("[vdso]")), None)
    if line is None:
        pytest.skip("no vDSO in this process")
    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
    with open("/proc/self/mem", "rb") as mem:
        mem.seek(lo)
        image = mem.read(hi - lo)
    (tmp_path / "vdso.so").write_bytes(image)
    assert check_against_readelf(tmp_path / "vdso.so") > 5


def test_plt_rows_are_the_plt_kind(bins: dict[str, Path]) -> None:
    """ld's lazy PLT: rsp+8 at an entry's jmp, rsp+16 once it pushed its index (rip & 15 >= 11)."""
    table = _table(bins["cases"])
    entry = plt_symbols(bins["cases"])[".plt"] + 16  # the first entry, after PLT0
    row = table.row(int(table.lookup([entry])[0]))
    assert (row.cfa_kind, row.cfa_off) == (cfi.CFA_PLT, 8 | 11 << 8)
    assert (row.ra_kind, row.ra_off) == (cfi.RA_CFA, -8)


# -- .debug_frame and separate debug files -----------------------------------------------------------


def _symbol(path: Path, name: str) -> int:
    for line in run("nm", path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise AssertionError(f"no {name} in {path}")


def test_debug_frame_covers_code_without_eh_frame(bins: dict[str, Path]) -> None:
    df_func = _symbol(bins["mixed"], "df_func")
    main = _symbol(bins["mixed"], "main")
    full = _table(bins["mixed"])
    assert full.debug_fdes == 2  # df_leaf, df_func
    assert full.fde_count > full.debug_fdes
    assert full.lookup([df_func, main]).min() >= 0

    stripped = _table(bins["mixed_stripped"])  # --strip-debug removed .debug_frame
    assert stripped.debug_fdes == 0
    assert stripped.lookup([df_func])[0] == -1
    assert stripped.lookup([main])[0] >= 0

    linked = _table(bins["mixed_stripped"], debug=bins["mixed.debug"])
    assert linked.debug_fdes == 2
    assert np.array_equal(linked.pc, full.pc)
    assert linked.row(int(linked.lookup([df_func + 1])[0])) == full.row(int(full.lookup([df_func + 1])[0]))


def test_eh_frame_wins_over_debug_frame() -> None:
    eh = Section(is_eh=True)
    c = eh.cie(DEF_CFA_RSP8 + OFFSET_RA)
    eh.fde(c, 0x1000, 0x10, ADV(1) + bytes([0x0E, 16]))  # rsp+16 from 0x1001
    df = Section(is_eh=False)
    c = df.cie(DEF_CFA_RSP8 + OFFSET_RA, aug="", version=3)
    df.fde(c, 0x1000, 0x10, ADV(1) + bytes([0x0E, 32]))  # the same code: ignored
    df.fde(c, 0x2000, 0x10, ADV(2) + bytes([0x0E, 48]))  # code nothing else covers: used
    table = table_from_sections([eh.section(), df.section()])
    assert (table.fde_count, table.debug_fdes) == (2, 1)
    assert table.find(0x1005).cfa_off == 16  # type: ignore[union-attr]
    assert table.find(0x2005).cfa_off == 48  # type: ignore[union-attr]
    assert table.find(0x2010) is None


# -- hand-made sections ------------------------------------------------------------------------------


def uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def ADV(n: int) -> bytes:
    return bytes([0x40 | n])


DEF_CFA_RSP8 = bytes([0x0C, 7, 8])  # DW_CFA_def_cfa rsp 8
OFFSET_RA = bytes([0x80 | 16, 1])  # DW_CFA_offset rip cfa-8


class Section:
    """A hand-made ``.eh_frame`` / ``.debug_frame`` (32- or 64-bit DWARF) at ELF vaddr VADDR."""

    def __init__(self, *, is_eh: bool = True, dwarf64: bool = False) -> None:
        self.is_eh = is_eh
        self.dwarf64 = dwarf64
        self.id_size = 8 if dwarf64 else 4
        self.buf = bytearray()

    def _append(self, body: bytes) -> None:
        if self.dwarf64:
            self.buf += b"\xff\xff\xff\xff" + struct.pack("<Q", len(body))
        else:
            self.buf += struct.pack("<I", len(body))
        self.buf += body

    def cie(
        self,
        instructions: bytes,
        *,
        aug: str = "zR",
        aug_data: bytes = b"\x1b",
        version: int = 1,
        code_align: int = 1,
        data_align: int = -8,
        ra: int = 16,
    ) -> int:
        pos = len(self.buf)
        ident = 0 if self.is_eh else (1 << (8 * self.id_size)) - 1
        body = ident.to_bytes(self.id_size, "little") + bytes([version]) + aug.encode() + b"\0"
        if version >= 4:
            body += bytes([8, 0])  # address_size, segment_selector_size
        body += uleb(code_align) + sleb(data_align) + (bytes([ra]) if version == 1 else uleb(ra))
        if aug.startswith("z"):
            body += uleb(len(aug_data)) + aug_data
        self._append(body + instructions)
        return pos

    def fde(
        self,
        cie: int,
        begin: int,
        size: int,
        instructions: bytes = b"",
        *,
        enc: int = 0x1B,
        aug_data: bytes | None = b"",
    ) -> int:
        pos = len(self.buf)
        field = pos + (12 if self.dwarf64 else 4)
        body = ((field - cie) if self.is_eh else cie).to_bytes(self.id_size, "little")
        at = VADDR + field + self.id_size
        if not self.is_eh:
            body += struct.pack("<QQ", begin, size)
        elif enc == 0x1B:
            body += struct.pack("<iI", begin - at, size)
        elif enc == 0x03:
            body += struct.pack("<II", begin, size)
        else:
            body += struct.pack("<QQ", begin, size)
        if aug_data is not None and self.is_eh:
            body += uleb(len(aug_data)) + aug_data
        self._append(body + instructions)
        return pos

    def data(self) -> bytes:
        return bytes(self.buf)

    def section(self) -> CfiSection:
        return CfiSection(self.data(), VADDR if self.is_eh else 0, self.is_eh)

    def fdes(self) -> list[Fde]:
        errors: list[str] = []
        out = list(iter_entries(self.data(), is_eh=self.is_eh, bases=Bases(VADDR), errors=errors))
        assert not errors
        return [e for e in out if isinstance(e, Fde)]


@pytest.mark.parametrize(
    ("enc", "raw", "value"),
    [
        (0x00, struct.pack("<Q", 0x1122334455667788), 0x1122334455667788),  # absptr
        (0x01, uleb(624485), 624485),  # uleb128
        (0x02, struct.pack("<H", 0xFFFE), 0xFFFE),  # udata2
        (0x03, struct.pack("<I", 0xFFFFFFF0), 0xFFFFFFF0),  # udata4
        (0x04, struct.pack("<Q", 2**63), 2**63),  # udata8
        (0x09, sleb(-2), 2**64 - 2),  # sleb128
        (0x0A, struct.pack("<h", -2), 2**64 - 2),  # sdata2
        (0x0B, struct.pack("<i", -16), 2**64 - 16),  # sdata4
        (0x0C, struct.pack("<q", -3), 2**64 - 3),  # sdata8
        (0x1B, struct.pack("<i", -0x100), VADDR + 4 - 0x100),  # pcrel|sdata4, at offset 4
        (0x3B, struct.pack("<i", 0x20), 0x5000 + 0x20),  # datarel|sdata4
        (0x23, struct.pack("<I", 0x20), 0x7000 + 0x20),  # textrel|udata4
        (0x50, b"\0\0\0\0" + struct.pack("<Q", 0xABC), 0xABC),  # aligned: to 8 from offset 4
    ],
)
def test_read_pointer_encodings(enc: int, raw: bytes, value: int) -> None:
    data = b"\xee" * 4 + raw + b"\xee"
    got, pos = read_pointer(data, 4, enc, Bases(VADDR, data=0x5000, text=0x7000))
    assert got == value
    assert pos == 4 + len(raw)


@pytest.mark.parametrize("enc", [0x05, 0x0D, 0x9B, 0x7B])
def test_read_pointer_rejects_unknown_or_indirect(enc: int) -> None:
    with pytest.raises(CfiError):
        read_pointer(b"\0" * 16, 0, enc, Bases(0))


def test_omitted_pointer_reads_nothing() -> None:
    assert read_pointer(b"\1\2", 0, 0xFF, Bases(0)) == (0, 0)


def test_cie_with_personality_and_lsda() -> None:
    """ "zPLR" (C++): personality pointer (indirect pcrel sdata4), LSDA and FDE encodings; the FDE has a
    4-byte LSDA pointer in its augmentation data."""
    s = Section()
    aug_data = bytes([0x9B]) + struct.pack("<i", 0x40) + bytes([0x1B, 0x1B])
    c = s.cie(DEF_CFA_RSP8 + OFFSET_RA, aug="zPLR", aug_data=aug_data)
    s.fde(c, 0x4000, 0x20, ADV(4) + bytes([0x0E, 16]), aug_data=struct.pack("<i", 0x1234))
    cie = parse_cie(s.data(), c, is_eh=True, bases=Bases(VADDR))
    assert (cie.augmentation, cie.fde_encoding, cie.lsda_encoding, cie.signal) == ("zPLR", 0x1B, 0x1B, False)
    (fde,) = s.fdes()
    assert (fde.pc_begin, fde.pc_end) == (0x4000, 0x4020)
    assert fde_table(fde) == [
        (0x4000, Row(cfi.CFA_RSP, 8, cfi.RBP_SAME, 0, cfi.RA_CFA, -8, 0)),
        (0x4004, Row(cfi.CFA_RSP, 16, cfi.RBP_SAME, 0, cfi.RA_CFA, -8, 0)),
    ]


def test_signal_frame_cie_flags_its_rows() -> None:
    s = Section()
    c = s.cie(b"", aug="zRS")
    # __restore_rt: CFA = *(rsp + 160), rbp at rsp + 120, rip at rsp + 168
    prog = (
        bytes([0x0F, 4, 0x77])
        + sleb(160)
        + b"\x06"
        + bytes([0x10, 6, 3, 0x77])
        + sleb(120)
        + bytes([0x10, 16, 3, 0x77])
        + sleb(168)
    )
    s.fde(c, 0x5000, 9, prog)
    table = table_from_sections([s.section()])
    assert table.find(0x5004) == Row(cfi.CFA_DEREF_RSP, 160, cfi.RBP_AT_RSP, 120, cfi.RA_AT_RSP, 168, 1)


def test_cfa_program_rules() -> None:
    """Every instruction compilers emit, run to rows; the table built from the section agrees."""
    s = Section()
    c = s.cie(DEF_CFA_RSP8 + OFFSET_RA, version=3, aug="zR")
    prog = (
        ADV(1)
        + bytes([0x0E, 16])  # 1: def_cfa_offset 16
        + bytes([0x80 | 6, 2])  # offset rbp cfa-16
        + ADV(3)
        + bytes([0x0D, 6])  # 4: def_cfa_register rbp
        + bytes([0x02, 10])  # advance_loc1 10 -> 14
        + bytes([0x0A])  # remember_state
        + bytes([0x0C, 7, 8])  # def_cfa rsp 8
        + bytes([0xC0 | 6])  # restore rbp
        + bytes([0x03])
        + struct.pack("<H", 2)  # advance_loc2 -> 16
        + bytes([0x0B])  # restore_state: rbp+16, rbp at cfa-16
        + bytes([0x04])
        + struct.pack("<I", 4)  # advance_loc4 -> 20
        + bytes([0x2E, 32])  # GNU_args_size (ignored)
        + bytes([0x14, 6, 3])  # val_offset rbp cfa-24 (value)
        + ADV(1)  # 21
        + bytes([0x16, 6, 1, 0x30])  # val_expression rbp: unsupported
        + bytes([0x12, 7])
        + sleb(-3)  # def_cfa_sf rsp 24
        + ADV(1)  # 22
        + bytes([0x13])
        + sleb(-5)  # def_cfa_offset_sf 40
        + bytes([0x11, 6])
        + sleb(4)  # offset_extended_sf rbp cfa-32 (factored 4 * -8)
        + bytes([0x2F, 16, 3])  # GNU_negative_offset_extended rip: cfa+24 (-(3 * -8))
        + ADV(1)  # 23
        + bytes([0x05, 16, 1])  # offset_extended rip cfa-8
        + bytes([0x10, 6, 2, 0x76, 0])  # expression rbp: at rbp+0
        + bytes([0x0F, 3, 0x76, 0x78, 0x06])  # def_cfa_expression *(rbp - 8)
        + ADV(1)  # 24
        + bytes([0x08, 6])  # same_value rbp
        + bytes([0x0F, 2, 0x77, 0x10])  # def_cfa_expression rsp+16 (plain breg)
        + ADV(1)  # 25
        + bytes([0x09, 6, 3])  # register rbp in rbx: lost
        + bytes([0x0F, 2, 0x92, 0x0A])
        + b""  # def_cfa_expression bregx r10 (truncated block 2: sleb 0 missing)
        + ADV(1)  # 26
        + bytes([0x07, 16])  # undefined rip
        + bytes([0x0C, 10, 0])  # def_cfa r10: a register the sample has not
        + ADV(1)  # 27
        + bytes([0x06, 16])  # restore_extended rip: cfa-8 again
        + bytes([0x07, 6])  # undefined rbp
        + bytes([0x0C, 7, 8])
    )
    s.fde(c, 0x1000, 0x40, prog)
    r = cfi
    want = [
        (0x1000, (r.CFA_RSP, 8, r.RBP_SAME, 0, r.RA_CFA, -8)),
        (0x1001, (r.CFA_RSP, 16, r.RBP_CFA, -16, r.RA_CFA, -8)),
        (0x1004, (r.CFA_RBP, 16, r.RBP_CFA, -16, r.RA_CFA, -8)),
        (0x100E, (r.CFA_RSP, 8, r.RBP_SAME, 0, r.RA_CFA, -8)),
        (0x1010, (r.CFA_RBP, 16, r.RBP_CFA, -16, r.RA_CFA, -8)),
        (0x1014, (r.CFA_RBP, 16, r.RBP_VAL_CFA, -24, r.RA_CFA, -8)),
        (0x1015, (r.CFA_RSP, 24, r.RBP_UNSUPPORTED, 0, r.RA_CFA, -8)),
        (0x1016, (r.CFA_RSP, 40, r.RBP_CFA, -32, r.RA_CFA, 24)),
        (0x1017, (r.CFA_DEREF_RBP, -8, r.RBP_AT_RBP, 0, r.RA_CFA, -8)),
        (0x1018, (r.CFA_RSP, 16, r.RBP_SAME, 0, r.RA_CFA, -8)),
        (0x1019, (r.CFA_UNSUPPORTED, 0, r.RBP_UNSUPPORTED, 0, r.RA_CFA, -8)),
        (0x101A, (r.CFA_UNSUPPORTED, 0, r.RBP_UNSUPPORTED, 0, r.RA_UNDEFINED, 0)),
        (0x101B, (r.CFA_RSP, 8, r.RBP_UNDEFINED, 0, r.RA_CFA, -8)),
    ]
    (fde,) = s.fdes()
    assert [(pc, tuple(row)[:6]) for pc, row in fde_table(fde)] == want
    table = table_from_sections([s.section()])
    assert table.find(0x1040) is None
    for pc, rule in want:
        assert tuple(table.find(pc))[:6] == rule, hex(pc)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        (bytes.fromhex("7708 8000 3f1a 3b2a 3324 22"), (cfi.CFA_PLT, 8 | 11 << 8)),  # ld's lazy PLT
        (bytes.fromhex("7708 8000 3f1a 3a2a 3324 22"), (cfi.CFA_PLT, 8 | 10 << 8)),  # IBT lazy PLT
        (bytes.fromhex("7710 8000 3f1a 352a 3324 22"), (cfi.CFA_PLT, 16 | 5 << 8)),
        (bytes.fromhex("7708 8000 3f1a 3b2a 3324 1c"), (cfi.CFA_UNSUPPORTED, 0)),  # minus, not plus
        (bytes.fromhex("77a001 06"), (cfi.CFA_DEREF_RSP, 160)),
        (bytes.fromhex("7678 06"), (cfi.CFA_DEREF_RBP, -8)),
        (bytes.fromhex("7610"), (cfi.CFA_RBP, 16)),
        (bytes.fromhex("9207 08"), (cfi.CFA_RSP, 8)),  # bregx rsp 8
        (bytes.fromhex("7a00 06"), (cfi.CFA_UNSUPPORTED, 0)),  # *(r10)
        (b"", (cfi.CFA_UNSUPPORTED, 0)),
        (b"\x77", (cfi.CFA_UNSUPPORTED, 0)),  # truncated
    ],
)
def test_cfa_expressions(expr: bytes, want: tuple[int, int]) -> None:
    assert classify_cfa_expression(expr) == want


def test_plt_row_in_table() -> None:
    s = Section()
    c = s.cie(DEF_CFA_RSP8 + OFFSET_RA)
    plt_expr = bytes.fromhex("7708 8000 3f1a 3b2a 3324 22")
    s.fde(c, 0x2000, 0x30, bytes([0x0E, 16, 0x46, 0x0E, 24, 0x4A, 0x0F, 11]) + plt_expr)
    table = table_from_sections([s.section()])
    assert tuple(table.find(0x2000))[:2] == (cfi.CFA_RSP, 16)  # type: ignore[arg-type]
    assert tuple(table.find(0x2006))[:2] == (cfi.CFA_RSP, 24)  # type: ignore[arg-type]
    assert tuple(table.find(0x202F))[:2] == (cfi.CFA_PLT, 8 | 11 << 8)  # type: ignore[arg-type]


def test_debug_frame_32_and_64_bit_entries() -> None:
    """.debug_frame: CIE id 0xffffffff (64-bit DWARF: 0xffffffffffffffff), version 4 CIE with an address
    size, FDE CIE pointers as section offsets, absolute addresses."""
    for dwarf64 in (False, True):
        s = Section(is_eh=False, dwarf64=dwarf64)
        c = s.cie(DEF_CFA_RSP8 + OFFSET_RA, aug="", version=4)
        s.fde(c, 0x3000, 0x10, ADV(1) + bytes([0x0E, 16]))
        s.fde(c, 0x3010, 0x08)
        fde, _ = s.fdes()
        assert (fde.pc_begin, fde.pc_end, fde.cie.version) == (0x3000, 0x3010, 4)
        table = table_from_sections([s.section()])
        assert table.fde_count == 2
        assert table.find(0x3001).cfa_off == 16  # type: ignore[union-attr]
        assert table.find(0x3010).cfa_off == 8  # type: ignore[union-attr]
        assert table.find(0x3018) is None
        assert table.find(0x2FFF) is None


def test_set_loc_rows_are_not_shared() -> None:
    """DW_CFA_set_loc gives absolute addresses: two FDEs with the same bytes have different rows."""
    s = Section()
    c = s.cie(DEF_CFA_RSP8 + OFFSET_RA, aug="zR", aug_data=b"\x04")  # absolute udata8 FDE pointers
    prog = bytes([0x01]) + struct.pack("<Q", 0x6008) + bytes([0x0E, 16])
    s.fde(c, 0x6000, 0x10, prog, enc=0x04)
    s.fde(c, 0x7000, 0x10, prog, enc=0x04)
    table = table_from_sections([s.section()])
    assert table.find(0x6008).cfa_off == 16  # type: ignore[union-attr]
    assert table.find(0x6007).cfa_off == 8  # type: ignore[union-attr]
    assert table.find(0x7008).cfa_off == 8  # type: ignore[union-attr]  # 0x6008 is not in this FDE


def test_shared_programs_and_fde_ends() -> None:
    """FDEs with equal programs share rows; rows past an FDE's end are dropped; a pc in a gap, before
    the first or past the last FDE has no row; adjacent FDEs leave no gap."""
    s = Section()
    c = s.cie(DEF_CFA_RSP8 + OFFSET_RA)
    prog = ADV(4) + bytes([0x0E, 16]) + ADV(8) + bytes([0x0E, 8])
    s.fde(c, 0x1000, 0x20, prog)
    s.fde(c, 0x1020, 0x06, prog)  # ends before its second row: only rsp+8 then rsp+16 at 0x1024
    s.fde(c, 0x1100, 0x20, prog)
    table = table_from_sections([s.section()])
    assert table.fde_count == 3
    q = [0xFFF, 0x1000, 0x1004, 0x100C, 0x101F, 0x1020, 0x1024, 0x1025, 0x1026, 0x10FF, 0x1104, 0x1120]
    offs = [None if table.find(pc) is None else table.find(pc).cfa_off for pc in q]  # type: ignore[union-attr]
    assert offs == [None, 8, 16, 8, 8, 8, 16, 16, None, None, 16, None]
    idx = table.lookup(q)
    assert [None if i < 0 else table.row(i).cfa_off for i in idx.tolist()] == offs


def test_unknown_opcode_stops_the_program() -> None:
    s = Section()
    c = s.cie(DEF_CFA_RSP8 + OFFSET_RA)
    s.fde(c, 0x1000, 0x10, ADV(2) + bytes([0x0E, 16, 0x3F, 0x0E, 32]))
    table = table_from_sections([s.section()])
    assert table.find(0x1001).cfa_off == 8  # type: ignore[union-attr]
    assert table.find(0x1002).cfa_kind == cfi.CFA_UNSUPPORTED  # type: ignore[union-attr]


# -- .eh_frame_hdr ------------------------------------------------------------------------------------


def test_eh_frame_hdr_lists_every_fde() -> None:
    libc = _loaded_library("libc.so")
    with ElfFile.open(libc) as elf:
        hdr = elf.section(".eh_frame_hdr")
        eh = elf.section(".eh_frame")
        assert hdr is not None
        assert eh is not None
        eh_vaddr, locs, fde_vaddrs = parse_eh_frame_hdr(elf.section_data(hdr), hdr.addr)
        entries = list(iter_entries(elf.section_data(eh), is_eh=True, bases=Bases(eh.addr)))
    fdes = sorted((e.pc_begin, e.offset) for e in entries if isinstance(e, Fde))
    assert eh_vaddr == eh.addr
    assert locs.tolist() == [b for b, _ in fdes]
    assert (fde_vaddrs - np.uint64(eh.addr)).tolist() == [off for _, off in fdes]


def test_eh_frame_hdr_rejects_bad_input() -> None:
    with pytest.raises(CfiError):
        parse_eh_frame_hdr(b"\x02\x1b\x03\x3b", 0)
    with pytest.raises(CfiError):
        parse_eh_frame_hdr(b"\x01\x1b\x03\x3b" + struct.pack("<iI", 0, 1000), 0)  # table runs past the end


# -- damaged input -----------------------------------------------------------------------------------


def test_truncated_and_garbage_sections_do_not_raise() -> None:
    libc = _loaded_library("libc.so")
    with ElfFile.open(libc) as elf:
        eh = elf.section(".eh_frame")
        assert eh is not None
        data = elf.section_data(eh)
    full = table_from_sections([CfiSection(data, eh.addr, True)])
    rng = random.Random(1234)
    for cut in [0, 3, 4, 17, 100, *rng.sample(range(len(data)), 20)]:
        part = table_from_sections([CfiSection(data[:cut], eh.addr, True)])
        assert part.fde_count <= full.fde_count
    for _ in range(100):
        junk = bytearray(data[: rng.randrange(1, 4000)])
        for _ in range(rng.randrange(1, 20)):
            junk[rng.randrange(len(junk))] = rng.randrange(256)
        table_from_sections([CfiSection(bytes(junk), eh.addr, True), CfiSection(bytes(junk), 0, False)])
        errors: list[str] = []
        list(iter_entries(bytes(junk), is_eh=True, bases=Bases(eh.addr), errors=errors))
    random_bytes = rng.randbytes(5000)
    table_from_sections([CfiSection(random_bytes, 0, True), CfiSection(random_bytes, 0, False)])


def test_bad_length_is_counted_not_raised() -> None:
    s = Section()
    c = s.cie(DEF_CFA_RSP8 + OFFSET_RA)
    s.fde(c, 0x1000, 0x10)
    data = s.data() + struct.pack("<I", 0x7FFF_0000) + b"\0" * 8  # an entry running past the end
    table = table_from_sections([CfiSection(data, VADDR, True)])
    assert (table.fde_count, table.errors) == (1, 1)
    short = s.data() + struct.pack("<I", 2) + b"\0\0"  # an entry too short for its CIE id, at the end
    assert table_from_sections([CfiSection(short, VADDR, True)]).errors == 1
    with pytest.raises(CfiError):
        parse_cie(data, len(s.data()), is_eh=True)
    with pytest.raises(CfiError):
        parse_cie(s.data(), c + 0x18, is_eh=True)  # an FDE, not a CIE


def test_build_on_damaged_elf(bins: dict[str, Path]) -> None:
    raw = bytearray(bins["nofp"].read_bytes())
    with ElfFile.open(bins["nofp"]) as elf:
        eh = elf.section(".eh_frame")
        assert eh is not None
    raw[eh.offset + 4 : eh.offset + eh.size] = b"\xff" * (eh.size - 4)
    table = build_unwind_table(ElfFile.from_bytes(bytes(raw)), use_cache=False)
    assert table.fde_count == 0
    assert len(table) == 0


# -- the disk cache -----------------------------------------------------------------------------------


def test_cache_round_trip(bins: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ElfFile.open(bins["nofp"]) as elf:
        first = build_unwind_table(elf, cache_dir=str(tmp_path))
        assert elf.build_id is not None
        stored = tmp_path / f"unwind-v1-{elf.build_id.hex()}.npz"
        assert stored.exists()

        def fail(*args: object, **kwargs: object) -> None:
            raise AssertionError("the table was parsed again")

        monkeypatch.setattr(cfi, "table_from_sections", fail)
        again = build_unwind_table(elf, cache_dir=str(tmp_path))
    for name, array in first.arrays().items():
        assert np.array_equal(array, again.arrays()[name]), name
    assert (again.fde_count, again.errors) == (first.fde_count, first.errors)


def test_damaged_cache_entry_is_rebuilt(bins: dict[str, Path], tmp_path: Path) -> None:
    with ElfFile.open(bins["nofp"]) as elf:
        first = build_unwind_table(elf, cache_dir=str(tmp_path))
        (entry,) = tmp_path.glob("unwind-v1-*.npz")
        entry.write_bytes(entry.read_bytes()[:100])
        again = build_unwind_table(elf, cache_dir=str(tmp_path))
        assert np.array_equal(first.pc, again.pc)
        assert np.array_equal(build_unwind_table(elf, cache_dir=str(tmp_path)).pc, first.pc)


def test_unwritable_cache_only_costs_time(bins: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with ElfFile.open(bins["nofp"]) as elf:
        assert len(build_unwind_table(elf, cache_dir=str(blocker / "cache"))) > 0
    assert not list(tmp_path.rglob("*.npz"))


def test_cache_keeps_debug_variant_apart(bins: dict[str, Path], tmp_path: Path) -> None:
    with ElfFile.open(bins["mixed_stripped"]) as elf, ElfFile.open(bins["mixed.debug"]) as dbg:
        plain = build_unwind_table(elf, cache_dir=str(tmp_path))
        linked = build_unwind_table(elf, dbg, cache_dir=str(tmp_path))
        assert (plain.debug_fdes, linked.debug_fdes) == (0, 2)
        assert build_unwind_table(elf, cache_dir=str(tmp_path)).debug_fdes == 0
    assert len(list(tmp_path.glob("unwind-v1-*.npz"))) == 2


def test_lookup_and_find_agree() -> None:
    with ElfFile.open(_loaded_library("libc.so")) as elf:
        table = build_unwind_table(elf, use_cache=False)
    rng = np.random.default_rng(7)
    lo, hi = int(table.pc[0]) - 100, int(table.pc[-1]) + 100
    q = rng.integers(lo, hi, 2000, dtype=np.int64).astype(np.uint64)
    idx = table.lookup(q)
    for pc, i in zip(q.tolist(), idx.tolist(), strict=True):
        row = table.find(pc)
        assert (row is None) == (i < 0)
        if row is not None:
            assert row == table.row(i)


def test_table_rejects_unsorted_arrays() -> None:
    z = np.zeros(2, np.int32)
    with pytest.raises(ValueError, match="strictly increasing"):
        UnwindTable(np.array([5, 5], np.uint64), z, z, z, z, z, z, z)
    assert len(UnwindTable.empty()) == 0


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf")
def test_readelf_helper_sees_failures(bins: dict[str, Path]) -> None:
    """The comparison itself can fail: a table with one offset changed is caught."""
    table = _table(bins["nofp"])
    fde = next(f for f in readelf_fdes(bins["nofp"]) if len(f.rows) > 1)
    loc, rules = fde.rows[1]
    row = table.row(int(table.lookup([loc])[0]))
    assert rule_matches(row, rules) is None
    assert rule_matches(row._replace(cfa_off=row.cfa_off + 8), rules) is not None
    assert rule_matches(row._replace(ra_kind=cfi.RA_UNDEFINED), rules) is not None
