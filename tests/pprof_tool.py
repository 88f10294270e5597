"""``go tool pprof`` (Debian golang-go) as the reference reader of pprof files, and parsers of its text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

Stacks = dict[tuple[str, ...], int]

_SEPARATOR = "-----------+-------------------------------------------------------"
_TOP_TOTAL = re.compile(r"Showing nodes accounting for (\d+), [\d.]+% of (\d+) total")


def go_binary() -> str | None:
    found = shutil.which("go")
    return found or ("/usr/lib/go/bin/go" if os.access("/usr/lib/go/bin/go", os.X_OK) else None)


def require_go() -> str:
    """The ``go`` command; skips the test without it, except under CI=true (setup.sh --test installs it)."""
    go = go_binary()
    if go is None:
        reason = "go tool pprof is missing (Debian package golang-go; scripts/setup.sh --test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return go


def go_pprof(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``go tool pprof ARGS`` offline (no module proxy, no toolchain download, a private HOME)."""
    go = require_go()
    with tempfile.TemporaryDirectory(prefix="bpfprof-go-") as home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "GOCACHE": os.path.join(home, "cache"),
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "",
            "PPROF_TMPDIR": home,
        }
        r = subprocess.run(
            [go, "tool", "pprof", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
        )
    assert r.returncode == 0, f"go tool pprof {' '.join(map(str, args))} failed: {r.stderr}"
    return r


def parse_traces(text: str) -> Stacks:
    """``go tool pprof -traces`` output as {root-first stack: summed value}.

    Grammar (pprof internal/report printTraces): header lines, then blocks opened by the separator line;
    a block holds label lines ``%10s:  VALUES``, then frame lines ``%10s   NAME[ (inline)]`` (the value in
    the first frame line's first column only, leaf first). Values must be plain integers (use
    ``-sample_index=samples``).
    """
    stacks: Stacks = {}
    blocks = text.split(_SEPARATOR + "\n")[1:]
    for block in blocks:
        value: int | None = None
        names: list[str] = []
        for line in block.splitlines():
            if value is None and line[10:13] == ":  ":
                continue  # a label
            head, sep, name = line[:10], line[10:13], line[13:]
            assert sep == "   ", f"unexpected -traces line {line!r}"
            if head.strip():
                assert value is None, f"a second value in one trace: {line!r}"
                value = int(head)
            names.append(name.removesuffix(" (inline)"))
        if value is None:
            continue  # the closing separator
        stack = tuple(reversed(names))
        stacks[stack] = stacks.get(stack, 0) + value
    return stacks


def parse_top_total(text: str) -> int:
    """The total of ``go tool pprof -top`` (``Showing nodes accounting for N, P% of TOTAL total``)."""
    match = _TOP_TOTAL.search(text)
    assert match is not None, text[:500]
    return int(match.group(2))


def parse_raw_samples(text: str) -> list[list[int]]:
    """The value columns of the ``Samples:`` section of ``go tool pprof -raw`` (one list per sample)."""
    out: list[list[int]] = []
    section = text.split("\nSamples:\n", 1)[1].split("\nLocations\n", 1)[0]
    for line in section.splitlines()[1:]:  # the first line names the sample types
        head, colon, _ = line.partition(":")
        if colon and head.strip() and all(part.isdigit() for part in head.split()):
            out.append([int(part) for part in head.split()])
    return out
