"""`bpfprof doctor`: what will work on this machine, and (with --binary/-p) how stacks of a program unwind."""

from __future__ import annotations

import argparse

from profiler.argtypes import positive_int

EXAMPLES = """\
examples:
  bpfprof doctor                          root, BTF, libbpf, perf events, kallsyms, PMU, probes
  bpfprof doctor --binary ./app           frame pointers, unwind tables, symbols, debug files of ./app
  bpfprof doctor -p 1234                  the same for every binary and library process 1234 maps
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check what bpfprof can do here, and how a program's stacks unwind",
        description="Check, one line each (OK/WARN/FAIL), what bpfprof needs on this machine; with --binary "
        "or -p, measure which modules keep frame pointers and have unwind tables, symbols and debug files. "
        "Exits 1 when something bpfprof needs is missing.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--binary", action="append", default=[], metavar="PATH", help="an ELF binary or library (repeatable)"
    )
    parser.add_argument(
        "-p", "--pid", type=positive_int("the PID"), metavar="PID", help="every executable file PID maps"
    )
    parser.add_argument("--no-system", action="store_true", help="skip the machine checks; only --binary/-p")
    parser.add_argument(
        "--debuginfo-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also look for separate debug files here (repeatable)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(run=run)


def run(ns: argparse.Namespace, command: list[str]) -> int:
    from profiler.doctor import main

    return main(ns, command)
