"""DWARF stack unwinding of a user-stack snapshot: registers plus a copy of the stack, to return addresses.

The BPF side sends, per sample, the user ``ip``/``sp``/``bp`` and the bytes of user memory from ``sp``
upwards. ``unwind`` walks that snapshot with the CFI tables of ``unwind.cfi``: find the module and row
of the pc, compute the CFA (the caller's rsp), read the return address and the saved rbp from the
copied bytes, repeat. A module without CFI (JIT code, stripped ``-fno-asynchronous-unwind-tables``
builds) is walked through frame pointers instead.

Addresses: ``Regs`` and the returned ips are absolute addresses of the sampled process; a table row is
found at the ELF vaddr ``abs_pc - bias`` that ``resolve`` gives. Stacks are leaf first. Failures are
data: the result carries the frames found so far and an ``UnwindStatus``; nothing here raises for a
bad snapshot.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from unwind.cfi import (
    CFA_DEREF_RBP,
    CFA_DEREF_RSP,
    CFA_NONE,
    CFA_PLT,
    CFA_RBP,
    CFA_RSP,
    FLAG_SIGNAL,
    RA_AT_RSP,
    RA_CFA,
    RA_UNDEFINED,
    RBP_AT_RBP,
    RBP_AT_RSP,
    RBP_CFA,
    RBP_SAME,
    RBP_VAL_CFA,
    UnwindTable,
)

# The highest user-space address on x86_64 (with 5-level paging; 4-level: 0x7fff_ffff_ffff). A return
# address above it is non-canonical or in the kernel: a bad address.
USER_ADDR_MAX = 0x00FF_FFFF_FFFF_FFFF
MAX_FRAMES = 127  # the kernel's PERF_MAX_STACK_DEPTH

Resolver = Callable[[int], "tuple[UnwindTable | None, int] | None"]
_u64 = struct.Struct("<Q").unpack_from
_u64x2 = struct.Struct("<QQ").unpack_from


class UnwindStatus(Enum):
    """Why the unwinding of a snapshot stopped."""

    COMPLETE = "reached the outermost frame"  # RA undefined in the CFI (_start, clone3), RA 0, or
    # rbp 0 in a frame-pointer walk (psABI 3.4.1)
    NO_FDE = "no CFI covers a pc of a module that has CFI"  # hand-written code; usually an entry point
    TRUNCATED = "the stack copy ended before the next frame"
    BAD_ADDRESS = "a return address or frame address is not valid"
    NO_CFI_NO_FP = "a module without CFI, and rbp is not a frame pointer"
    EXPRESSION = "a CFI rule the unwinder does not evaluate"
    MAX_DEPTH = "the frame limit was reached"

    @property
    def complete(self) -> bool:
        """True when the stack is known to be whole (COMPLETE)."""
        return self is UnwindStatus.COMPLETE


@dataclass(frozen=True, slots=True)
class Regs:
    """The user registers of a sample: instruction pointer, stack pointer, frame pointer (absolute)."""

    ip: int
    sp: int
    bp: int


@dataclass(frozen=True, slots=True)
class UnwindResult:
    """``ips``: absolute addresses, leaf first; ``ips[0]`` is the sampled ip, every other one a return
    address (look it up at ``ip - 1``; the frame a signal interrupted has its exact pc). ``status`` says
    why the walk stopped; the frame where it stopped is the last one (a return address that is in no
    mapping, or not a user address, is not added: BAD_ADDRESS)."""

    ips: tuple[int, ...]
    status: UnwindStatus


_COMPLETE = UnwindStatus.COMPLETE
_NO_FDE = UnwindStatus.NO_FDE
_TRUNCATED = UnwindStatus.TRUNCATED
_BAD = UnwindStatus.BAD_ADDRESS
_NO_FP = UnwindStatus.NO_CFI_NO_FP
_EXPR = UnwindStatus.EXPRESSION
_DEPTH = UnwindStatus.MAX_DEPTH


def unwind(regs: Regs, stack: bytes, resolve: Resolver, max_frames: int = MAX_FRAMES) -> UnwindResult:
    """Walk the snapshot ``stack`` (user memory from address ``regs.sp``, ``len(stack)`` bytes).

    ``resolve(abs_pc)`` gives ``(table, bias)`` for the module holding ``abs_pc`` (ELF vaddr =
    ``abs_pc - bias``; ``table`` None for a module without CFI: frame pointers are used), or None when
    ``abs_pc`` is in no known mapping. The leaf's row is found at its pc, every caller's at ``pc - 1``
    (a return address is past its call), except after a signal frame. Reads outside the copied bytes
    stop the walk: above them TRUNCATED, below ``sp`` BAD_ADDRESS (except a saved rbp's slot below
    ``sp``: an epilogue popped it, so rbp is kept). At most ``max_frames`` ips.
    """
    base = regs.sp
    size = len(stack)
    pc = regs.ip
    sp = regs.sp
    bp: int | None = regs.bp
    ips = [pc]
    exact = True  # look the pc up as is (the leaf, or the frame a signal interrupted)
    resolved = resolve(pc)
    if resolved is None:
        return UnwindResult((pc,), _BAD)
    while True:
        table, bias = resolved
        if table is None:
            # Frame-pointer fallback: [rbp] = caller's rbp, [rbp + 8] = return address.
            if bp == 0 and len(ips) > 1:
                return UnwindResult(tuple(ips), _COMPLETE)  # psABI 3.4.1: rbp 0 marks the deepest frame
            if bp is None or bp < sp or bp & 7:
                return UnwindResult(tuple(ips), _NO_FP)
            off = bp - base
            if off + 16 > size:
                return UnwindResult(tuple(ips), _TRUNCATED)
            next_bp, ra = _u64x2(stack, off)
            cfa = bp + 16
            bp = next_bp
            flags = 0
        else:
            vaddr = (pc if exact else pc - 1) - bias
            cache = table.row_cache
            row = cache[vaddr] if vaddr in cache else table.find(vaddr)
            if row is None:
                return UnwindResult(tuple(ips), _NO_FDE)
            ck, co, bk, bo, rk, ro, flags = row
            if ck == CFA_RSP:
                cfa = sp + co
            elif ck == CFA_RBP:
                if bp is None:
                    return UnwindResult(tuple(ips), _EXPR)
                cfa = bp + co
            elif ck == CFA_PLT:
                cfa = sp + (co & 0xFF) + (8 if (pc & 15) >= (co >> 8) else 0)
            elif ck in (CFA_DEREF_RSP, CFA_DEREF_RBP):
                if ck == CFA_DEREF_RSP:
                    at = sp + co - base
                elif bp is None:
                    return UnwindResult(tuple(ips), _EXPR)
                else:
                    at = bp + co - base
                if at < 0:
                    return UnwindResult(tuple(ips), _BAD)
                if at + 8 > size:
                    return UnwindResult(tuple(ips), _TRUNCATED)
                cfa = _u64(stack, at)[0]
            elif ck == CFA_NONE:
                return UnwindResult(tuple(ips), _NO_FDE)
            else:
                return UnwindResult(tuple(ips), _EXPR)
            if cfa <= sp and not flags & FLAG_SIGNAL:
                return UnwindResult(tuple(ips), _BAD)  # the CFA must be above this frame: no loops

            # The return address.
            if rk == RA_CFA:
                at = cfa + ro - base
            elif rk == RA_UNDEFINED:
                return UnwindResult(tuple(ips), _COMPLETE)
            elif rk == RA_AT_RSP:
                at = sp + ro - base
            else:
                return UnwindResult(tuple(ips), _EXPR)
            if at < 0:
                return UnwindResult(tuple(ips), _BAD)
            if at + 8 > size:
                return UnwindResult(tuple(ips), _TRUNCATED)
            ra = _u64(stack, at)[0]

            # The caller's rbp.
            if bk != RBP_SAME:
                addr: int | None
                if bk == RBP_CFA:
                    addr = cfa + bo
                elif bk == RBP_AT_RSP:
                    addr = sp + bo
                elif bk == RBP_AT_RBP and bp is not None:
                    addr = bp + bo
                else:  # a value, or lost (undefined, other rules): an rbp-based CFA further up stops
                    addr = None
                    bp = cfa + bo if bk == RBP_VAL_CFA else None
                if addr is not None:
                    at = addr - base
                    if at + 8 > size:
                        return UnwindResult(tuple(ips), _TRUNCATED)
                    if at >= 0:
                        bp = _u64(stack, at)[0]
                    # else: a slot below sp was popped already (gcc's epilogues move the CFA after
                    # each pop but keep the save rules), so rbp holds the saved value.

        # Next frame: pc = return address, sp = CFA.
        if ra == 0:
            return UnwindResult(tuple(ips), _COMPLETE)
        resolved = resolve(ra) if ra <= USER_ADDR_MAX else None
        if resolved is None:
            return UnwindResult(tuple(ips), _BAD)
        if len(ips) >= max_frames:
            return UnwindResult(tuple(ips), _DEPTH)
        ips.append(ra)
        pc = ra
        sp = cfa
        exact = bool(flags & FLAG_SIGNAL)
