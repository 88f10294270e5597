"""Raw profile data as the kernel gives it: addresses, ids and counts, before symbolization."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from profiler.bpf.abi import EEXIST, EFAULT, STACK_SKIPPED


class StackStatus(Enum):
    OK = "ok"
    SKIPPED = "skipped"  # not asked for (-U/-K), or a user-mode sample's kernel part
    MISSING = "missing"  # -EFAULT from bpf_get_stackid: no stack of that kind
    COLLISION = "collision"  # -EEXIST: lost to a stack-map bucket collision
    ERROR = "error"  # any other error
    TRUNCATED = "truncated"  # --call-graph dwarf: frames found, but the stack copy ended first
    UNWIND_FAILED = "unwind_failed"  # --call-graph dwarf: frames found, then a bad address or no CFI


def stack_status(stack_id: int) -> StackStatus:
    """The status of a stack id stored in a counts key (negative ids are -errno or STACK_SKIPPED)."""
    if stack_id >= 0:
        return StackStatus.OK
    if stack_id == STACK_SKIPPED:
        return StackStatus.SKIPPED
    if stack_id == -EFAULT:
        return StackStatus.MISSING
    if stack_id == -EEXIST:
        return StackStatus.COLLISION
    return StackStatus.ERROR


@dataclass(frozen=True, slots=True)
class CountRecord:
    """One entry of the `counts` map, decoded."""

    pid: int
    tid: int
    comm: str
    user_stack_id: int
    kernel_stack_id: int
    samples: int
    period: int
    exec_gen: int = 0


@dataclass(frozen=True, slots=True)
class RawStack:
    """A sampled stack of one thread; ips leaf first, as the kernel gives them."""

    pid: int
    tid: int
    comm: str
    user_ips: tuple[int, ...]
    kernel_ips: tuple[int, ...]
    user_status: StackStatus
    kernel_status: StackStatus
    exec_gen: int = 0  # which image of the process (execs seen while recording) the sample ran


@dataclass(slots=True)
class RawProfile:
    """What a recording drained from the kernel: stacks with (samples, period) and loss counters."""

    stacks: dict[RawStack, list[int]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    unwind_s: float | None = None  # --call-graph dwarf: CPU time the online unwinder spent

    def add(self, stack: RawStack, samples: int, period: int) -> None:
        acc = self.stacks.setdefault(stack, [0, 0])
        acc[0] += samples
        acc[1] += period
