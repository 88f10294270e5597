"""The end-of-run summary on stderr: what was sampled, what was lost, where time went, what was written."""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from profiler.symbolize import top_self
from unwind.frame import FrameKind, Reason

if TYPE_CHECKING:
    from exporters.model import Profile
    from profiler.record import RecordOptions, RecordResult


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "0.0%"


def loss_lines(stats: dict[str, int]) -> list[str]:
    """One line per kind of loss that happened, with counts and shares of the samples seen."""
    seen = stats.get("seen", 0)
    kinds = [
        ("counts_full", "samples dropped: counts map full (raise --counts-size)"),
        ("user_collision", "user stacks lost to stack-map collisions (raise --stack-storage-size)"),
        ("kernel_collision", "kernel stacks lost to stack-map collisions (raise --stack-storage-size)"),
        ("user_missing", "user stacks missing (the kernel could not walk them)"),
        ("kernel_missing", "kernel stacks missing"),
        ("user_error", "user stacks failed with other errors"),
        ("kernel_error", "kernel stacks failed with other errors"),
        ("stack_vanished", "stacks evicted from the stack map before they were read"),
        ("new_proc_dropped", "new-process notices dropped (their symbols may be unknown)"),
        ("samples_dropped", "samples dropped: the unwinder fell behind and the ring buffer filled"),
        (
            "user_truncated",
            "user stacks truncated: the stack copy ended first (raise --call-graph dwarf,SIZE)",
        ),
        ("user_unwind_failed", "user stacks cut short by a bad address or a module without unwind info"),
        ("kthread_skipped", "kernel-thread samples left out (--call-graph dwarf unwinds user stacks)"),
        ("exit_dropped", "exit notices dropped (those processes were kept in memory to the end)"),
    ]
    return [f"  {stats[k]} {text} ({_pct(stats[k], seen)})" for k, text in kinds if stats.get(k, 0)]


# what to do about frames that a frame-pointer walk through code without frame pointers made up
_FRAME_POINTERS = "(see --call-graph dwarf when available, or rebuild with -fno-omit-frame-pointer)"

REMEDIES = {
    Reason.NO_SYMBOL: "stripped and no debug info found: install its debug symbols (the -dbg or -dbgsym "
    "package), pass --debuginfo-dir DIR, or set DEBUGINFOD_URLS",
    Reason.ANON: "JIT code without a perf map: start the runtime with one (node --perf-basic-prof, "
    "python3.12 -X perf, a JVM perf-map agent)",
    Reason.NO_MAPPING: "an address in no mapping: usually a frame-pointer walk through code built without "
    f"frame pointers {_FRAME_POINTERS}",
    Reason.NOT_CODE: "an address in memory that holds no code (data, heap, a stack): a frame-pointer walk "
    f"through code built without frame pointers read something that is no return address {_FRAME_POINTERS}",
    Reason.NO_PROCESS: "the process exited before its memory map could be read",
    Reason.NO_FILE: "the mapped file could not be opened (deleted, or no permission)",
    Reason.BAD_ELF: "the mapped file is not a readable ELF file",
    Reason.KALLSYMS_RESTRICTED: "kernel symbols are hidden: run as root, or sysctl kernel.kptr_restrict=0",
    Reason.NO_KERNEL_SYMBOL: "no kernel symbol covers the address (a module or BPF program unloaded?)",
}


# user frames with no file behind them, named for why
_NO_FILE_LABELS = {
    Reason.ANON: "[anonymous memory]",
    Reason.NOT_CODE: "[not code]",
    Reason.NO_PROCESS: "[process gone]",
}


def unknown_report(profile: Profile, top: int = 5) -> list[str]:
    """Lines naming the modules with unnamed frames: their share of the module's frames, cause, remedy.

    Frames are counted per sample (weighted), so the shares are of what the flame graph shows.
    """
    total: Counter[str] = Counter()
    unknown: Counter[tuple[str, Reason]] = Counter()
    for sample, weight in profile.samples.items():
        for f in sample.frames:
            if f.kind is FrameKind.MARKER:
                continue
            if f.module:
                module = os.path.basename(f.module)
            elif f.kind is FrameKind.KERNEL:
                module = "[kernel]"
            else:
                module = _NO_FILE_LABELS.get(f.unknown, "[no mapping]")
            total[module] += weight.samples
            if f.unknown is not None:
                unknown[(module, f.unknown)] += weight.samples
    everything = sum(total.values())
    lines = []
    for (module, reason), n in unknown.most_common(top):
        if module.startswith("["):  # no file behind it: a share of its own frames says nothing
            what = f"{n} frames ({_pct(n, everything)} of all frames)"
        else:
            what = f"{n} of {total[module]} frames unnamed ({_pct(n, total[module])})"
        lines.append(f"  {module}: {what}: {REMEDIES[reason]}")
    return lines


def print_headline(
    kept: int, duration_s: float, on: str, processes: int, stopped_by: str, out: TextIO
) -> None:
    """``bpfprof: N samples in S s (R/s; ON), P processes; stopped: WHY``."""
    rate = kept / duration_s if duration_s else 0
    print(
        f"bpfprof: {kept} samples in {duration_s:.2f} s ({rate:.1f}/s; {on}), {processes} processes; "
        f"stopped: {stopped_by}",
        file=out,
    )


def print_losses_and_names(stats: dict[str, int], profile: Profile, out: TextIO) -> None:
    """What was lost (kernel and unwinder counters), and the unnamed frames per module with remedies."""
    losses = loss_lines(stats)
    if losses:
        print("lost:", file=out)
        for line in losses:
            print(line, file=out)
    else:
        print("lost: nothing (no collisions, missing stacks or dropped samples)", file=out)
    unknown = unknown_report(profile)
    if unknown:
        print("unnamed frames:", file=out)
        for line in unknown:
            print(line, file=out)


def print_top(profile: Profile, out: TextIO, n: int = 10) -> None:
    top = top_self(profile, n)
    if top:
        total = profile.total_samples
        print("top functions (self samples):", file=out)
        for name, count in top:
            print(f"  {_pct(count, total):>6} {count:>8}  {name}", file=out)


def print_summary(
    result: RecordResult,
    profile: Profile,
    opts: RecordOptions,
    written: list,
    output_s: float,
    out: TextIO,
) -> None:
    raw = result.raw
    stats = raw.stats
    kept = stats.get("kept", 0)
    dur = raw.duration_s
    unit = "ns" if opts.event.is_timer else f"{opts.event.name} events"
    smp = opts.sampling
    rate = f"{smp.frequency} Hz" if smp.frequency else f"every {smp.period} {unit}"
    pids = {s.pid for s in profile.samples}
    print_headline(kept, dur, f"{len(opts.cpus)} CPUs at {rate}", len(pids), result.stopped_by, out)
    print_losses_and_names(stats, profile, out)
    print_top(profile, out)
    if stats.get("images_retired"):
        print(
            f"{stats['images_retired']} exited or exec'd process images were symbolized and forgotten while "
            "recording",
            file=out,
        )
    for w in written:
        print(f"wrote {w.path} ({w.fmt})", file=out)
    if not kept:
        print("no samples were taken: the targets did not run on a CPU while recording", file=out)
    unwind = ""
    if raw.unwind_s is not None:
        share = 100 * raw.unwind_s / dur if dur else 0.0
        unwind = f", unwinding {raw.unwind_s * 1000:.0f} ms = {share:.1f}% of a core"
    print(
        f"(attach {result.attach_s * 1000:.0f} ms{unwind}, symbolize+write {output_s * 1000:.0f} ms)",
        file=out,
    )
