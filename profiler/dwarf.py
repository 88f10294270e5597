"""--call-graph dwarf: unwind each sample's user-stack copy as it arrives and count the stacks.

Raw snapshots are never kept (at 999 Hz on a few CPUs they are tens of MB/s): each is unwound with
the binaries' CFI as soon as the ring buffer hands it over, and only (thread, stack) counts remain,
so memory stays flat however long the recording.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from profiler.bpf.abi import DWARF_FLAG_STACK_CUT, DWARF_HEADER
from profiler.raw import RawProfile, RawStack, StackStatus, stack_status

if TYPE_CHECKING:
    from profiler.bpf.loader import Sampler
    from unwind.symbolizer import Symbolizer

# Why a user stack ended, as the summary reports it.
END_TRUNCATED = "truncated"  # the copy of the stack ended before the outermost frame
END_BAD_ADDRESS = "bad_address"  # a return address or CFA outside any mapping or the copy
END_NO_UNWIND_INFO = "no_unwind_info"  # a module with neither CFI nor a frame pointer chain


# (pid, tid, comm bytes, gen, user ips leaf first, user status, kernel stack id)
CountKey = tuple[int, int, bytes, int, tuple[int, ...], StackStatus, int]


class DwarfAggregator:
    """Unwinds `struct dwarf_sample` records (profile.h) online and counts the resulting stacks."""

    def __init__(self, symbolizer: Callable[[], Symbolizer], max_frames: int = 127) -> None:
        from unwind.unwinder import Regs, UnwindStatus, unwind

        self._symbolizer = symbolizer
        self._max_frames = max_frames
        self._unwind = unwind
        self._regs = Regs
        self._copy_ended = UnwindStatus.TRUNCATED
        # how each way an unwind ends is counted: (user stack status, what the summary calls it)
        self._outcomes: dict[UnwindStatus, tuple[StackStatus, str | None]] = {
            UnwindStatus.COMPLETE: (StackStatus.OK, None),
            UnwindStatus.NO_FDE: (StackStatus.OK, None),  # a clean stop at hand-written entry code
            UnwindStatus.TRUNCATED: (StackStatus.TRUNCATED, END_TRUNCATED),
            UnwindStatus.MAX_DEPTH: (StackStatus.TRUNCATED, END_TRUNCATED),
            UnwindStatus.BAD_ADDRESS: (StackStatus.UNWIND_FAILED, END_BAD_ADDRESS),
            UnwindStatus.NO_CFI_NO_FP: (StackStatus.UNWIND_FAILED, END_NO_UNWIND_INFO),
            UnwindStatus.EXPRESSION: (StackStatus.UNWIND_FAILED, END_NO_UNWIND_INFO),
        }
        self._resolvers: dict[tuple[int, int], Callable[[int], object]] = {}
        self.counts: dict[CountKey, list[int]] = {}  # -> [samples, period]
        # (pid, gen) -> its keys of ``counts``, for taking a process image out (profiler/retire.py)
        self._by_image: dict[tuple[int, int], list[CountKey]] = {}
        self.ends: Counter[str] = Counter()
        self.samples = 0
        self.busy_s = 0.0  # time spent unwinding, for the summary

    def on_record(self, data: bytes) -> None:
        """One ring-buffer record: unwind it now, add it to the counts, drop the bytes."""
        t = time.perf_counter()
        tgid, tid, gen, kernel_id, period, ip, sp, bp, stack_len, flags, comm = DWARF_HEADER.unpack_from(data)
        stack = memoryview(data)[DWARF_HEADER.size : DWARF_HEADER.size + stack_len]
        result = self._unwind(self._regs(ip, sp, bp), stack, self._resolver(tgid, gen), self._max_frames)
        status, end = self._outcomes[result.status]
        if end is not None:
            # the copy reached the top of the stack, yet frames were left: a bad chain, not a short copy
            if result.status is self._copy_ended and not flags & DWARF_FLAG_STACK_CUT:
                end = END_BAD_ADDRESS
            self.ends[end] += 1
        key = (tgid, tid, comm, gen, result.ips, status, kernel_id)  # comm decoded once, in add_to
        acc = self.counts.get(key)
        if acc is None:
            self.counts[key] = [1, period]
            image = self._by_image.get((tgid, gen))
            if image is None:
                image = self._by_image[(tgid, gen)] = []
            image.append(key)
        else:
            acc[0] += 1
            acc[1] += period
        self.samples += 1
        self.busy_s += time.perf_counter() - t

    def _resolver(self, pid: int, gen: int) -> Callable[[int], object]:
        resolver = self._resolvers.get((pid, gen))
        if resolver is None:
            symbolizer = self._symbolizer()
            symbolizer.capture(pid, gen)  # usually done already, on the process's first notice
            resolver = self._resolvers[(pid, gen)] = symbolizer.unwind_resolver(pid, gen)
        return resolver

    def add_to(self, raw: RawProfile, sampler: Sampler) -> None:
        """Put the counted stacks into ``raw``, with kernel stacks read from the stack map."""
        vanished = self._put(raw, self.counts, sampler)
        raw.stats["stack_vanished"] = raw.stats.get("stack_vanished", 0) + vanished
        raw.unwind_s = self.busy_s
        raw.stats["user_truncated"] = self.ends[END_TRUNCATED]
        raw.stats["user_unwind_failed"] = self.ends[END_BAD_ADDRESS] + self.ends[END_NO_UNWIND_INFO]

    def take(self, images: Collection[tuple[int, int]], sampler: Sampler) -> RawProfile:
        """Take the counted stacks of these (pid, gen) images out into a RawProfile (kernel stacks read
        from the stack map, which keeps them: they are shared) and drop the images' unwind state: they
        exited or exec'd (profiler/retire.py). ``stats["stack_vanished"]`` counts lost kernel stacks."""
        taken = {}
        for image in images:
            for key in self._by_image.pop(image, ()):
                taken[key] = self.counts.pop(key)
            self._resolvers.pop(image, None)
        raw = RawProfile()
        raw.stats["stack_vanished"] = self._put(raw, taken, sampler)
        return raw

    @staticmethod
    def _put(raw: RawProfile, counts: dict[CountKey, list[int]], sampler: Sampler) -> int:
        """Add ``counts`` (as ``DwarfAggregator.counts``) to ``raw``; returns the kernel stacks vanished."""
        kernel_ids = {key[6] for key in counts if key[6] >= 0}
        kernel = sampler.read_stacks(kernel_ids)
        vanished = 0
        for (pid, tid, comm, gen, ips, status, kid), (samples, period) in counts.items():
            k_status = stack_status(kid)
            k_ips = kernel.get(kid, ()) if k_status is StackStatus.OK else ()
            if k_status is StackStatus.OK and not k_ips:
                k_status, vanished = StackStatus.ERROR, vanished + 1
            name = comm.rstrip(b"\0").decode(errors="replace")
            raw.add(RawStack(pid, tid, name, ips, k_ips, status, k_status, gen), samples, period)
        return vanished
