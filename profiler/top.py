"""`bpfprof top`'s model: counts-map deltas -> per-function self/total tallies -> rows of text.

The kernel's `counts` map is read whole at each refresh *without* clearing it (see ``CountsDelta``);
each key's growth since the previous read is named once per stack (``StackNamer``, cached by stack id)
and added to the tallies of the functions on that stack (``Tallies``). ``render`` lays a ``TopView``
out as lines of text for a width and height: the same lines go to a terminal or, as snapshots, to a
pipe. Nothing here touches the terminal or BPF.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from profiler.progress import Losses
from profiler.raw import CountRecord, StackStatus, stack_status
from unwind.frame import MISSED_KERNEL, MISSED_USER, Frame, FrameKind

if TYPE_CHECKING:
    from unwind.symbolizer import Symbolizer


# -- the counts map, read again and again ---------------------------------------------------------

CountKey = tuple[int, int, str, int, int, int]  # pid, tid, comm, user_stack_id, kernel_stack_id, exec_gen


def count_key(r: CountRecord) -> CountKey:
    return (r.pid, r.tid, r.comm, r.user_stack_id, r.kernel_stack_id, r.exec_gen)


class CountsDelta:
    """The samples each `counts` key gained since the previous read.

    Why deltas of a map that is never cleared, rather than read-and-delete: the BPF program adds to a
    value in place (``__sync_fetch_and_add`` on the pointer from a lookup), so a sample landing between
    a read and a delete of its key would be lost without a trace, and a deleted key costs a new
    insert (and a new hash slot) on the next sample. Reading only is exact and lock-free; the price
    is that the map keeps every key seen since the start, so on a long, busy system-wide run it can
    fill (the kernel then counts ``counts_full``, which the header shows as dropped: raise
    --counts-size).
    """

    def __init__(self) -> None:
        self._last: dict[CountKey, int] = {}

    def update(self, records: Iterable[CountRecord]) -> list[tuple[CountRecord, int]]:
        """(record, samples gained) for each key that grew since the last call, in input order."""
        grown = []
        last = self._last
        for r in records:
            key = count_key(r)
            before = last.get(key, 0)
            if r.samples != before:
                last[key] = r.samples
                # a smaller count means the key was deleted and counted anew: all of it is new
                grown.append((r, r.samples - before if r.samples > before else r.samples))
        return grown

    def __len__(self) -> int:
        return len(self._last)


# -- naming stacks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionKey:
    """A row of the table: a function (a frame's label) in a module (basename, ``[kernel]``, or
    ``[MODULE]`` for a kernel module; empty for markers such as ``[Missed User Stack]``)."""

    name: str
    module: str


# A module path's basename, once per path (function_key runs once per frame of every new stack).
_basename = functools.lru_cache(maxsize=4096)(os.path.basename)


def function_key(frame: Frame) -> FunctionKey:
    if frame.kind is FrameKind.KERNEL:
        return FunctionKey(frame.label(), f"[{frame.module}]" if frame.module else "[kernel]")
    if frame.kind is FrameKind.MARKER:
        return FunctionKey(frame.label(), "")
    return FunctionKey(frame.label(), _basename(frame.module) if frame.module else "")


class StackNamer:
    """Names the stack of a counts record as FunctionKeys, root first (user frames, then kernel frames).

    User stacks are cached by (pid, exec_gen, stack id), kernel stacks by stack id: the stack map is
    used without BPF_F_REUSE_STACKID, so an id, once stored, keeps its stack. A user stack with a
    frame in no mapping is not cached: the process may map that address later (dlopen, JIT), and the
    symbolizer re-reads its maps. Stacks lost in the kernel become the same marker frames as in
    `record`'s output, so every sample counts somewhere.
    """

    def __init__(self, symbolizer: Callable[[], Symbolizer]) -> None:
        self._symbolizer = symbolizer
        self._ips: dict[int, tuple[int, ...]] = {}  # stack id -> ips, leaf first
        self._user: dict[tuple[int, int, int], tuple[FunctionKey, ...]] = {}
        self._kernel: dict[int, tuple[FunctionKey, ...]] = {}

    def prefetch(
        self, records: Iterable[CountRecord], read_stacks: Callable[[set[int]], dict[int, tuple[int, ...]]]
    ) -> None:
        """Read (``read_stacks``: the stack map) every stack id these records name that is not known yet,
        and name the stacks not named yet, in bulk."""
        records = list(records)
        want = set()
        for r in records:
            for sid in (r.user_stack_id, r.kernel_stack_id):
                if sid >= 0 and sid not in self._ips:
                    want.add(sid)
        if want:
            got = read_stacks(want)
            for sid in want:
                self._ips[sid] = got.get(sid, ())  # (): evicted or never stored, shown as a lost stack
        self._name_new(records)

    def _name_new(self, records: list[CountRecord]) -> None:
        """Name, in bulk, the stacks of these records that are not named yet: one symbolizer call per
        process image over the distinct addresses of its new stacks, and one for the kernel's. Named
        one call per stack, as ``name`` does for what is left, a refresh that brings thousands of new
        stacks (a busy system, the first refreshes) took ~0.2 ms of per-call work for each."""
        users: dict[tuple[int, int], dict[int, tuple[int, ...]]] = {}  # (pid, gen) -> stack id -> ips
        kernels: dict[int, tuple[int, ...]] = {}
        for r in records:
            sid = r.user_stack_id
            if sid >= 0 and (r.pid, r.exec_gen, sid) not in self._user and (ips := self._stack(sid)):
                users.setdefault((r.pid, r.exec_gen), {})[sid] = ips
            sid = r.kernel_stack_id
            if sid >= 0 and sid not in self._kernel and (ips := self._stack(sid)):
                kernels[sid] = ips
        if not users and not kernels:
            return
        from profiler.symbolize import frames_of_stacks, user_frames_of_stacks

        symbolizer = self._symbolizer()
        for (pid, gen), by_id in users.items():
            frames, _ = user_frames_of_stacks(symbolizer, pid, gen, list(dict.fromkeys(by_id.values())))
            for sid, ips in by_id.items():
                if _cacheable(frames[ips]):  # else ``name`` asks again (see the class's docstring)
                    self._user[(pid, gen, sid)] = tuple(map(function_key, frames[ips]))
        if kernels:
            frames, _ = frames_of_stacks(
                list(dict.fromkeys(kernels.values())), symbolizer.symbolize_kernel_addrs
            )
            for sid, ips in kernels.items():
                self._kernel[sid] = tuple(map(function_key, frames[ips]))

    def name(self, r: CountRecord) -> tuple[FunctionKey, ...]:
        """The record's stack as FunctionKeys, root first; its stack ids must have been prefetched."""
        return self._user_part(r) + self._kernel_part(r)

    def _stack(self, sid: int) -> tuple[int, ...]:
        return self._ips.get(sid, ())

    def _user_part(self, r: CountRecord) -> tuple[FunctionKey, ...]:
        status = stack_status(r.user_stack_id)
        if status is StackStatus.SKIPPED:
            return ()
        if status is not StackStatus.OK:
            return (function_key(MISSED_USER),)
        key = (r.pid, r.exec_gen, r.user_stack_id)
        cached = self._user.get(key)
        if cached is not None:
            return cached
        ips = self._stack(r.user_stack_id)
        if not ips:
            return (function_key(MISSED_USER),)
        frames = self._symbolizer().symbolize_user(r.pid, ips, r.exec_gen)
        named = tuple(function_key(f) for f in reversed(frames))
        if _cacheable(frames):
            self._user[key] = named
        return named

    def _kernel_part(self, r: CountRecord) -> tuple[FunctionKey, ...]:
        status = stack_status(r.kernel_stack_id)
        if status is StackStatus.SKIPPED:
            return ()
        if status is not StackStatus.OK:
            return (function_key(MISSED_KERNEL),)
        cached = self._kernel.get(r.kernel_stack_id)
        if cached is not None:
            return cached
        ips = self._stack(r.kernel_stack_id)
        if not ips:
            return (function_key(MISSED_KERNEL),)
        frames = self._symbolizer().symbolize_kernel(ips)
        named = tuple(function_key(f) for f in reversed(frames))
        self._kernel[r.kernel_stack_id] = named
        return named


def _cacheable(frames: Iterable[Frame]) -> bool:
    """Whether a user stack's names can be kept: none of its frames is in no mapping (the process may
    map that address later, and the symbolizer re-reads its maps)."""
    return all(f.module is not None or f.name is not None for f in frames)


# -- tallies -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Samples of one function: as the leaf (self), anywhere on the stack (total, once per sample
    however often it recurses), and total samples per process (pid, comm)."""

    self_samples: int = 0
    total_samples: int = 0
    procs: Counter[tuple[int, str]] = field(default_factory=Counter)


class Tallies:
    """Per-function tallies of some set of samples (since the start, or of one refresh)."""

    def __init__(self) -> None:
        self.functions: dict[FunctionKey, Tally] = {}
        self.samples = 0

    def add(self, pid: int, comm: str, stack: tuple[FunctionKey, ...], n: int) -> None:
        """Count ``n`` samples of ``stack`` (root first) in process ``pid`` (thread name ``comm``)."""
        self.samples += n
        if not stack:
            stack = (FunctionKey(f"[{comm}]", ""),)  # nothing asked for was there (e.g. -U, kernel thread)
        funcs = self.functions
        for fk in set(stack):
            t = funcs.get(fk)
            if t is None:
                t = funcs[fk] = Tally()
            t.total_samples += n
            t.procs[(pid, comm)] += n
        funcs[stack[-1]].self_samples += n


class SortKey(Enum):
    SELF = "self"
    TOTAL = "total"


def ranked(tallies: Tallies, sort: SortKey, n: int) -> list[tuple[FunctionKey, Tally]]:
    """The ``n`` functions with the most self (or total) samples; ties by the other count, then name."""
    if sort is SortKey.SELF:

        def key(item: tuple[FunctionKey, Tally]) -> tuple[int, int, str, str]:
            return (-item[1].self_samples, -item[1].total_samples, item[0].name, item[0].module)
    else:

        def key(item: tuple[FunctionKey, Tally]) -> tuple[int, int, str, str]:
            return (-item[1].total_samples, -item[1].self_samples, item[0].name, item[0].module)

    return sorted(tallies.functions.items(), key=key)[: max(0, n)]


# -- one refresh, as text ------------------------------------------------------------------------------


@dataclass(slots=True)
class TopView:
    """What a refresh shows. ``rate`` is samples kept per second over the last refresh interval."""

    elapsed_s: float
    kept: int
    rate: float
    losses: Losses
    tallies: Tallies
    sort: SortKey = SortKey.SELF
    delta: bool = False  # the tallies are of the last refresh only, not since the start
    what: str = ""  # the target and sampling, e.g. "pid 1234, 2 CPUs at 99 Hz"
    keys_help: bool = True  # the interactive key line
    note: str = ""  # e.g. "targets exited"


HEADER_LINES = 4  # status, target/keys, blank, column titles
PROC_WIDTH = 24
MODULE_WIDTH = 22


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``..`` when cut."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 2] + ".." if width > 2 else text[:width]


def process_label(procs: Counter[tuple[int, str]]) -> str:
    """The process with most samples of a function, ``comm[pid]``, and ``+N`` more processes."""
    if not procs:
        return ""
    by_pid: Counter[int] = Counter()
    names: dict[int, tuple[int, str]] = {}
    for (pid, comm), n in procs.items():
        by_pid[pid] += n
        if n > names.get(pid, (-1, ""))[0]:
            names[pid] = (n, comm)
    (pid, _), *rest = sorted(by_pid.items(), key=lambda kv: (-kv[1], kv[0]))
    label = f"{names[pid][1]}[{pid}]"
    return f"{label} +{len(rest)}" if rest else label


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:5.1f}%" if total else "  0.0%"


def render(view: TopView, width: int, height: int) -> list[str]:
    """The screen as lines, none longer than ``width``, at most ``height`` of them (at least the header)."""
    width = max(width, 40)
    status = (
        f"bpfprof top: {view.elapsed_s:.1f} s, {view.rate:.0f} samples/s, {view.kept} samples, "
        f"{view.losses.describe()}"
    )
    mode = "last interval" if view.delta else "since start"
    second = f"{view.what}; by {view.sort.value}, {mode}" if view.what else f"by {view.sort.value}, {mode}"
    if view.note:
        second += f"; {view.note}"
    if view.keys_help:
        second += " | s self, t total, d delta, q quit"
    fixed = 6 + 1 + 7 + 1 + 8 + 1 + 8 + 2  # SELF% TOTAL% SELF TOTAL and gaps
    module_w = min(MODULE_WIDTH, max(6, (width - fixed) // 4))
    proc_w = min(PROC_WIDTH, max(7, (width - fixed) // 4))
    func_w = max(8, width - fixed - 2 - module_w - 2 - proc_w)
    titles = (
        f"{'SELF%':>6} {'TOTAL%':>7} {'SELF':>8} {'TOTAL':>8}  "
        f"{_fit('FUNCTION', func_w):<{func_w}}  {'MODULE':<{module_w}}  {'PROCESS'}"
    )
    lines = [_fit(status, width), _fit(second, width), "", _fit(titles, width)]
    total = view.tallies.samples
    for fk, t in ranked(view.tallies, view.sort, height - HEADER_LINES):
        row = (
            f"{_pct(t.self_samples, total):>6} {_pct(t.total_samples, total):>7} "
            f"{t.self_samples:>8} {t.total_samples:>8}  "
            f"{_fit(fk.name, func_w):<{func_w}}  {_fit(fk.module, module_w):<{module_w}}  "
            f"{_fit(process_label(t.procs), proc_w)}"
        )
        lines.append(_fit(row.rstrip(), width))
    if not total:
        lines.append(_fit("  (no samples yet)", width))
    return lines[: max(height, HEADER_LINES)]


# -- the live state ------------------------------------------------------------------------------------


class LiveTop:
    """Tallies since the start and of the last refresh, fed by successive reads of the counts map."""

    def __init__(self, namer: StackNamer) -> None:
        self.namer = namer
        self.deltas = CountsDelta()
        self.since_start = Tallies()
        self.last = Tallies()
        self.kept = 0
        self.rate = 0.0
        self.losses = Losses()
        self._at: float | None = None  # elapsed time of the previous refresh

    def refresh(
        self,
        records: list[CountRecord],
        stats: dict[str, int],
        elapsed_s: float,
        read_stacks: Callable[[set[int]], dict[int, tuple[int, ...]]],
    ) -> None:
        """Add what ``records`` (the whole counts map, read now) gained since the previous refresh;
        ``stats`` are the kernel's counters by name, read at the same time; ``read_stacks`` reads
        stack ids from the stack map."""
        grown = self.deltas.update(records)
        self.namer.prefetch((r for r, _ in grown), read_stacks)
        self.last = Tallies()
        for r, n in grown:
            stack = self.namer.name(r)
            self.since_start.add(r.pid, r.comm, stack, n)
            self.last.add(r.pid, r.comm, stack, n)
        kept = stats.get("kept", 0)
        since = elapsed_s - (self._at or 0.0)
        self.rate = (kept - self.kept) / since if since > 0 else 0.0
        self.kept, self._at = kept, elapsed_s
        self.losses = Losses.from_stats(stats)

    def view(self, elapsed_s: float, sort: SortKey, delta: bool, **kw: object) -> TopView:
        tallies = self.last if delta else self.since_start
        return TopView(elapsed_s, self.kept, self.rate, self.losses, tallies, sort, delta, **kw)  # type: ignore[arg-type]
