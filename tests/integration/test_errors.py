"""Bad input through the real CLI: one clear sentence, a nonzero exit, no traceback, nothing leaked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, bpfprof

pytestmark = pytest.mark.bpf


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


CASES = [
    (["record", "-p", str(dead_pid()), "-d", "1"], "no process with PID"),
    (["record", "-p", "abc"], "bad PID"),
    (["record", "-F", "0"], "must be positive"),
    (["record", "-F", "1000000"], "perf_event_max_sample_rate"),
    (["record", "-F", "99", "-c", "100000"], "either -F"),
    (["record", "-c", "10"], "too short"),
    (["record", "-d", "-3"], "positive number of seconds"),
    (["record", "-d", "soon"], "not a number"),
    (["record", "-U", "-K"], "exclude each other"),
    (["record", "-C", "0-999"], "not online"),
    (["record", "-C", "x"], "CPU list"),
    (["record", "-o", "out.pdf"], "cannot tell the output format"),
    (["record", "-o", "/nonexistent-dir/x.svg"], "does not exist"),
    (["record", "-d", "1", "-o", "/proc/x.svg"], "cannot write"),
    (["record", "-f", "pdf"], "invalid choice"),
    (["record", "-o", "x.folded", "--", "/no/such/command"], "cannot run"),
    (["record", "-p", "1", "--", "true"], "not both"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_gets_one_sentence(args: list[str], message: str, tmp_path: Path) -> None:
    r = bpfprof(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("bpfprof: ")
    assert message in lines[0], lines[0]


def run_with_privileges(
    setpriv_args: list[str], *args: str, copy_to: Path
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
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(copy_to)},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("setpriv_args", "message"),
    [
        # another user: bpfprof says so before touching BPF
        (["--reuid=nobody", "--regid=nogroup", "--clear-groups"], "needs root"),
        # uid 0 with every capability dropped: the kernel refuses bpf(); the user hears why
        (["--inh-caps=-all", "--bounding-set=-all"], "CAP_BPF"),
    ],
    ids=["not-root", "root-without-capabilities"],
)
def test_missing_privileges_get_one_sentence(setpriv_args: list[str], message: str, tmp_path: Path) -> None:
    out = "/tmp/bpfprof-privileges.folded"
    r = run_with_privileges(setpriv_args, "record", "-d", "1", "-o", out, copy_to=tmp_path / "pkg")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
