"""The SVG flame graph in a real browser: headless Chromium (Debian's `chromium`), driven over the
DevTools protocol with real mouse events. Hover fills the details line, a click zooms (widths), Search
(window.prompt answered through the protocol) highlights and reports the matched share, Reset Zoom
restores. Profiles come from real recordings of the cpu_split workload; a differential graph of two
of them is checked too. Screenshots go to out/test-artifacts/."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, bpfprof, read_folded

ARTIFACTS = ROOT / "out" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MATCH_FILL = "rgb(230,0,230)"

pytestmark = pytest.mark.bpf  # the graphs come from real recordings


class Cdp:
    """A minimal DevTools protocol client over one page's websocket (python3-websocket)."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # Debian python3-websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method``; events that arrive meanwhile are kept (and passed to ``on_event``)."""
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
                if self.on_event is not None:
                    self.on_event(msg)

    def post(self, method: str, **params: Any) -> None:
        """Send without waiting for the answer (from inside an event handler)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_event(self, method: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[str]:
    """A headless Chromium with remote debugging; yields the DevTools HTTP endpoint."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (scripts/setup.sh --test installs it)")
        pytest.skip("chromium is not installed (Debian package chromium)")
    pytest.importorskip("websocket", reason="python3-websocket is not installed")
    profile_dir = tempfile.mkdtemp(prefix="bpfprof-chromium-")
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # root
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile_dir}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    ready = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:  # keep draining, or chromium blocks on a full pipe
            m = re.search(r"DevTools listening on ws://([^/]+)/", line)
            if m and not found:
                found.append(m.group(1))
                ready.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        assert ready.wait(60), "chromium did not start its DevTools endpoint"
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile_dir, ignore_errors=True)


def open_page(endpoint: str, path: Path, height: int) -> Cdp:
    import urllib.request

    req = urllib.request.Request(f"http://{endpoint}/json/new?about:blank", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        target = json.load(resp)
    cdp = Cdp(target["webSocketDebuggerUrl"])
    cdp.send("Page.enable")
    cdp.send("Runtime.enable")
    cdp.send(
        "Emulation.setDeviceMetricsOverride", width=1200, height=height, deviceScaleFactor=1, mobile=False
    )
    cdp.send("Page.navigate", url=path.resolve().as_uri())
    cdp.wait_event("Page.loadEventFired")
    assert cdp.eval("typeof document.getElementById('frames')") == "object"
    return cdp


FRAMES_JS = """
Array.from(document.getElementById('frames').children).map(function (g) {
  var r = g.getElementsByTagName('rect')[0], b = r.getBoundingClientRect();
  return {title: g.getElementsByTagName('title')[0].textContent,
          label: g.getElementsByTagName('text')[0].textContent,
          x: parseFloat(r.getAttribute('x')), width: parseFloat(r.getAttribute('width')),
          fill: r.getAttribute('fill'), cls: g.getAttribute('class') || '',
          cx: b.left + b.width / 2, cy: b.top + b.height / 2};
})
"""


def frames(cdp: Cdp) -> list[dict[str, Any]]:
    return cdp.eval(FRAMES_JS)


def name_of(frame: dict[str, Any]) -> str:
    return frame["title"].rsplit(" (", 1)[0]


def find(cdp: Cdp, name: str) -> dict[str, Any]:
    hits = [f for f in frames(cdp) if name_of(f) == name]
    assert hits, f"no frame {name}"
    return max(hits, key=lambda f: f["width"])


def mouse(cdp: Cdp, x: float, y: float, click: bool = False) -> None:
    cdp.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    if click:
        cdp.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        cdp.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)


def text_of(cdp: Cdp, element_id: str) -> str:
    return cdp.eval(f"document.getElementById({element_id!r}).textContent")


def element_center(cdp: Cdp, element_id: str) -> tuple[float, float]:
    box = cdp.eval(
        f"(function(){{var b=document.getElementById({element_id!r}).getBoundingClientRect();"
        "return [b.left + b.width / 2, b.top + b.height / 2];})()"
    )
    return box[0], box[1]


def screenshot(cdp: Cdp, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = cdp.send("Page.captureScreenshot", format="png")["data"]
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(data))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def svg_height(path: Path) -> int:
    m = re.search(r'<svg [^>]*height="(\d+)"', path.read_text())
    assert m
    return int(m.group(1))


@pytest.fixture(scope="module")
def recordings(cpu_split: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real recordings of cpu_split: `split` (svg + folded) and `syscalls` (folded)."""
    d = tmp_path_factory.mktemp("browser")
    out = {"svg": d / "split.svg", "folded": d / "split.folded", "after": d / "syscalls.folded"}
    r = bpfprof("record", "-F", "499", "-o", str(out["svg"]), "-o", str(out["folded"]), "-q", "--",
                str(cpu_split), "split", "1.5")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = bpfprof("record", "-F", "499", "-o", str(out["after"]), "-q", "--", str(cpu_split), "syscalls", "1")
    assert r.returncode == 0, r.stderr
    return out


def test_flame_graph_hover_zoom_search_in_chromium(browser: str, recordings: dict[str, Path]) -> None:
    svg = recordings["svg"]
    stacks = read_folded(recordings["folded"])
    total = sum(stacks.values())
    cdp = open_page(browser, svg, svg_height(svg))
    try:
        before = frames(cdp)
        root = next(f for f in before if f["title"].startswith("all ("))
        assert root["width"] == pytest.approx(1180, abs=0.01)

        # hover: the details line shows the frame's title, and clears on leaving
        func_a = find(cdp, "func_a")
        mouse(cdp, func_a["cx"], func_a["cy"])
        assert text_of(cdp, "details") == "Function: " + func_a["title"]
        mouse(cdp, 5, 5)
        assert text_of(cdp, "details").strip() == ""

        # click to zoom: path_a fills the width, its callee func_a too, func_b (elsewhere) is hidden
        path_a = find(cdp, "path_a")
        assert path_a["width"] < 1100
        mouse(cdp, path_a["cx"], path_a["cy"], click=True)
        zoomed = {f["title"]: f for f in frames(cdp)}
        assert zoomed[path_a["title"]]["width"] == pytest.approx(1180, abs=0.02)
        assert zoomed[path_a["title"]]["x"] == pytest.approx(10, abs=0.02)
        assert zoomed[func_a["title"]]["width"] == pytest.approx(
            1180 * func_a["width"] / path_a["width"], abs=0.05
        )
        assert "hide" in zoomed[find(cdp, "func_b")["title"]]["cls"]
        assert "parent" in zoomed[root["title"]]["cls"]
        assert "hide" not in cdp.eval("document.getElementById('unzoom').getAttribute('class') || ''")
        # a label that did not fit before fits now
        assert zoomed[path_a["title"]]["label"] == "path_a"
        screenshot(cdp, "flamegraph-zoomed.png")

        # Reset Zoom: every frame back where it was
        mouse(cdp, *element_center(cdp, "unzoom"), click=True)
        restored = frames(cdp)
        assert [(f["x"], f["width"], f["cls"], f["label"]) for f in restored] == [
            (f["x"], f["width"], f["cls"], f["label"]) for f in before
        ]

        # Search: the prompt is answered through the protocol; matches turn magenta, share reported
        cdp.on_event = lambda ev: (
            cdp.post("Page.handleJavaScriptDialog", accept=True, promptText="^func_[ab]$")
            if ev["method"] == "Page.javascriptDialogOpening"
            else None
        )
        mouse(cdp, *element_center(cdp, "search"), click=True)
        cdp.on_event = None
        searched = frames(cdp)
        hits = [f for f in searched if f["fill"] == MATCH_FILL]
        assert sorted({name_of(f) for f in hits}) == ["func_a", "func_b"]
        assert len(hits) == sum(1 for f in before if name_of(f) in ("func_a", "func_b"))
        expected = 100 * sum(c for s, c in stacks.items() if {"func_a", "func_b"} & set(s)) / total
        matched = text_of(cdp, "matched")
        m = re.fullmatch(r"Matched: ([\d.]+)%", matched)
        assert m, matched
        assert float(m.group(1)) == pytest.approx(expected, abs=0.11)
        assert 60 < float(m.group(1)) < 95  # func_a + func_b burn 80% of the workload's loop
        assert text_of(cdp, "search") == "Reset Search"
        screenshot(cdp, "flamegraph-search.png")

        # Reset Search restores the colours
        mouse(cdp, *element_center(cdp, "search"), click=True)
        assert [f["fill"] for f in frames(cdp)] == [f["fill"] for f in before]
    finally:
        cdp.close()


def test_differential_flame_graph_in_chromium(
    browser: str, recordings: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "diff.svg"
    r = bpfprof("diff", str(recordings["folded"]), str(recordings["after"]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    cdp = open_page(browser, out, svg_height(out))
    try:
        drawn = frames(cdp)
        names = {name_of(f) for f in drawn}
        before = read_folded(recordings["folded"])
        after = read_folded(recordings["after"])

        def share(stacks: dict[tuple[str, ...], int], path: tuple[str, ...]) -> float:
            through = sum(c for s, c in stacks.items() if s[: len(path)] == path)
            return 100 * through / sum(stacks.values())

        # the widest do_syscall_64 frame is the path to it that holds the most after samples
        paths = {s[: s.index("do_syscall_64") + 1] for s in after if "do_syscall_64" in s}
        widest = max(paths, key=lambda path: share(after, path))

        # widths follow the after profile: getppid's kernel path (only there) is drawn, func_a is not
        assert "__do_sys_getppid" in names
        assert "func_a" not in names
        syscalls = find(cdp, "do_syscall_64")
        note = re.search(r"; self ([+-]?[\d.]+)%, total ([+-]?[\d.]+)%\)$", syscalls["title"])
        assert note, syscalls["title"]
        expected = share(after, widest) - share(before, widest)
        assert float(note.group(2)) == pytest.approx(expected, abs=0.01)
        assert expected > 30  # the syscall loop is most of the after profile
        grew = sorted(
            (float(re.search(r"; self \+([\d.]+)%", f["title"]).group(1)), f["fill"])  # type: ignore[union-attr]
            for f in drawn
            if "; self +" in f["title"]
        )
        assert grew
        greens = []
        for _, fill in grew:
            m = re.fullmatch(r"rgb\(255,(\d+),(\d+)\)", fill)
            assert m, fill
            assert m.group(1) == m.group(2)
            greens.append(int(m.group(1)))
        assert greens == sorted(greens, reverse=True)  # the more it grew, the deeper the red
        # hover shows the delta note, click zooms, as in any flame graph
        mouse(cdp, syscalls["cx"], syscalls["cy"])
        assert text_of(cdp, "details") == "Function: " + syscalls["title"]
        mouse(cdp, syscalls["cx"], syscalls["cy"], click=True)
        assert find(cdp, "do_syscall_64")["width"] == pytest.approx(1180, abs=0.02)
        assert "grew" in text_of(cdp, "legend")
        assert "are gone and not drawn" in text_of(cdp, "subtitle")
        screenshot(cdp, "flamegraph-diff.png")
    finally:
        cdp.close()
