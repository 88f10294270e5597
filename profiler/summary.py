"""The end-of-run summary on stderr: what was sampled, what was lost, where time went, what was written."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from profiler.symbolize import top_self

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
    ]
    return [f"  {stats[k]} {text} ({_pct(stats[k], seen)})" for k, text in kinds if stats.get(k, 0)]


def print_summary(
    result: RecordResult,
    profile: Profile,
    symbolizer: object,
    opts: RecordOptions,
    written: list,
    output_s: float,
    out: TextIO,
) -> None:
    raw = result.raw
    stats = raw.stats
    kept = stats.get("kept", 0)
    dur = raw.duration_s
    rate = f"{opts.sampling.frequency} Hz" if opts.sampling.frequency else f"every {opts.sampling.period} ns"
    pids = {s.pid for s in profile.samples}
    print(
        f"bpfprof: {kept} samples in {dur:.2f} s ({kept / dur if dur else 0:.1f}/s; {len(opts.cpus)} CPUs "
        f"at {rate}), {len(pids)} processes; stopped: {result.stopped_by}",
        file=out,
    )
    losses = loss_lines(stats)
    if losses:
        print("lost:", file=out)
        for line in losses:
            print(line, file=out)
    else:
        print("lost: nothing (no collisions, missing stacks or dropped samples)", file=out)
    unknown = getattr(symbolizer, "unknown_by_module", lambda: {})()
    if unknown:
        worst = sorted(unknown.items(), key=lambda kv: -kv[1])[:5]
        print("unknown frames: " + ", ".join(f"{m} {n}" for m, n in worst), file=out)
    top = top_self(profile, 10)
    if top:
        total = profile.total_samples
        print("top functions (self samples):", file=out)
        for name, n in top:
            print(f"  {_pct(n, total):>6} {n:>8}  {name}", file=out)
    for w in written:
        print(f"wrote {w.path} ({w.fmt})", file=out)
    if not kept:
        print("no samples were taken: the targets did not run on a CPU while recording", file=out)
    print(f"(attach {result.attach_s * 1000:.0f} ms, symbolize+write {output_s * 1000:.0f} ms)", file=out)
