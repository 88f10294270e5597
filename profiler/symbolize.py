"""RawProfile (addresses) -> Profile (root-first stacks of Frames), through one Symbolizer."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING

from exporters.model import Profile, ProfileMeta, Sample
from profiler.procinfo import kernel_build_id, read_process
from profiler.raw import RawProfile, StackStatus
from unwind.frame import MISSED_KERNEL, MISSED_USER, TRUNCATED, UNWIND_FAILED, Frame, FrameKind

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

    def ready(self) -> Symbolizer | None:
        """The symbolizer if no warm-up is running (made now if need be), else None: for work done
        between polls while recording (profiler/retire.py), which must not wait for the warm-up."""
        if self._warming is not None:
            if self._warming.is_alive():
                return None
            self._warming.join()
            self._warming = None
        return self.get()

    def wait(self) -> Symbolizer:
        """The symbolizer, once any warm-up has finished."""
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        return self.get()

    def on_new_process(self, pid: int, exec_gen: int) -> None:
        """Snapshot a newly sampled process's maps (again after each exec: its image changed), and its
        command line and parent (the latest exec's wins)."""
        self.get().capture(pid, exec_gen)
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
    user_by_addr, kernel_by_addr = _symbolize_addresses(raw, symbolizer, user=not lines)
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
                    user_cache[key] = tuple(reversed(frames))
                else:
                    by_addr = user_by_addr[(stack.pid, stack.exec_gen)]
                    user_cache[key] = tuple(map(by_addr.__getitem__, reversed(_user_lookups(stack.user_ips))))
            user = _PARTIAL[stack.user_status] + user_cache[key]
        elif stack.user_status is not StackStatus.SKIPPED:
            user = (MISSED_USER,)
        kernel: tuple[Frame, ...] = ()
        if stack.kernel_status is StackStatus.OK:
            if stack.kernel_ips not in kernel_cache:
                kernel_cache[stack.kernel_ips] = tuple(
                    map(kernel_by_addr.__getitem__, reversed(_kernel_lookups(stack.kernel_ips)))
                )
            kernel = kernel_cache[stack.kernel_ips]
        elif stack.kernel_status is not StackStatus.SKIPPED:
            kernel = (MISSED_KERNEL,)
        profile.add(Sample(stack.pid, stack.tid, stack.comm, user + kernel), samples, period)
    # modules from the unique stacks (the caches), not from every sample: far fewer frames
    users = {f.module for frames in user_cache.values() for f in frames if f.kind is FrameKind.USER}
    kernels = {f.module for frames in kernel_cache.values() for f in frames if f.kind is FrameKind.KERNEL}
    meta.build_ids.update(build_ids(symbolizer, users, kernels))
    return profile


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


def _user_lookups(ips: tuple[int, ...]) -> list[int]:
    """The addresses ``Symbolizer.symbolize_user`` looks up: the leaf as is, return addresses at ip - 1."""
    return [ip if pos == 0 else ip - 1 for pos, ip in enumerate(ips)]


def _kernel_lookups(ips: tuple[int, ...]) -> list[int]:
    """The addresses ``Symbolizer.symbolize_kernel`` looks up (ip - 1 wrapping modulo 2**64)."""
    return [(ip if pos == 0 else ip - 1) & 0xFFFF_FFFF_FFFF_FFFF for pos, ip in enumerate(ips)]


def _symbolize_addresses(
    raw: RawProfile, symbolizer: Symbolizer, user: bool
) -> tuple[dict[tuple[int, int], dict[int, Frame]], dict[int, Frame]]:
    """Frames by looked-up address: per (pid, exec_gen) for the user stacks (when ``user``), and for the
    kernel stacks; one symbolizer call per process image and one for the kernel, each address once."""
    user_addrs: dict[tuple[int, int], dict[int, None]] = {}
    kernel_stacks: set[tuple[int, ...]] = set()
    for stack in raw.stacks:
        if user and stack.user_status in _PARTIAL:
            seen = user_addrs.setdefault((stack.pid, stack.exec_gen), {})
            seen.update(dict.fromkeys(_user_lookups(stack.user_ips)))
        if stack.kernel_status is StackStatus.OK:
            kernel_stacks.add(stack.kernel_ips)
    user_by_addr = {}
    for (pid, gen), seen in user_addrs.items():
        addrs = list(seen)
        frames = symbolizer.symbolize_user_addrs(pid, addrs, gen)
        user_by_addr[(pid, gen)] = dict(zip(addrs, frames, strict=True))
    kernel_addrs = list(dict.fromkeys(a for ips in kernel_stacks for a in _kernel_lookups(ips)))
    kernel_frames = symbolizer.symbolize_kernel_addrs(kernel_addrs) if kernel_addrs else []
    return user_by_addr, dict(zip(kernel_addrs, kernel_frames, strict=True))


def top_self(profile: Profile, n: int = 10) -> list[tuple[str, int]]:
    """The n functions with the most samples as the leaf frame."""
    counts: Counter[str] = Counter()
    for sample, weight in profile.samples.items():
        leaf = sample.frames[-1].label() if sample.frames else f"[{sample.comm}]"
        counts[leaf] += weight.samples
    return counts.most_common(n)
