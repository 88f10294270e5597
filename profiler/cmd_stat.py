"""`bpfprof stat`: count events like perf stat, system-wide, per CPU, or exactly per process/thread."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from profiler.argtypes import positive_float, positive_int
from profiler.errors import UserError

EXAMPLES = """\
examples:
  bpfprof stat -a -d 5                                     perf stat's default events, whole machine
  bpfprof stat -e page-faults,context-switches -- ./prog   a command and its children
  bpfprof stat -e task-clock,page-faults --by pid -a -d 2  exact counts per process, machine-wide
  bpfprof stat -p 1234 -I 1000 --csv                       a running process, every second, as CSV
  bpfprof stat -e cycles,instructions --json -o s.json -a  IPC (needs hardware counters)
"""

INTERVAL_MIN_MS = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stat",
        help="count events (page faults, context switches, cycles...) like perf stat",
        description="Count events like perf stat: system-wide, per CPU, or exactly per process or thread "
        "(a BPF program charges each counter's delta to the task that ran, at every context switch). "
        "Counts are scaled for multiplexing (value * enabled / running), with the % running shown.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-e",
        "--event",
        action="append",
        default=[],
        metavar="EV[,EV...]",
        help="events to count (repeatable); default: perf stat's list (task-clock, context-switches, "
        "cpu-migrations, page-faults, and cycles, instructions, branches, branch-misses where they open)",
    )
    tgt = p.add_argument_group("targets (default: the whole machine)")
    tgt.add_argument(
        "-p",
        "--pid",
        action="append",
        default=[],
        metavar="PID[,PID...]",
        help="count these processes: all their threads, and children they start (repeatable)",
    )
    tgt.add_argument(
        "-a",
        "--all-cpus",
        action="store_true",
        help="count the whole machine (the default; with -- COMMAND: the whole machine while it runs)",
    )
    p.add_argument("-d", "--duration", type=positive_float, metavar="SEC", help="stop after SEC seconds")
    p.add_argument(
        "-I",
        "--interval",
        type=positive_int("the interval"),
        metavar="MS",
        help=f"print the counts of every MS milliseconds (at least {INTERVAL_MIN_MS})",
    )
    p.add_argument(
        "--by",
        choices=["none", "pid", "tid", "cpu"],
        default="none",
        help="break counts down per process, per thread (exact, by a BPF program on context switches) "
        "or per CPU (-a only); default none",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document (schema: docs/stat-json.md)")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header line")
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="write the report here (atomically); - for stdout; default: stderr, as perf stat",
    )
    p.add_argument(
        "--tasks-size",
        type=positive_int("the tasks size"),
        default=16384,
        metavar="N",
        help="processes/threads the kernel can count apart (default 16384); more go to [other]",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and libbpf's log")
    p.set_defaults(run=run)


def build_options(ns: argparse.Namespace, command: list[str]):
    """Flags -> StatOptions; every conflict is one sentence and exit code 2."""
    from profiler.events import EventError, is_hardware, parse_event_list
    from profiler.stat import DEFAULT_EVENTS, By, StatOptions
    from profiler.targets import parse_pid_list

    pids = [pid for text in ns.pid for pid in parse_pid_list(text)]
    if pids and command:
        raise UserError("give either -p PID or -- COMMAND, not both", 2)
    if ns.all_cpus and pids:
        raise UserError("-a counts the whole machine; drop it to count -p PID", 2)
    system_wide = ns.all_cpus or not (pids or command)
    by = By(ns.by)
    if by is By.CPU and not system_wide:
        raise UserError("--by cpu breaks down machine-wide counts: add -a (or drop -p/the command)", 2)
    if ns.interval is not None and ns.interval < INTERVAL_MIN_MS:
        raise UserError(f"-I {ns.interval}: the interval must be at least {INTERVAL_MIN_MS} ms", 2)
    try:
        if ns.event:
            specs = parse_event_list(",".join(ns.event))
            required = [True] * len(specs)
        else:
            specs = parse_event_list(DEFAULT_EVENTS)
            required = [not is_hardware(s) for s in specs]
    except EventError as exc:
        raise UserError(str(exc), 2) from None
    return StatOptions(
        events=specs,
        required=required,
        pids=pids,
        command=command,
        system_wide=system_wide,
        by=by,
        duration_s=ns.duration,
        interval_ms=ns.interval,
        tasks_size=ns.tasks_size,
    )


def _check_output(path: str | None) -> None:
    if path is None or path == "-":
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserError(f"cannot write {path}: directory {parent} does not exist", 2)
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: directory {parent} is not writable", 2)


class _StopFlag:
    """Set by SIGINT/SIGTERM/SIGHUP while installed (record's StopFlag, without importing record's
    sampler: stat starts counting sooner)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.set = False
        self._saved: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        for sig in self.SIGNALS:
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.set = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def run(ns: argparse.Namespace, command: list[str]) -> int:
    from profiler.perf_event import online_cpus
    from profiler.stat import Snapshot, StatEvent, StatResult, run_stat

    opts = build_options(ns, command)
    _check_output(ns.output)
    stream = sys.stdout if ns.output == "-" else sys.stderr
    to_file = ns.output not in (None, "-")
    kept: list[str] = []  # interval lines, written at the end when the report goes to a file
    shell: list[StatResult] = []  # the session's events and options, for the interval formatter

    def emit(text: str) -> None:
        if to_file:
            kept.append(text)
        else:
            stream.write(text)
            stream.flush()

    def on_interval(events: list[StatEvent], time_s: float, snap: Snapshot) -> None:
        if ns.json:
            return  # intervals go into the one document
        from profiler import stat_report as report

        first = not shell
        if first:
            shell.append(StatResult(events, opts, snap, [], None, "", {}, 0.0))
        if ns.csv:
            emit(report.format_csv_interval(shell[0], time_s, snap, header=first))
            return
        if first:
            emit(report.interval_header(shell[0]))
        emit(report.format_interval(shell[0], time_s, snap))

    with _StopFlag() as stop:
        result = run_stat(opts, stop, online_cpus(), on_interval=on_interval)
    from profiler import stat_report as report

    if ns.json:
        text = report.format_json(result)
    elif opts.interval_ms:
        text = ""  # already printed, interval by interval
    else:
        text = report.format_csv(result) if ns.csv else report.format_table(result)
    if to_file:
        from exporters.output import write_atomic

        content = "".join(kept) + text
        try:
            write_atomic(ns.output, lambda f: f.write(content))
        except OSError as exc:
            raise UserError(f"cannot write {ns.output}: {exc.strerror or exc}", 1) from exc
    elif text:
        stream.write(text)
        stream.flush()
    return result.exit_code
