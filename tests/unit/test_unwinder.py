"""unwind/unwinder.py: user-stack snapshots (registers + stack bytes) to return addresses.

Three kinds of evidence: hand-made tables and stacks (each rule and each way to stop), snapshots
recorded under gdb and kept in tests/fixtures/snapshots (with the binary they came from), and live
snapshots taken under gdb at test time (skipped without gdb), unwound through ``Symbolizer.
unwind_resolver`` while the process is stopped and compared with gdb's own backtrace.
"""

from __future__ import annotations

import json
import random
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.conftest import nm_addr, run
from tests.unit.symbolize_helpers import build_id_path, place
from tests.unit.unwind_helpers import (
    HAVE_GDB,
    NOFP,
    SNAPSHOTS,
    OfflineResolver,
    cfi_fixtures,
    plt_symbols,
    record_snapshot_module,
)
from tests.workloads.build import build
from unwind import cfi
from unwind.cfi import FLAG_SIGNAL, Row, UnwindTable
from unwind.debuginfo import find_debug_file
from unwind.elf import ElfFile
from unwind.maps import parse_maps
from unwind.symbolizer import Symbolizer
from unwind.unwinder import MAX_FRAMES, Regs, UnwindResult, UnwindStatus, unwind

S = UnwindStatus
BIAS = 0x5555_0000_0000  # where the hand-made module is loaded: abs = elf_vaddr + BIAS
SP = 0x7FFF_0000_1000  # the hand-made stacks start here

RSP8 = Row(cfi.CFA_RSP, 8, cfi.RBP_SAME, 0, cfi.RA_CFA, -8, 0)


def rsp(off: int, rbp_at: int | None = None) -> Row:
    """CFA = rsp + off, RA at CFA-8, rbp saved at CFA+rbp_at (or unchanged)."""
    if rbp_at is None:
        return RSP8._replace(cfa_off=off)
    return RSP8._replace(cfa_off=off, rbp_kind=cfi.RBP_CFA, rbp_off=rbp_at)


def make_table(fdes: list[tuple[int, int, list[tuple[int, Row]]]]) -> UnwindTable:
    """A table from FDEs ``(begin, end, [(pc, row), ...])`` (ELF vaddrs; rows sorted, first at begin)."""
    rows: dict[int, tuple[int, ...]] = {}
    for begin, end, fde_rows in fdes:
        assert fde_rows[0][0] == begin
        rows.setdefault(end, (cfi.CFA_NONE, 0, 0, 0, cfi.RA_UNSUPPORTED, 0, 0))
        for pc, row in fde_rows:
            rows[pc] = tuple(row)
    pcs = sorted(rows)
    cols = np.array([rows[pc] for pc in pcs], np.int64)
    return UnwindTable(np.array(pcs, np.uint64), *(cols[:, i] for i in range(7)), fde_count=len(fdes))


class Stack:
    """A hand-made snapshot: 8-byte words at absolute addresses from ``SP``."""

    def __init__(self, size: int = 512) -> None:
        self.data = bytearray(size)

    def put(self, addr: int, value: int) -> Stack:
        struct.pack_into("<Q", self.data, addr - SP, value)
        return self

    def bytes(self) -> bytes:
        return bytes(self.data)


def module(table: UnwindTable | None, lo: int = 0x1000, hi: int = 0x10000) -> Callable[[int], Any]:
    """``resolve`` for one module at ``[lo, hi)`` (ELF vaddrs) loaded at BIAS."""

    def resolve(abs_pc: int) -> tuple[UnwindTable | None, int] | None:
        return (table, BIAS) if lo <= abs_pc - BIAS < hi else None

    return resolve


A = BIAS  # shorthand: A + vaddr is an absolute address in the hand-made module


# -- hand-made tables: the rules ------------------------------------------------------------------------


def test_rsp_frames_to_the_outermost() -> None:
    """leaf (rsp+32) -> middle (rsp+16, saves rbp) -> outer (RA undefined): COMPLETE, pc-1 lookups."""
    table = make_table(
        [
            (0x1000, 0x1100, [(0x1000, rsp(8)), (0x1004, rsp(32))]),
            (0x1100, 0x1200, [(0x1100, rsp(8)), (0x1101, rsp(16, rbp_at=-16))]),
            (0x1200, 0x1300, [(0x1200, RSP8._replace(ra_kind=cfi.RA_UNDEFINED))]),
        ]
    )
    st = Stack().put(SP + 24, A + 0x1150).put(SP + 32, 0xBB).put(SP + 40, A + 0x1250)
    res = unwind(Regs(A + 0x1010, SP, 0xAA), st.bytes(), module(table))
    assert res == UnwindResult((A + 0x1010, A + 0x1150, A + 0x1250), S.COMPLETE)


def test_caller_row_is_found_at_pc_minus_one() -> None:
    """A call as the last instruction of a function: its return address is the next function's start;
    the caller's rule (at ra - 1) must be used, not the next function's."""
    table = make_table(
        [
            (0x1000, 0x1010, [(0x1000, rsp(16))]),
            (0x1010, 0x1100, [(0x1010, rsp(64))]),  # wrong for the caller
            (0x1100, 0x1200, [(0x1100, rsp(16))]),
            (0x1200, 0x1300, [(0x1200, RSP8._replace(ra_kind=cfi.RA_UNDEFINED))]),
        ]
    )
    st = Stack().put(SP + 8, A + 0x1010).put(SP + 24, A + 0x1200)
    res = unwind(Regs(A + 0x1100, SP, 0), st.bytes(), module(table))
    assert res.ips == (A + 0x1100, A + 0x1010, A + 0x1200)
    assert res.status is S.COMPLETE


def test_rbp_based_frames_track_rbp() -> None:
    """CFA = rbp + 16 in two frames in a row: the second uses the rbp the first restored."""
    fp = RSP8._replace(cfa_kind=cfi.CFA_RBP, cfa_off=16, rbp_kind=cfi.RBP_CFA, rbp_off=-16)
    outer = RSP8._replace(ra_kind=cfi.RA_UNDEFINED)
    table = make_table([(0x1000, 0x1100, [(0x1000, fp)]), (0x2000, 0x2100, [(0x2000, outer)])])
    frame1, frame2 = SP + 0x40, SP + 0x100
    st = Stack().put(frame1, frame2).put(frame1 + 8, A + 0x1020)  # [rbp] = next rbp, [rbp+8] = RA
    st.put(frame2, 0).put(frame2 + 8, A + 0x2010)
    res = unwind(Regs(A + 0x1008, SP, frame1), st.bytes(), module(table, hi=0x3000))
    assert res.ips == (A + 0x1008, A + 0x1020, A + 0x2010)
    assert res.status is S.COMPLETE
    # the leaf's rule loses rbp (undefined); its caller's CFA needs it
    both = make_table(
        [
            (0x1000, 0x1100, [(0x1000, rsp(16)._replace(rbp_kind=cfi.RBP_UNDEFINED))]),
            (0x2000, 0x2100, [(0x2000, fp)]),
        ]
    )
    res = unwind(Regs(A + 0x1008, SP, frame1), Stack().put(SP + 8, A + 0x2010).bytes(), module(both))
    assert res == UnwindResult((A + 0x1008, A + 0x2010), S.EXPRESSION)


@pytest.mark.parametrize(("offset", "cfa"), [(0, 8), (6, 8), (10, 8), (11, 16), (15, 16)])
def test_plt_rule(offset: int, cfa: int) -> None:
    """ld's PLT entry: rsp+8 until the push of its index at +6 is done (rip & 15 >= 11), then rsp+16."""
    plt = RSP8._replace(cfa_kind=cfi.CFA_PLT, cfa_off=8 | 11 << 8)
    outer = RSP8._replace(ra_kind=cfi.RA_UNDEFINED)
    table = make_table([(0x1000, 0x1040, [(0x1000, plt)]), (0x2000, 0x2100, [(0x2000, outer)])])
    st = Stack().put(SP + cfa - 8, A + 0x2010)
    res = unwind(Regs(A + 0x1010 + offset, SP, 0), st.bytes(), module(table))
    assert res == UnwindResult((A + 0x1010 + offset, A + 0x2010), S.COMPLETE)


def test_signal_frame_and_exact_pc_after_it() -> None:
    """__restore_rt: CFA = *(rsp+160), rbp at rsp+120, rip at rsp+168. The interrupted frame's pc is
    exact: looked up as is, even at the first byte of a function (pc - 1 would be in another)."""
    sig = Row(cfi.CFA_DEREF_RSP, 160, cfi.RBP_AT_RSP, 120, cfi.RA_AT_RSP, 168, FLAG_SIGNAL)
    outer = RSP8._replace(ra_kind=cfi.RA_UNDEFINED)
    table = make_table(
        [
            (0x1000, 0x1100, [(0x1000, rsp(8))]),  # would be used at pc - 1: wrong
            (0x1100, 0x1200, [(0x1100, rsp(24))]),  # the interrupted function, at its first byte
            (0x3000, 0x3010, [(0x3000, sig)]),
            (0x4000, 0x4100, [(0x4000, outer)]),
        ]
    )
    interrupted_sp = SP + 0x200
    st = Stack(1024).put(SP + 160, interrupted_sp).put(SP + 120, 0x1234).put(SP + 168, A + 0x1100)
    st.put(interrupted_sp + 16, A + 0x4010)
    res = unwind(Regs(A + 0x3001, SP, 0), st.bytes(), module(table))
    assert res == UnwindResult((A + 0x3001, A + 0x1100, A + 0x4010), S.COMPLETE)


def test_rbp_slot_below_sp_was_popped() -> None:
    """In an epilogue gcc moves the CFA after each pop but keeps "rbp saved at CFA-N": a slot below sp
    is no longer in the copy, and rbp already holds the value that was saved there."""
    epilogue = rsp(16, rbp_at=-40)  # the slot is at sp - 24
    fp = RSP8._replace(cfa_kind=cfi.CFA_RBP, cfa_off=16, rbp_kind=cfi.RBP_CFA, rbp_off=-16)
    outer = RSP8._replace(ra_kind=cfi.RA_UNDEFINED)
    table = make_table(
        [
            (0x1000, 0x1100, [(0x1000, epilogue)]),
            (0x2000, 0x2100, [(0x2000, fp)]),
            (0x3000, 0x3100, [(0x3000, outer)]),
        ]
    )
    frame = SP + 0x40
    st = Stack().put(SP + 8, A + 0x2010).put(frame, 0).put(frame + 8, A + 0x3010)
    res = unwind(Regs(A + 0x1010, SP, frame), st.bytes(), module(table))
    assert res == UnwindResult((A + 0x1010, A + 0x2010, A + 0x3010), S.COMPLETE)


def test_drap_frame() -> None:
    """gcc's stack realignment: CFA = *(rbp - 8), rbp saved at rbp + 0."""
    drap = Row(cfi.CFA_DEREF_RBP, -8, cfi.RBP_AT_RBP, 0, cfi.RA_CFA, -8, 0)
    outer = RSP8._replace(ra_kind=cfi.RA_UNDEFINED)
    table = make_table([(0x1000, 0x1100, [(0x1000, drap)]), (0x2000, 0x2100, [(0x2000, outer)])])
    rbp, cfa = SP + 0x80, SP + 0x100
    st = Stack().put(rbp - 8, cfa).put(rbp, 0x9999).put(cfa - 8, A + 0x2004)
    res = unwind(Regs(A + 0x1004, SP, rbp), st.bytes(), module(table))
    assert res == UnwindResult((A + 0x1004, A + 0x2004), S.COMPLETE)


def test_frame_pointer_fallback() -> None:
    """A module without CFI: [rbp] -> caller's rbp, [rbp + 8] -> return address, until rbp is 0."""
    f1, f2 = SP + 0x20, SP + 0x60
    st = Stack().put(f1, f2).put(f1 + 8, A + 0x1500).put(f2, 0).put(f2 + 8, A + 0x1600)
    res = unwind(Regs(A + 0x1400, SP, f1), st.bytes(), module(None))
    assert res == UnwindResult((A + 0x1400, A + 0x1500, A + 0x1600), S.COMPLETE)
    # rbp is not a frame pointer here: below sp, misaligned, or 0 at the leaf
    for bp in (SP - 16, f1 + 3, 0):
        assert unwind(Regs(A + 0x1400, SP, bp), st.bytes(), module(None)) == UnwindResult(
            (A + 0x1400,), S.NO_CFI_NO_FP
        )
    # the chain leaves the copied bytes
    res = unwind(Regs(A + 0x1400, SP, f1), st.bytes()[: f2 - SP + 8], module(None))
    assert res == UnwindResult((A + 0x1400, A + 0x1500), S.TRUNCATED)


def test_frame_pointers_then_cfi() -> None:
    """JIT code (no CFI) called from a module with CFI: the walk goes on with CFI after the FP frame."""
    table = make_table([(0x1000, 0x1100, [(0x1000, RSP8._replace(ra_kind=cfi.RA_UNDEFINED))])])

    def resolve(abs_pc: int) -> tuple[UnwindTable | None, int] | None:
        if 0x7000_0000 <= abs_pc < 0x7000_1000:
            return None, 0  # anonymous executable memory
        return (table, BIAS) if 0x1000 <= abs_pc - BIAS < 0x2000 else None

    f1 = SP + 0x40
    st = Stack().put(f1, 0x1234).put(f1 + 8, A + 0x1010)
    res = unwind(Regs(0x7000_0100, SP, f1), st.bytes(), resolve)
    assert res == UnwindResult((0x7000_0100, A + 0x1010), S.COMPLETE)


def test_stops() -> None:
    """Each way to stop: the frames found so far are kept."""
    outer = RSP8._replace(ra_kind=cfi.RA_UNDEFINED)
    table = make_table(
        [
            (0x1000, 0x1100, [(0x1000, rsp(16))]),
            (0x2000, 0x2100, [(0x2000, RSP8._replace(cfa_kind=cfi.CFA_UNSUPPORTED))]),
            (0x3000, 0x3100, [(0x3000, RSP8._replace(ra_kind=cfi.RA_UNSUPPORTED))]),
            (0x4000, 0x4100, [(0x4000, rsp(-8))]),  # CFA below sp
            (0x5000, 0x5100, [(0x5000, outer)]),
            (0x6000, 0x6100, [(0x6000, RSP8._replace(ra_off=-4096))]),  # RA below sp
        ]
    )
    resolve = module(table)

    def run(pc: int, ra: int, size: int = 64) -> UnwindResult:
        return unwind(Regs(A + pc, SP, 0), Stack().put(SP + 8, ra).bytes()[:size], resolve)

    leaf = (A + 0x1010,)
    assert run(0x1010, A + 0x5010) == UnwindResult((*leaf, A + 0x5010), S.COMPLETE)
    assert run(0x1010, 0) == UnwindResult(leaf, S.COMPLETE)  # RA 0: the end of the chain
    assert run(0x1010, A + 0x9000) == UnwindResult((*leaf, A + 0x9000), S.NO_FDE)  # caller without FDE
    assert run(0x1010, A + 0x2010) == UnwindResult((*leaf, A + 0x2010), S.EXPRESSION)
    assert run(0x1010, A + 0x3010) == UnwindResult((*leaf, A + 0x3010), S.EXPRESSION)
    assert run(0x1010, 0x1234) == UnwindResult(leaf, S.BAD_ADDRESS)  # RA in no mapping
    assert run(0x1010, 0xFFFF_8000_0000_1000) == UnwindResult(leaf, S.BAD_ADDRESS)  # kernel address
    assert run(0x1010, A + 0x5010, size=15) == UnwindResult(leaf, S.TRUNCATED)
    assert run(0x4010, A + 0x5010) == UnwindResult((A + 0x4010,), S.BAD_ADDRESS)
    assert run(0x6010, A + 0x5010) == UnwindResult((A + 0x6010,), S.BAD_ADDRESS)
    assert run(0x9000, A + 0x5010) == UnwindResult((A + 0x9000,), S.NO_FDE)
    assert unwind(Regs(0x42, SP, 0), b"", resolve) == UnwindResult((0x42,), S.BAD_ADDRESS)


def test_max_frames() -> None:
    table = make_table([(0x1000, 0x1100, [(0x1000, rsp(16))])])
    st = Stack(4096)
    for i in range(200):
        st.put(SP + 8 + 16 * i, A + 0x1010)
    res = unwind(Regs(A + 0x1010, SP, 0), st.bytes(), module(table))
    assert res.status is S.MAX_DEPTH
    assert len(res.ips) == MAX_FRAMES
    res = unwind(Regs(A + 0x1010, SP, 0), st.bytes(), module(table), max_frames=5)
    assert res == UnwindResult((A + 0x1010,) * 5, S.MAX_DEPTH)


def test_garbage_never_raises() -> None:
    """Random registers and bytes against a real table (libc's, loaded at a random place)."""
    with open("/proc/self/maps") as f:
        libc = next(line.split()[-1] for line in f if "libc.so" in line)
    with ElfFile.open(libc) as elf:
        table = cfi.build_unwind_table(elf, use_cache=False)
    rng = random.Random(5)
    pcs = table.pc.tolist()
    seen = set()
    for _ in range(3000):
        ip = rng.choice([rng.choice(pcs) + rng.randrange(64), rng.randrange(2**64), 0])
        regs = Regs(
            ip, rng.choice([SP, rng.randrange(2**64)]), rng.choice([SP + 64, rng.randrange(2**64), 0])
        )
        stack = rng.randbytes(rng.randrange(0, 2048))
        if rng.random() < 0.5:  # plausible return addresses in it
            stack = b"".join(struct.pack("<Q", rng.choice(pcs)) for _ in range(len(stack) // 8))
        res = unwind(regs, stack, lambda pc: (table, 0) if pc < 0x40_0000 else None)
        assert res.ips[0] == ip
        assert 1 <= len(res.ips) <= MAX_FRAMES
        seen.add(res.status)
    assert {S.BAD_ADDRESS, S.TRUNCATED} <= seen


# -- recorded snapshots (tests/fixtures/snapshots) -----------------------------------------------------


def _libc_debug() -> bool:
    """True when this machine has the separate debug file of its libc (libc6-dbg on Debian)."""
    with open("/proc/self/maps") as f:
        libc = next(line.split()[-1] for line in f if "libc.so" in line)
    with ElfFile.open(libc) as elf:
        found = find_debug_file(elf, libc)
    if found is not None:
        found.elf.close()
    return found is not None


LIBC_DEBUG = _libc_debug()


def gdb_names(snap: Any) -> list[str | None]:
    return [name for _, name in snap.frames]


def recorded() -> list[Path]:
    return sorted(p.parent for p in SNAPSHOTS.glob("*/*/snapshot.json"))


def _build_id(path: Path) -> str | None:
    try:
        with ElfFile.open(path) as elf:
            return elf.build_id.hex() if elf.build_id else None
    except OSError:
        return None


def offline_resolver(snap: Any) -> tuple[OfflineResolver, set[str]]:
    """A resolver over a recorded snapshot: the recorded binary from the fixtures, other files from this
    machine only when their build-id is the recorded one. Also the paths that are unavailable."""
    files: dict[str, Path | None] = {}
    missing: set[str] = set()
    for m in parse_maps(snap.maps):
        if not m.is_file or m.path in files:
            continue
        local = SNAPSHOTS / Path(m.path).name
        if local.exists() and Path(m.path).parent.name == "snapshots":
            files[m.path] = local
        elif _build_id(Path(m.path)) == snap.build_ids.get(m.path):
            files[m.path] = Path(m.path)
        else:
            files[m.path] = None
            missing.add(m.path)
    return OfflineResolver(snap.maps, files, snap.vdso), missing


@pytest.mark.parametrize("directory", recorded(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_snapshot(directory: Path) -> None:
    snap = record_snapshot_module().load_snapshot(directory)
    resolver, missing = offline_resolver(snap)
    res = unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack, resolver)
    want = [pc for pc, _ in snap.frames]
    gdb_names = [name for _, name in snap.frames]
    main = gdb_names.index("main")
    if not missing:
        assert list(res.ips) == want
        assert res.status is S.COMPLETE
    else:  # this machine has another libc: the frames down to main are still exactly gdb's
        assert list(res.ips) == want[: len(res.ips)]
        assert len(res.ips) > main
    names = resolver.names(res.ips)
    for pos in range(main + 1):  # names from the fixture binary are gdb's
        m = resolver.mapping(res.ips[pos] - (pos > 0))
        if m is not None and Path(m.path).name == "cpu_split":
            assert names[pos] == gdb_names[pos]
    assert names[main] == "main"
    if not missing and LIBC_DEBUG:  # a static function: named from libc's separate debug file
        assert names[main + 1] == gdb_names[main + 1] == "__libc_start_call_main"
    resolver.close()


def test_recorded_snapshots_exist() -> None:
    assert {f"{p.parent.name}/{p.name}" for p in recorded()} >= {"split/0", "split/1", "split/2", "deep/0"}
    meta = json.loads((SNAPSHOTS / "deep" / "0" / "snapshot.json").read_text())
    assert len(meta["frames"]) == 49


def test_snapshot_cut_short_is_truncated() -> None:
    """Every shorter copy of the deep stack: the frames found are a prefix of the full stack's, and the
    walk says TRUNCATED unless it had everything it needed."""
    snap = record_snapshot_module().load_snapshot(SNAPSHOTS / "deep" / "0")
    resolver, _ = offline_resolver(snap)
    full = unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack, resolver)
    lengths = []
    for cut in range(0, len(snap.stack), 8):
        res = unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack[:cut], resolver)
        assert res.ips == full.ips[: len(res.ips)]
        assert res.status is S.TRUNCATED or res.ips == full.ips
        lengths.append(len(res.ips))
    assert lengths == sorted(lengths)
    assert lengths[0] == 1
    assert lengths[-1] >= 40
    resolver.close()


def test_recorded_snapshot_max_frames() -> None:
    snap = record_snapshot_module().load_snapshot(SNAPSHOTS / "deep" / "0")
    resolver, _ = offline_resolver(snap)
    res = unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack, resolver, max_frames=10)
    assert res.status is S.MAX_DEPTH
    assert list(res.ips) == [pc for pc, _ in snap.frames][:10]
    resolver.close()


def test_garbage_on_a_recorded_stack() -> None:
    """Bad ips, and stack bytes that do not belong to the registers: a stop with a reason, no exception.
    (The copy starts at ``regs.sp`` by definition: only offsets within it matter, not sp itself.)"""
    snap = record_snapshot_module().load_snapshot(SNAPSHOTS / "split" / "1")
    resolver, _ = offline_resolver(snap)
    cases = [
        (Regs(0, snap.sp, snap.bp), snap.stack, S.BAD_ADDRESS),
        (Regs(0xDEAD_BEEF_DEAD_BEEF, 2**64 - 8, 2**64 - 8), snap.stack, S.BAD_ADDRESS),
        (Regs(snap.ip, snap.sp, snap.bp), snap.stack[3:], S.BAD_ADDRESS),  # misaligned copy
        (Regs(snap.ip, snap.sp, snap.bp), bytes(len(snap.stack)), S.COMPLETE),  # RA 0: chain ends
    ]
    for regs, stack, status in cases:
        res = unwind(regs, stack, resolver)
        assert res.status is status
        assert res.ips[0] == regs.ip
    assert unwind(Regs(0, snap.sp, snap.bp), snap.stack, resolver) == UnwindResult((0,), S.BAD_ADDRESS)
    resolver.close()


# -- Symbolizer.unwind_resolver on a fake /proc ---------------------------------------------------------


def fake_proc(root: Path, lines: list[str]) -> tuple[str, int]:
    pid = 4242
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "maps").write_text("".join(line + "\n" for line in lines))
    return str(root), pid


def exec_mapping(exe: Path, base: int) -> str:
    """A maps line mapping the executable segment of ``exe`` with ELF vaddr 0 at ``base``."""
    with ElfFile.open(exe) as elf:
        text = next(s for s in elf.load_segments if s.is_exec)
    start = base + text.vaddr - text.offset % 4096
    end = start + ((text.offset % 4096 + text.filesz + 4095) & ~4095)
    off = text.offset - text.offset % 4096
    return f"{start:x}-{end:x} r-xp {off:08x} fe:00 {exe.stat().st_ino} {exe}"


@pytest.fixture(scope="session")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return cfi_fixtures(tmp_path_factory.getbasetemp())


def test_symbolizer_resolver(tmp_path: Path, bins: dict[str, Path]) -> None:
    """Absolute pc -> (table, bias): file mappings through their PT_LOAD, anonymous executable memory
    without CFI (frame pointers), nothing for data or unmapped addresses; a stripped binary's
    .debug_frame comes from its debug file (found by build-id)."""
    stripped = tmp_path / "mixed_all_stripped"
    run("strip", "--strip-all", "-o", stripped, bins["mixed"])
    debug_dir = tmp_path / "debug"
    place(bins["mixed.debug"], build_id_path(debug_dir, bins["mixed"]))
    nofp, mixed = 0x5555_0000_0000, 0x5566_0000_0000
    data = f"557700000000-557700001000 r--p 00000000 fe:00 {bins['nofp'].stat().st_ino} {bins['nofp']}"
    jit = "7000000000-7000001000 r-xp 00000000 00:00 0"
    proc, pid = fake_proc(
        tmp_path / "proc", [exec_mapping(bins["nofp"], nofp), exec_mapping(stripped, mixed), data, jit]
    )
    func_b = nm_addr(bins["nofp"], "func_b")
    df_func = nm_addr(bins["mixed"], "df_func")
    with ElfFile.open(bins["nofp"]) as elf:
        direct = cfi.build_unwind_table(elf, use_cache=False)

    with Symbolizer(proc=proc, cache=False, debuginfod=False, debug_dirs=[str(debug_dir)]) as sym:
        resolve = sym.unwind_resolver(pid)
        found = resolve(nofp + func_b + 4)
        assert found is not None
        table, bias = found
        assert bias == nofp
        assert table is not None
        assert table.find(func_b + 4) == direct.find(func_b + 4) is not None
        assert resolve(0x70_0000_0010) == (None, 0)  # JIT: frame pointers
        assert resolve(0x5577_0000_0010) is None  # not executable
        assert resolve(0x10) is None
        found = resolve(mixed + df_func)
        assert found is not None
        assert found[0] is not None
        assert found[0].debug_fdes == 2
        assert found[0].find(df_func) is not None


# -- live snapshots under gdb -------------------------------------------------------------------------

live = pytest.mark.skipif(not HAVE_GDB, reason="needs gdb to stop a process and record its stack")


def recording(command: list[str], stops: list[dict[str, Any]], tmp_path: Path) -> Any:
    return record_snapshot_module().Recording(command, stops, tmp_path / "rec", timeout=60.0)


def unwind_live(snap: Any, sym: Symbolizer, hide: str | None = None) -> tuple[UnwindResult, list[str | None]]:
    """Unwind a stopped process's snapshot through the symbolizer's resolver (``hide``: a file whose
    CFI is ignored, so frame pointers are used there); also the symbolized names."""
    resolve = sym.unwind_resolver(snap.pid)
    if hide is not None:
        maps = parse_maps(snap.maps)
        base = resolve

        def resolve(abs_pc: int) -> tuple[UnwindTable | None, int] | None:
            found = base(abs_pc)
            m = next((m for m in maps if m.contains(abs_pc)), None)
            return (None, found[1]) if found and m is not None and m.path == hide else found

    res = unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack, resolve)
    return res, [f.name for f in sym.symbolize_user(snap.pid, res.ips)]


def assert_like_gdb(snap: Any, res: UnwindResult, names: list[str | None], exe: Path) -> None:
    """Every pc is gdb's, the walk reached the outermost frame, and names agree down to main (then
    __libc_start_call_main) for frames in ``exe``."""
    want = [pc for pc, _ in snap.frames]
    gdb_names = [name for _, name in snap.frames]
    detail = f"stop {snap.stop}: ours {names} {res.status}, gdb {gdb_names}"
    assert list(res.ips) == want, detail
    assert res.status is S.COMPLETE, detail
    maps = parse_maps(snap.maps)
    for pc, ours, theirs in zip(res.ips, names, gdb_names, strict=True):
        m = next(m for m in maps if m.contains(pc - 1) or m.contains(pc))
        if m.path == str(exe) and theirs is not None and "@plt" not in theirs:
            assert ours == theirs, detail
    for i, theirs in enumerate(gdb_names):  # gdb names it when libc's debug file is installed; so do we
        if theirs == "__libc_start_call_main":
            assert names[i] == theirs, detail


@pytest.fixture
def sym() -> Iterator[Symbolizer]:
    with Symbolizer(cache=False, debuginfod=False) as s:
        yield s


@live
def test_live_split(tmp_path: Path, sym: Symbolizer) -> None:
    """cpu_split -O2 -fomit-frame-pointer: breakpoints (a function's first byte, after a prologue, a
    leaf, the vDSO) and SIGINTs at random instants."""
    exe = build("cpu_split", NOFP, suffix="-nofp")
    stops: list[dict[str, Any]] = [
        {"break": "func_b"},
        {"break": "tick"},
        {"break": "*func_c"},
        {"break": "__vdso_clock_gettime"},
    ]
    stops += [{"interrupt": random.uniform(0.01, 0.15)} for _ in range(6)]
    with recording([str(exe), "split", "30"], stops, tmp_path) as rec:
        for snap in rec.snapshots():
            res, names = unwind_live(snap, sym)
            assert_like_gdb(snap, res, names, exe)
            assert "main" in names


@live
def test_live_deep_and_threads(tmp_path: Path, sym: Symbolizer) -> None:
    """49 frames (41 of recursion); and a thread, whose outermost frame is clone3 (RA undefined)."""
    exe = build("cpu_split", NOFP, suffix="-nofp")
    with recording([str(exe), "deep", "30"], [{"break": "tick"}], tmp_path) as rec:
        (snap,) = list(rec.snapshots())
        res, names = unwind_live(snap, sym)
        assert_like_gdb(snap, res, names, exe)
        assert names.count("recurse") == 41
    with recording([str(exe), "threads", "30"], [{"break": "func_a"}], tmp_path / "t") as rec:
        (snap,) = list(rec.snapshots())
        res, names = unwind_live(snap, sym)
        assert_like_gdb(snap, res, names, exe)
        assert names[:4] == ["func_a", "path_a", "run_split", "late_worker"]
        assert snap.frames[-1][1] == "clone3"


@live
def test_live_plt_drap_vla_and_signal_frames(tmp_path: Path, sym: Symbolizer, bins: dict[str, Path]) -> None:
    """tests/fixtures/src/unwind_cases.c (non-PIE, lazy PLT): a leaf in a PLT entry before and after
    the push of its index, in PLT0, under a VLA frame (CFA = rbp+16), under a realigned frame (DRAP),
    and in a signal handler (through __restore_rt)."""
    exe = bins["cases"]
    plt = plt_symbols(exe)
    stops = [
        {"break": f"*{plt['memset@plt']:#x}"},
        {"break": f"*{plt['memset@plt'] + 11:#x}"},
        {"break": f"*{plt['.plt'] + 6:#x}"},
        {"break": "leaf"},
        {"break": "leaf"},
        {"break": "leaf", "ignore": 1},
    ]
    kinds = []
    with recording([str(exe)], stops, tmp_path) as rec:
        for snap in rec.snapshots():
            res, names = unwind_live(snap, sym)
            assert_like_gdb(snap, res, names, exe)
            resolve = sym.unwind_resolver(snap.pid)
            table, bias = resolve(snap.ip)  # type: ignore[misc]
            kinds.append((table.find(snap.ip - bias).cfa_kind, names[1:4]))
    assert kinds[0][0] == kinds[1][0] == cfi.CFA_PLT
    assert kinds[2][0] == cfi.CFA_RSP  # PLT0 + 6: rsp+24
    assert kinds[3][1] == ["use", "vla", "main"]
    assert kinds[4][1] == ["use", "realign", "vla"]
    assert kinds[5][1][:2] == ["use", "handler"]


@live
def test_live_python(tmp_path: Path, sym: Symbolizer) -> None:
    """The Debian python3.11 (no frame pointers) in a pure-Python loop: through _PyEval_EvalFrameDefault
    down to Py_BytesMain (main tail-calls it) and __libc_start_call_main."""
    script = tmp_path / "loop.py"
    script.write_text(
        "def f(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n\n"
        "while True:\n    f(1000)\n"
    )
    python = Path("/usr/bin/python3.11")
    if not python.exists():
        pytest.skip("no /usr/bin/python3.11")
    stops = [{"interrupt": 0.3}, *({"interrupt": random.uniform(0.01, 0.1)} for _ in range(4))]
    with recording([str(python), str(script)], stops, tmp_path) as rec:
        for snap in rec.snapshots():
            res, names = unwind_live(snap, sym)
            assert_like_gdb(snap, res, names, python)
            assert "_PyEval_EvalFrameDefault" in names
            tail = [n for n in names if n in ("_PyEval_EvalFrameDefault", "Py_RunMain", "Py_BytesMain")]
            assert tail[-2:] == ["Py_RunMain", "Py_BytesMain"]
            assert names[names.index("Py_BytesMain") + 1] == gdb_names(snap)[names.index("Py_BytesMain") + 1]


def after_call(exe: Path, func: str, callee: str) -> int:
    """The offset in ``func`` of the instruction after its first call of ``callee`` (``objdump -d``)."""
    lines = iter(run("objdump", "-d", "--no-show-raw-insn", exe).splitlines())
    start = None
    for line in lines:
        if m := re.match(rf"^([0-9a-f]+) <{func}>:$", line):
            start = int(m.group(1), 16)
        elif start is not None and f"<{callee}>" in line and "call" in line:
            return int(next(lines).split(":")[0], 16) - start
    raise AssertionError(f"no call of {callee} in {func}")


@live
def test_live_frame_pointer_fallback(tmp_path: Path, sym: Symbolizer) -> None:
    """cpu_split with frame pointers and its CFI ignored: the frame-pointer walk gives gdb's stack.
    The leaf stops where its frame is set up (after a call): a leaf stopped before its ``push rbp``
    loses its caller in any frame-pointer walk."""
    exe = build("cpu_split")  # FP_FLAGS: -fno-omit-frame-pointer
    stops = [
        {"break": f"*func_b+{after_call(exe, 'func_b', 'tick')}"},
        {"break": f"*run_split+{after_call(exe, 'run_split', 'func_c')}"},
    ]
    with recording([str(exe), "split", "30"], stops, tmp_path) as rec:
        for snap in rec.snapshots():
            res, names = unwind_live(snap, sym, hide=str(exe))
            assert_like_gdb(snap, res, names, exe)


@live
def test_live_vdso_and_truncation(tmp_path: Path, sym: Symbolizer) -> None:
    """A leaf in the vDSO (its CFI read from the process), and the same snapshot cut short."""
    exe = build("cpu_split", NOFP, suffix="-nofp")
    with recording([str(exe), "split", "30"], [{"break": "__vdso_clock_gettime"}], tmp_path) as rec:
        (snap,) = list(rec.snapshots())
        res, names = unwind_live(snap, sym)
        assert_like_gdb(snap, res, names, exe)
        vdso = next(m for m in parse_maps(snap.maps) if m.path == "[vdso]")
        assert vdso.contains(snap.ip)
        resolve = sym.unwind_resolver(snap.pid)
        short = unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack[:24], resolve)
        assert short.status is S.TRUNCATED
        assert short.ips == res.ips[: len(short.ips)]
