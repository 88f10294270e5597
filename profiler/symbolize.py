"""RawProfile (addresses) -> Profile (root-first stacks of Frames), through one Symbolizer."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING

from exporters.model import Profile, ProfileMeta, Sample
from profiler.raw import RawProfile, StackStatus
from unwind.frame import MISSED_KERNEL, MISSED_USER, TRUNCATED, UNWIND_FAILED, Frame

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

    def get(self) -> Symbolizer:
        with self._lock:
            if self._symbolizer is None:
                from unwind.symbolizer import Symbolizer

                self._symbolizer = Symbolizer(**self._options)  # type: ignore[arg-type]
            return self._symbolizer

    def on_tick(self, _sampler: object, _elapsed: float) -> None:
        """While recording: let the symbolizer look again for what appears after capture (JIT maps)."""
        if self._symbolizer is not None and not self._lock.locked():
            self._symbolizer.revisit()

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

    def wait(self) -> Symbolizer:
        """The symbolizer, once any warm-up has finished."""
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        return self.get()

    def on_new_process(self, pid: int, exec_gen: int) -> None:
        """Snapshot a newly sampled process's maps (again after each exec: its image changed)."""
        self.get().capture(pid, exec_gen)

    def __enter__(self) -> LazySymbolizer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._symbolizer is not None:
            self._symbolizer.close()


# user stacks with frames, and the marker that goes at their root side
_PARTIAL = {
    StackStatus.OK: (),
    StackStatus.TRUNCATED: (TRUNCATED,),
    StackStatus.UNWIND_FAILED: (UNWIND_FAILED,),
}


def symbolize_profile(
    raw: RawProfile, symbolizer: Symbolizer, meta: ProfileMeta, lines: bool = False
) -> Profile:
    """One Sample per raw stack: user frames root->leaf, then kernel frames root->leaf.

    With ``lines``, user frames carry source lines and inlined calls become frames of their own.

    A stack that was expected but lost (collision, -EFAULT, vanished) becomes a marker frame, so the
    sample still counts; a stack not asked for (-U/-K, user-mode sample) is simply absent.
    """
    profile = Profile(meta=meta)
    user_cache: dict[tuple[int, int, tuple[int, ...]], tuple[Frame, ...]] = {}
    kernel_cache: dict[tuple[int, ...], tuple[Frame, ...]] = {}
    for stack, (samples, period) in raw.stacks.items():
        user: tuple[Frame, ...] = ()
        if stack.user_status in _PARTIAL:
            key = (stack.pid, stack.exec_gen, stack.user_ips)
            if key not in user_cache:
                if lines:
                    per_addr = symbolizer.symbolize_user_lines(stack.pid, stack.user_ips, stack.exec_gen)
                    frames = [f for inner_first in per_addr for f in inner_first]
                else:
                    frames = symbolizer.symbolize_user(stack.pid, stack.user_ips, stack.exec_gen)
                user_cache[key] = tuple(reversed(frames))
            user = _PARTIAL[stack.user_status] + user_cache[key]
        elif stack.user_status is not StackStatus.SKIPPED:
            user = (MISSED_USER,)
        kernel: tuple[Frame, ...] = ()
        if stack.kernel_status is StackStatus.OK:
            if stack.kernel_ips not in kernel_cache:
                kernel_cache[stack.kernel_ips] = tuple(
                    reversed(symbolizer.symbolize_kernel(stack.kernel_ips))
                )
            kernel = kernel_cache[stack.kernel_ips]
        elif stack.kernel_status is not StackStatus.SKIPPED:
            kernel = (MISSED_KERNEL,)
        profile.add(Sample(stack.pid, stack.tid, stack.comm, user + kernel), samples, period)
    return profile


def top_self(profile: Profile, n: int = 10) -> list[tuple[str, int]]:
    """The n functions with the most samples as the leaf frame."""
    counts: Counter[str] = Counter()
    for sample, weight in profile.samples.items():
        leaf = sample.frames[-1].label() if sample.frames else f"[{sample.comm}]"
        counts[leaf] += weight.samples
    return counts.most_common(n)
