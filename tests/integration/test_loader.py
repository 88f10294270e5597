"""The loader in this process: real libbpf, real programs; every fd is closed on exit and on errors."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from profiler.bpf.abi import Stat
from profiler.bpf.loader import Sampler, SamplerConfig
from profiler.perf_event import CPU_CLOCK, SamplingSpec, online_cpus, open_per_cpu
from profiler.record import RecordOptions, StopFlag, record
from tests.integration.conftest import our_programs

pytestmark = pytest.mark.bpf


def bpf_fds() -> list[str]:
    """This process's fds that are BPF objects or perf events."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "bpf" in target or "perf_event" in target:
            out.append(target)
    return out


def wait_no_programs() -> list[str]:
    deadline = time.monotonic() + 3
    while (left := our_programs()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc(5)), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_sampler_counts_in_kernel_and_closes_everything(cpu_split: Path) -> None:
    before = bpf_fds()
    busy = subprocess.Popen([str(cpu_split), "split", "3"])
    try:
        with Sampler(SamplerConfig(target_tgids=(busy.pid,))) as s:
            s.add_targets([busy.pid])
            s.attach_perf_events(open_per_cpu(CPU_CLOCK, SamplingSpec(999), online_cpus()))
            seen: list[tuple[int, bool]] = []
            s.open_new_process_feed(lambda pid, gen: seen.append((pid, gen)))
            assert len(bpf_fds()) > len(before)
            cpu_before = cpu_seconds(busy.pid)
            end = time.monotonic() + 1
            while time.monotonic() < end:
                s.poll(50)
            s.detach()
            cpu = cpu_seconds(busy.pid) - cpu_before
            records = s.read_counts()
            stats = s.read_stats()
        assert {r.pid for r in records} == {busy.pid}
        kept = sum(r.samples for r in records)
        # cpu-clock samples follow the CPU time the process got (whatever else the machine runs):
        # 999 per CPU-second, within the 10 ms granularity of /proc's times
        assert abs(kept - cpu * 999) <= 0.1 * cpu * 999 + 25, (kept, cpu)
        assert cpu > 0.3
        assert stats[Stat.KEPT] == kept == stats[Stat.SEEN]
        assert all(r.period > 0 for r in records)
        assert seen == [(busy.pid, 0)]
    finally:
        busy.kill()
        busy.wait()
    assert bpf_fds() == before
    assert wait_no_programs() == []


def test_exception_inside_the_session_closes_everything() -> None:
    before = bpf_fds()

    def session() -> None:
        with Sampler(SamplerConfig()) as s:
            s.attach_perf_events(open_per_cpu(CPU_CLOCK, SamplingSpec(99), online_cpus()))
            s.attach_tracepoint("on_exec")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        session()
    assert bpf_fds() == before
    assert wait_no_programs() == []


def test_record_stopped_by_flag_leaves_no_fds() -> None:
    before = bpf_fds()
    with StopFlag() as stop:
        threading.Timer(0.5, lambda: setattr(stop, "signal", 2)).start()
        result = record(RecordOptions(cpus=online_cpus(), duration_s=30), stop)
    assert result.stopped_by == "signal"
    assert result.raw.stats["seen"] >= result.raw.stats["kept"]
    assert bpf_fds() == before
    assert wait_no_programs() == []


def test_exec_is_announced_again(tmp_path: Path) -> None:
    """A process that execs is announced a second time, after the exec, so its new map is captured."""
    script = tmp_path / "spin.sh"
    script.write_text(
        "#!/bin/sh\ni=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\nexec /bin/sh -c "
        "'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'\n"
    )
    script.chmod(0o755)
    seen: list[tuple[int, bool]] = []
    proc = subprocess.Popen([str(script)])
    try:
        with Sampler(SamplerConfig(target_tgids=(proc.pid,))) as s:
            s.add_targets([proc.pid])
            s.attach_tracepoint("on_exec")
            s.attach_perf_events(open_per_cpu(CPU_CLOCK, SamplingSpec(999), online_cpus()))
            s.open_new_process_feed(lambda pid, gen: seen.append((pid, gen)))
            while proc.poll() is None:
                s.poll(50)
            s.poll(0)
    finally:
        proc.kill()
        proc.wait()
    assert (proc.pid, 0) in seen
    assert (proc.pid, 1) in seen
