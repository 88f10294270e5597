"""`bpfprof report FILE`: render a saved recording (``record -o run.bpfprof``) or folded stacks later.

A recording is named from what it saved (maps, build-ids, kernel symbols, JIT entries) and the
binaries or debug files found now (unwind/saved.py); the same summary as record's is printed.
Folded stacks (any tool's, recognised by content) are drawn as they are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from profiler import cliargs
from profiler.errors import UserError

if TYPE_CHECKING:
    from exporters.model import Profile
    from profiler.cli import OutputTarget
    from profiler.saved import Recording
    from unwind.saved import Located

EXAMPLES = """\
examples:
  bpfprof record -a -d 10 -o run.bpfprof                  keep the raw recording
  bpfprof report run.bpfprof -o run.svg --lines           render it later (binaries or debug files needed)
  bpfprof report run.bpfprof --debuginfo-dir ./dbg -o run.folded -o run.speedscope.json
  bpfprof report stacks.folded -o stacks.svg              folded stacks of any tool to SVG/speedscope
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="render a saved recording (.bpfprof) or folded stacks",
        description="Render a recording saved by 'bpfprof record -o FILE.bpfprof' (symbolized now, from the "
        "binaries at their paths or debug files with their build-ids), or a folded stacks file, as "
        "flame graphs, folded stacks or speedscope JSON.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="FILE", help="a .bpfprof recording, or folded stacks")
    cliargs.add_output(
        parser, default_output="FILE's name with .svg", default_title="the command, 'bpfprof' or FILE's name"
    )
    cliargs.add_symbols(parser)
    cliargs.add_debug(parser)
    parser.set_defaults(run=run)


def _read_input(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except IsADirectoryError:
        raise UserError(f"cannot read {path}: it is a directory", 2) from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}", 2) from None


def run(ns: argparse.Namespace, command: list[str]) -> int:
    from profiler.cli import resolve_outputs
    from profiler.saved import SUFFIX, is_recording

    if command:
        raise UserError("report takes no command after '--' (see bpfprof report --help)", 2)
    for d in ns.debuginfo_dir:
        if not os.path.isdir(d):
            raise UserError(f"--debuginfo-dir {d}: no such directory", 2)
    data = _read_input(ns.input)
    stem = os.path.basename(ns.input)
    for ext in (SUFFIX, ".folded", ".txt"):
        if stem.lower().endswith(ext) and len(stem) > len(ext):
            stem = stem[: -len(ext)]
            break
    outputs = resolve_outputs(ns.output, ns.format, stem)
    for out in outputs:
        if out.fmt == "bpfprof":
            raise UserError(f"report does not write recordings ({out.path}): copy the .bpfprof file", 2)
        if out.path != "-" and os.path.exists(out.path) and os.path.samefile(out.path, ns.input):
            raise UserError(f"-o {out.path} is the input file: choose another output", 2)
    t0 = time.monotonic()
    if is_recording(data):
        return _report_recording(data, ns, outputs, t0)
    return _report_folded(data, ns, outputs, t0)


# -- recordings -----------------------------------------------------------------------------------


def _report_recording(data: bytes, ns: argparse.Namespace, outputs: list[OutputTarget], t0: float) -> int:
    from dataclasses import replace

    from profiler.cli import _write_outputs
    from profiler.saved import RecordingError, decode
    from profiler.symbolize import symbolize_profile
    from unwind.debuginfo import DebuginfodClient
    from unwind.saved import build_symbolizer

    try:
        rec = decode(data)
    except RecordingError as exc:
        raise UserError(f"{ns.input}: {exc}", exc.exit_code) from None
    saved_build_ids = dict(rec.meta.profile.build_ids)
    symbolizer, located = build_symbolizer(
        rec.processes,
        rec.files,
        rec.kernel,
        kernel_restricted=rec.kernel_restricted,
        debug_dirs=ns.debuginfo_dir,
        debuginfod=DebuginfodClient.from_env(),
        demangle=not ns.no_demangle,
        lines=ns.lines,
    )
    with symbolizer:
        meta = replace(
            rec.meta.profile,
            command=list(rec.meta.profile.command),
            process_names=dict(rec.meta.profile.process_names),
            parents=dict(rec.meta.profile.parents),
            build_ids={},
        )
        profile = symbolize_profile(rec.raw, symbolizer, meta, lines=ns.lines, final=True)
        # the kernel's build-ids are the recording machine's, not this one's (/sys is read for them)
        profile.meta.build_ids.update(saved_build_ids)
        written = _write_outputs(profile, outputs, ns)  # with --threads/--processes roots
        warnings = symbolizer.warnings()
    if not ns.quiet:
        elapsed = time.monotonic() - t0
        print_report_summary(ns.input, rec, profile, located, warnings, written, elapsed, sys.stderr)
    return 0


def _recorded_what(rec: Recording) -> str:
    pm = rec.meta.profile
    if pm.command:
        return "'" + " ".join(pm.command) + "'"
    pids = rec.meta.options.get("pids") or []
    if pids and isinstance(pids, list):
        return "-p " + ",".join(str(p) for p in pids)
    return "the whole machine"


def print_report_summary(
    path: str,
    rec: Recording,
    profile: Profile,
    located: Located,
    warnings: list[str],
    written: list[OutputTarget],
    elapsed_s: float,
    out: TextIO,
) -> None:
    """record's end-of-run summary for a recording rendered later, with why binaries were not found."""
    from profiler.summary import print_headline, print_losses_and_names, print_top

    m = rec.meta
    pm = m.profile
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created_ns / 1e9)) if m.created_ns else "?"
    print(
        f"bpfprof: {path}: {_recorded_what(rec)} recorded {when} on {m.host or '?'} (kernel "
        f"{m.kernel_release or '?'}, bpfprof {m.bpfprof_version})",
        file=out,
    )
    stats = rec.raw.stats
    kept = stats.get("kept", profile.total_samples)
    dur = rec.raw.duration_s
    rate = f"{pm.frequency_hz} Hz" if pm.frequency_hz else f"every {pm.period} {pm.period_unit}"
    cpus = m.options.get("cpus")
    on = f"{len(cpus)} CPUs at {rate}" if isinstance(cpus, list) and cpus else rate
    pids = {s.pid for s in profile.samples}
    print_headline(kept, dur, on, len(pids), m.stopped_by or "?", out)
    print_losses_and_names(stats, profile, out)
    if located.notes:
        print("binaries not found now (their frames stay module+0xOFFSET):", file=out)
        for module, why in located.notes[:10]:
            print(f"  {module}: {why}", file=out)
        if len(located.notes) > 10:
            print(f"  ... and {len(located.notes) - 10} more", file=out)
    for line in warnings:
        print(f"warning: {line}", file=out)
    print_top(profile, out)
    for w in written:
        print(f"wrote {w.path} ({w.fmt})", file=out)
    print(f"(symbolize+write {elapsed_s * 1000:.0f} ms)", file=out)


# -- folded stacks --------------------------------------------------------------------------------


def profile_from_folded(stacks: dict[tuple[str, ...], int]) -> Profile:
    """A Profile of folded stacks: the root frame is the comm, frame kinds guessed from the names
    (``_[k]`` kernel, ``-`` and ``[Missed ...]`` markers). Folded files carry no pids: each distinct
    root gets a number of its own (speedscope's profile per process). Weights are sample counts."""
    from exporters.model import Profile, ProfileMeta, Sample
    from exporters.svg import guess_kind
    from unwind.frame import Frame

    profile = Profile(meta=ProfileMeta(event="samples", period_unit="samples", frequency_hz=None))
    roots: dict[str, int] = {}
    for stack, count in stacks.items():
        pid = roots.setdefault(stack[0], len(roots) + 1)
        frames = tuple(Frame(name, kind=guess_kind(name)) for name in stack[1:])
        profile.add(Sample(pid, pid, stack[0], frames), count, count)
    return profile


def _report_folded(data: bytes, ns: argparse.Namespace, outputs: list[OutputTarget], t0: float) -> int:
    from exporters.folded import parse_folded
    from profiler.cli import _write_outputs

    text = data.decode("utf-8", errors="surrogateescape")
    try:
        stacks = parse_folded(text.splitlines())
    except ValueError as exc:
        raise UserError(f"{ns.input} is neither a bpfprof recording nor folded stacks ({exc})", 2) from None
    if not any(c > 0 for c in stacks.values()):
        raise UserError(f"{ns.input} holds no stacks with samples: nothing to render", 2)
    if ns.threads or ns.processes:
        raise UserError(f"--threads and --processes need a recording: {ns.input} has no pids or threads", 2)
    ignored = [flag for flag, on in (("--lines", ns.lines), ("--debuginfo-dir", ns.debuginfo_dir)) if on]
    if ignored and not ns.quiet:
        note = f"{' and '.join(ignored)} apply to recordings; {ns.input} is folded stacks"
        print(f"bpfprof: {note}", file=sys.stderr)
    if ns.title is None:
        ns.title = os.path.basename(ns.input)
    profile = profile_from_folded(stacks)
    written = _write_outputs(profile, outputs, ns)
    if not ns.quiet:
        from profiler.summary import print_top

        total = profile.total_samples
        print(f"bpfprof: {ns.input}: folded stacks, {total} samples in {len(stacks)} stacks", file=sys.stderr)
        print_top(profile, sys.stderr)
        for w in written:
            print(f"wrote {w.path} ({w.fmt})", file=sys.stderr)
    return 0
