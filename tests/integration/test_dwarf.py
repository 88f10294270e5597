"""--call-graph dwarf end to end: code without frame pointers gets complete stacks, online."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import TRUE_SPLIT, bpfprof, read_folded, shares
from tests.workloads.build import NOFP_FLAGS, build

pytestmark = pytest.mark.bpf


@pytest.fixture(scope="module")
def nofp() -> Path:
    return build("cpu_split", NOFP_FLAGS, suffix="-nofp")


def ours(stacks: dict[tuple[str, ...], int], binary: Path) -> dict[tuple[str, ...], int]:
    return {s: c for s, c in stacks.items() if s[0] == binary.name[:15]}


def test_no_frame_pointers_shares_and_stacks_to_main(nofp: Path, tmp_path: Path) -> None:
    out = tmp_path / "dwarf.folded"
    r = bpfprof("record", "--call-graph", "dwarf", "-F", "999", "-o", str(out), "--", str(nofp), "split", "3")
    assert r.returncode == 0, r.stderr
    stacks = ours(read_folded(out), nofp)
    in_funcs = {s: c for s, c in stacks.items() if any(f in s for f in TRUE_SPLIT)}
    total = sum(in_funcs.values())
    assert total > 1500, r.stderr
    for name, share in shares(in_funcs, TRUE_SPLIT).items():
        assert abs(share - TRUE_SPLIT[name]) < 0.03, (name, share)
    reach_main = sum(c for s, c in in_funcs.items() if "main" in s)
    assert reach_main / total >= 0.99, [s for s in in_funcs if "main" not in s][:5]
    assert any(s[-4:] == ("run_split", "path_b", "mid_b", "func_b") for s in in_funcs), list(in_funcs)[:5]


def test_frame_pointers_fail_where_dwarf_succeeds(nofp: Path, tmp_path: Path) -> None:
    """The reason for the mode: the same binary under fp stacks does not reach main."""
    out = tmp_path / "fp.folded"
    r = bpfprof("record", "-F", "499", "-o", str(out), "--", str(nofp), "split", "1")
    assert r.returncode == 0, r.stderr
    stacks = ours(read_folded(out), nofp)
    chains = sum(c for s, c in stacks.items() if "path_b" in s and "mid_b" in s and "main" in s)
    assert chains / sum(stacks.values()) < 0.5


def test_deep_recursion_overflowing_the_copy_is_marked_truncated(nofp: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep.folded"
    r = bpfprof(
        "record",
        "--call-graph",
        "dwarf,4096",
        "-F",
        "499",
        "-o",
        str(out),
        "--",
        str(nofp),
        "deep",
        "1",
        "300",
    )
    assert r.returncode == 0, r.stderr
    stacks = ours(read_folded(out), nofp)
    truncated = sum(c for s, c in stacks.items() if s[1] == "[truncated]")
    assert truncated / sum(stacks.values()) > 0.9, r.stderr
    assert "truncated" in r.stderr  # the summary says so
    assert any(s[1] == "[truncated]" and s[-1] == "func_a" and s.count("recurse") > 20 for s in stacks)


def test_threads_get_their_own_stacks(nofp: Path, tmp_path: Path) -> None:
    out = tmp_path / "threads.folded"
    r = bpfprof(
        "record", "--call-graph", "dwarf", "-F", "499", "-o", str(out), "--", str(nofp), "threads", "1.5"
    )
    assert r.returncode == 0, r.stderr
    late = {s: c for s, c in read_folded(out).items() if s[0] == "late_worker"}
    assert sum(late.values()) > 600, r.stderr
    in_funcs = {s: c for s, c in late.items() if any(f in s for f in TRUE_SPLIT)}
    # a thread's stack starts at its entry point, not at main
    good = sum(c for s, c in in_funcs.items() if "late_worker" in s[1:] and "main" not in s)
    assert good / sum(in_funcs.values()) >= 0.95


def test_python_interpreter_native_stacks_reach_main(tmp_path: Path) -> None:
    """Debian's python3.11 has no frame pointers; DWARF unwinding still reaches the entry point.

    Its main is not on the stack: it is a stripped static function that tail-calls Py_BytesMain,
    so the frame below Py_BytesMain is libc's __libc_start_call_main (gdb shows the same)."""
    python = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable
    out = tmp_path / "py.folded"
    loop = "import time\nend = time.time() + 2\nx = 0\nwhile time.time() < end:\n    x = (x * 31 + 7) % 97\n"
    r = bpfprof("record", "--call-graph", "dwarf", "-F", "499", "-o", str(out), "--", python, "-c", loop)
    assert r.returncode == 0, r.stderr
    stacks = {s: c for s, c in read_folded(out).items() if s[0].startswith("python")}
    total = sum(stacks.values())
    assert total > 600, r.stderr
    eval_loop = {s: c for s, c in stacks.items() if "_PyEval_EvalFrameDefault" in s}
    assert sum(eval_loop.values()) / total > 0.8
    full = sum(
        c
        for s, c in eval_loop.items()
        if s[1:5] == ("_start", "__libc_start_main", "__libc_start_call_main", "Py_BytesMain")
    )
    assert full / sum(eval_loop.values()) >= 0.95, list(eval_loop)[:3]


def test_dwarf_with_pid_and_system_wide(nofp: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(nofp), "split", "4"])
    try:
        for target in (["-p", str(proc.pid)], ["-a"]):
            out = tmp_path / "t.speedscope.json"
            r = bpfprof("record", "--call-graph", "dwarf", "-F", "199", "-d", "1", *target, "-o", str(out))
            assert r.returncode == 0, r.stderr
            assert "func_a" in out.read_text()
    finally:
        proc.kill()
        proc.wait()
