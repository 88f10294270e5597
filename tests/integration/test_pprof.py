"""pprof output of real recordings, read by ``go tool pprof``: the folded output's stacks and counts.

And py-spy's ``--threads``/``--processes`` roots on a workload that forks, in both outputs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from exporters.folded import sanitize_name
from exporters.pprof import decode_profile
from profiler.procinfo import kernel_build_id
from tests.integration.conftest import bpfprof, read_folded
from tests.pprof_tool import Stacks, go_pprof, parse_raw_samples, parse_top_total, parse_traces, require_go
from tests.unit.conftest import run

pytestmark = pytest.mark.bpf


def pprof_stacks(path: Path) -> Stacks:
    """``go tool pprof -traces`` of a file as {root-first stack: samples}, names as folded renders them."""
    traces = parse_traces(go_pprof("-traces", "-sample_index=samples", path).stdout)
    out: Stacks = {}
    for stack, count in traces.items():
        key = tuple(sanitize_name(n) for n in stack)
        out[key] = out.get(key, 0) + count
    return out


def test_pprof_has_the_folded_stacks_and_counts(cpu_split: Path, tmp_path: Path) -> None:
    require_go()
    folded, pprof = tmp_path / "split.folded", tmp_path / "split.pb.gz"
    r = bpfprof(
        "record", "-F", "499", "-o", str(folded), "-o", str(pprof), "--", str(cpu_split), "syscalls", "2"
    )
    assert r.returncode == 0, r.stderr
    expected = read_folded(folded)
    total = sum(expected.values())
    assert total > 100, r.stderr  # ~2 s at 499 Hz: ~1000 on an idle machine
    assert pprof_stacks(pprof) == expected
    assert parse_top_total(go_pprof("-top", "-sample_index=samples", pprof).stdout) == total

    raw = go_pprof("-raw", pprof).stdout
    assert "PeriodType: cpu nanoseconds" in raw
    assert f"Period: {round(1e9 / 499)}" in raw
    values = parse_raw_samples(raw)
    assert sum(v[0] for v in values) == total
    assert all(v[1] > 0 for v in values)  # cpu nanoseconds of each sample
    # the workload's mapping comes first (pprof's main binary) with the build-id readelf shows
    build_id = re.search(r"Build ID: ([0-9a-f]+)", run("readelf", "-n", cpu_split))
    assert build_id is not None
    mappings = raw.split("\nMappings\n", 1)[1].splitlines()
    assert mappings[0].split()[2:4] == [str(cpu_split), build_id.group(1)], mappings
    assert "[FN]" in mappings[0]

    decoded = decode_profile(pprof.read_bytes())
    assert decoded.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert decoded.duration_nanos > 1_000_000_000
    assert all(f.system_name == "" for f in decoded.functions.values())
    # getppid() in a loop: user frames down to the system call, then the kernel's, in its mapping
    syscalls = sum(c for s, c in expected.items() if "main" in s and "do_syscall_64" in s)
    assert syscalls > 0.3 * total, r.stderr
    kernel = [m for m in decoded.mappings.values() if m.filename == "[kernel.kallsyms]"]
    assert len(kernel) == 1
    assert kernel[0].build_id == kernel_build_id()
    by_id = {loc.id: loc for loc in decoded.locations.values()}
    for sample in decoded.samples:
        names = [decoded.functions[ln.function_id].name for i in sample.location_ids for ln in by_id[i].lines]
        if "do_syscall_64" in names:
            loc = by_id[sample.location_ids[names.index("do_syscall_64")]]
            assert decoded.mappings[loc.mapping_id].filename == "[kernel.kallsyms]"


def test_threads_and_processes_roots_are_py_spys(cpu_split: Path, tmp_path: Path) -> None:
    """``forker``: a parent and its forked child both run the split; the child's stacks start at the
    parent's ``process`` root, then its own, then ``thread (TID): COMM``, in folded and in pprof."""
    require_go()
    folded, pprof = tmp_path / "roots.folded", tmp_path / "roots.pb.gz"
    r = bpfprof(
        "record", "-F", "299", "--threads", "--processes", "-o", str(folded), "-o", str(pprof),
        "--", str(cpu_split), "forker", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    stacks = read_folded(folded)
    assert pprof_stacks(pprof) == stacks
    cmd = f"{cpu_split} forker 1"
    comm = cpu_split.name[:15]
    process = re.compile(r'process (\d+):"(.*)"')
    thread = re.compile(r"thread \((\d+)\): (.*)")
    parents, children = 0, 0
    pids: set[str] = set()
    for stack, count in stacks.items():
        if "main" not in stack:
            continue  # before the exec: bpfprof's own child, or the dynamic loader
        roots = stack[: stack.index("main")]
        procs = [m for f in roots if (m := process.fullmatch(f))]
        threads = [m for f in roots if (m := thread.fullmatch(f))]
        # processes (outermost first), then one thread, then the stack (libc's start, main...)
        assert [m.group(0) for m in procs + threads] == list(roots[: len(procs) + 1]), roots
        assert len(threads) == 1, roots
        assert {m.group(2) for m in procs} == {cmd}, roots  # argv joined by single spaces
        assert threads[0].group(2) == comm
        assert threads[0].group(1) == procs[-1].group(1)  # single-threaded: tid == pid
        pids.update(m.group(1) for m in procs)
        if len(procs) == 1:
            parents += count
        else:
            assert len(procs) == 2, roots
            assert procs[0].group(1) != procs[1].group(1)
            children += count
    assert len(pids) == 2, (pids, list(stacks)[:5])
    # ~1 s of CPU each at 299 Hz (~300 samples on an idle machine): shares, as the machine may be busy
    assert parents > 10, r.stderr
    assert children > 10, r.stderr
    assert 0.2 < parents / (parents + children) < 0.8, (parents, children)


def test_lines_carry_file_and_line_apart(cpu_split: Path, tmp_path: Path) -> None:
    """``--lines``: folded names read ``func (file.c:LINE)``; pprof has the same frames with the file in
    the Function and the line in the Line, which ``go tool pprof -lines`` prints."""
    require_go()
    folded, pprof = tmp_path / "lines.folded", tmp_path / "lines.pb.gz"
    r = bpfprof(
        "record",
        "--lines",
        "-F",
        "499",
        "-o",
        str(folded),
        "-o",
        str(pprof),
        "--",
        str(cpu_split),
        "split",
        "1",
    )
    assert r.returncode == 0, r.stderr
    decoded = decode_profile(pprof.read_bytes())
    rendered: Stacks = {}
    for sample in decoded.samples:
        names = []
        for lid in sample.location_ids:  # leaf first, each location's lines innermost first
            for line in decoded.locations[lid].lines:
                fn = decoded.functions[line.function_id]
                label = (
                    f"{fn.name} ({os.path.basename(fn.filename) or '??'}:{line.line})"
                    if line.line
                    else fn.name
                )
                names.append(sanitize_name(label))
        key = tuple(reversed(names))
        rendered[key] = rendered.get(key, 0) + sample.values[0]
    expected = read_folded(folded)
    assert rendered == expected
    assert any("func_a (cpu_split.c:" in " ".join(s) for s in expected)
    traces = go_pprof("-traces", "-sample_index=samples", "-lines", pprof).stdout
    assert re.search(r"func_a \S*cpu_split\.c:\d+", traces), traces[:2000]
