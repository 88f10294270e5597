"""Integration fixtures: built workloads, a bpfprof runner, and the no-leak check after each test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporters.folded import parse_folded
from tests.workloads.build import build

ROOT = Path(__file__).resolve().parents[2]

# cpu_split's split mode: the share of its CPU each burner takes, by identical loop iterations
TRUE_SPLIT = {"func_a": 0.50, "func_b": 0.30, "func_c": 0.20}

Stacks = dict[tuple[str, ...], int]


def read_folded(path: Path) -> Stacks:
    """A folded output file as {root-first stack: samples}."""
    with path.open() as f:
        return parse_folded(f)


def shares(stacks: Stacks, names: dict[str, float]) -> dict[str, float]:
    """Each name's share of the samples whose stacks hold one of ``names``."""
    hits = {n: sum(c for s, c in stacks.items() if n in s) for n in names}
    total = sum(hits.values())
    assert total > 0, "no samples in the workload's functions"
    return {n: h / total for n, h in hits.items()}


@pytest.fixture(scope="session")
def cpu_split() -> Path:
    return build("cpu_split")


@pytest.fixture(scope="session")
def demo() -> Path:
    """The demo workload of scripts/demo (hash_text, parse_records, ...), a second distinct image."""
    return build("demo", src=ROOT / "scripts" / "demo" / "demo.c")


def bpfprof(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    """Run `python -m profiler ARGS` as a user would; text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "profiler", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )


def our_programs() -> list[str]:
    """Loaded BPF programs of ours (bpftool prog show), by name."""
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = subprocess.run([bpftool, "prog", "show"], capture_output=True, text=True, check=True).stdout
    return re.findall(r"name (do_sample|on_fork|stat_switch|stat_flush|stat_fork)\b", out)


@pytest.fixture(autouse=True)
def no_leaked_programs(request: pytest.FixtureRequest):
    """After every BPF test, none of our programs may remain loaded."""
    yield
    if request.node.get_closest_marker("bpf") and os.geteuid() == 0:
        # the kernel frees tracing programs after an RCU grace period: give it a moment
        deadline = time.monotonic() + 3
        while (left := our_programs()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"BPF programs left loaded after the run: {left}"
