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
    (["record", "-o", "x.folded", "--"], "nothing after --"),
    (["frobnicate"], "invalid choice"),
    # record's remaining paths ({tmp} is the test's temporary directory, which holds a directory x.svg)
    (["record", "-F", "abc"], "not a whole number"),
    (["record", "-c", "0"], "must be positive"),
    (["record", "-c", "abc"], "not a whole number"),
    (["record", "-d", "0"], "positive number of seconds"),
    (["record", "-d", "nan"], "positive number of seconds"),
    (["record", "--call-graph", "lbr"], "use fp or dwarf"),
    (["record", "--call-graph", "dwarf,1000"], "multiple of 4096"),
    (["record", "--stack-storage-size", "0"], "must be positive"),
    (["record", "--stack-storage-size", "1073741824"], "GiB of kernel memory"),
    (["record", "--counts-size", "1073741824"], "GiB of kernel memory"),
    (["record", "--debuginfo-dir", "/nonexistent-dir"], "no such directory"),
    (["record", "-a", "-p", "1"], "whole machine"),
    (["record", "-p", "0"], "bad PID"),
    (["record", "-p"], "expected one argument"),
    (["record", "-C", "1-0"], "bad CPU range"),
    (["record", "--frobnicate"], "unrecognized arguments"),
    (["record", "-d", "0.5", "-o", "{tmp}/x.svg"], "Is a directory"),
    (["record", "-d", "0.5", "-o", "/sys/x.svg"], "cannot write"),
    (["record", "-o", "{tmp}/x.folded", "--", "/etc/passwd"], "Permission denied"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_gets_one_sentence(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "x.svg").mkdir()  # an output path that is a directory
    r = bpfprof(*(a.format(tmp=tmp_path) for a in args))
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


@pytest.mark.parametrize(
    ("vmlinux", "message"),
    [
        (None, "exposes no BTF"),  # no /sys/kernel/btf/vmlinux: bpfprof's own check says so
        (b"", "libbpf found no kernel BTF"),  # a file libbpf cannot use: the loader's error says so
        (b"\x9f\xeb\x01\x00" + bytes(60), "libbpf found no kernel BTF"),  # BTF magic, then garbage
    ],
    ids=["absent", "empty", "corrupt"],
)
def test_no_btf_gets_one_sentence(vmlinux: bytes | None, message: str, tmp_path: Path) -> None:
    """A kernel without BTF, simulated for bpfprof alone: a private mount namespace with a tmpfs over
    /sys/kernel/btf (unshare(1), util-linux), holding no vmlinux or an unusable one."""
    script = "mount -t tmpfs none /sys/kernel/btf"
    if vmlinux is not None:
        (tmp_path / "vmlinux").write_bytes(vmlinux)
        script += f" && cp {tmp_path / 'vmlinux'} /sys/kernel/btf/vmlinux"
    script += ' && exec "$@"'
    out = tmp_path / "x.folded"
    r = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         sys.executable, "-m", "profiler", "record", "-d", "1", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("bpfprof: ")
    assert message in r.stderr, r.stderr
    assert not out.exists()
