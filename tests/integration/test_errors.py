"""Bad input through the real CLI: one clear sentence, a nonzero exit, no traceback, nothing leaked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, bpfprof, private_mount_ns, run_with_privileges

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
        [*private_mount_ns(script), "sh",
         sys.executable, "-m", "profiler", "record", "-d", "1", "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("bpfprof: ")
    assert message in r.stderr, r.stderr
    assert not out.exists()
