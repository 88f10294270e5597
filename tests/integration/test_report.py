"""`bpfprof record -o run.bpfprof` then `bpfprof report`: real BPF recordings of real workloads, named
again later from the saved captures (after the process exited, after its binary was deleted)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import TRUE_SPLIT, bpfprof, read_folded, shares
from tests.workloads.build import NOFP_FLAGS, build
from unwind.elf import ElfFile

pytestmark = pytest.mark.bpf


def test_report_gives_the_folded_stacks_of_the_run(cpu_split: Path, tmp_path: Path) -> None:
    rec, folded, again = tmp_path / "run.bpfprof", tmp_path / "run.folded", tmp_path / "again.folded"
    r = bpfprof("record", "-F", "499", "-o", str(rec), "-o", str(folded), "--", str(cpu_split), "split", "1")
    assert r.returncode == 0, r.stderr
    assert f"wrote {rec} (bpfprof)" in r.stderr
    r2 = bpfprof("report", str(rec), "-o", str(again))
    assert r2.returncode == 0, r2.stderr
    assert read_folded(again) == read_folded(folded)
    assert sum(read_folded(folded).values()) > 50
    # the same summary as record's: samples, losses, top functions
    first = [line for line in r.stderr.splitlines() if "top functions" in line or "%" in line]
    assert "top functions (self samples):" in r2.stderr
    for line in first:
        if "func_" in line:
            assert line in r2.stderr


def test_process_that_exited_long_before_report_is_named(cpu_split: Path, tmp_path: Path) -> None:
    """The workload exits a second before the recording ends, and is long gone at report time."""
    rec, folded = tmp_path / "run.bpfprof", tmp_path / "run.folded"
    script = f"{cpu_split} split 0.8; sleep 1"
    r = bpfprof("record", "-F", "499", "-q", "-o", str(rec), "-o", str(folded), "--", "bash", "-c", script)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "later.folded"
    r = bpfprof("report", str(rec), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert read_folded(out) == read_folded(folded)
    stacks = {s: c for s, c in read_folded(out).items() if s[0].startswith("cpu_split")}
    assert sum(stacks.values()) > 30, r.stderr
    got = shares(stacks, TRUE_SPLIT)
    assert got["func_a"] > got["func_c"], got  # 50% against 20%, on a machine that may be busy
    named = sum(c for s, c in stacks.items() if "main" in s and any(n in s for n in TRUE_SPLIT))
    assert named / sum(stacks.values()) > 0.8, r.stderr


def debug_file(binary: Path, debug_dir: Path) -> Path:
    """``binary``'s debug file (objcopy --only-keep-debug) at DIR/.build-id/xx/rest.debug."""
    with ElfFile.open(binary) as elf:
        assert elf.build_id is not None
        hexid = elf.build_id.hex()
    target = debug_dir / ".build-id" / hexid[:2] / f"{hexid[2:]}.debug"
    target.parent.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(binary), str(target)], check=True)
    return target


def test_deleted_binary_is_named_from_a_debug_dir_by_build_id(cpu_split: Path, tmp_path: Path) -> None:
    prog = Path(shutil.copy(cpu_split, tmp_path / "prog"))
    rec, folded = tmp_path / "run.bpfprof", tmp_path / "run.folded"
    r = bpfprof("record", "-F", "499", "-q", "-o", str(rec), "-o", str(folded), "--", str(prog), "split", "1")
    assert r.returncode == 0, r.stderr
    debug_dir = tmp_path / "debug"
    debug_file(prog, debug_dir)
    prog.unlink()

    bare = tmp_path / "bare.folded"
    r = bpfprof("report", str(rec), "-o", str(bare))
    assert r.returncode == 0, r.stderr
    assert "binaries not found now" in r.stderr
    assert f"{prog}: it is no longer at its path" in r.stderr
    assert not any("func_a" in s for s in read_folded(bare))
    assert any(f.startswith("prog+0x") for s in read_folded(bare) for f in s)

    named = tmp_path / "named.folded"
    r = bpfprof("report", str(rec), "-o", str(named), "--debuginfo-dir", str(debug_dir))
    assert r.returncode == 0, r.stderr
    assert "binaries not found" not in r.stderr
    assert read_folded(named) == read_folded(folded)

    lines = tmp_path / "lines.folded"
    r = bpfprof("report", str(rec), "-q", "-o", str(lines), "--lines", "--debuginfo-dir", str(debug_dir))
    assert r.returncode == 0, r.stderr
    assert any(f.startswith("func_a (cpu_split.c:") for s in read_folded(lines) for f in s)


def test_dwarf_mode_recording_reports_the_same_stacks(tmp_path: Path) -> None:
    nofp = build("cpu_split", NOFP_FLAGS, suffix="-nofp")
    rec, folded, again = tmp_path / "run.bpfprof", tmp_path / "run.folded", tmp_path / "again.folded"
    r = bpfprof(
        "record", "-F", "299", "--call-graph", "dwarf", "-q", "-o", str(rec), "-o", str(folded),
        "--", str(nofp), "split", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = bpfprof("report", str(rec), "-o", str(again))
    assert r.returncode == 0, r.stderr
    assert read_folded(again) == read_folded(folded)
    assert any("mid_b" in s for s in read_folded(again))
