"""`bpfprof diff BEFORE AFTER`: a differential flame graph (or two-column folded) of two folded profiles."""

from __future__ import annotations

import argparse
import os
import sys

from profiler.errors import UserError

EXAMPLES = """\
examples:
  bpfprof diff before.folded after.folded -o diff.svg     red grew, blue shrank; widths of after
  bpfprof diff after.folded before.folded -o gone.svg     widths of before: shows what disappeared
  bpfprof diff before.folded after.folded > diff.folded   'stack BEFORE AFTER' lines (difffolded.pl)
"""

DIFF_FORMATS = {".svg": "svg", ".folded": "folded", ".txt": "folded"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="differential flame graph of two folded profiles",
        description="Compare two folded profiles: the after profile's flame graph, each frame coloured by "
        "the change of its self samples (red grew, blue shrank), before normalised to after's total, "
        "as flamegraph.pl draws difffolded.pl's output.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("before", metavar="BEFORE", help="folded stacks of the baseline ('-' for stdin)")
    parser.add_argument("after", metavar="AFTER", help="folded stacks to compare with it")
    parser.add_argument(
        "-o",
        "--output",
        default="-",
        metavar="PATH",
        help="write here: .svg a flame graph, .folded/.txt 'stack BEFORE AFTER' lines; - (the default) "
        "writes the folded lines to stdout",
    )
    parser.add_argument(
        "-f", "--format", choices=["svg", "folded"], help="format of -o regardless of its extension"
    )
    parser.add_argument(
        "--no-normalize",
        action="store_true",
        help="compare raw counts (default: scale BEFORE to AFTER's total, difffolded.pl -n)",
    )
    parser.add_argument("--title", default="Differential Flame Graph", help="SVG title")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(run=run)


def _output_format(path: str, explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    if path == "-":
        return "folded"
    ext = os.path.splitext(path)[1].lower()
    if ext not in DIFF_FORMATS:
        raise UserError(
            f"cannot tell the output format of {path!r} from its extension: name it .svg, .folded or .txt, "
            "or choose with -f svg|folded",
            2,
        )
    return DIFF_FORMATS[ext]


def read_folded_file(path: str) -> dict[tuple[str, ...], int]:
    """The stacks of a folded file (``-``: stdin); UserError with one sentence when it cannot be used."""
    from exporters.folded import parse_folded

    try:
        if path == "-":
            stacks = parse_folded(sys.stdin)
        else:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                stacks = parse_folded(f)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a folded stacks file: it is not text", 2) from None
    except ValueError as exc:
        raise UserError(f"{path} is not a folded stacks file: {exc}", 2) from None
    if not any(c > 0 for c in stacks.values()):
        raise UserError(f"{path} holds no samples: nothing to compare", 2)
    # "a;b 3 5" parses as frame "b 3" with 5 samples: a two-column diff file given back as input.
    if all(_ends_in_number(stack[-1]) for stack in stacks):
        raise UserError(
            f"{path} has two counts per line (a diff's output?): give the folded profiles it was made from",
            2,
        )
    return stacks


def _ends_in_number(frame: str) -> bool:
    head, _, tail = frame.rpartition(" ")
    return bool(head) and tail.isdigit()


def run(ns: argparse.Namespace, command: list[str]) -> int:
    if command:
        raise UserError("bpfprof diff takes no command after --", 2)
    if ns.before == "-" and ns.after == "-":
        raise UserError("only one of BEFORE and AFTER can be read from stdin", 2)
    fmt = _output_format(ns.output, ns.format)
    if ns.output != "-":
        parent = os.path.dirname(os.path.abspath(ns.output))
        if not os.path.isdir(parent):
            raise UserError(f"cannot write {ns.output}: directory {parent} does not exist", 2)
    before = read_folded_file(ns.before)
    after = read_folded_file(ns.after)

    from exporters.diff import diff_stacks, write_diff_folded, write_diff_svg
    from exporters.output import write_atomic
    from exporters.svg import SvgOptions

    diff = diff_stacks(before, after, normalize=not ns.no_normalize)

    def write(stream) -> None:
        if fmt == "svg":
            write_diff_svg(diff, stream, SvgOptions(title=ns.title))
        else:
            write_diff_folded(diff, stream)

    if ns.output == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return 0
    try:
        write_atomic(ns.output, write)
    except OSError as exc:
        raise UserError(f"cannot write {ns.output}: {exc.strerror or exc}", 1) from None
    return 0
