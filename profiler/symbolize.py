"""RawProfile (addresses) -> Profile (root-first stacks of Frames), through one Symbolizer."""

from __future__ import annotations

import contextlib
import itertools
import operator
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from exporters.model import Profile, ProfileMeta, Sample
from profiler.procinfo import kernel_build_id, read_process
from profiler.raw import RawProfile, StackStatus
from unwind.frame import MISSED_KERNEL, MISSED_USER, MODULE_OF, TRUNCATED, UNWIND_FAILED, Frame
from unwind.gcpause import paused as gc_paused
from unwind.maps import EarlyCapture, capture_early

if TYPE_CHECKING:
    from unwind.symbolizer import Symbolizer


class LazySymbolizer:
    """Owns the Symbolizer, created on first use so that numpy and the ELF code load only after
    sampling is attached (they would add ~90 ms to exec-to-sampling)."""

    def __init__(self, **options: object) -> None:
        self._options = options  # Symbolizer keyword arguments (lines, demangle, debug_dirs)
        self._symbolizer: Symbolizer | None = None
        self._lock = threading.Lock()
        self._warming: threading.Thread | None = None
        self.processes: dict[int, tuple[str, int | None]] = {}  # pid -> (command line, parent pid)
        # images that exec'd while the warm-up made the symbolizer (unwind.maps.capture_early)
        self._early: dict[tuple[int, int], EarlyCapture] = {}

    def get(self) -> Symbolizer:
        with self._lock:
            if self._symbolizer is None:
                from unwind.symbolizer import Symbolizer

                self._symbolizer = Symbolizer(**self._options)  # type: ignore[arg-type]
            return self._symbolizer

    def on_tick(self, _sampler: object, _elapsed: float) -> None:
        """While recording: let the symbolizer look again for what appears after capture (JIT maps)."""
        if self._symbolizer is not None and not self._lock.locked():
            self._take_early(self._symbolizer)
            self._symbolizer.revisit()

    def _being_made(self) -> bool:
        """Whether the warm-up thread is making the symbolizer now (not yet loading kallsyms)."""
        return self._warming is not None and self._warming.is_alive() and self._symbolizer is None

    def _take_early(self, symbolizer: Symbolizer) -> None:
        """Hand the early captures to the symbolizer (in the thread that records, as they were taken)."""
        while self._early:  # in any order: Symbolizer.capture keeps a pid's latest exec the one revisited
            (pid, gen), early = self._early.popitem()
            try:
                symbolizer.capture(pid, gen, early)
            finally:
                early.close()

    def warm_up(self, kernel: bool) -> None:
        """Import the symbolizer (and load kallsyms) in a thread while recording, not after it.

        The recording loop waits in libbpf's poll with the GIL released, so this costs it nothing.
        Like perf, bpfprof does not hide itself: this work shows in a system-wide profile.
        """

        def warm() -> None:
            symbolizer = self.get()
            if kernel:
                symbolizer.preload_kernel()

        self._warming = threading.Thread(target=warm, name="bpfprof-warm-up", daemon=True)
        self._warming.start()

    def ready(self) -> Symbolizer | None:
        """The symbolizer if no warm-up is running (made now if need be), else None: for work done
        between polls while recording (profiler/retire.py), which must not wait for the warm-up."""
        if self._warming is not None:
            if self._warming.is_alive():
                return None
            self._warming.join()
            self._warming = None
        return self.current()

    def wait(self) -> Symbolizer:
        """The symbolizer, once any warm-up has finished."""
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        return self.current()

    def current(self) -> Symbolizer:
        """The symbolizer (made now if need be) with the early captures taken over: for the thread
        that records (DWARF unwinding of samples while recording)."""
        symbolizer = self.get()
        self._take_early(symbolizer)
        return symbolizer

    def on_new_process(self, pid: int, exec_gen: int) -> None:
        """Snapshot a newly sampled process's maps (again after each exec: its image changed), and its
        command line and parent (the latest exec's wins).

        While the warm-up still makes the symbolizer (~0.2 s, more on a busy machine), the maps and
        files are captured without it: a short command run at the start would be gone by then. They
        are handed over as soon as it exists (at the next tick), so its revisits see what the process
        maps later (a JIT's code)."""
        if self._being_made():
            key = (pid, exec_gen)
            early = capture_early(pid) if key not in self._early else None
            if early is not None:
                self._early[key] = early
        else:
            self.current().capture(pid, exec_gen)
        info = read_process(pid)
        if info is not None:  # one string per distinct command line: a loop starts the same one often
            self.processes[pid] = (sys.intern(info[0]), info[1])

    def fill_processes(self, meta: ProfileMeta) -> None:
        """Put the captured command lines (none for a kernel thread) and parents in ``meta``."""
        for pid, (cmdline, ppid) in self.processes.items():
            if cmdline:
                meta.process_names[pid] = cmdline
            if ppid is not None:
                meta.parents[pid] = ppid

    def __enter__(self) -> LazySymbolizer:
        return self

    def __exit__(self, *exc: object) -> None:
        for early in self._early.values():  # never taken over (recording failed)
            early.close()
        self._early.clear()
        if self._symbolizer is not None:
            self._symbolizer.close()


# user stacks with frames, and the marker that goes at their root side
_PARTIAL = {
    StackStatus.OK: (),
    StackStatus.TRUNCATED: (TRUNCATED,),
    StackStatus.UNWIND_FAILED: (UNWIND_FAILED,),
}


def symbolize_profile(
    raw: RawProfile, symbolizer: Symbolizer, meta: ProfileMeta, lines: bool = False, final: bool = False
) -> Profile:
    """One Sample per raw stack: user frames root->leaf, then kernel frames root->leaf.

    With ``lines``, user frames carry source lines and inlined calls become frames of their own.

    A stack that was expected but lost (collision, -EFAULT, vanished) becomes a marker frame, so the
    sample still counts; a stack not asked for (-U/-K, user-mode sample) is simply absent.

    The garbage collector is paused meanwhile (what is made here holds no cycles); ``final`` (the run's
    last profile, kept until the process exits) freezes what was made rather than have the collector
    walk it (unwind/gcpause.py).
    """
    with gc_paused(freeze=final):
        return _symbolize_profile(raw, symbolizer, meta, lines)


def _symbolize_profile(raw: RawProfile, symbolizer: Symbolizer, meta: ProfileMeta, lines: bool) -> Profile:
    profile = Profile(meta=meta)
    users: set[str | None] = set()  # modules of the frames, for their build-ids
    user_frames: dict[tuple[int, int], dict[tuple[int, ...], tuple[Frame, ...]]] = {}
    kernel_stacks = list(dict.fromkeys(s.kernel_ips for s in raw.stacks if s.kernel_status is StackStatus.OK))
    loading = _load_kernel_meanwhile(symbolizer) if kernel_stacks else None
    for (pid, gen), stacks in _distinct_user_stacks(raw).items():
        user_frames[(pid, gen)], found = user_frames_of_stacks(symbolizer, pid, gen, stacks, lines)
        users.update(map(MODULE_OF, found))
    if loading is not None:
        loading.join()
    kernel_frames, found = frames_of_stacks(kernel_stacks, symbolizer.symbolize_kernel_addrs)
    kernels = set(map(MODULE_OF, found))
    for stack, (samples, period) in raw.stacks.items():
        user: tuple[Frame, ...] = ()
        if stack.user_status in _PARTIAL:
            user = _PARTIAL[stack.user_status] + user_frames[(stack.pid, stack.exec_gen)][stack.user_ips]
        elif stack.user_status is not StackStatus.SKIPPED:
            user = (MISSED_USER,)
        kernel: tuple[Frame, ...] = ()
        if stack.kernel_status is StackStatus.OK:
            kernel = kernel_frames[stack.kernel_ips]
        elif stack.kernel_status is not StackStatus.SKIPPED:
            kernel = (MISSED_KERNEL,)
        profile.add(Sample(stack.pid, stack.tid, stack.comm, user + kernel), samples, period)
    meta.build_ids.update(build_ids(symbolizer, users, kernels))
    return profile


def _load_kernel_meanwhile(symbolizer: Symbolizer) -> threading.Thread | None:
    """Load kallsyms in a thread while user frames are made, when they are not loaded yet (``report``,
    or a recording too short for the warm-up): reading /proc/kallsyms is ~70 ms in the kernel, with the
    GIL released. Joined before the first kernel lookup; nothing else touches the kernel symbols."""
    if symbolizer.kernel_loaded():
        return None

    def load() -> None:
        with contextlib.suppress(Exception):  # the lookup loads again, and reports, in the caller's thread
            symbolizer.preload_kernel()

    thread = threading.Thread(target=load, name="bpfprof-kallsyms", daemon=True)
    thread.start()
    return thread


def _distinct_user_stacks(raw: RawProfile) -> dict[tuple[int, int], list[tuple[int, ...]]]:
    """The distinct user stacks (leaf-first ips) of each (pid, exec_gen) that has frames to symbolize."""
    out: dict[tuple[int, int], dict[tuple[int, ...], None]] = {}
    for stack in raw.stacks:
        if stack.user_status in _PARTIAL:
            out.setdefault((stack.pid, stack.exec_gen), {})[stack.user_ips] = None
    return {image: list(stacks) for image, stacks in out.items()}


def frames_of_stacks(
    stacks: list[tuple[int, ...]], lookup: Callable[[list[int]], list[Frame]]
) -> tuple[dict[tuple[int, ...], tuple[Frame, ...]], list[Frame]]:
    """Root-first frames of each distinct leaf-first stack, from one ``lookup`` call (one frame per
    address, in order) over the distinct looked-up addresses: the leaf as is, return addresses at
    ip - 1 (modulo 2**64). Also the frames ``lookup`` returned. In bulk with numpy: for 100k addresses
    it takes a few ms, where a Python loop per address took tens."""
    if not stacks:
        return {}, []
    unique, root_first, bounds = _layout(stacks)
    found = lookup(unique)
    # A stack's frames are one slice of one tuple of them all, gathered in C by an itemgetter.
    per_addr = _gather(found, root_first)
    return {ips: per_addr[lo:hi] for ips, (lo, hi) in zip(stacks, bounds, strict=True)}, found


def expanded_frames_of_stacks(
    stacks: list[tuple[int, ...]], lookup: Callable[[list[int]], list[list[Frame]]]
) -> tuple[dict[tuple[int, ...], tuple[Frame, ...]], list[Frame]]:
    """``frames_of_stacks`` where ``lookup`` gives each address a list of frames, innermost first (its
    inlined calls, then the function: ``Symbolizer.symbolize_user_lines_addrs``): a stack's frames are
    every address's, root first. Also every frame ``lookup`` returned."""
    if not stacks:
        return {}, []
    unique, root_first, bounds = _layout(stacks)
    found = lookup(unique)
    per_addr = _gather([tuple(reversed(inner_first)) for inner_first in found], root_first)
    chain = itertools.chain.from_iterable
    return (
        {ips: tuple(chain(per_addr[lo:hi])) for ips, (lo, hi) in zip(stacks, bounds, strict=True)},
        list(chain(found)),
    )


def _layout(stacks: list[tuple[int, ...]]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """The distinct looked-up addresses of leaf-first ``stacks`` (the leaf as is, return addresses at
    ip - 1, modulo 2**64); for the stacks laid end to end, each root first, the index of each position's
    address among them; and each stack's [start, end) there. With numpy (the addresses sorted), or
    address by address when some do not fit in 64 bits (a damaged saved recording)."""
    import numpy as np  # not at import: the CLI imports this module before sampling starts

    lens = np.fromiter(map(len, stacks), np.int64, len(stacks))
    total = int(lens.sum())
    try:
        flat = np.fromiter(itertools.chain.from_iterable(stacks), np.uint64, total)
    except (OverflowError, ValueError):
        return _layout_slowly(stacks)
    ends = np.cumsum(lens)
    starts = ends - lens
    return_addr = np.ones(total, np.uint64)
    return_addr[starts[lens > 0]] = 0
    flat -= return_addr  # wraps below 0, as the kernel's u64 addresses do
    unique, inverse = np.unique(flat, return_inverse=True)
    # Each stack's slice turned root first: position p of [lo, hi) takes lo + hi - 1 - p.
    stack_of = np.repeat(np.arange(len(stacks)), lens)
    root_first = inverse[(starts + ends - 1)[stack_of] - np.arange(total)]
    return unique.tolist(), root_first.tolist(), list(zip(starts.tolist(), ends.tolist(), strict=True))


def _layout_slowly(stacks: list[tuple[int, ...]]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """``_layout`` address by address (the distinct addresses in the order first seen)."""
    index: dict[int, int] = {}
    root_first: list[int] = []
    bounds = []
    for ips in stacks:
        looked_up = [ip if pos == 0 else ip - 1 for pos, ip in enumerate(ips)]
        bounds.append((len(root_first), len(root_first) + len(looked_up)))
        root_first += [index.setdefault(a, len(index)) for a in reversed(looked_up)]
    return list(index), root_first, bounds


def user_frames_of_stacks(
    symbolizer: Symbolizer, pid: int, gen: int, stacks: list[tuple[int, ...]], lines: bool = False
) -> tuple[dict[tuple[int, ...], tuple[Frame, ...]], list[Frame]]:
    """``frames_of_stacks`` of the user stacks of process ``pid`` (image ``gen``): one symbolizer call.
    With ``lines``, with source lines and inlined calls as frames of their own."""
    if lines:

        def lookup_lines(addrs: list[int]) -> list[list[Frame]]:
            return symbolizer.symbolize_user_lines_addrs(pid, addrs, gen)

        return expanded_frames_of_stacks(stacks, lookup_lines)

    def lookup(addrs: list[int]) -> list[Frame]:
        return symbolizer.symbolize_user_addrs(pid, addrs, gen)

    return frames_of_stacks(stacks, lookup)


def _gather(items: list, indices: list[int]) -> tuple:
    """``tuple(items[i] for i in indices)``, in C (an itemgetter of them all)."""
    if len(indices) < 2:  # an itemgetter of one index returns the item, not a 1-tuple
        return tuple(items[i] for i in indices)
    return operator.itemgetter(*indices)(items)


KERNEL_IMAGE = "[kernel.kallsyms]"  # the build-id key of vmlinux (the pprof mapping's name)


def build_ids(symbolizer: Symbolizer, users: set[str | None], kernels: set[str | None]) -> dict[str, str]:
    """Build-ids (hex) of the images of frames: user files (``Frame.module`` paths in ``users``) as the
    symbolizer read them (nothing is opened again); the kernel (``[kernel.kallsyms]``, for None in
    ``kernels``) and its modules (``[MODULE]``) from /sys."""
    from unwind.elf import ElfError

    out: dict[str, str] = {}
    # Read-only use of the symbolizer's module table (unwind/symbolizer.py _Module: name, elf).
    for module in list(getattr(symbolizer, "_modules", {}).values()):
        elf = getattr(module, "elf", None)
        if module.name in users and module.name not in out and elf is not None:
            try:
                found = elf.build_id
            except (ElfError, OSError, ValueError):  # a damaged note: no build-id, as for none
                continue
            if found:
                out[module.name] = found.hex()
    for name in kernels:
        notes = f"/sys/module/{name}/notes/.note.gnu.build-id" if name else "/sys/kernel/notes"
        found_hex = kernel_build_id(notes)
        if found_hex:
            out[f"[{name}]" if name else KERNEL_IMAGE] = found_hex
    return out


def top_self(profile: Profile, n: int = 10) -> list[tuple[str, int]]:
    """The n functions with the most samples as the leaf frame."""
    counts: Counter[str] = Counter()
    for sample, weight in profile.samples.items():
        leaf = sample.frames[-1].label() if sample.frames else f"[{sample.comm}]"
        counts[leaf] += weight.samples
    return counts.most_common(n)
