"""A recording: load and attach the sampler, run until -d, a signal or target exit, then drain.

New processes are announced by the BPF program through a ring buffer; each is handed to
``on_new_process`` (the symbolizer's capture) at once, while it is alive.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from profiler.bpf.abi import Stat
from profiler.bpf.libbpf import LibbpfError, LibbpfMissing
from profiler.bpf.loader import Sampler, SamplerConfig

if TYPE_CHECKING:
    from profiler.dwarf import DwarfAggregator
    from profiler.retire import Retirer
from profiler.errors import UserError
from profiler.perf_event import CPU_CLOCK, EventSpec, SamplingSpec, open_per_cpu
from profiler.raw import CountRecord, RawProfile, RawStack, StackStatus, stack_status
from profiler.retire import EntryKey, entry_key
from profiler.targets import LaunchedCommand, check_pids, process_alive

POLL_MS = 100
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RecordOptions:
    pids: list[int] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    event: EventSpec = CPU_CLOCK
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    cpus: list[int] = field(default_factory=list)
    duration_s: float | None = None
    include_idle: bool = False
    user_stacks: bool = True
    kernel_stacks: bool = True
    stack_storage_size: int = 16384
    counts_size: int = 40960
    dwarf_stack_size: int = 0  # > 0: --call-graph dwarf with this many bytes of stack per sample


@dataclass
class RecordResult:
    raw: RawProfile
    command: LaunchedCommand | None
    stopped_by: str  # "duration", "signal", "targets exited"
    attach_s: float  # from start of record() to sampling attached


def preflight(btf: str = "/sys/kernel/btf/vmlinux", euid: int | None = None, command: str = "record") -> None:
    """Fail early, in one sentence, where BPF profiling cannot work here."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise UserError(
            f"bpfprof {command} needs root (or CAP_BPF and CAP_PERFMON): run it with sudo", exit_code=1
        )
    if not Path(btf).exists():
        raise UserError(
            "this kernel exposes no BTF (/sys/kernel/btf/vmlinux); bpfprof needs a kernel built with "
            "CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2020)",
            exit_code=1,
        )


class StopFlag:
    """Set by SIGINT/SIGTERM/SIGHUP; while installed, those signals never raise."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._saved: dict[int, object] = {}

    def __enter__(self) -> StopFlag:
        for sig in STOP_SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum

    def request(self) -> None:
        """Stop as Ctrl-C would (`top`'s `q` key, a closed output pipe)."""
        self.signal = signal.SIGINT

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    @property
    def set(self) -> bool:
        return self.signal is not None


def start_time(pid: int, proc: str = "/proc") -> int | None:
    """The start time of process ``pid`` (proc(5) /proc/PID/stat field 22, clock ticks after boot),
    or None when it is gone: with the PID it names one process, even when the PID is reused."""
    try:
        stat = Path(f"{proc}/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # fields from the 3rd (state) on
    return int(fields[19]) if len(fields) > 19 else None


def _same_process(pid: int, started: int | None) -> bool:
    """True while ``pid`` is alive and still the process that had start time ``started``."""
    return process_alive(pid) and (started is None or start_time(pid) == started)


# Kernel memory per entry of the BPF maps sized by the user (an estimate with the kernel's own
# per-element overhead): a stack-map bucket holds MAX_STACK_DEPTH ips; a counts element a key and value.
STACK_ENTRY_BYTES = 8 * 127 + 32
COUNTS_ENTRY_BYTES = 36 + 16 + 64


def check_map_memory(opts: RecordOptions, meminfo: str = "/proc/meminfo") -> None:
    """Refuse map sizes the kernel cannot hold before asking it: it may spend many seconds trying."""
    buckets = 1 << max(0, opts.stack_storage_size - 1).bit_length()  # rounded up to a power of 2
    need = buckets * STACK_ENTRY_BYTES + opts.counts_size * COUNTS_ENTRY_BYTES
    try:
        text = Path(meminfo).read_text()
        available = int(text.split("MemAvailable:", 1)[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return
    if need > available // 2:
        raise UserError(
            f"--stack-storage-size {opts.stack_storage_size} and --counts-size {opts.counts_size} need "
            f"about {need / 2**30:.1f} GiB of kernel memory, more than half of what is available "
            f"({available / 2**30:.1f} GiB): lower them",
            2,
        )


def _explain_libbpf(exc: LibbpfError) -> UserError:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return UserError(
            "the kernel refused to load BPF programs: run as root or with CAP_BPF and CAP_PERFMON", 1
        )
    if "kernel BTF" in exc.log:  # libbpf: "failed to find valid kernel BTF" (ESRCH)
        return UserError(
            "libbpf found no kernel BTF, which bpfprof's CO-RE programs need: use a kernel built with "
            "CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2020)",
            1,
        )
    if exc.errno in (errno.ENOMEM, errno.E2BIG):
        return UserError(
            f"BPF set-up failed: {exc}; the kernel could not make the maps this large: lower "
            "--stack-storage-size or --counts-size",
            1,
        )
    detail = f" ({exc.log.splitlines()[-1]})" if exc.log.strip() else ""
    return UserError(f"BPF set-up failed: {exc}{detail}", 1)


def record(
    opts: RecordOptions,
    stop: StopFlag,
    on_new_process: Callable[[int, int], None] = lambda pid, exec_gen: None,
    on_tick: Callable[[Sampler, float], None] | None = None,
    on_attached: Callable[[], None] | None = None,
    dwarf: DwarfAggregator | None = None,
    on_detached: Callable[[Sampler], None] | None = None,
    retirer: Retirer | None = None,
) -> RecordResult:
    """Profile until the duration ends, ``stop`` is set, or every target has exited.

    ``on_detached(sampler)`` is called once sampling has stopped, before the maps are drained (`top`
    reads its last counts there). A ``retirer`` (profiler/retire.py) hears of new and exited process
    images and takes the exited ones out of the maps while recording; what it took is not in the
    result's RawProfile (``Retirer.finish`` adds it to the symbolized profile)."""
    preflight()
    t0 = time.monotonic()
    check_pids(opts.pids)
    check_map_memory(opts)
    # a PID names the target only while its start time is the same: a PID reused after the target
    # exited is another process (issue #7)
    started_at = {pid: start_time(pid) for pid in opts.pids}
    launched = LaunchedCommand(opts.command) if opts.command else None
    targets = list(opts.pids)
    if launched:
        targets.append(launched.start_held())
    config = SamplerConfig(
        target_tgids=tuple(targets),
        include_idle=opts.include_idle,
        user_stacks=opts.user_stacks,
        kernel_stacks=opts.kernel_stacks,
        stack_storage_size=opts.stack_storage_size,
        counts_size=opts.counts_size,
        dwarf_stack_size=opts.dwarf_stack_size,
    )
    try:
        sampler = Sampler(config).__enter__()
    except LibbpfMissing as exc:
        if launched:
            launched.abandon()
        raise UserError(str(exc), 1) from exc
    except LibbpfError as exc:
        if launched:
            launched.abandon()
        raise _explain_libbpf(exc) from exc
    released = False
    try:
        try:
            if targets:
                sampler.add_targets(targets)
            # on_fork also gives a new process that reuses a PID an image generation of its own
            sampler.attach_tracepoint("on_fork")
            sampler.attach_tracepoint("on_exec")
            sampler.attach_tracepoint("on_exit")
            fds = open_per_cpu(opts.event, opts.sampling, opts.cpus)
            sampler.attach_perf_events(fds)
            if retirer is None:
                sampler.open_new_process_feed(on_new_process)
            else:

                def on_image(pid: int, exec_gen: int) -> None:
                    retirer.on_image(pid, exec_gen)  # first: the PID's previous image stops here
                    on_new_process(pid, exec_gen)

                sampler.open_new_process_feed(on_image, on_exit=retirer.on_exit)
            if opts.dwarf_stack_size:
                if dwarf is None:
                    raise ValueError("--call-graph dwarf needs a DwarfAggregator")
                sampler.open_samples_feed(dwarf.on_record)
        except LibbpfError as exc:
            raise _explain_libbpf(exc) from exc
        except OSError as exc:
            raise UserError(str(exc), 1) from exc
        attach_s = time.monotonic() - t0
        started = time.monotonic()
        if launched:
            released = True
            launched.release()
        if on_attached:
            on_attached()
        if retirer is not None:
            user_tick = on_tick

            def on_tick(sampler: Sampler, elapsed: float) -> None:
                retirer.tick(sampler)
                if user_tick is not None:
                    user_tick(sampler, elapsed)

        stopped_by = _wait(opts, stop, sampler, launched, started, on_tick, started_at)
        duration = time.monotonic() - started
        sampler.detach()
        while sampler.poll(0) > 0:  # the last notices and samples
            pass
        if on_detached:
            on_detached(sampler)
        raw = drain(sampler, retirer.pinned if retirer is not None else None)
        if dwarf is not None:
            dwarf.add_to(raw, sampler)
        raw.duration_s = duration
        return RecordResult(raw, launched, stopped_by, attach_s)
    except BaseException:
        if launched and not released:
            launched.abandon()
        raise
    finally:
        sampler.close()


def _wait(
    opts: RecordOptions,
    stop: StopFlag,
    sampler: Sampler,
    launched: LaunchedCommand | None,
    started: float,
    on_tick: Callable[[Sampler, float], None] | None,
    started_at: dict[int, int | None] | None = None,
) -> str:
    started_at = started_at or {}
    deadline = started + opts.duration_s if opts.duration_s else None
    while True:
        if stop.set:
            return "signal"
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return "duration"
        timeout = POLL_MS if deadline is None else max(0, min(POLL_MS, int((deadline - now) * 1000)))
        sampler.poll(timeout)
        if launched is not None and launched.wait():
            return "targets exited"
        if opts.pids and not launched and not any(_same_process(p, started_at.get(p)) for p in opts.pids):
            return "targets exited"
        if on_tick:
            on_tick(sampler, time.monotonic() - started)


STAT_NAMES = {
    Stat.SEEN: "seen",
    Stat.KEPT: "kept",
    Stat.COUNTS_FULL: "counts_full",
    Stat.USER_COLLISION: "user_collision",
    Stat.KERNEL_COLLISION: "kernel_collision",
    Stat.USER_MISSING: "user_missing",
    Stat.KERNEL_MISSING: "kernel_missing",
    Stat.USER_OTHER_ERROR: "user_error",
    Stat.KERNEL_OTHER_ERROR: "kernel_error",
    Stat.IDLE_SKIPPED: "idle_skipped",
    Stat.NEW_PROC_DROPPED: "new_proc_dropped",
    Stat.SAMPLES_DROPPED: "samples_dropped",
    Stat.KTHREAD_SKIPPED: "kthread_skipped",
    Stat.EXIT_DROPPED: "exit_dropped",
}


def live_stats(sampler: Sampler) -> dict[str, int]:
    """The loss and sample counters by name (STAT_NAMES), read while sampling goes on."""
    return {STAT_NAMES[k]: v for k, v in sampler.read_stats().items()}


def drain(sampler: Sampler, pinned: dict[EntryKey, tuple[int, ...]] | None = None) -> RawProfile:
    """Read counts, the stacks they name, and the loss counters into a RawProfile. ``pinned``: user
    stacks kept by key for entries whose stack id was freed after they were made (profiler/retire.py)."""
    records = sampler.read_counts()
    ids = {r.user_stack_id for r in records if r.user_stack_id >= 0}
    ids |= {r.kernel_stack_id for r in records if r.kernel_stack_id >= 0}
    stacks = sampler.read_stacks(ids)
    raw = RawProfile(stats=live_stats(sampler))
    raw.stats["stack_vanished"] = add_records(raw, records, stacks, pinned)
    return raw


def add_records(
    raw: RawProfile,
    records: list[CountRecord],
    stacks: dict[int, tuple[int, ...]],
    pinned: dict[EntryKey, tuple[int, ...]] | None = None,
) -> int:
    """Add `counts` records to ``raw`` with their stacks (by id; a pinned user stack, taken out of
    ``pinned``, before its id). Returns how many stacks they name had vanished from the stack map."""
    vanished = 0
    for r in records:
        u_status, k_status = stack_status(r.user_stack_id), stack_status(r.kernel_stack_id)
        u_ips = stacks.get(r.user_stack_id, ()) if u_status is StackStatus.OK else ()
        if pinned and u_status is StackStatus.OK:
            u_ips = pinned.pop(entry_key(r), u_ips)
        k_ips = stacks.get(r.kernel_stack_id, ()) if k_status is StackStatus.OK else ()
        if u_status is StackStatus.OK and not u_ips:
            u_status, vanished = StackStatus.ERROR, vanished + 1
        if k_status is StackStatus.OK and not k_ips:
            k_status, vanished = StackStatus.ERROR, vanished + 1
        stack = RawStack(r.pid, r.tid, r.comm, u_ips, k_ips, u_status, k_status, r.exec_gen)
        raw.add(stack, r.samples, r.period)
    return vanished
