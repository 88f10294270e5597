"""`bpfprof record` end to end: real BPF programs on real perf_events, profiling built workloads."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, TRUE_SPLIT, bpfprof, read_folded, shares

pytestmark = pytest.mark.bpf


def test_command_mode_cpu_split_and_complete_stacks(cpu_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "split.folded"
    r = bpfprof("record", "-F", "999", "-o", str(out), "--", str(cpu_split), "split", "3", "7")
    assert r.returncode == 7, r.stderr  # the command's exit status
    stacks = read_folded(out)
    ours = {s: c for s, c in stacks.items() if s[0] == cpu_split.name[:15]}
    assert sum(ours.values()) > 1500, r.stderr  # ~3 s at 999 Hz
    for name, share in shares(ours, TRUE_SPLIT).items():
        assert abs(share - TRUE_SPLIT[name]) < 0.05, (name, share)
    in_funcs = {s: c for s, c in ours.items() if any(n in s for n in TRUE_SPLIT)}
    reach_main = sum(c for s, c in in_funcs.items() if "main" in s)
    assert reach_main / sum(in_funcs.values()) >= 0.95
    # the call chains are the real ones, root first
    chains = {s[s.index("main") :] for s in in_funcs if "main" in s}
    assert any(c[:4] == ("main", "run_split", "path_b", "mid_b") and "func_b" in c for c in chains)
    assert any(c[:3] == ("main", "run_split", "path_a") and "func_a" in c for c in chains)
    assert "samples" in r.stderr
    assert "wrote" in r.stderr


def test_exec_symbolized_against_the_image_each_sample_ran(
    cpu_split: Path, demo: Path, tmp_path: Path
) -> None:
    """Samples before an exec name cpu_split's functions; after it, the demo's, in one process."""
    out = tmp_path / "exec.folded"
    r = bpfprof("record", "-F", "499", "-o", str(out), "--", str(cpu_split), "exec", "1", str(demo), "1")
    assert r.returncode == 0, r.stderr
    stacks = read_folded(out)
    total = sum(stacks.values())
    # ~1 s in each image; shares, not counts, so a busy machine passes too
    before = sum(c for s, c in stacks.items() if s[0] == cpu_split.name[:15] and "run_split" in s)
    after = sum(c for s, c in stacks.items() if s[0] == demo.name[:15])
    assert before > 0.3 * total, r.stderr
    assert after > 0.3 * total, r.stderr
    assert sum(c for s, c in stacks.items() if s[0] == demo.name[:15] and "hash_text" in s) > 0.05 * total
    unknown = sum(c for s, c in stacks.items() if any("[unknown]" in f or "+0x" in f for f in s[1:]))
    assert unknown < 0.02 * sum(stacks.values()), [s for s in stacks if "[unknown]" in " ".join(s)][:5]


def test_kernel_frames_for_syscall_heavy_workload(cpu_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "sys.folded"
    r = bpfprof(
        "record",
        "-F",
        "499",
        "--annotate-kernel",
        "--delimit",
        "-o",
        str(out),
        "--",
        str(cpu_split),
        "syscalls",
        "2",
    )
    assert r.returncode == 0, r.stderr
    stacks = read_folded(out)
    kernel = {s: c for s, c in stacks.items() if any(f.endswith("_[k]") for f in s)}
    assert sum(kernel.values()) > 50, r.stderr
    # user frames (to main; libc's syscall() has no frame pointer, so do_syscalls itself may be
    # skipped by a frame-pointer walk), then the delimiter, then the kernel entry
    assert any("main" in s and "-" in s and s.index("-") > s.index("main") for s in kernel)
    assert any(re.match(r"(entry_SYSCALL|do_syscall_64|__x64_sys)", f) for s in kernel for f in s)


def test_command_mode_follows_children(cpu_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "fork.speedscope.json"
    r = bpfprof("record", "-F", "499", "-o", str(out), "--", str(cpu_split), "forker", "2")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    pids = {re.search(r"\((\d+)\)", p["name"]).group(1) for p in doc["profiles"]}
    assert len(pids) >= 2, doc["profiles"]
    for p in doc["profiles"]:
        assert sum(p["weights"]) > 0


def test_two_pids_at_once(cpu_split: Path, tmp_path: Path) -> None:
    procs = [subprocess.Popen([str(cpu_split), "split", "6"]) for _ in range(2)]
    try:
        out = tmp_path / "two.speedscope.json"
        r = bpfprof("record", "-p", f"{procs[0].pid},{procs[1].pid}", "-F", "499", "-d", "2", "-o", str(out))
        assert r.returncode == 0, r.stderr
        doc = json.loads(out.read_text())
        names = " ".join(p["name"] for p in doc["profiles"])
        assert f"({procs[0].pid})" in names
        assert f"({procs[1].pid})" in names
        assert len(doc["profiles"]) == 2  # nothing else
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_pid_includes_threads_created_during_the_run(cpu_split: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(cpu_split), "threads", "2"])
    try:
        out = tmp_path / "threads.folded"
        r = bpfprof("record", "-p", str(proc.pid), "-F", "499", "-o", str(out))  # until it exits
        assert r.returncode == 0, r.stderr
        late = {s: c for s, c in read_folded(out).items() if s[0] == "late_worker"}
        assert sum(late.values()) > 800, r.stderr  # two threads x ~2 s x 499 Hz, on 2 CPUs
        assert any("func_a" in s for s in late)
    finally:
        proc.kill()
        proc.wait()


def test_sigint_mid_run_writes_complete_outputs(cpu_split: Path, tmp_path: Path) -> None:
    folded, svg = tmp_path / "int.folded", tmp_path / "int.svg"
    busy = subprocess.Popen([str(cpu_split), "split", "4"])
    p = subprocess.Popen(
        [sys.executable, "-m", "profiler", "record", "-a", "-F", "199", "-o", str(folded), "-o", str(svg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    busy.kill()
    busy.wait()
    assert p.returncode == 0, err
    assert "stopped: signal" in err
    lines = folded.read_text().splitlines()
    assert lines
    assert all(re.fullmatch(r".+ \d+", line) for line in lines)
    assert svg.read_text().rstrip().endswith("</svg>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int.folded", "int.svg"]  # no temp files


def test_pid_that_exits_mid_run_ends_the_recording(cpu_split: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(cpu_split), "split", "1.5"])
    out = tmp_path / "exit.folded"
    start = time.monotonic()
    r = bpfprof("record", "-p", str(proc.pid), "-F", "499", "-o", str(out))
    proc.wait()
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 15
    assert "stopped: targets exited" in r.stderr
    assert any("func_a" in s for s in read_folded(out))


def test_system_wide_with_duration(cpu_split: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(cpu_split), "split", "4"])
    try:
        out = tmp_path / "all.folded"
        r = bpfprof("record", "-a", "-F", "199", "-d", "1.5", "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert "stopped: duration" in r.stderr
        stacks = read_folded(out)
        assert any(s[0] == cpu_split.name[:15] and "func_a" in s for s in stacks)
    finally:
        proc.kill()
        proc.wait()


def test_user_only_and_kernel_only(cpu_split: Path, tmp_path: Path) -> None:
    u, k = tmp_path / "u.folded", tmp_path / "k.folded"
    r = bpfprof(
        "record", "-U", "--annotate-kernel", "-F", "499", "-o", str(u), "--", str(cpu_split), "syscalls", "1"
    )
    assert r.returncode == 0, r.stderr
    assert not any(f.endswith("_[k]") for s in read_folded(u) for f in s)
    r = bpfprof("record", "-K", "-F", "499", "-o", str(k), "--", str(cpu_split), "syscalls", "1")
    assert r.returncode == 0, r.stderr
    assert not any("do_syscalls" in s for s in read_folded(k))


def test_stack_pressure_is_counted_and_reported(cpu_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.folded"
    r = bpfprof("record", "-a", "-F", "999", "-d", "1.5", "--stack-storage-size", "4", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "collision" in r.stderr or "stacks lost" in r.stderr, r.stderr
    assert any("[Missed" in f for s in read_folded(out) for f in s)


def test_command_still_running_at_the_end_is_terminated(cpu_split: Path, tmp_path: Path) -> None:
    """Like perf record: a command that outlives -d is ended with SIGTERM, not left behind."""
    out = tmp_path / "d.folded"
    r = bpfprof("record", "-d", "0.5", "-o", str(out), "--", str(cpu_split), "split", "30", timeout=20)
    assert r.returncode == 128 + 15, r.stderr
    assert "ended it with SIGTERM" in r.stderr
    assert read_folded(out)
    left = subprocess.run(["pgrep", "-f", f"{cpu_split} split 30"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout
