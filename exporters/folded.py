"""Folded stacks (bcc ``profile -f``, flamegraph.pl, inferno): one ``frame;...;leaf COUNT`` line per stack.

A line is ``comm;user frames root->leaf[;-];kernel frames root->leaf COUNT``: the root frame is the
process name (``[unknown]`` when empty), ``-`` sits between the user and the kernel part when
``FoldedOptions.delimit`` is set and both parts are real stacks (bcc ``-d``), and kernel frames end in
``_[k]`` with ``FoldedOptions.annotate_kernel`` (bcc ``-a``). COUNT is the number of samples, an
integer, so speedscope's importer (which rejects decimals) reads it too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TextIO

from exporters.model import Profile, Sample
from unwind.frame import MISSED_KERNEL, Frame, FrameKind

DELIMITER = "-"
KERNEL_ANNOTATION = "_[k]"
UNKNOWN_COMM = "[unknown]"

Stack = tuple[str, ...]

_WHITESPACE = re.compile(r"\s+")
# C0 controls and DEL are left after whitespace folding; they break terminals and XML (SVG titles).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A name ending in " 12" (or " 1.5") looks like a count: "a;foo 12 5" misleads any reader that does not
# take the last space-separated token; "foo_12" cannot be misread.
_TRAILING_NUMBER = re.compile(r" (?=\d[\d.]*$)")
# flamegraph.pl's own line grammar (stackcollapse output), integer counts only.
_LINE = re.compile(r"^(.*)\s+(\d+)$")


@dataclass(frozen=True, slots=True)
class FoldedOptions:
    """How stacks are rendered as folded lines.

    ``delimit`` adds ``-`` between user and kernel frames (bcc ``-d``); ``annotate_kernel`` suffixes
    kernel frames with ``_[k]`` (bcc ``-a``); ``lines`` renders frames that have a source line as
    ``name (file.c:LINE)`` (py-spy's raw format). ``weight`` is what COUNT is: ``samples``, or
    ``period``, the summed sample periods (events for a counter, ns for cpu-clock).
    """

    delimit: bool = False
    lines: bool = False
    annotate_kernel: bool = False
    weight: str = "samples"


def sanitize_name(name: str) -> str:
    """A frame name safe in a folded line: no ``;``, no line breaks, no trailing `` NUMBER``.

    ``;`` becomes ``:``, whitespace runs become one space (and are stripped at the ends), control
    characters become ``?``, a space before a trailing number becomes ``_`` (``foo 12`` -> ``foo_12``),
    and an empty result is ``[unknown]``.
    """
    name = _WHITESPACE.sub(" ", name.replace(";", ":")).strip()
    name = _CONTROL.sub("?", name)
    name = _TRAILING_NUMBER.sub("_", name)
    return name or UNKNOWN_COMM


def _split_user_kernel(frames: tuple[Frame, ...]) -> tuple[tuple[Frame, ...], tuple[Frame, ...]]:
    """The user part and the kernel part of a root-first stack (kernel part starts at its first frame)."""
    for i, frame in enumerate(frames):
        if frame.kind is FrameKind.KERNEL or frame == MISSED_KERNEL:
            return frames[:i], frames[i:]
    return frames, ()


def fold_sample(sample: Sample, options: FoldedOptions) -> tuple[Stack, tuple[FrameKind, ...]]:
    """The rendered names of a sample's stack, root (the comm) first, with the kind of each name.

    The comm root and the ``-`` delimiter are MARKER frames. As in bcc, the delimiter is added only
    when both the user and the kernel part hold real frames (not a ``[Missed ... Stack]`` marker).
    """
    names: list[str] = [sanitize_name(sample.comm)]
    kinds: list[FrameKind] = [FrameKind.MARKER]
    user, kernel = _split_user_kernel(sample.frames)
    delimit = (
        options.delimit
        and any(f.kind is FrameKind.USER for f in user)
        and any(f.kind is FrameKind.KERNEL for f in kernel)
    )
    for frame in user:
        names.append(sanitize_name(frame.label(lines=options.lines)))
        kinds.append(frame.kind)
    if delimit:
        names.append(DELIMITER)
        kinds.append(FrameKind.MARKER)
    for frame in kernel:
        name = sanitize_name(frame.label(lines=options.lines))
        if options.annotate_kernel and frame.kind is FrameKind.KERNEL:
            name += KERNEL_ANNOTATION
        names.append(name)
        kinds.append(frame.kind)
    return tuple(names), tuple(kinds)


def fold_profile(profile: Profile, options: FoldedOptions) -> dict[Stack, int]:
    """Counts (``options.weight``) by rendered stack; samples of threads or pids that render alike merge."""
    stacks: dict[Stack, int] = {}
    for sample, weight in profile.samples.items():
        count = weight.by(options.weight)
        if count <= 0:
            continue
        stack, _ = fold_sample(sample, options)
        stacks[stack] = stacks.get(stack, 0) + count
    return stacks


def write_folded_stacks(stacks: Mapping[Stack, int], stream: TextIO) -> None:
    """Write ``frame;...;leaf COUNT`` lines, sorted by their text, skipping zero counts.

    Names are written as given: callers pass names from ``sanitize_name`` or ``parse_folded``.
    """
    counts: dict[str, int] = {}
    for stack, count in stacks.items():
        if count > 0:
            line = ";".join(stack)
            counts[line] = counts.get(line, 0) + count
    stream.writelines(f"{line} {counts[line]}\n" for line in sorted(counts))


def write_folded(profile: Profile, stream: TextIO, options: FoldedOptions | None = None) -> None:
    """Write a profile as folded stacks, bcc ``profile -f`` style, one sorted line per unique stack."""
    write_folded_stacks(fold_profile(profile, options or FoldedOptions()), stream)


def parse_folded(stream: Iterable[str]) -> dict[Stack, int]:
    """Read folded stacks back: stack (root first) -> summed count.

    Grammar, per line: ``FRAMES WS+ COUNT`` as flamegraph.pl matches it (``^(.*)\\s+(\\d+)$``), FRAMES
    split at ``;`` into frame names, COUNT a non-negative decimal integer; surrounding whitespace is
    ignored and blank lines are skipped. Repeated stacks add up. A line without an integer count or
    without frames raises ValueError naming its (1-based) line number.
    """
    stacks: dict[Stack, int] = {}
    for number, raw in enumerate(stream, start=1):
        line = raw.strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"line {number}: expected 'frame;frame;... COUNT' with an integer COUNT")
        frames, count = match.group(1).strip(), int(match.group(2))
        if not frames:
            raise ValueError(f"line {number}: a count without any frames")
        stack = tuple(frames.split(";"))
        stacks[stack] = stacks.get(stack, 0) + count
    return stacks
