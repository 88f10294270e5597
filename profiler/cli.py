"""The composition root: `bpfprof record` parses flags, records, symbolizes, writes, summarises."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from profiler import __version__, cliargs
from profiler.errors import UserError

EXAMPLES = """\
examples:
  bpfprof record -p 1234 -d 10 -o app.svg              a running process, all its threads
  bpfprof record -a -F 99 -d 5 -o system.folded        the whole machine
  bpfprof record -o run.speedscope.json -- ./prog args a command it launches, and its children
"""


# Subcommands other than record: each module has ``register(subparsers)``, which adds its parser and
# sets ``run=`` (a function of the parsed namespace and the words after ``--``) as its default.
# A module imports only argparse-level things at the top; its work is imported inside ``run``.
COMMAND_MODULES: list[str] = [
    "profiler.cmd_report",
    "profiler.cmd_top",
    "profiler.cmd_stat",
    "profiler.cmd_list",
    "profiler.cmd_diff",
    "profiler.cmd_doctor",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        words = self.prog.split()  # "bpfprof" or "bpfprof record"
        see = "bpfprof" if len(words) < 2 else f"bpfprof {words[-1]}"
        raise UserError(f"{message} (see {see} --help)", 2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bpfprof", description="CPU profiler and stack sampler on eBPF and perf_events.")
    parser.add_argument("--version", action="version", version=f"bpfprof {__version__}")
    sub = parser.add_subparsers(dest="cmd", parser_class=_Parser)
    rec = sub.add_parser(
        "record",
        help="sample stacks of a process, a command or the whole machine",
        description="Sample stacks on a timer and write flame graphs, folded stacks or speedscope JSON.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cliargs.add_targets(rec)
    smp = cliargs.add_sampling(rec)
    smp.add_argument(
        "-e",
        "--event",
        default="cpu-clock",
        metavar="EVENT",
        help="sample on this event's overflow (default cpu-clock): cycles, cache-misses, page-faults, "
        "rNNN, pmu/event=0x..,umask=0x../, with :u or :k; bpfprof list shows what works here",
    )
    smp.add_argument(
        "--fallback",
        action="store_true",
        help="if the machine has no hardware counters for -e, sample cpu-clock instead (and say so)",
    )
    smp.add_argument(
        "--call-graph",
        default="fp",
        metavar="fp|dwarf[,SIZE]",
        help="user stacks by frame pointers (fp, the default) or by unwinding a SIZE-byte copy of the "
        "stack with the binaries' DWARF CFI (dwarf; SIZE a multiple of 4096 up to 65536, default 16384): "
        "complete stacks for code built without frame pointers",
    )
    cliargs.add_output(rec, default_output="bpfprof-DATE-TIME.svg", default_title="the command or 'bpfprof'")
    cliargs.add_symbols(rec)
    cliargs.add_debug(rec)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


@dataclass
class OutputTarget:
    path: str
    fmt: str


@dataclass
class RecordArgs:
    ns: argparse.Namespace
    command: list[str] = field(default_factory=list)


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``record ... -- CMD ARGS`` at the first ``--``."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def resolve_outputs(paths: list[str], fmt: str | None, default_stem: str) -> list[OutputTarget]:
    from exporters.output import format_for_path

    if not paths:
        paths = [f"{default_stem}.svg" if fmt in (None, "svg") else f"{default_stem}.{fmt}"]
    targets = []
    for p in paths:
        if p == "-":
            targets.append(OutputTarget("-", fmt or "folded"))
            continue
        try:
            # .bpfprof: the raw recording itself (profiler/saved.py), for `bpfprof report`
            saved = fmt is None and p.lower().endswith(".bpfprof")
            targets.append(OutputTarget(p, "bpfprof" if saved else format_for_path(p, fmt)))
        except ValueError as exc:
            raise UserError(str(exc), 2) from None
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            raise UserError(f"cannot write {p}: directory {parent} does not exist", 2)
        if not os.access(parent, os.W_OK):
            raise UserError(f"cannot write {p}: directory {parent} is not writable", 2)
    return targets


DWARF_DEFAULT_SIZE = 16384


def parse_call_graph(text: str) -> int:
    """``fp`` -> 0; ``dwarf`` -> 16384; ``dwarf,SIZE`` -> SIZE (bytes of user stack per sample)."""
    from profiler.bpf.abi import DWARF_STACK_MAX

    mode, _, size = text.partition(",")
    if mode == "fp" and not size:
        return 0
    if mode != "dwarf":
        raise UserError(f"--call-graph {text!r}: use fp or dwarf[,SIZE]", 2)
    if not size:
        return DWARF_DEFAULT_SIZE
    if not size.isdigit() or int(size) % 4096 or not 4096 <= int(size) <= DWARF_STACK_MAX:
        raise UserError(
            f"--call-graph dwarf,{size}: SIZE is the bytes of stack copied per sample, a multiple of 4096 "
            f"from 4096 to {DWARF_STACK_MAX}",
            2,
        )
    return int(size)


def build_record_options(ns: argparse.Namespace, command: list[str]):
    from profiler.perf_event import SamplingSpec, max_sample_rate, online_cpus, parse_cpu_list
    from profiler.record import RecordOptions
    from profiler.targets import parse_pid_list

    pids = [pid for text in ns.pid for pid in parse_pid_list(text)]
    if pids and command:
        raise UserError("give either -p PID or -- COMMAND, not both", 2)
    if ns.all_cpus and (pids or command):
        raise UserError("-a profiles the whole machine; drop it to profile -p PID or -- COMMAND", 2)
    if ns.frequency and ns.period:
        raise UserError("give either -F HZ or -c PERIOD, not both", 2)
    if ns.user_stacks_only and ns.kernel_stacks_only:
        raise UserError("-U and -K exclude each other: drop one", 2)
    limit = max_sample_rate()
    if ns.frequency and ns.frequency > limit:
        raise UserError(
            f"-F {ns.frequency} is above kernel.perf_event_max_sample_rate ({limit}); lower -F", 2
        )
    from profiler.events import EventError, default_period, parse_event_list

    try:
        events = parse_event_list(ns.event)
    except EventError as exc:
        raise UserError(str(exc), 2) from None
    if len(events) != 1:
        raise UserError(f"-e {ns.event}: record samples one event; count several with bpfprof stat", 2)
    event = events[0]
    if event.is_timer and ns.period is not None and ns.period < 10_000:
        raise UserError(f"-c {ns.period}: a {event.name} period below 10000 ns (100 kHz) is too short", 2)
    online = online_cpus()
    if ns.cpu:
        try:
            cpus = parse_cpu_list(ns.cpu)
        except ValueError as exc:
            raise UserError(str(exc), 2) from None
        offline = [c for c in cpus if c not in online]
        if offline:
            raise UserError(f"CPU {offline[0]} is not online (online: {','.join(map(str, online))})", 2)
    else:
        cpus = online
    if ns.period:
        sampling = SamplingSpec(frequency=None, period=ns.period)
    elif ns.frequency or event.is_timer:
        sampling = SamplingSpec(ns.frequency or 99)
    else:  # a counter without -c or -F: a fixed period suited to the event's rate
        sampling = SamplingSpec(frequency=None, period=default_period(event))
    dwarf_stack_size = parse_call_graph(ns.call_graph)
    return RecordOptions(
        pids=pids,
        command=command,
        event=event,
        sampling=sampling,
        cpus=cpus,
        duration_s=ns.duration,
        include_idle=ns.include_idle,
        user_stacks=not ns.kernel_stacks_only,
        kernel_stacks=not ns.user_stacks_only,
        stack_storage_size=ns.stack_storage_size,
        counts_size=ns.counts_size,
        dwarf_stack_size=dwarf_stack_size,
    )


def _settle_event(opts, ns: argparse.Namespace) -> None:
    """A hardware -e that cannot open here: one sentence, or cpu-clock with --fallback (said on stderr)."""
    from profiler.events import settle_event
    from profiler.perf_event import PerfEventError, probe_event

    try:
        settled = settle_event(opts.event, opts.sampling, fallback=ns.fallback, probe=probe_event)
    except PerfEventError as exc:
        raise UserError(str(exc), 1) from None
    opts.event, opts.sampling = settled.event, settled.sampling
    if settled.note:
        print(f"bpfprof: {settled.note}", file=sys.stderr)


def cmd_record(ns: argparse.Namespace, command: list[str]) -> int:
    from profiler.progress import Progress
    from profiler.record import StopFlag, live_stats, preflight, record

    preflight()  # before the symbolizer pulls in numpy: a non-root user hears why at once
    opts = build_record_options(ns, command)
    _settle_event(opts, ns)
    stem = "bpfprof-" + time.strftime("%Y%m%d-%H%M%S")
    outputs = resolve_outputs(ns.output, ns.format, stem)

    from profiler.symbolize import LazySymbolizer

    for d in ns.debuginfo_dir:
        if not os.path.isdir(d):
            raise UserError(f"--debuginfo-dir {d}: no such directory", 2)
    symbolizer_options = {"lines": ns.lines, "demangle": not ns.no_demangle, "debug_dirs": ns.debuginfo_dir}
    # a status line on a terminal; not with -- COMMAND, whose output would run into it
    progress = Progress(sys.stderr, enabled=not ns.quiet and not command)
    with LazySymbolizer(**symbolizer_options) as symbolizers, StopFlag() as stop, progress:

        def on_tick(sampler, elapsed: float) -> None:
            symbolizers.on_tick(sampler, elapsed)
            progress.tick(elapsed, lambda: live_stats(sampler))

        dwarf = None
        if opts.dwarf_stack_size:
            from profiler.dwarf import DwarfAggregator

            dwarf = DwarfAggregator(symbolizers.current)
        from profiler.retire import Retirer

        # exited processes are symbolized and forgotten while recording, unless a .bpfprof output
        # needs every capture at the end (profiler/retire.py)
        keep_all = any(o.fmt == "bpfprof" for o in outputs)
        retirer = Retirer(symbolizers, lines=ns.lines, dwarf=dwarf, enabled=not keep_all)
        result = record(
            opts,
            stop,
            on_new_process=symbolizers.on_new_process,
            on_tick=on_tick,
            on_attached=lambda: symbolizers.warm_up(kernel=opts.kernel_stacks),
            dwarf=dwarf,
            retirer=retirer,
        )
        progress.clear()
        if result.command is not None and result.command.terminate() and not ns.quiet:
            print("bpfprof: the recording ended before the command: ended it with SIGTERM", file=sys.stderr)
        t_stop = time.monotonic()
        symbolizer = symbolizers.wait()
        profile = _symbolize(result, symbolizer, opts, ns)
        retirer.finish(result.raw, profile)
        symbolizers.fill_processes(profile.meta)
        recordings = [o for o in outputs if o.fmt == "bpfprof"]
        written = _write_outputs(profile, [o for o in outputs if o.fmt != "bpfprof"], ns)
        written += _save_recordings(result, symbolizer, profile, opts, recordings)
        if not ns.quiet:
            from profiler.summary import print_summary

            print_summary(result, profile, opts, written, time.monotonic() - t_stop, sys.stderr)
            if retirer.note():
                print(f"note: {retirer.note()}", file=sys.stderr)
    if result.command is not None:
        return result.command.exit_code
    return 0


def _symbolize(result, symbolizer, opts, ns):
    from exporters.model import ProfileMeta
    from profiler.symbolize import symbolize_profile

    meta = ProfileMeta(
        event=opts.event.name,
        period_unit="nanoseconds" if opts.event.is_timer else "events",
        frequency_hz=opts.sampling.frequency,
        period=opts.sampling.period,
        duration_s=result.raw.duration_s,
        start_time_ns=time.time_ns() - int(result.raw.duration_s * 1e9),
        command=opts.command,
    )
    return symbolize_profile(result.raw, symbolizer, meta, lines=ns.lines, final=True)


def _save_recordings(result, symbolizer, profile, opts, outputs: list[OutputTarget]) -> list[OutputTarget]:
    """Write the raw recording (profiler/saved.py) to each .bpfprof output."""
    if not outputs:
        return []
    from profiler import saved

    recording = saved.from_run(result, symbolizer, profile.meta, opts)
    for out in outputs:
        try:
            saved.save(out.path, recording)
        except OSError as exc:
            raise UserError(f"cannot write {out.path}: {exc.strerror or exc}", 1) from exc
    return outputs


def _write_outputs(profile, outputs: list[OutputTarget], ns: argparse.Namespace) -> list[OutputTarget]:
    from exporters.folded import FoldedOptions, write_folded
    from exporters.output import write_profile
    from exporters.roots import with_roots
    from exporters.svg import SvgOptions

    folded_options = FoldedOptions(
        delimit=ns.delimit, annotate_kernel=ns.annotate_kernel, lines=ns.lines, weight=ns.weight or "samples"
    )
    title = ns.title or (" ".join(profile.meta.command) if profile.meta.command else "bpfprof")
    count_name = "samples"
    if ns.weight == "period":
        count_name = "ns" if profile.meta.period_unit == "nanoseconds" else "events"
    svg_options = SvgOptions(title=title, delimit=ns.delimit, lines=ns.lines, count_name=count_name)
    written = []
    # py-spy's roots in the stack-drawing formats; speedscope names a profile per process instead
    rooted = with_roots(profile, threads=ns.threads, processes=ns.processes)
    for out in outputs:
        if out.path == "-":
            write_folded(rooted, sys.stdout, folded_options)
            sys.stdout.flush()
            continue
        try:
            write_profile(
                profile if out.fmt == "speedscope" else rooted, out.path, out.fmt,
                folded_options=folded_options, svg_options=svg_options,
                weight=ns.weight,
            )  # fmt: skip
        except OSError as exc:
            raise UserError(f"cannot write {out.path}: {exc.strerror or exc}", 1) from exc
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    head, command = split_command(argv)
    debug = "--debug" in head
    try:
        ns = build_parser().parse_args(head)
        if ns.cmd is None:
            build_parser().print_help(sys.stderr)
            return 2
        if "--" in argv and not command:
            raise UserError("nothing after --: give the command to run, e.g. -- ./prog args", 2)
        if ns.cmd == "record":
            # Outside the recording (where StopFlag turns it into "stop and write"), a Ctrl-C ends the
            # process the plain way: never a KeyboardInterrupt traceback from a half-done exit (issue #7)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            return cmd_record(ns, command)
        if getattr(ns, "run", None) is not None:
            return ns.run(ns, command)
        raise UserError(f"unknown command {ns.cmd!r}", 2)
    except UserError as exc:
        if debug:
            raise
        print(f"bpfprof: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("bpfprof: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            raise
        print(
            f"bpfprof: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
            file=sys.stderr,
        )
        return 70
