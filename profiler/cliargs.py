"""The argument groups that several subcommands share (record, top, report): one definition each."""

from __future__ import annotations

import argparse

from profiler.argtypes import positive_float, positive_int

FORMAT_CHOICES = ["folded", "speedscope", "svg", "pprof"]


def add_targets(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """-p, -a, -C."""
    tgt = parser.add_argument_group("targets (default: the whole machine)")
    tgt.add_argument(
        "-p",
        "--pid",
        action="append",
        default=[],
        metavar="PID[,PID...]",
        help="these running processes and all their threads, and threads created later (repeatable)",
    )
    tgt.add_argument("-a", "--all-cpus", action="store_true", help="the whole machine (the default)")
    tgt.add_argument("-C", "--cpu", metavar="LIST", help="only these CPUs, e.g. 0-3,6 (default: all online)")
    return tgt


def add_sampling(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """-F, -c, -d, -U, -K, -I and the kernel map sizes; the caller adds its own event/call-graph flags."""
    smp = parser.add_argument_group("sampling")
    smp.add_argument(
        "-F",
        "--frequency",
        type=positive_int("the frequency"),
        metavar="HZ",
        help="samples per second per CPU (default 99)",
    )
    smp.add_argument(
        "-c",
        "--period",
        type=positive_int("the period"),
        metavar="PERIOD",
        help="sample every PERIOD events instead of -F (nanoseconds of CPU time for cpu-clock/task-clock)",
    )
    smp.add_argument(
        "-d",
        "--duration",
        type=positive_float,
        metavar="SEC",
        help="stop after SEC seconds (default: Ctrl-C, or when the targets exit)",
    )
    smp.add_argument(
        "-U", "--user-stacks-only", action="store_true", help="user stacks only (no kernel frames)"
    )
    smp.add_argument("-K", "--kernel-stacks-only", action="store_true", help="kernel stacks only")
    smp.add_argument("-I", "--include-idle", action="store_true", help="keep samples of the idle task")
    smp.add_argument(
        "--stack-storage-size",
        type=positive_int("the stack storage size"),
        default=16384,
        metavar="N",
        help="unique stacks the kernel can hold (default 16384)",
    )
    smp.add_argument(
        "--counts-size",
        type=positive_int("the counts size"),
        default=40960,
        metavar="N",
        help="unique (thread, stack) keys the kernel can count (default 40960)",
    )
    return smp


def add_output(
    parser: argparse.ArgumentParser, *, default_output: str, default_title: str
) -> argparse._ArgumentGroup:
    """-o, -f, --delimit, --annotate-kernel, --threads, --processes, --title, --weight, -q."""
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        metavar="PATH",
        help="write here; the format follows the extension (.svg, .folded/.txt, .speedscope.json/.json, "
        f".pb.gz/.pprof, .bpfprof); repeatable; - writes folded stacks to stdout (default: {default_output})",
    )
    out.add_argument(
        "-f", "--format", choices=FORMAT_CHOICES, help="format for every -o regardless of extension"
    )
    out.add_argument("--delimit", action="store_true", help="folded/svg: a '-' frame between user and kernel")
    out.add_argument("--annotate-kernel", action="store_true", help="folded/svg: add _[k] to kernel frames")
    out.add_argument(
        "--threads", action="store_true", help="folded/svg/pprof: a 'thread (TID): NAME' root (py-spy)"
    )
    out.add_argument(
        "--processes",
        action="store_true",
        help="folded/svg/pprof: 'process PID:\"CMDLINE\"' roots, parents first (py-spy --subprocesses)",
    )
    out.add_argument("--title", help=f"SVG title (default: {default_title})")
    out.add_argument(
        "--weight",
        choices=["samples", "period"],
        help="weigh stacks by samples or by summed periods (events; ns for cpu-clock); "
        "default: samples for folded and svg, period for speedscope",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    return out


def add_symbols(parser: argparse.ArgumentParser, *, lines: bool = True) -> argparse._ArgumentGroup:
    """--lines (unless ``lines`` is False), --no-demangle, --debuginfo-dir."""
    sym = parser.add_argument_group("symbols")
    if lines:
        sym.add_argument(
            "--lines",
            action="store_true",
            help="frames as 'function (file.c:LINE)' from DWARF, inlined calls as frames of their own",
        )
    sym.add_argument("--no-demangle", action="store_true", help="keep C++ and Rust names mangled")
    sym.add_argument(
        "--debuginfo-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also look for separate debug files here, by build-id (DIR/.build-id/xx/rest.debug) or "
        "debuglink (repeatable); /usr/lib/debug and $DEBUGINFOD_URLS are searched too",
    )
    return sym


def add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks and libbpf's log")
