"""SVG flame graph: well-formed XML, one titled rect per frame with flamegraph.pl's counts and
percentages, root at the bottom, elision, labels, colours by kind, and self-containment."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from exporters.folded import FoldedOptions, fold_profile, parse_folded, write_folded
from exporters.model import Profile, Sample
from exporters.svg import DELIMITER_FILL, MARKER_FILL, SvgOptions, fit_label, write_svg, write_svg_from_folded
from tests.unit.exporters_fixtures import sample_profile, user

NS = "{http://www.w3.org/2000/svg}"
TITLE = re.compile(r"^(.*) \(([\d,]+) (\w+), ([\d.]+)%\)$")


@dataclass
class Drawn:
    name: str
    count: int
    pct: str
    x: float
    y: float
    width: float
    fill: str
    label: str
    title: str


def render(profile: Profile, options: SvgOptions | None = None) -> str:
    out = io.StringIO()
    write_svg(profile, out, options)
    return out.getvalue()


def render_stacks(stacks: dict[tuple[str, ...], int], options: SvgOptions | None = None) -> str:
    out = io.StringIO()
    write_svg_from_folded(stacks, out, options)
    return out.getvalue()


def frames_of(svg: str) -> list[Drawn]:
    root = ET.fromstring(svg)
    group = root.find(f".//{NS}g[@id='frames']")
    assert group is not None
    drawn = []
    for g in group.findall(f"{NS}g"):
        title = g.find(f"{NS}title")
        rect = g.find(f"{NS}rect")
        text = g.find(f"{NS}text")
        assert title is not None
        assert rect is not None
        assert text is not None
        m = TITLE.match(title.text or "")
        assert m, title.text
        drawn.append(
            Drawn(
                name=m.group(1),
                count=int(m.group(2).replace(",", "")),
                pct=m.group(4),
                x=float(rect.get("x", "nan")),
                y=float(rect.get("y", "nan")),
                width=float(rect.get("width", "nan")),
                fill=rect.get("fill", ""),
                label=text.text or "",
                title=title.text or "",
            )
        )
    return drawn


def paths_of(drawn: list[Drawn], frame_height: int = 16) -> dict[tuple[str, ...], Drawn]:
    """Rebuild each frame's stack from geometry: a parent sits one row lower and spans its child."""
    paths: dict[int, tuple[str, ...]] = {}
    for i, d in sorted(enumerate(drawn), key=lambda item: -item[1].y):
        if d.name == "all" and not paths:
            paths[i] = ()
            continue
        parents = [
            j
            for j, p in enumerate(drawn)
            if p.y == d.y + frame_height and p.x <= d.x + 0.011 and d.x + d.width <= p.x + p.width + 0.011
        ]
        assert len(parents) == 1, d
        paths[i] = (*paths[parents[0]], d.name)
    return {paths[i]: drawn[i] for i in paths}


def rgb(fill: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"rgb\((\d+),(\d+),(\d+)\)", fill)
    assert m, fill
    r, g, b = (int(v) for v in m.groups())
    return r, g, b


def expected_counts(stacks: dict[tuple[str, ...], int]) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {(): sum(stacks.values())}
    for stack, count in stacks.items():
        for depth in range(1, len(stack) + 1):
            counts[stack[:depth]] = counts.get(stack[:depth], 0) + count
    return counts


def test_svg_golden(golden):
    golden("sample.svg", render(sample_profile()))


def test_svg_is_well_formed_with_one_titled_rect_per_frame():
    profile = sample_profile()
    svg = render(profile)
    drawn = frames_of(svg)
    stacks = fold_profile(profile, FoldedOptions())
    expected = expected_counts(stacks)
    assert len(drawn) == len(expected) == 26
    by_path = paths_of(drawn)
    assert {path: d.count for path, d in by_path.items()} == expected
    total = sum(stacks.values())
    for path, d in by_path.items():
        assert d.pct == ("100" if path == () else f"{100 * expected[path] / total:.2f}")


def test_titles_are_in_flamegraph_pl_wording():
    titles = {d.title for d in frames_of(render(sample_profile()))}
    assert "all (25 samples, 100%)" in titles
    assert "app (12 samples, 48.00%)" in titles
    assert "compute (10 samples, 40.00%)" in titles
    assert "libfoo.so+0x1a2b (2 samples, 8.00%)" in titles
    assert "[Missed Kernel Stack] (2 samples, 8.00%)" in titles
    assert "[Missed User Stack] (1 samples, 4.00%)" in titles
    assert "parse:header_12 (4 samples, 16.00%)" in titles
    # escaped in the file, intact once parsed
    assert 'std::vector<int>::push_back(int&&) "x" (4 samples, 16.00%)' in titles
    assert "[unknown] (1 samples, 4.00%)" in titles


def test_counts_get_thousands_separators():
    drawn = frames_of(render_stacks({("a", "b"): 1_234_567, ("c",): 1}))
    assert [d.title for d in drawn][:3] == [
        "all (1,234,568 samples, 100%)",
        "a (1,234,567 samples, 100.00%)",
        "b (1,234,567 samples, 100.00%)",
    ]


def test_root_at_the_bottom_and_widths_proportional():
    drawn = frames_of(render(sample_profile()))
    root = drawn[0]
    assert root.name == "all"
    assert root.y == max(d.y for d in drawn)
    assert (root.x, root.width) == (10, 1180)
    for d in drawn:
        assert d.width == pytest.approx(1180 * d.count / 25, abs=0.006)


def test_children_are_laid_out_in_name_order():
    by_path = paths_of(frames_of(render(sample_profile())))
    comms = sorted((d.x, path[0]) for path, d in by_path.items() if len(path) == 1)
    assert [name for _, name in comms] == ["[unknown]", "app", "bash", "swapper/0", "worker"]
    assert (
        by_path[("app", "_start", "main", "compute")].x
        < by_path[("app", "_start", "main", "libfoo.so+0x1a2b")].x
    )


def test_narrow_frames_are_elided_with_what_is_above_them():
    stacks = {("big", "hot"): 100_000, ("tiny", "tinier"): 1}
    names = {d.name for d in frames_of(render_stacks(stacks))}
    assert names == {"all", "big", "hot"}  # 1180 px / 100001 samples = 0.0118 px < 0.1 px
    names = {d.name for d in frames_of(render_stacks(stacks, SvgOptions(min_width=0.001)))}
    assert names == {"all", "big", "hot", "tiny", "tinier"}


def test_labels_are_cut_with_two_dots_to_fit():
    assert fit_label("compute", 1000, 12) == "compute"
    assert fit_label("a_long_function_name", 50, 12) == "a_lon.."  # int(50 / 7.08) = 7 characters
    assert fit_label("abc", 21.3, 12) == "abc"
    assert fit_label("abcd", 21.3, 12) == "a.."
    assert fit_label("abcd", 21.2, 12) == ""  # room for fewer than 3 characters
    for d in frames_of(render(sample_profile())):
        assert d.label == fit_label(d.name, d.width, 12)
        assert len(d.label) * 12 * 0.59 <= d.width


def test_colours_by_kind_and_stable_by_name():
    drawn = frames_of(render(sample_profile(), SvgOptions(delimit=True)))
    by_name: dict[str, set[str]] = {}
    for d in drawn:
        by_name.setdefault(d.name, set()).add(d.fill)
    for name in ("_start", "main", "compute", "start_thread", "libfoo.so+0x1a2b", "bad name x"):
        (fill,) = by_name[name]
        r, g, b = rgb(fill)
        assert (r >= 205, g <= 230, b <= 55) == (True, True, True), (name, fill)  # flamegraph.pl "hot"
    for name in ("entry_SYSCALL_64", "do_syscall_64", "ksys_read", "do_idle", "asm_exc_page_fault"):
        (fill,) = by_name[name]  # the same colour wherever the function appears
        r, g, b = rgb(fill)
        assert (r <= 110, g >= 165, b >= 165) == (True, True, True), (name, fill)  # aqua
    for name in ("[Missed User Stack]", "[Missed Kernel Stack]", "app", "bash", "all"):
        assert by_name[name] == {MARKER_FILL}
    assert by_name["-"] == {DELIMITER_FILL}
    assert len({f for name, fills in by_name.items() for f in fills if name.startswith(("do_", "ksys"))}) > 1


def test_delimiter_frame_only_with_the_option():
    assert "-" not in {d.name for d in frames_of(render(sample_profile()))}
    by_path = paths_of(frames_of(render(sample_profile(), SvgOptions(delimit=True))))
    assert (
        "worker",
        "start_thread",
        "parse:header_12",
        'std::vector<int>::push_back(int&&) "x"',
        "-",
    ) in by_path


def test_folded_file_renders_with_kernel_annotation_turned_into_colour():
    text = io.StringIO()
    write_folded(sample_profile(), text, FoldedOptions(annotate_kernel=True))
    stacks = parse_folded(io.StringIO(text.getvalue()))
    drawn = frames_of(render_stacks(stacks))
    names = {d.name for d in drawn}
    assert "do_idle" in names
    assert not any(name.endswith("_[k]") for name in names)  # flamegraph.pl strips annotations
    (do_idle,) = [d for d in drawn if d.name == "do_idle"]
    (compute,) = [d for d in drawn if d.name == "compute"]
    assert rgb(do_idle.fill)[2] >= 165
    assert rgb(compute.fill)[0] >= 205
    (missed,) = [d for d in drawn if d.name == "[Missed User Stack]"]
    assert missed.fill == MARKER_FILL


def test_names_that_would_break_xml_are_escaped_or_replaced():
    stacks = {("a<b>&'\"", "ctl\x01\x1f", "\ufffe"): 2}
    svg = render_stacks(stacks, SvgOptions(title="<Flame & Graph>", subtitle='"quoted" & <tagged>'))
    root = ET.fromstring(svg)
    assert [d.name for d in frames_of(svg)] == ["all", "a<b>&'\"", "ctl??", "?"]
    texts = {t.get("id"): "".join(t.itertext()) for t in root.iter(f"{NS}text")}
    assert texts["title"] == "<Flame & Graph>"
    assert texts["subtitle"] == '"quoted" & <tagged>'


def test_controls_and_code_are_inlined():
    svg = render(sample_profile())
    root = ET.fromstring(svg)
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert {"title", "legend", "details", "unzoom", "search", "matched", "frames"} <= ids
    texts = {t.get("id"): "".join(t.itertext()) for t in root.iter(f"{NS}text") if t.get("id")}
    assert texts["unzoom"] == "Reset Zoom"
    assert texts["search"] == "Search"
    assert "user" in texts["legend"]
    assert "kernel" in texts["legend"]
    script = root.find(f"{NS}script")
    style = root.find(f"{NS}style")
    assert script is not None
    assert style is not None
    code = script.text or ""
    assert "var fg_cfg = " in code
    for needle in ("fg_zoom", "fg_search", "Escape", "ctrlKey", "new RegExp"):
        assert needle in code
    assert ".hide" in (style.text or "")
    # nothing fetched from elsewhere: no links, no external scripts or stylesheets
    for el in root.iter():
        assert not any(key.endswith("href") for key in el.attrib), el.tag
    assert "@import" not in (style.text or "")
    assert "url(http" not in svg


def test_image_height_fits_the_deepest_frame():
    svg = render(sample_profile())
    root = ET.fromstring(svg)
    height = float(root.get("height", "nan"))
    drawn = frames_of(svg)
    deepest = min(d.y for d in drawn)
    assert deepest > 12 * 3  # below the title
    assert max(d.y for d in drawn) + 16 <= height - 12 * 2  # above the details line
    assert (max(d.y for d in drawn) - deepest) / 16 == 7  # worker stack: comm + 7 frames


def test_empty_profile_draws_no_frames_but_stays_valid():
    svg = render(Profile())
    root = ET.fromstring(svg)
    assert frames_of(svg) == []
    assert any("".join(t.itertext()) == "No samples" for t in root.iter(f"{NS}text"))


def test_custom_count_name_and_sizes():
    profile = Profile()
    profile.add(Sample(1, 1, "db", (user("scan"),)), 3, 3000)
    svg = render(profile, SvgOptions(count_name="events", width=600, frame_height=20, font_size=10))
    root = ET.fromstring(svg)
    assert root.get("width") == "600"
    drawn = frames_of(svg)
    assert [d.title for d in drawn] == [
        "all (3 events, 100%)",
        "db (3 events, 100.00%)",
        "scan (3 events, 100.00%)",
    ]
    assert [d.y for d in drawn] == [drawn[0].y, drawn[0].y - 20, drawn[0].y - 40]
    assert drawn[0].width == 580
