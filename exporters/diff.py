"""Differential flame graphs of two folded profiles, with the semantics of flamegraph.pl's differentials.

``difffolded.pl before after | flamegraph.pl`` draws the frames of the *second* (after) profile, with
its widths, and colours each frame by its delta: the after count of the stack that ends in it (its self
samples) minus the before count, red where it grew, blue where it shrank, white where it held; the
saturation is ``|delta| / max |delta|`` over all stacks, so the largest change is the deepest colour.
With normalisation (difffolded ``-n``, our default) the before counts are first scaled by
``total_after / total_before``, so the delta of a frame is the change of its share of the profile,
whatever the two recordings' lengths. Stacks found only in the before profile have no width in the
after one and are not drawn; the subtitle says how many samples that leaves out (draw the reverse
diff to see them).

The two-column folded form (``stack BEFORE AFTER``, before normalised by integer truncation, as
difffolded.pl prints it) is what flamegraph.pl and inferno-flamegraph read back as a differential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from exporters.folded import Stack
from exporters.svg import FrameStyle, SvgOptions, write_svg_from_folded

# flamegraph.pl's colour_scale: white at zero, 210 of each other channel taken away at the largest delta.
SCALE = 210
GREW_FILL = "rgb(255,45,45)"
SHRANK_FILL = "rgb(45,45,255)"
SAME_FILL = "rgb(255,255,255)"


@dataclass(slots=True)
class StackDiff:
    """Two profiles' counts per root-first stack, and the factor that puts ``before`` on ``after``'s scale.

    ``scale`` is ``total_after / total_before`` when normalised (1.0 when not, or when a side is empty).
    """

    before: dict[Stack, int]
    after: dict[Stack, int]
    total_before: int
    total_after: int
    normalized: bool
    scale: float
    self_delta: dict[Stack, float] = field(default_factory=dict)  # stack -> after - scale * before
    total_delta: dict[Stack, float] = field(default_factory=dict)  # frame path -> the same, inclusive

    @property
    def max_delta(self) -> float:
        """The largest ``|self delta|`` of any stack (flamegraph.pl's ``$maxdelta``, at least 1)."""
        return max((abs(d) for d in self.self_delta.values()), default=0.0) or 1.0

    def before_only(self) -> tuple[int, int]:
        """Stacks only the before profile has, and their before samples: what the after widths omit."""
        gone = [s for s, c in self.before.items() if c > 0 and self.after.get(s, 0) <= 0]
        return len(gone), sum(self.before[s] for s in gone)


def diff_stacks(before: Mapping[Stack, int], after: Mapping[Stack, int], normalize: bool = True) -> StackDiff:
    """Compare two folded profiles (root-first stack -> count); non-positive counts are dropped."""
    b = {s: c for s, c in before.items() if c > 0}
    a = {s: c for s, c in after.items() if c > 0}
    total_b, total_a = sum(b.values()), sum(a.values())
    scale = total_a / total_b if normalize and total_a and total_b else 1.0
    diff = StackDiff(b, a, total_b, total_a, normalize, scale)
    for stack in b.keys() | a.keys():
        delta = a.get(stack, 0) - scale * b.get(stack, 0)
        diff.self_delta[stack] = delta
        for depth in range(len(stack) + 1):
            path = stack[:depth]
            diff.total_delta[path] = diff.total_delta.get(path, 0.0) + delta
    return diff


def diff_fill(delta: float, max_delta: float) -> str:
    """flamegraph.pl's differential colour: red for growth, blue for shrinkage, white for none."""
    if max_delta <= 0 or delta == 0:
        return SAME_FILL
    fade = int(SCALE * (max_delta - min(abs(delta), max_delta)) / max_delta)
    return f"rgb(255,{fade},{fade})" if delta > 0 else f"rgb({fade},{fade},255)"


def _pct(delta: float, total: int) -> str:
    """A delta as a signed percentage of ``total`` with two decimals; ``0.00%`` has no sign."""
    value = 100 * delta / total if total else 0.0
    text = f"{value:.2f}"
    if text.lstrip("-") == "0.00":
        return "0.00%"
    return f"+{text}%" if value > 0 else f"{text}%"


def write_diff_folded(diff: StackDiff, stream: TextIO) -> None:
    """Write ``stack BEFORE AFTER`` lines, sorted by stack, as difffolded.pl does.

    BEFORE is scaled to the after total and truncated to an integer when the diff is normalised
    (``int(before * total_after / total_before)``, difffolded ``-n``); a missing side is 0.
    """
    for stack in sorted(diff.before.keys() | diff.after.keys()):
        b = diff.before.get(stack, 0)
        if diff.normalized and diff.total_before and diff.total_after:
            b = b * diff.total_after // diff.total_before
        stream.write(f"{';'.join(stack)} {b} {diff.after.get(stack, 0)}\n")


def diff_subtitle(diff: StackDiff) -> str:
    """One line: the two totals, what the widths and colours mean, and what is not drawn."""
    how = "share" if diff.normalized else "samples"
    text = (
        f"before {diff.total_before:,} samples, after {diff.total_after:,}; widths: after; colour: change in "
        f"self {how} (red grew, blue shrank)"
    )
    gone, gone_samples = diff.before_only()
    if gone:
        text += f"; {gone:,} stacks ({gone_samples:,} before samples) are gone and not drawn"
    return text


def write_diff_svg(diff: StackDiff, stream: TextIO, options: SvgOptions | None = None) -> None:
    """Draw the after profile's flame graph coloured by each frame's delta (see the module docstring).

    Titles read ``NAME (N samples, P%; self +D%, total +T%)``: N and P are the after profile's, D the
    change of the samples that end in the frame, T of all samples through it, both as a percentage of
    the after total (flamegraph.pl's ``$deltapct``; with normalisation, the change of share in points).
    """
    opt = options or SvgOptions(title="Differential Flame Graph")
    if opt.subtitle is None or opt.legend is None:
        from dataclasses import replace

        opt = replace(
            opt,
            subtitle=opt.subtitle if opt.subtitle is not None else diff_subtitle(diff),
            legend=opt.legend
            if opt.legend is not None
            else ((GREW_FILL, "grew"), (SHRANK_FILL, "shrank"), ("rgb(235,235,235)", "unchanged")),
        )
    max_delta = diff.max_delta
    total = diff.total_after

    def style(path: Stack) -> FrameStyle | None:
        if not path:
            return None
        own = diff.self_delta.get(path, 0.0)
        inclusive = diff.total_delta.get(path, 0.0)
        note = f"self {_pct(own, total)}, total {_pct(inclusive, total)}"
        return FrameStyle(diff_fill(own, max_delta), note)

    write_svg_from_folded(diff.after, stream, opt, style=style)
