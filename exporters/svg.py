"""SVG flame graph: self-contained, interactive (hover, click to zoom, regex search), like flamegraph.pl.

The root (``all``) is at the bottom and stacks grow upwards, as flamegraph.pl draws by default;
children sit left to right in name order; widths are proportional to sample counts, and frames
narrower than ``SvgOptions.min_width`` px are left out with everything above them. Each frame is a
``<g>`` of ``<title>NAME (N samples, P%)</title>`` (flamegraph.pl's wording), a ``<rect>`` and a
``<text>`` label cut to fit with ``..``. Colours: user frames warm (flamegraph.pl's "hot" range),
kernel frames aqua, process roots, missed-stack markers and the ``-`` delimiter grey; a frame's colour
follows from a hash of its name, so a function keeps its colour across graphs. The JavaScript and CSS
(``flamegraph.js``, ``flamegraph.css`` beside this module) are inlined: the file needs nothing else.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TextIO

from exporters.folded import DELIMITER, FoldedOptions, Stack, fold_sample
from exporters.model import Profile
from unwind.frame import FrameKind

# flamegraph.pl's layout constants: average glyph width as a share of the font size, paddings in px.
FONT_WIDTH = 0.59
X_PAD = 10
FRAME_PAD = 1
MARKER_FILL = "rgb(170,170,170)"
DELIMITER_FILL = "rgb(200,200,200)"
# flamegraph.pl annotations: kernel, waker, inlined, JIT; dropped from labels (colour tells the kernel).
_ANNOTATION = re.compile(r"_\[[kwij]\]$")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FONT_UNSAFE = re.compile(r"[^\w ,.-]")


@dataclass(frozen=True, slots=True)
class SvgOptions:
    """Look of the flame graph: sizes in px, ``count_name`` is the unit word in titles.

    ``delimit`` adds the bcc ``-`` frame between user and kernel frames and ``lines`` shows
    ``name (file.c:LINE)`` where known (``write_svg`` only).
    """

    title: str = "Flame Graph"
    subtitle: str | None = None
    width: int = 1200
    frame_height: int = 16
    font_size: int = 12
    font_type: str = "Verdana"
    min_width: float = 0.1
    count_name: str = "samples"
    delimit: bool = False
    lines: bool = False
    legend: tuple[tuple[str, str], ...] | None = None  # (fill, label) swatches; None: user/kernel/marker
    weight: str = "samples"  # write_svg's widths: "samples", or "period" (summed periods; set count_name)


@dataclass(frozen=True, slots=True)
class FrameStyle:
    """A frame drawn differently from its kind's colour: ``fill``, and ``note`` added to its title.

    The title becomes ``NAME (N samples, P%; NOTE)``, as flamegraph.pl writes a differential's delta.
    """

    fill: str
    note: str | None = None


# The style of the frame at a root-first path (``()`` is the root), or None for the normal colour.
Styler = Callable[[Stack], FrameStyle | None]


def guess_kind(name: str) -> FrameKind:
    """The kind of a folded frame name without other information: ``_[k]`` kernel, markers, else user."""
    if name.endswith("_[k]"):
        return FrameKind.KERNEL
    if name == DELIMITER or name.startswith("[Missed "):
        return FrameKind.MARKER
    return FrameKind.USER


def display_name(name: str) -> str:
    """A frame's name as drawn: without a flamegraph.pl ``_[k]``/``_[w]``/``_[i]``/``_[j]`` annotation."""
    return _ANNOTATION.sub("", name)


def frame_fill(name: str, kind: FrameKind) -> str:
    """The fill colour of a frame: hashed from its name within the range of its kind."""
    if kind is FrameKind.MARKER:
        return DELIMITER_FILL if name == DELIMITER else MARKER_FILL
    h = zlib.crc32(display_name(name).encode("utf-8", "surrogatepass"))
    v1, v2, v3 = (h & 0xFF) / 255, ((h >> 8) & 0xFF) / 255, ((h >> 16) & 0xFF) / 255
    if kind is FrameKind.KERNEL:
        return f"rgb({50 + int(60 * v1)},{165 + int(55 * v1)},{165 + int(55 * v2)})"
    return f"rgb({205 + int(50 * v3)},{int(230 * v1)},{int(55 * v2)})"


def fit_label(name: str, width: float, font_size: float) -> str:
    """The label that fits ``width`` px: the name, or its start and ``..``, or ``""`` below 3 characters."""
    chars = int(width / (font_size * FONT_WIDTH))
    if chars < 3:
        return ""
    if len(name) <= chars:
        return name
    return name[: chars - 2] + ".."


def _xml(text: str) -> str:
    """Text safe in XML content and double-quoted attributes."""
    text = _XML_INVALID.sub("?", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class _Node:
    """One frame of the merged call tree: total samples of the stacks through it."""

    __slots__ = ("children", "count", "kind", "name")

    def __init__(self, name: str, kind: FrameKind) -> None:
        self.name = name
        self.kind = kind
        self.count = 0
        self.children: dict[str, _Node] = {}


def _build_tree(stacks: Mapping[Stack, int], kinds: Mapping[Stack, tuple[FrameKind, ...]] | None) -> _Node:
    root = _Node("all", FrameKind.MARKER)
    for stack, count in stacks.items():
        if count <= 0:
            continue
        stack_kinds = kinds.get(stack) if kinds is not None else None
        root.count += count
        node = root
        for depth, name in enumerate(stack):
            child = node.children.get(name)
            if child is None:
                kind = guess_kind(name)
                if stack_kinds is not None and depth < len(stack_kinds):
                    kind = stack_kinds[depth]
                child = node.children[name] = _Node(name, kind)
            child.count += count
            node = child
    return root


@dataclass(frozen=True, slots=True)
class _Placed:
    node: _Node
    path: Stack
    x: float
    width: float

    @property
    def depth(self) -> int:
        return len(self.path)


def _layout(root: _Node, per_sample: float, min_width: float) -> list[_Placed]:
    """Frames with their x and width in px, root first then depth first, children in name order."""
    placed: list[_Placed] = []
    todo: list[tuple[_Node, Stack, float]] = [(root, (), float(X_PAD))]
    while todo:
        node, path, x = todo.pop()
        width = node.count * per_sample
        if width < min_width:
            continue  # and so are all frames above it: they are no wider
        placed.append(_Placed(node, path, x, width))
        offsets: list[tuple[_Node, float]] = []
        child_x = x
        for name in sorted(node.children):
            child = node.children[name]
            offsets.append((child, child_x))
            child_x += child.count * per_sample
        todo.extend((child, (*path, child.name), cx) for child, cx in reversed(offsets))
    return placed


def _title(name: str | None, count: int, total: int, count_name: str, note: str | None = None) -> str:
    """flamegraph.pl's frame title: ``NAME (1,234 samples, 5.67%)``, ``all (N samples, 100%)``;
    with a note (a differential's delta): ``NAME (1,234 samples, 5.67%; +1.23%)``."""
    tail = f"; {note})" if note else ")"
    if name is None:
        return f"all ({count:,} {count_name}, 100%{tail}"
    return f"{display_name(name)} ({count:,} {count_name}, {100 * count / total:.2f}%{tail}"


def _legend(items: tuple[tuple[str, str], ...] | None = None) -> str:
    swatch = "\u25a0"
    if items is not None:
        return "  ".join(
            f'<tspan fill="{_xml(fill)}">{swatch}</tspan> {_xml(label)}' for fill, label in items
        )
    return (
        f'<tspan fill="rgb(230,80,20)">{swatch}</tspan> user  '
        f'<tspan fill="rgb(80,195,200)">{swatch}</tspan> kernel  '
        f'<tspan fill="{MARKER_FILL}">{swatch}</tspan> process, missed stack, -'
    )


def _asset(name: str) -> str:
    text = resources.files("exporters").joinpath(name).read_text(encoding="utf-8")
    if "]]>" in text:
        raise ValueError(f"{name} contains ']]>' and cannot be inlined in CDATA")
    return text


def write_svg_from_folded(
    stacks: Mapping[Stack, int],
    stream: TextIO,
    options: SvgOptions | None = None,
    kinds: Mapping[Stack, tuple[FrameKind, ...]] | None = None,
    style: Styler | None = None,
) -> None:
    """Draw folded stacks (root first -> sample count) as an interactive SVG flame graph.

    ``kinds`` gives the FrameKind of each name of a stack, for colours; without it (a folded file
    read back) kinds are guessed from the names (``guess_kind``). ``style`` may give a frame, by its
    path, a fill and a title note of its own (differential graphs). Non-positive counts are ignored.
    """
    opt = options or SvgOptions()
    root = _build_tree(stacks, kinds)
    total = root.count
    per_sample = (opt.width - 2 * X_PAD) / total if total else 0.0
    placed = _layout(root, per_sample, opt.min_width) if total else []
    max_depth = max((p.depth for p in placed), default=0)

    fs = opt.font_size
    lines_above = 1 + (opt.subtitle is not None)  # legend, subtitle
    top = fs * 3 + lines_above * fs * 2
    bottom = fs * 2 + 10
    height = (max_depth + 1) * opt.frame_height + top + bottom
    font = _FONT_UNSAFE.sub("", opt.font_type) or "Verdana"
    cfg = {"fontSize": fs, "fontWidth": FONT_WIDTH, "width": opt.width, "xpad": X_PAD, "eps": 0.02}
    cfg_js = json.dumps(cfg)

    w = stream.write
    w('<?xml version="1.0" standalone="no"?>\n')
    w(
        f'<svg version="1.1" width="{opt.width}" height="{height}" viewBox="0 0 {opt.width} {height}" '
        'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">\n'
    )
    w(
        '<defs><linearGradient id="background" y1="0" y2="1" x1="0" x2="0">'
        '<stop stop-color="#eeeeee" offset="5%"/><stop stop-color="#eeeeb0" offset="95%"/>'
        "</linearGradient></defs>\n"
    )
    w('<style type="text/css"><![CDATA[\n')
    w(f"text {{ font-family: {font}, sans-serif; font-size: {fs}px; }}\n")
    w(f"#title {{ font-size: {fs + 5}px; }}\n")
    w(_asset("flamegraph.css"))
    w("]]></style>\n")
    w(f'<rect x="0" y="0" width="{opt.width}" height="{height}" fill="url(#background)"/>\n')
    w(f'<text id="title" x="{_num(opt.width / 2)}" y="{fs * 2}">{_xml(opt.title)}</text>\n')
    line_y = fs * 4
    if opt.subtitle is not None:
        w(f'<text id="subtitle" x="{_num(opt.width / 2)}" y="{line_y}">{_xml(opt.subtitle)}</text>\n')
        line_y += fs * 2
    w(f'<text id="legend" x="{_num(opt.width / 2)}" y="{line_y}">{_legend(opt.legend)}</text>\n')
    w(f'<text id="details" x="{X_PAD}" y="{_num(height - bottom / 2)}"> </text>\n')
    w(f'<text id="unzoom" class="hide" x="{X_PAD}" y="{fs * 2}">Reset Zoom</text>\n')
    w(f'<text id="search" x="{opt.width - X_PAD}" y="{fs * 2}">Search</text>\n')
    w(f'<text id="matched" class="hide" x="{opt.width - X_PAD}" y="{_num(height - bottom / 2)}"> </text>\n')
    if not placed:
        w(f'<text id="empty" x="{_num(opt.width / 2)}" y="{top + fs}">No samples</text>\n')

    w('<g id="frames">\n')
    for p in placed:
        node = p.node
        is_root = p.depth == 0
        custom = style(p.path) if style is not None else None
        note = custom.note if custom is not None else None
        title = _title(None if is_root else node.name, node.count, total, opt.count_name, note)
        y1 = height - bottom - (p.depth + 1) * opt.frame_height + FRAME_PAD
        text_y = y1 + (opt.frame_height - FRAME_PAD) / 2 + 3
        fill = MARKER_FILL if is_root else frame_fill(node.name, node.kind)
        if custom is not None:
            fill = _xml(custom.fill)
        label = fit_label("all" if is_root else display_name(node.name), p.width, fs)
        w(
            f"<g><title>{_xml(title)}</title>"
            f'<rect x="{_num(p.x)}" y="{y1}" width="{_num(p.width)}" height="{opt.frame_height - FRAME_PAD}" '
            f'fill="{fill}" rx="2" ry="2"/>'
            f'<text x="{_num(p.x + 3)}" y="{_num(text_y)}">{_xml(label)}</text>'
            "</g>\n"
        )
    w("</g>\n")
    w('<script type="text/ecmascript"><![CDATA[\n')
    w(f"var fg_cfg = {cfg_js};\n")
    w(_asset("flamegraph.js"))
    w("]]></script>\n")
    w("</svg>\n")


def write_svg(profile: Profile, stream: TextIO, options: SvgOptions | None = None) -> None:
    """Draw a profile as an interactive SVG flame graph; stacks as in the folded output (comm root first)."""
    opt = options or SvgOptions()
    fold = FoldedOptions(delimit=opt.delimit, lines=opt.lines)
    stacks: dict[Stack, int] = {}
    kinds: dict[Stack, tuple[FrameKind, ...]] = {}
    for sample, weight in profile.samples.items():
        count = weight.by(opt.weight)
        if count <= 0:
            continue
        stack, stack_kinds = fold_sample(sample, fold)
        stacks[stack] = stacks.get(stack, 0) + count
        kinds.setdefault(stack, stack_kinds)
    write_svg_from_folded(stacks, stream, opt, kinds)
