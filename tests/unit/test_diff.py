"""Differential flame graphs: difffolded.pl's counts, flamegraph.pl's colours and deltas, the SVG drawn
with the after profile's widths, and `bpfprof diff` on good and bad input."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pytest

from exporters.diff import SAME_FILL, diff_fill, diff_stacks, write_diff_folded, write_diff_svg
from exporters.svg import SvgOptions, write_svg_from_folded
from profiler.cli import main

NS = "{http://www.w3.org/2000/svg}"
TITLE = re.compile(r"^(.*) \(([\d,]+) samples, ([\d.]+)%(?:; (.*))?\)$")

BEFORE = {
    ("app", "main", "compute"): 60,
    ("app", "main", "parse"): 30,
    ("app", "main", "gone"): 10,
}  # 100 samples
AFTER = {
    ("app", "main", "compute"): 100,
    ("app", "main", "parse"): 90,
    ("app", "main", "new"): 10,
}  # 200 samples: twice as long a recording


def frames(svg: str) -> dict[str, tuple[int, str, str | None, float]]:
    """name -> (after count, fill, title note, width px) of each drawn frame."""
    root = ET.fromstring(svg)
    group = root.find(f".//{NS}g[@id='frames']")
    assert group is not None
    out = {}
    for g in group.findall(f"{NS}g"):
        title, rect = g.find(f"{NS}title"), g.find(f"{NS}rect")
        assert title is not None
        assert rect is not None
        m = TITLE.match(title.text or "")
        assert m, title.text
        out[m.group(1)] = (
            int(m.group(2).replace(",", "")),
            rect.get("fill", ""),
            m.group(4),
            float(rect.get("width", "0")),
        )
    return out


def test_normalised_deltas_are_changes_of_share():
    d = diff_stacks(BEFORE, AFTER)
    assert (d.total_before, d.total_after, d.scale) == (100, 200, 2.0)
    # compute: 60% -> 50% of the profile; parse: 30% -> 45%; gone: 10% -> 0; new: 0 -> 5%
    assert d.self_delta[("app", "main", "compute")] == pytest.approx(100 - 120)
    assert d.self_delta[("app", "main", "parse")] == pytest.approx(90 - 60)
    assert d.self_delta[("app", "main", "gone")] == pytest.approx(-20)
    assert d.self_delta[("app", "main", "new")] == pytest.approx(10)
    assert d.total_delta[("app", "main")] == pytest.approx(0)  # shares always sum to 100%
    assert d.total_delta[()] == pytest.approx(0)
    assert d.max_delta == pytest.approx(30)
    assert d.before_only() == (1, 10)


def test_raw_counts_without_normalisation():
    d = diff_stacks(BEFORE, AFTER, normalize=False)
    assert d.scale == 1.0
    assert d.self_delta[("app", "main", "compute")] == 40
    assert d.total_delta[("app",)] == 100


def test_folded_diff_is_difffolded_output():
    out = io.StringIO()
    write_diff_folded(diff_stacks({("a", "b"): 3, ("a", "c"): 4}, {("a", "b"): 5, ("d",): 2}), out)
    # difffolded.pl -n: before scaled by int(count * total2 / total1) = int(3 * 7 / 7) ...
    assert out.getvalue() == "a;b 3 5\na;c 4 0\nd 0 2\n"
    out = io.StringIO()
    write_diff_folded(diff_stacks({("x",): 1, ("y",): 2}, {("x",): 10, ("y",): 10}), out)
    assert out.getvalue() == "x 6 10\ny 13 10\n"  # int(1*20/3) = 6, int(2*20/3) = 13: truncation
    out = io.StringIO()
    write_diff_folded(diff_stacks({("x",): 1, ("y",): 2}, {("x",): 10, ("y",): 10}, normalize=False), out)
    assert out.getvalue() == "x 1 10\ny 2 10\n"


def test_colour_scale_is_flamegraph_pl_s():
    assert diff_fill(0, 30) == SAME_FILL
    assert diff_fill(30, 30) == "rgb(255,0,0)"  # the largest growth: full red
    assert diff_fill(-30, 30) == "rgb(0,0,255)"
    assert diff_fill(15, 30) == "rgb(255,105,105)"  # 210 * (30 - 15) / 30
    assert diff_fill(-10, 30) == "rgb(140,140,255)"


def test_svg_has_after_widths_and_delta_colours_and_notes():
    out = io.StringIO()
    write_diff_svg(diff_stacks(BEFORE, AFTER), out)
    drawn = frames(out.getvalue())
    assert "gone" not in drawn  # only in the before profile: no width in the after one
    assert drawn["all"][0] == 200
    assert drawn["compute"][0] == 100
    assert drawn["compute"][3] == pytest.approx(1180 * 100 / 200, abs=0.01)
    assert drawn["new"][3] == pytest.approx(1180 * 10 / 200, abs=0.01)
    r, g, b = map(int, re.findall(r"\d+", drawn["parse"][1]))
    assert (r, g, b) == (255, 0, 0)  # grew most
    r, g, b = map(int, re.findall(r"\d+", drawn["compute"][1]))
    assert b == 255  # shrank
    assert r == g < 255
    assert drawn["main"][1] == SAME_FILL  # no self samples: white, as flamegraph.pl draws it
    assert drawn["parse"][2] == "self +15.00%, total +15.00%"
    assert drawn["compute"][2] == "self -10.00%, total -10.00%"
    assert drawn["main"][2] == "self 0.00%, total 0.00%"
    assert drawn["new"][2] == "self +5.00%, total +5.00%"
    assert drawn["all"][2] is None
    root = ET.fromstring(out.getvalue())
    texts = {t.get("id"): "".join(t.itertext()) for t in root.iter(f"{NS}text") if t.get("id")}
    assert "before 100 samples, after 200" in texts["subtitle"]
    assert "1 stacks (10 before samples) are gone" in texts["subtitle"]
    assert "grew" in texts["legend"]
    assert "shrank" in texts["legend"]


def test_plain_flame_graphs_are_unchanged_by_the_style_hook():
    stacks = {("a", "b"): 3, ("a", "c"): 1}
    plain, styled = io.StringIO(), io.StringIO()
    write_svg_from_folded(stacks, plain, SvgOptions())
    write_svg_from_folded(stacks, styled, SvgOptions(), style=lambda path: None)
    assert plain.getvalue() == styled.getvalue()
    assert "; " not in "".join(t.text or "" for t in ET.fromstring(plain.getvalue()).iter(f"{NS}title"))


# -- the command ---------------------------------------------------------------------------------


def write_folded(path, stacks):
    path.write_text("".join(f"{';'.join(s)} {c}\n" for s, c in stacks.items()))
    return str(path)


def test_cli_writes_svg_and_folded(tmp_path, capsys):
    before = write_folded(tmp_path / "before.folded", BEFORE)
    after = write_folded(tmp_path / "after.folded", AFTER)
    assert main(["diff", before, after, "-o", str(tmp_path / "d.svg")]) == 0
    assert "self +15.00%" in (tmp_path / "d.svg").read_text()
    assert main(["diff", before, after, "-o", str(tmp_path / "d.folded")]) == 0
    assert (tmp_path / "d.folded").read_text().splitlines() == [
        "app;main;compute 120 100",
        "app;main;gone 20 0",
        "app;main;new 0 10",
        "app;main;parse 60 90",
    ]
    assert main(["diff", before, after, "--no-normalize"]) == 0  # folded on stdout
    assert "app;main;compute 60 100" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {p}: No such file or directory"),
        ("", "{p} holds no samples: nothing to compare"),
        ("main;foo bar\n", "{p} is not a folded stacks file: line 1: expected"),
        ("a;b 3 5\nc 1 2\n", "{p} has two counts per line"),
        ("\x00\x01ELF\xff", "{p} is not a folded stacks file"),
    ],
)
def test_cli_bad_input_is_one_sentence(tmp_path, capsys, content, message):
    good = write_folded(tmp_path / "good.folded", AFTER)
    bad = tmp_path / "bad.folded"
    if content is not None:
        bad.write_bytes(content.encode("latin-1"))
    assert main(["diff", str(bad), good, "-o", str(tmp_path / "d.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bpfprof: " + message.format(p=bad)), err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert not (tmp_path / "d.svg").exists()


def test_cli_bad_output_is_one_sentence(tmp_path, capsys):
    good = write_folded(tmp_path / "good.folded", AFTER)
    assert main(["diff", good, good, "-o", str(tmp_path / "d.png")]) == 2
    assert "cannot tell the output format" in capsys.readouterr().err
    assert main(["diff", good, good, "-o", str(tmp_path / "nodir" / "d.svg")]) == 2
    assert "does not exist" in capsys.readouterr().err
