"""Frames named where other profilers print [unknown]: JIT code, containers, exec'd and short-lived
processes. Real BPF, real processes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import bpfprof, read_folded
from tests.workloads.build import FP_FLAGS, build

pytestmark = pytest.mark.bpf

HOT_JS = """
function hotLoopForBpfprof(n) { let x = 0; for (let i = 0; i < n; i++) { x = (x * 31 + i) | 0; } return x; }
const end = Date.now() + 2000; let s = 0;
while (Date.now() < end) { s += hotLoopForBpfprof(100000); }
console.log(s);
"""


def node() -> str:
    path = shutil.which("node") or shutil.which("nodejs")
    assert path, "node is needed for the JIT tests (scripts/setup.sh --test installs Debian's nodejs)"
    return path


def jit_share(stacks: dict[tuple[str, ...], int], name: str) -> float:
    total = sum(c for s, c in stacks.items() if s[0] == "node")
    hits = sum(c for s, c in stacks.items() if s[0] == "node" and any(name in f for f in s))
    return hits / total if total else 0.0


def test_jit_frames_named_from_perf_map(tmp_path: Path) -> None:
    script = tmp_path / "hot.js"
    script.write_text(HOT_JS)
    out = tmp_path / "node.folded"
    r = bpfprof(
        "record", "-F", "499", "-o", str(out), "--", node(), "--perf-basic-prof", str(script), cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert jit_share(read_folded(out), "hotLoopForBpfprof") > 0.5, r.stderr


def container(root: Path, binary: Path, *args: str) -> list[str]:
    """Run ``binary`` as /app in a PID namespace and a root of its own (``root``, holding only the static
    binary and /tmp): its pid and its /tmp are not the host's. (/proc/PID/maps names a chrooted
    process's files by their host paths: a binary at a path the host lacks needs a mount namespace,
    see test_container_with_its_own_mount_and_pid_namespace.)"""
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    shutil.copy(binary, root / "app")
    return ["unshare", "--pid", "--fork", "chroot", str(root), "/app", *args]


def test_container_with_its_own_mount_and_pid_namespace(tmp_path: Path) -> None:
    """A process in a mount and PID namespace of its own runs a private copy of its binary, on a tmpfs
    mounted only there: the path its maps name does not exist on the host (an empty directory there),
    so the binary can only be read through /proc/PID/map_files or /proc/PID/root."""
    app = build("cpu_split", [*FP_FLAGS, "-static"], suffix="-static")
    box = tmp_path / "box"
    (box / "mnt").mkdir(parents=True)
    shutil.copy(app, box / "app.copy")
    # The directory is bound onto itself and made private first: its mounts then stay in the namespace
    # (unshare's own --propagation private needs / to be a mount point, which a chroot's is not).
    script = (
        'set -e; d="$0"; mount --bind "$d" "$d"; mount --make-private "$d"; '
        'mount -t tmpfs bpfprof-ctr "$d/mnt"; cp "$d/app.copy" "$d/mnt/app"; exec "$d/mnt/app" "$@"'
    )
    ns = ["unshare", "--mount", "--propagation", "unchanged", "--pid", "--fork", "sh", "-c", script, str(box)]
    out = tmp_path / "ns.folded"
    r = bpfprof("record", "-F", "499", "-o", str(out), "--", *ns, "split", "2")
    assert r.returncode == 0, r.stderr
    assert list((box / "mnt").iterdir()) == []  # nothing there on the host
    stacks = {s: c for s, c in read_folded(out).items() if s[0] == "app"}
    assert sum(stacks.values()) > 500, r.stderr
    named = sum(c for s, c in stacks.items() if "func_a" in s or "func_b" in s or "func_c" in s)
    assert named / sum(stacks.values()) > 0.95, r.stderr


def test_container_jit_map_with_namespace_pid(tmp_path: Path) -> None:
    """A JIT in its own PID namespace and root writes /tmp/perf-1.map there: found through
    /proc/PID/root with its namespace pid."""
    jit = build("tiny_jit", ["-O2", "-static"], suffix="-static")
    root = tmp_path / "ctr"
    out = tmp_path / "jit.folded"
    r = bpfprof("record", "-F", "499", "-o", str(out), "--", *container(root, jit, "2"))
    assert r.returncode == 0, r.stderr
    assert (root / "tmp" / "perf-1.map").exists()  # pid 1 in its namespace
    stacks = {s: c for s, c in read_folded(out).items() if s[0] == "app"}
    named = sum(c for s, c in stacks.items() if "jitted_spin_for_bpfprof" in s)
    assert named / sum(stacks.values()) > 0.8, r.stderr


def test_short_lived_commands_back_to_back(cpu_split: Path, tmp_path: Path) -> None:
    """Ten 200 ms processes, one after another, are named like one long one."""
    out = tmp_path / "short.folded"
    loop = f"for i in 1 2 3 4 5 6 7 8 9 10; do {cpu_split} split 0.2; done"
    r = bpfprof("record", "-F", "999", "-o", str(out), "--", "sh", "-c", loop)
    assert r.returncode == 0, r.stderr
    ours = {s: c for s, c in read_folded(out).items() if s[0] == cpu_split.name[:15]}
    total = sum(ours.values())
    assert total > 1000, r.stderr  # ~2 s at 999 Hz
    # Stacks the kernel did not give (stack-map bucket collisions: every spin-loop sample is a new
    # stack, up to ~4% of a run at the default size; or no walkable stack) are a reported loss, not a
    # symbolization failure: they are left out, and must be no more than the summary says was lost.
    missed = sum(c for s, c in ours.items() if "[Missed User Stack]" in s)
    reported = sum(
        int(n) for n in re.findall(r"(\d+) user stacks (?:lost to stack-map collisions|missing)", r.stderr)
    )
    assert missed <= reported, r.stderr
    named = sum(c for s, c in ours.items() if any(f in s for f in ("func_a", "func_b", "func_c", "main")))
    assert named / (total - missed) > 0.97, (sorted(ours.items(), key=lambda kv: -kv[1])[:5], r.stderr)


def test_lines_give_py_spy_style_frames(cpu_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "lines.folded"
    r = bpfprof("record", "--lines", "-F", "499", "-o", str(out), "--", str(cpu_split), "split", "1")
    assert r.returncode == 0, r.stderr
    stacks = {s: c for s, c in read_folded(out).items() if s[0] == cpu_split.name[:15]}
    frames = {f for s in stacks for f in s}
    assert any(re.fullmatch(r"func_a \(cpu_split\.c:\d+\)", f) for f in frames), sorted(frames)[:20]
    assert any(re.fullmatch(r"main \(cpu_split\.c:\d+\)", f) for f in frames)


def test_processes_retired_while_recording_are_counted_once_and_named(
    cpu_split: Path, tmp_path: Path
) -> None:
    """System-wide, short processes that exit during the run are symbolized and forgotten while it runs
    (profiler/retire.py): the summary says so, every sample the kernel kept is in the output exactly once,
    and their frames are named as those of a process still alive at the end would be."""
    out = tmp_path / "retired.folded"
    loop = f"for i in $(seq 12); do {cpu_split} split 0.2; done"
    load = subprocess.Popen(["sh", "-c", f"sleep 0.5; {loop}"])
    try:
        r = bpfprof("record", "-a", "-F", "499", "-d", "6", "-o", str(out))
    finally:
        load.wait(timeout=30)
    assert r.returncode == 0, r.stderr
    retired = re.search(r"^(\d+) exited or exec'd process images were symbolized", r.stderr, re.M)
    assert retired, r.stderr
    assert int(retired.group(1)) >= 8, r.stderr
    kept = int(re.search(r"^bpfprof: (\d+) samples", r.stderr, re.M).group(1))
    stacks = read_folded(out)
    assert sum(stacks.values()) == kept, r.stderr
    ours = {s: c for s, c in stacks.items() if s[0] == cpu_split.name[:15]}
    assert sum(ours.values()) > 0.6 * 12 * 0.2 * 499, r.stderr
    # of the samples with a user stack (a collision in the shared stack map is a loss, counted apart)
    ours = {s: c for s, c in ours.items() if s[1] != "[Missed User Stack]"}
    total = sum(ours.values())
    named = sum(c for s, c in ours.items() if any(f in s for f in ("func_a", "func_b", "func_c", "main")))
    assert named / total > 0.97, (sorted(ours.items(), key=lambda kv: -kv[1])[:5], r.stderr)
