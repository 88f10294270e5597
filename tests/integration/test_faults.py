"""Faults and load: full maps, a stalled consumer, signals at bad moments, PID reuse, two instances,
leaks, and a fork-heavy run. Real BPF programs on real perf events; the faults are real too (tiny maps,
SIGSTOP, signals, ns_last_pid), never test-only code paths.

Covered elsewhere, not repeated here: a target that exits (test_record.py
test_pid_that_exits_mid_run_ends_the_recording), a target that execs another binary
(test_record.py test_exec_symbolized_against_the_image_each_sample_ran), SIGINT mid-run
(test_record.py test_sigint_mid_run_writes_complete_outputs).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from profiler.dwarf import DwarfAggregator
from profiler.errors import UserError
from profiler.perf_event import SamplingSpec, max_sample_rate, online_cpus
from profiler.raw import StackStatus
from profiler.record import RecordOptions, RecordResult, StopFlag, record
from profiler.symbolize import LazySymbolizer
from tests.integration.conftest import ROOT, bpfprof, read_folded
from tests.workloads.build import NOFP_FLAGS, build

pytestmark = pytest.mark.bpf

OUR_PROGRAMS = ("do_sample", "do_sample_dwarf", "on_fork", "on_exec")
SUMMARY = re.compile(r"^bpfprof: (\d+) samples in ")
FOLDED_LINE = re.compile(r".+ \d+")


@pytest.fixture(scope="module")
def many_stacks() -> Path:
    """2^DEPTH distinct call chains (tests/workloads/many_stacks.c)."""
    return build("many_stacks")


@pytest.fixture(scope="module")
def nofp() -> Path:
    return build("cpu_split", NOFP_FLAGS, suffix="-nofp")


def our_programs() -> list[str]:
    """Every loaded BPF program named like one of ours (all four, not only the fp sampler)."""
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = subprocess.run([bpftool, "prog", "show"], capture_output=True, text=True, check=True).stdout
    return [m for m in re.findall(r"name (\w+)", out) if m in OUR_PROGRAMS]


def our_fds() -> list[str]:
    """This process's fds that are BPF objects or perf events (readlink of /proc/self/fd)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "bpf" in target or "perf_event" in target:
            out.append(target)
    return sorted(out)


def no_programs_left(baseline: list[str]) -> bool:
    """Our programs back to ``baseline`` (others' runs may hold theirs); the kernel frees after RCU."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(our_programs()) <= len(baseline):
            return True
        time.sleep(0.05)
    return False


def record_here(opts: RecordOptions, on_tick: Callable | None = None) -> RecordResult:
    """record() in this (long-lived) process, with the CLI's symbolizer and, in DWARF mode, unwinder."""
    with LazySymbolizer() as symbolizers, StopFlag() as stop:
        dwarf = DwarfAggregator(symbolizers.get) if opts.dwarf_stack_size else None
        return record(opts, stop, on_new_process=symbolizers.on_new_process, on_tick=on_tick, dwarf=dwarf)


def raw_samples(result: RecordResult) -> int:
    return sum(samples for samples, _ in result.raw.stacks.values())


def summary_samples(stderr: str) -> int:
    """The sample count of the summary's first line."""
    for line in stderr.splitlines():
        if m := SUMMARY.match(line):
            return int(m.group(1))
    raise AssertionError(f"no summary line in:\n{stderr}")


def assert_complete_folded(path: Path) -> int:
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    bad = [line for line in lines if not FOLDED_LINE.fullmatch(line)]
    assert not bad, bad[:3]
    return sum(int(line.rsplit(" ", 1)[1]) for line in lines)


def rate(hz: int) -> int:
    """``hz``, or the kernel's current limit if it lowered kernel.perf_event_max_sample_rate."""
    return min(hz, max_sample_rate())


# -- full maps --------------------------------------------------------------------------------------


def test_stack_map_pressure_loses_stacks_not_samples(many_stacks: Path) -> None:
    """4096 distinct stacks into a 64-entry stack map: most user stacks collide; every collision is
    counted, and each lost stack is still a sample (kept = seen, sum of counts = kept)."""
    proc = subprocess.Popen([str(many_stacks), "3", "12"])
    try:
        result = record_here(
            RecordOptions(
                pids=[proc.pid],
                sampling=SamplingSpec(rate(999)),
                cpus=online_cpus(),
                duration_s=2,
                stack_storage_size=64,
            )
        )
    finally:
        proc.kill()
        proc.wait()
    stats = result.raw.stats
    assert stats["kept"] > 500, stats
    assert stats["user_collision"] > 0.5 * stats["kept"], stats  # 64 slots for 4096 stacks
    assert stats["seen"] == stats["kept"] + stats["counts_full"], stats
    assert stats["counts_full"] == 0, stats
    assert raw_samples(result) == stats["kept"]
    collided = sum(n for s, (n, _) in result.raw.stacks.items() if s.user_status is StackStatus.COLLISION)
    assert collided == stats["user_collision"]


def test_stack_map_pressure_is_reported_and_totals_add_up(many_stacks: Path, tmp_path: Path) -> None:
    out = tmp_path / "pressure.folded"
    r = bpfprof(
        "record",
        "-F",
        str(rate(999)),
        "--stack-storage-size",
        "64",
        "-o",
        str(out),
        "--",
        str(many_stacks),
        "2",
        "12",
    )
    assert r.returncode == 0, r.stderr
    m = re.search(r"^\s+(\d+) user stacks lost to stack-map collisions", r.stderr, re.M)
    assert m, r.stderr
    stacks = read_folded(out)
    missed = sum(c for s, c in stacks.items() if "[Missed User Stack]" in s)
    named = sum(c for s, c in stacks.items() if "burn" in s)
    assert missed >= int(m.group(1)) > 0
    assert named > 0  # the stacks that found a slot are whole
    assert sum(stacks.values()) == summary_samples(r.stderr) == assert_complete_folded(out)


def test_counts_map_full_drops_samples_counts_them_and_goes_on(many_stacks: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(many_stacks), "3", "12"])
    try:
        result = record_here(
            RecordOptions(
                pids=[proc.pid],
                sampling=SamplingSpec(rate(999)),
                cpus=online_cpus(),
                duration_s=1.5,
                counts_size=16,
            )
        )
    finally:
        proc.kill()
        proc.wait()
    stats = result.raw.stats
    assert result.stopped_by == "duration"
    assert stats["counts_full"] > 0.5 * stats["seen"], stats
    assert stats["seen"] == stats["kept"] + stats["counts_full"], stats
    assert raw_samples(result) == stats["kept"]
    assert len(result.raw.stacks) <= 16
    # and the CLI says so, in its loss report
    out = tmp_path / "full.folded"
    r = bpfprof(
        "record", "-F", "499", "--counts-size", "8", "-o", str(out), "--", str(many_stacks), "1", "12"
    )
    assert r.returncode == 0, r.stderr
    assert "samples dropped: counts map full (raise --counts-size)" in r.stderr
    assert assert_complete_folded(out) == summary_samples(r.stderr)


# -- a consumer that falls behind -------------------------------------------------------------------


def test_ring_buffer_overrun_with_a_stalled_consumer_is_counted(nofp: Path) -> None:
    """DWARF mode at 4999 Hz on busy CPUs while the consumer stalls for 1.5 s (a slow on_tick, as a slow
    symbolizer would be): the 16 MB ring fills, the kernel drops samples and counts them, and the
    recording goes on after the stall."""
    # deep recursion: every sample copies the whole 16 KiB, so the ring fills in well under a second
    busy = [subprocess.Popen([str(nofp), "deep", "6", "400"]) for _ in online_cpus()]
    marks: dict[str, int] = {}
    holder: dict[str, DwarfAggregator] = {}

    def stall(_sampler: object, elapsed: float) -> None:
        if elapsed > 0.5 and "stalled" not in marks:
            marks["stalled"] = 1
            time.sleep(1.5)
            marks["after_stall"] = holder["dwarf"].samples

    try:
        with LazySymbolizer() as symbolizers, StopFlag() as stop:
            holder["dwarf"] = DwarfAggregator(symbolizers.get)
            opts = RecordOptions(
                pids=[p.pid for p in busy],
                sampling=SamplingSpec(rate(4999)),
                cpus=online_cpus(),
                duration_s=3.5,
                dwarf_stack_size=16384,
            )
            result = record(
                opts, stop, on_new_process=symbolizers.on_new_process, on_tick=stall, dwarf=holder["dwarf"]
            )
    finally:
        for p in busy:
            p.kill()
            p.wait()
    stats = result.raw.stats
    assert result.stopped_by == "duration"
    assert stats["samples_dropped"] > 0, stats
    assert stats["seen"] == stats["kept"] + stats["samples_dropped"] + stats["kthread_skipped"], stats
    assert raw_samples(result) == stats["kept"] == holder["dwarf"].samples
    # sampling went on after the stall: well over a second of samples came after it
    after = holder["dwarf"].samples - marks["after_stall"]
    assert after > 0.3 * rate(4999), (after, stats)


def test_a_consumer_slower_than_the_kernel_still_stops_at_the_duration(nofp: Path) -> None:
    """DWARF mode where every record costs the consumer 0.5 ms (a fifth of the rate the kernel makes them):
    the recording still ends at its duration, not when the workloads exit, because one poll handles
    records for a bounded time (libbpf's own poll goes on as long as records arrive)."""
    busy = [subprocess.Popen([str(nofp), "split", "12"]) for _ in online_cpus()]
    try:
        with LazySymbolizer() as symbolizers, StopFlag() as stop:
            dwarf = DwarfAggregator(symbolizers.get)
            unwind = dwarf.on_record

            def slow(record: bytes) -> None:
                time.sleep(0.0005)
                unwind(record)

            dwarf.on_record = slow  # type: ignore[method-assign]
            opts = RecordOptions(
                pids=[p.pid for p in busy],
                sampling=SamplingSpec(rate(4999)),
                cpus=online_cpus(),
                duration_s=2,
                dwarf_stack_size=16384,
            )
            t0 = time.monotonic()
            result = record(opts, stop, on_new_process=symbolizers.on_new_process, dwarf=dwarf)
            took = time.monotonic() - t0
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert result.stopped_by == "duration"
    # the workloads ran 12 s; what was queued at the stop (up to 16 MiB) is still handled, 0.5 ms each
    assert took < 9, took
    stats = result.raw.stats
    assert stats["samples_dropped"] > 0, stats  # the ring filled behind the slow consumer: counted
    assert stats["seen"] == stats["kept"] + stats["samples_dropped"] + stats["kthread_skipped"], stats


def test_sigstopped_bpfprof_reports_dropped_samples_and_keeps_recording(
    nofp: Path, demo: Path, tmp_path: Path
) -> None:
    """bpfprof itself stopped (SIGSTOP) for 3 s while a 4999 Hz DWARF recording runs: the summary
    reports the dropped samples, and samples of the image the command execs after the stop are there."""
    out = tmp_path / "stalled.folded"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "profiler",
            "record",
            "--call-graph",
            "dwarf",
            "-F",
            str(rate(4999)),
            "-o",
            str(out),
            "--",
            str(nofp),
            "exec",
            "4",
            str(demo),
            "1.5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.6)
    p.send_signal(signal.SIGSTOP)
    # 3 s at 4999 Hz are ~15k samples of a few KiB of stack each: more than the 16 MiB ring holds
    time.sleep(3)
    p.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "samples dropped: the unwinder fell behind and the ring buffer filled" in err, err
    stacks = read_folded(out)
    assert sum(stacks.values()) == summary_samples(err)
    assert sum(c for s, c in stacks.items() if s[0] == demo.name[:15] and "hash_text" in s) > 0, err


# -- signals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signals_write_complete_outputs(sig: signal.Signals, cpu_split: Path, tmp_path: Path) -> None:
    folded, svg, js = tmp_path / "s.folded", tmp_path / "s.svg", tmp_path / "s.speedscope.json"
    busy = subprocess.Popen([str(cpu_split), "split", "5"])
    try:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "profiler",
                "record",
                "-a",
                "-F",
                "199",
                "-o",
                str(folded),
                "-o",
                str(svg),
                "-o",
                str(js),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        busy.kill()
        busy.wait()
    assert p.returncode == 0, err
    assert "stopped: signal" in err
    assert assert_complete_folded(folded) == summary_samples(err)
    assert any("func_a" in s for s in read_folded(folded))
    assert svg.read_text().rstrip().endswith("</svg>")
    assert json.loads(js.read_text())["profiles"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["s.folded", "s.speedscope.json", "s.svg"]


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.4])
def test_second_sigint_during_the_final_write(delay: float, many_stacks: Path, tmp_path: Path) -> None:
    """A second Ctrl-C (and a third, ...) while bpfprof drains, symbolizes and writes a big profile: every
    output is written whole, no temporary file stays, the summary says so, and there is no traceback."""
    outs = [tmp_path / "x.folded", tmp_path / "x.svg", tmp_path / "x.speedscope.json"]
    busy = subprocess.Popen([str(many_stacks), "8", "14"])
    try:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "profiler",
                "record",
                "-a",
                "-F",
                str(rate(999)),
                *(a for o in outs for a in ("-o", str(o))),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.5)
        p.send_signal(signal.SIGINT)
        time.sleep(delay)
        while p.poll() is None:  # keep pressing Ctrl-C until it is done
            p.send_signal(signal.SIGINT)
            time.sleep(0.02)
        _, err = p.communicate(timeout=60)
    finally:
        busy.kill()
        busy.wait()
    assert "Traceback" not in err, err
    # Stopping, draining, symbolizing and writing all happen while bpfprof turns stop signals into "stop
    # and write"; after that a Ctrl-C ends it the plain way (killed by SIGINT, as the shell reports).
    assert p.returncode in (0, -signal.SIGINT), err
    assert summary_samples(err) == assert_complete_folded(outs[0])
    assert outs[1].read_text().rstrip().endswith("</svg>")
    assert json.loads(outs[2].read_text())["profiles"]
    for out in outs:
        assert f"wrote {out} " in err, err
    leftovers = sorted(f.name for f in tmp_path.iterdir() if f not in outs)
    assert not leftovers, leftovers


# -- PID reuse --------------------------------------------------------------------------------------


def spawn_with_pid(pid: int, argv: list[str], attempts: int = 50) -> subprocess.Popen | None:
    """Start ``argv`` as process ``pid`` through /proc/sys/kernel/ns_last_pid (as CRIU does), or None
    if other processes' forks keep taking it."""
    for _ in range(attempts):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        proc = subprocess.Popen(argv)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
        if os.path.exists(f"/proc/{pid}"):
            return None  # someone else has it now
    return None


def test_pid_reused_during_the_run_is_not_profiled(cpu_split: Path, demo: Path, tmp_path: Path) -> None:
    """-p PID: the target exits and at once an unrelated process gets its PID. The recording ends with the
    target; the newcomer is not profiled as if it were the target."""
    for _ in range(3):
        target = subprocess.Popen([str(cpu_split), "split", "1.5"])
        out = tmp_path / "reuse.folded"
        p = subprocess.Popen(
            [sys.executable, "-m", "profiler", "record", "-F", "999", "-p", str(target.pid), "-o", str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        target.wait()  # reaped at once: the PID is free
        newcomer = spawn_with_pid(target.pid, [str(demo), "3"])
        if newcomer is None:
            p.wait(timeout=60)
            continue
        try:
            _, err = p.communicate(timeout=30)
        finally:
            newcomer.kill()
            newcomer.wait()
        break
    else:
        pytest.fail("could not get a freed PID back in 3 tries (a very busy machine?)")
    assert p.returncode == 0, err
    assert "stopped: targets exited" in err
    stacks = read_folded(out)
    ours = sum(c for s, c in stacks.items() if s[0] == cpu_split.name[:15])
    theirs = sum(c for s, c in stacks.items() if s[0] == demo.name[:15])
    assert ours > 300, err
    # the newcomer ran 3 s on a CPU; at most one poll interval (0.1 s) of it may slip in
    assert theirs < 200, (theirs, err)


# -- leaks and neighbours ---------------------------------------------------------------------------


def test_a_long_lived_parent_keeps_no_fds_after_good_and_failed_recordings(cpu_split: Path) -> None:
    """Recordings that end well, by a signal, by a failed exec after attach, and by a failed load leave
    this process's fd table and the kernel's program list as they were."""
    fds, programs = our_fds(), our_programs()
    cpus = online_cpus()
    record_here(
        RecordOptions(command=[str(cpu_split), "split", "0.3"], cpus=cpus, sampling=SamplingSpec(499))
    )
    record_here(
        RecordOptions(
            command=[str(cpu_split), "split", "0.3"],
            cpus=cpus,
            sampling=SamplingSpec(499),
            dwarf_stack_size=8192,
        )
    )
    with StopFlag() as stop:
        threading.Timer(0.4, lambda: setattr(stop, "signal", signal.SIGTERM)).start()
        with LazySymbolizer() as symbolizers:
            result = record(
                RecordOptions(cpus=cpus, dwarf_stack_size=4096, duration_s=30),
                stop,
                dwarf=DwarfAggregator(symbolizers.get),
            )
        assert result.stopped_by == "signal"
    with pytest.raises(UserError, match="cannot run"):
        record_here(RecordOptions(command=["/no/such/command"], cpus=cpus))
    with pytest.raises(UserError, match="perf_event_open"):  # loaded and attached, then a CPU fails
        record_here(RecordOptions(cpus=[*cpus, 4095]))
    assert our_fds() == fds
    assert no_programs_left(programs), our_programs()


def test_two_instances_at_once_do_not_disturb_each_other(cpu_split: Path, tmp_path: Path) -> None:
    """Two -p recordings and one system-wide recording at the same time: each -p output holds its own
    process only, the system-wide one holds both, and each got its process's samples."""
    procs = [subprocess.Popen([str(cpu_split), "split", "4"]) for _ in range(2)]
    outs = [tmp_path / f"p{i}.speedscope.json" for i in range(2)]
    everything = tmp_path / "all.speedscope.json"
    try:
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "profiler", "record", "-F", "499", "-d", "2.5", *args],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in (
                ["-p", str(procs[0].pid), "-o", str(outs[0])],
                ["-p", str(procs[1].pid), "-o", str(outs[1])],
                ["-a", "-o", str(everything)],
            )
        ]
        errs = [r.communicate(timeout=60)[1] for r in runs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [r.returncode for r in runs] == [0, 0, 0], errs

    def per_pid(path: Path) -> dict[int, float]:
        doc = json.loads(path.read_text())
        out: dict[int, float] = {}
        for prof in doc["profiles"]:
            pid = int(re.search(r"\((\d+)\)", prof["name"]).group(1))
            out[pid] = out.get(pid, 0) + sum(prof["weights"])
        return out

    alone = [per_pid(o) for o in outs]
    assert set(alone[0]) == {procs[0].pid}
    assert set(alone[1]) == {procs[1].pid}
    both = per_pid(everything)
    for i, p in enumerate(procs):
        # each instance has its own perf events: the same process gets about the same weight in both
        assert abs(both[p.pid] - alone[i][p.pid]) <= 0.25 * both[p.pid], (both, alone)


# -- a fork-heavy run -------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_fork_heavy_system_wide_run_keeps_memory_flat(cpu_split: Path, tmp_path: Path) -> None:
    """40 s system-wide under a shell loop spawning short processes: bpfprof's RSS, sampled every 2 s,
    grows by under 2 KiB per process spawned once it is warm, and the short processes are named."""
    counter = tmp_path / "spawned"
    loop = f'while :; do "{cpu_split}" split 0.02; printf . >> "{counter}"; done'  # one byte each
    spawner = subprocess.Popen(["sh", "-c", loop], start_new_session=True)  # its own process group
    out = tmp_path / "forks.folded"
    p = subprocess.Popen(
        [sys.executable, "-m", "profiler", "record", "-a", "-F", "99", "-d", "40", "-o", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        samples: list[tuple[int, int]] = []  # (processes spawned, RSS KiB)
        while p.poll() is None and len(samples) < 19:
            time.sleep(2)
            spawned = counter.stat().st_size if counter.exists() else 0
            samples.append((spawned, rss_kib(p.pid)))
        _, err = p.communicate(timeout=120)
    finally:
        os.killpg(spawner.pid, signal.SIGKILL)  # the loop and the short process it is running
        spawner.wait()
    assert p.returncode == 0, err
    (n0, rss0), (n1, rss1) = samples[4], samples[-1]  # from 10 s on: warm
    assert n1 - n0 > 200, samples  # the load really was fork-heavy
    assert rss1 - rss0 < 24 * 1024, samples  # a one-time step at most
    # The growth rate: the median over the 2 s intervals, so a one-time step (a new binary's symbols, a
    # fresh kallsyms when a BPF program appears) does not read as growth per process, and a leak does.
    warm = samples[4:]
    per_process = statistics.median(
        (r1 - r0) * 1024 / max(1, m1 - m0) for (m0, r0), (m1, r1) in itertools.pairwise(warm)
    )
    named = sum(c for s, c in read_folded(out).items() if s[0] == cpu_split.name[:15] and "func_a" in s)
    assert named > 0, err
    # exited processes are symbolized and forgotten while recording (profiler/retire.py): without that
    # every captured process's maps stayed to the end, ~10 KB each
    assert per_process < 2048, f"memory not flat: {per_process:.0f} B per process; (spawned, KiB): {samples}"
