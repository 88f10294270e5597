"""The flame graph's JavaScript, run by node on a minimal DOM built from the SVG: zoom, reset, search,
hover details and keys. Skips where node is not installed."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from exporters.svg import write_svg
from tests.unit.exporters_fixtures import sample_profile

NS = "{http://www.w3.org/2000/svg}"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (Debian package nodejs)")

# A DOM with just what flamegraph.js uses: getElementById, getElementsByTagName, attributes,
# textContent, addEventListener; window.prompt answers from the action list.
HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));

class El {
  constructor(tag, attrs, text, children) {
    this.tagName = tag; this.attrs = Object.assign({}, attrs); this.textContent = text;
    this.children = children || []; this.listeners = {};
  }
  getAttribute(n) { return Object.prototype.hasOwnProperty.call(this.attrs, n) ? this.attrs[n] : null; }
  setAttribute(n, v) { this.attrs[n] = String(v); }
  getElementsByTagName(t) {
    const out = [];
    const walk = (el) => { for (const c of el.children) { if (c.tagName === t) out.push(c); walk(c); } };
    walk(this);
    return out;
  }
  addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
  fire(type, ev) { for (const fn of this.listeners[type] || []) fn(ev || {}); }
}

const byId = {};
for (const [id, d] of Object.entries(input.ids)) byId[id] = new El("text", d.attrs, d.text);
const frames = input.frames.map((f) => new El("g", {}, "", [
  new El("title", {}, f.title), new El("rect", f.rect, ""), new El("text", f.textAttrs, f.text),
]));
byId.frames = new El("g", { id: "frames" }, "", frames);

let answer = null;
const win = {
  listeners: {},
  addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); },
  prompt() { return answer; },
};
globalThis.window = win;
globalThis.document = { getElementById: (id) => byId[id] || null };
vm.runInThisContext(input.script);

const snap = () => ({
  frames: frames.map((g) => {
    const [title, rect, text] = g.children;
    return { x: rect.attrs.x, width: rect.attrs.width, fill: rect.attrs.fill, label: text.textContent,
             textX: text.attrs.x, cls: g.attrs["class"] || "" };
  }),
  ids: Object.fromEntries(Object.entries(byId).filter(([id]) => id !== "frames").map(
    ([id, el]) => [id, { text: el.textContent, cls: el.attrs["class"] || "" }])),
});
const out = [];
for (const a of input.actions) {
  let prevented = false;
  const ev = { key: a.key, ctrlKey: !!a.ctrl, metaKey: false, preventDefault() { prevented = true; } };
  answer = a.answer === undefined ? null : a.answer;
  if (a.do === "click") frames[a.frame].fire("click");
  else if (a.do === "hover") frames[a.frame].fire("mouseover");
  else if (a.do === "leave") frames[a.frame].fire("mouseout");
  else if (a.do === "button") byId[a.id].fire("click");
  else if (a.do === "key") for (const fn of win.listeners.keydown) fn(ev);
  const s = snap();
  s.prevented = prevented;
  out.push(s);
}
process.stdout.write(JSON.stringify(out));
"""


def dom_input(svg: str) -> dict[str, Any]:
    root = ET.fromstring(svg)
    ids: dict[str, Any] = {}
    for el in root.iter(f"{NS}text"):
        if el.get("id"):
            ids[el.get("id")] = {"attrs": dict(el.attrib), "text": "".join(el.itertext())}
    frames = []
    group = root.find(f".//{NS}g[@id='frames']")
    assert group is not None
    for g in group.findall(f"{NS}g"):
        title, rect, text = g.find(f"{NS}title"), g.find(f"{NS}rect"), g.find(f"{NS}text")
        assert title is not None
        assert rect is not None
        assert text is not None
        frames.append(
            {
                "title": title.text,
                "rect": dict(rect.attrib),
                "textAttrs": dict(text.attrib),
                "text": text.text or "",
            }
        )
    script = root.find(f"{NS}script")
    assert script is not None
    return {"ids": ids, "frames": frames, "script": script.text}


@pytest.fixture(scope="module")
def page() -> dict[str, Any]:
    out = io.StringIO()
    write_svg(sample_profile(), out)
    return dom_input(out.getvalue())


def run(page: dict[str, Any], actions: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    assert NODE is not None
    proc = subprocess.run(
        [NODE, str(harness)],
        input=json.dumps({**page, "actions": actions}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def index(page: dict[str, Any], title_start: str) -> int:
    (i,) = [i for i, f in enumerate(page["frames"]) if f["title"].startswith(title_start + " (")]
    return i


def test_click_zooms_into_a_frame_and_reset_restores(page, tmp_path):
    compute = index(page, "compute")
    main = index(page, "main")
    libfoo = index(page, "libfoo.so+0x1a2b")
    idle = index(page, "do_idle")
    zoomed, reset = run(page, [{"do": "click", "frame": compute}, {"do": "button", "id": "unzoom"}], tmp_path)

    z = zoomed["frames"]
    assert (z[compute]["x"], z[compute]["width"]) == ("10", "1180")
    assert z[compute]["label"] == "compute"
    assert (z[main]["x"], z[main]["width"], z[main]["cls"]) == ("10", "1180", "parent")
    assert (z[0]["width"], z[0]["cls"]) == ("1180", "parent")  # the root stays, dimmed
    assert z[libfoo]["cls"] == "hide"  # a sibling
    assert z[idle]["cls"] == "hide"  # another process
    assert zoomed["ids"]["unzoom"]["cls"] == ""

    original = page["frames"]
    for i, f in enumerate(reset["frames"]):
        assert (f["x"], f["width"], f["cls"]) == (original[i]["rect"]["x"], original[i]["rect"]["width"], "")
        assert f["label"] == original[i]["text"]
    assert reset["ids"]["unzoom"]["cls"] == "hide"


def test_zoom_rescales_descendants_and_relabels(page, tmp_path):
    app = index(page, "app")
    compute = index(page, "compute")
    libfoo = index(page, "libfoo.so+0x1a2b")
    (zoomed,) = run(page, [{"do": "click", "frame": app}], tmp_path)
    z = zoomed["frames"]
    # app had 12 of 25 samples; compute 10 and libfoo 2 now share the full 1180 px
    assert float(z[compute]["width"]) == pytest.approx(1180 * 10 / 12, abs=0.02)
    assert float(z[libfoo]["x"]) == pytest.approx(10 + 1180 * 10 / 12, abs=0.02)
    assert z[libfoo]["label"] == "libfoo.so+0x1a2b"  # was cut to "libfoo.so+0.." before zooming
    assert page["frames"][libfoo]["text"] == "libfoo.so+0.."


def test_search_highlights_matches_and_counts_nested_ones_once(page, tmp_path):
    do_ = run(page, [{"do": "key", "key": "f", "ctrl": True, "answer": "^do_"}], tmp_path)[0]
    assert do_["prevented"]
    assert do_["ids"]["matched"]["text"] == "Matched: 48.0%"  # do_syscall_64 1 + 4, do_idle 7: 12 of 25
    assert do_["ids"]["search"]["text"] == "Reset Search"
    titles = [f["title"] for f in page["frames"]]
    for title, f in zip(titles, do_["frames"], strict=True):
        assert (f["fill"] == "rgb(230,0,230)") == title.startswith("do_")

    nested, reset = run(
        page,
        [
            {"do": "key", "key": "f", "ctrl": True, "answer": "SYSCALL|syscall"},
            {"do": "button", "id": "search"},
        ],
        tmp_path,
    )
    assert nested["ids"]["matched"]["text"] == "Matched: 20.0%"  # do_syscall_64 sits in entry_SYSCALL_64
    assert reset["ids"]["matched"]["cls"] == "hide"
    assert reset["ids"]["search"]["text"] == "Search"
    for original, f in zip(page["frames"], reset["frames"], strict=True):
        assert f["fill"] == original["rect"]["fill"]


def test_escape_resets_zoom_and_search(page, tmp_path):
    compute = index(page, "compute")
    actions = [
        {"do": "click", "frame": compute},
        {"do": "button", "id": "search", "answer": "main"},
        {"do": "key", "key": "Escape"},
    ]
    _, searched, escaped = run(page, actions, tmp_path)
    assert searched["ids"]["matched"]["text"] == "Matched: 48.0%"
    assert searched["frames"][compute]["width"] == "1180"  # searching keeps the zoom
    for original, f in zip(page["frames"], escaped["frames"], strict=True):
        assert (f["x"], f["width"], f["fill"], f["cls"]) == (
            original["rect"]["x"],
            original["rect"]["width"],
            original["rect"]["fill"],
            "",
        )
    assert escaped["ids"]["unzoom"]["cls"] == "hide"
    assert escaped["ids"]["matched"]["cls"] == "hide"


def test_hover_shows_details_and_bad_regex_is_reported(page, tmp_path):
    compute = index(page, "compute")
    hover, leave, bad = run(
        page,
        [
            {"do": "hover", "frame": compute},
            {"do": "leave", "frame": compute},
            {"do": "key", "key": "f", "ctrl": True, "answer": "("},
        ],
        tmp_path,
    )
    assert hover["ids"]["details"]["text"] == "Function: compute (10 samples, 40.00%)"
    assert leave["ids"]["details"]["text"] == " "
    assert bad["ids"]["details"]["text"] == "Invalid regular expression: ("
    assert bad["ids"]["matched"]["cls"] == "hide"


def test_clicking_the_root_unzooms(page, tmp_path):
    compute = index(page, "compute")
    _, back = run(page, [{"do": "click", "frame": compute}, {"do": "click", "frame": 0}], tmp_path)
    assert all(f["cls"] == "" for f in back["frames"])
    assert back["ids"]["unzoom"]["cls"] == "hide"
