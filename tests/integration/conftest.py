"""Integration fixtures: built workloads, a bpfprof runner, and the no-leak check after each test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
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


def private_mount_ns(script: str) -> list[str]:
    """The argv prefix that runs ``script`` (``sh -c``; the arguments that follow are its $0, $1...) in a
    mount namespace of its own (unshare(1), util-linux) whose mounts under /sys stay in it.

    /sys is made private rather than / (``unshare --propagation private``): in a chroot, / is no mount
    point and its propagation cannot be changed; /sys is one wherever the kernel's sysfs is."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "unchanged",
        "sh",
        "-c",
        f"mount --make-rprivate /sys && {script}",
    ]


def run_with_privileges(
    setpriv_args: list[str], *args: str, copy_to: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """bpfprof under setpriv(1) (util-linux, on every Debian system) with fewer privileges.

    The packages are copied to ``copy_to`` (made world-readable) and run by the base interpreter:
    another user may not be able to enter the checkout (under /root, say) or the venv.
    """
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"
    for package in ("profiler", "unwind", "exporters"):
        shutil.copytree(ROOT / package, copy_to / package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [copy_to, *copy_to.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    parent = copy_to
    while parent != parent.parent:  # let others through the temporary directories above it
        parent = parent.parent
        if parent.stat().st_uid == 0 and str(parent).startswith(tempfile.gettempdir()):
            parent.chmod(parent.stat().st_mode | 0o755)
    return subprocess.run(
        [setpriv, *setpriv_args, os.path.realpath(sys.executable), "-m", "profiler", *args],
        capture_output=True,
        text=True,
        cwd=copy_to,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(copy_to), **(env or {})},
        timeout=60,
    )


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
