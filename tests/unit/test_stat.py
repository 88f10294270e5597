"""bpfprof stat's counting engine without a PMU: scaling, metrics and sessions against perf's own numbers.

This machine has no hardware counters, so the hardware-only parts run against a stand-in PMU at the
syscall edge (perf_event_open, ioctl, read, close) fed with counts perf printed on machines that
have one; the metrics and the multiplexing scale-up must come out as perf printed them.
"""

from __future__ import annotations

import errno
import re
import struct

import pytest

from profiler.errors import UserError
from profiler.events import parse_event_list
from profiler.perf_event import ATTR_DISABLED, READ_FORMAT_TIMES
from profiler.stat import (
    OTHER,
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    ZERO,
    By,
    CounterSet,
    GroupKey,
    Reading,
    Snapshot,
    StatEvent,
    StatOptions,
    TaskKey,
    cpu_snapshot,
    decode_reading,
    derive_metrics,
    is_switch_out,
    run_stat,
    sum_readings,
    task_counter_config,
    task_readings,
    task_snapshot,
)
from profiler.stat_report import format_table, rows

# -- perf's own output, from machines with a PMU (value, % running or None, the metric perf printed) --

# `perf stat -d gzip file1`, Linux 4.15 (B. Gregg, Systems Performance 2nd ed., ch. 4): multiplexed
GZIP = [
    ("task-clock", 3_952_239_208, None, None),  # ns (3952.239208 msec)
    ("cycles", 14_863_135_172, 62.35, "3.761 GHz"),
    ("instructions", 18_320_918_801, 74.90, "1.23 insn per cycle"),
    ("branches", 3_876_390_410, 74.90, "980.809 M/sec"),
    ("branch-misses", 135_062_519, 74.97, "3.48% of all branches"),
]

# a POWER9 signal benchmark (a kernel commit message, perf 5.x): not multiplexed
POWER9 = [
    ("task-clock", 13_085_720_000, None, None),
    ("cycles", 45_024_760_101, None, "3.441 GHz"),
    ("instructions", 65_102_895_542, None, "1.45 insn per cycle"),
    ("branches", 11_271_673_787, None, "861.372 M/sec"),
    ("branch-misses", 59_468_979, None, "0.53% of all branches"),
]

# kraken2 with cache events (a profiling write-up): no task-clock, so no rates
KRAKEN = [
    ("cycles", 716_729_23_288, 54.30, None),
    ("instructions", 1_13_16_36_95_604, 60.94, "1.58 insn per cycle"),
    ("cache-misses", 46_69_09_819, 60.76, "85.39% of all cache refs"),
    ("cache-references", 54_67_68_361, 60.51, None),
    ("branch-misses", 29_49_96_843, 59.71, "1.48% of all branches"),
    ("branch-instructions", 19_92_32_41_816, 59.76, None),
]

# `perf stat swiftc t.swift` (the Swift compiler's docs): elapsed 2.216754787 s
SWIFTC_ELAPSED_NS = 2_216_754_787
SWIFTC = [
    ("task-clock", 2_140_543_052, None, "0.966 CPUs utilized"),
    ("cycles", 5_373_530_212, None, "2.510 GHz"),
    ("instructions", 9_709_304_679, None, "1.81 insn per cycle"),
    ("branches", 1_812_011_233, None, "846.519 M/sec"),
    ("branch-misses", 22_026_587, None, "1.22% of all branches"),
]

ENABLED_NS = 1_000_000_000


def _key(spec) -> tuple[int, int]:
    return (spec.type, spec.config)


class FakePmu:
    """The syscall edge of a machine with hardware counters, per (type, config) and CPU.

    ``counts[(type, config)]`` is a list of (value, enabled, running) per CPU; events not in it fail
    to open with ``missing_errno``. Every fd it hands out must be closed.
    """

    def __init__(self, counts: dict[tuple[int, int], list[tuple[int, int, int]]], missing_errno=errno.ENOENT):
        self.counts = counts
        self.missing_errno = missing_errno
        self.fds: dict[int, tuple[tuple[int, int], int]] = {}
        self.enabled: set[int] = set()
        self.ioctls: list[tuple[int, int]] = []
        self.closed: list[int] = []
        self._next = 100

    def open(self, attr: bytes, pid: int, cpu: int) -> int:
        typ, size, config = struct.unpack_from("<IIQ", attr)
        (read_format, flags) = struct.unpack_from("<QQ", attr, 32)
        assert size == len(attr)
        assert pid == -1
        assert read_format == READ_FORMAT_TIMES
        assert flags & ATTR_DISABLED
        if (typ, config) not in self.counts:
            raise OSError(self.missing_errno, "no such event")
        self._next += 1
        self.fds[self._next] = ((typ, config), cpu)
        return self._next

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        assert fd in self.fds
        assert fd not in self.closed
        self.ioctls.append((fd, request))
        (self.enabled.add if request == PERF_EVENT_IOC_ENABLE else self.enabled.discard)(fd)
        return 0

    def read(self, fd: int, n: int) -> bytes:
        key, cpu = self.fds[fd]
        return struct.pack("<QQQ", *self.counts[key][cpu])

    def close(self, fd: int) -> None:
        assert fd in self.fds
        assert fd not in self.closed
        self.closed.append(fd)

    def counter_set(self, specs, required, cpus) -> CounterSet:
        return CounterSet(
            specs,
            required,
            cpus,
            open_fn=self.open,
            ioctl_fn=self.ioctl,
            read_fn=self.read,
            close_fn=self.close,
        )


def _raw(value: int, pct: float | None) -> tuple[int, int, int]:
    """Counts a PMU would give for a printed (scaled) value that ran ``pct`` % of the time."""
    if pct is None:
        return (value, ENABLED_NS, ENABLED_NS)
    running = round(ENABLED_NS * pct / 100)
    return (round(value * running / ENABLED_NS), ENABLED_NS, running)


def _pmu_for(fixture, ncpu: int = 1) -> tuple[FakePmu, list]:
    specs = parse_event_list(",".join(name for name, *_ in fixture))
    counts = {}
    for spec, (_, value, pct, _) in zip(specs, fixture, strict=True):
        v, e, r = _raw(value, pct)
        # split over CPUs with the same running share each, as one multiplexed PMU per CPU would
        counts[_key(spec)] = [
            (v // ncpu + (v % ncpu if i == 0 else 0), e // ncpu, r // ncpu) for i in range(ncpu)
        ]
    return FakePmu(counts), specs


def _metric_texts(table: str) -> dict[str, str]:
    """event -> what follows '#' (whitespace squeezed, the % running cut off) in a perf-style table."""
    out = {}
    for line in table.splitlines():
        m = re.match(r"\s*[\d,.<>a-z ]+?\s+(?:msec\s+)?([\w-]+)\s+#\s*(.*?)\s*(\(\d+\.\d+%\))?$", line)
        if m:
            out[m.group(1)] = " ".join(m.group(2).split())
    return out


# -- scaling ---------------------------------------------------------------------------------------


def test_scale_is_perfs_value_times_enabled_over_running() -> None:
    # tools/lib/perf/evsel.c perf_counts_values__scale: val * ena / run when run < ena
    assert Reading(1000, 300, 100).scaled == 3000.0
    assert Reading(1000, 300, 300).scaled == 1000.0
    assert Reading(1000, 300, 300).percent_running == 100.0
    assert Reading(600, 1000, 250).percent_running == 25.0
    assert Reading(600, 1000, 250).multiplexed
    assert not Reading(600, 1000, 1000).multiplexed


def test_a_counter_that_never_ran_is_not_counted() -> None:
    r = Reading(0, 5000, 0)  # enabled, never on the PMU: perf prints <not counted>
    assert not r.counted
    assert Reading(0, 0, 0).counted  # never enabled: a plain zero (a task that never ran)
    table_rows = rows([StatEvent(parse_event_list("cycles")[0])], [r], 10**9)
    assert table_rows[0].value is None


def test_cpus_are_summed_then_scaled_as_perf_aggregates() -> None:
    # perf stat -a sums val, ena and run over CPUs (process_counter_values, AGGR_GLOBAL), then scales
    per_cpu = [Reading(400, 1000, 500), Reading(900, 1000, 900)]
    total = sum_readings(per_cpu)
    assert total == Reading(1300, 2000, 1400)
    assert total.scaled == pytest.approx(1300 * 2000 / 1400)
    snap = cpu_snapshot([per_cpu], [0, 1], 10**9, by_cpu=True)
    assert snap.total == [total]
    assert snap.groups[GroupKey(cpu=1)] == [Reading(900, 1000, 900)]


def test_decode_reading_takes_value_enabled_running() -> None:
    assert decode_reading(struct.pack("<QQQ", 7, 8, 9)) == Reading(7, 8, 9)
    with pytest.raises(OSError, match="short read"):
        decode_reading(b"\0" * 16)


# -- metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "elapsed_ns"),
    [(GZIP, 0), (POWER9, 0), (KRAKEN, 0), (SWIFTC, SWIFTC_ELAPSED_NS)],
    ids=["gzip-multiplexed", "power9", "kraken-cache", "swiftc"],
)
def test_metrics_match_what_perf_printed(fixture, elapsed_ns: int) -> None:
    specs = parse_event_list(",".join(name for name, *_ in fixture))
    events = [StatEvent(s) for s in specs]
    readings = [Reading(*_raw(value, pct)) for _, value, pct, _ in fixture]
    table_rows = rows(events, readings, elapsed_ns)
    for row, (name, value, _pct, perf_metric) in zip(table_rows, fixture, strict=True):
        assert row.value == pytest.approx(value, abs=1), name  # the scale-up restores perf's count
        if perf_metric is None or (row.event.unit and not elapsed_ns):
            continue
        from profiler.stat_report import _metric_text

        assert " ".join(_metric_text(row).lstrip("# ").split()) == perf_metric, name


def test_metrics_need_their_inputs_with_the_same_modifiers() -> None:
    specs = parse_event_list("instructions,cycles:u,branch-misses,page-faults")
    events = [StatEvent(s) for s in specs]
    metrics = derive_metrics(events, [100.0, 50.0, 5.0, 7.0], 10**9)
    assert metrics == [None, None, None, None]  # cycles:u does not pair with instructions; no clock
    metrics = derive_metrics(events, [100.0, None, 5.0, 7.0], 10**9)
    assert metrics[0] is None


def test_rates_use_the_clock_and_perfs_unit_steps() -> None:
    specs = parse_event_list("task-clock,page-faults,context-switches,cpu-migrations")
    events = [StatEvent(s) for s in specs]
    # 2 ms of task-clock: 74 faults -> 37 K/sec, 1 switch -> 500 /sec
    metrics = derive_metrics(events, [2_000_000.0, 74.0, 1.0, 0.0], 4_000_000)
    assert metrics[0].key == "cpus_utilized"
    assert metrics[0].value == pytest.approx(0.5)
    assert metrics[1].value == pytest.approx(37_000.0)
    from profiler.stat import rate_unit

    assert rate_unit(metrics[1].value) == (pytest.approx(37.0), "K/sec")
    assert rate_unit(metrics[2].value) == (pytest.approx(500.0), "/sec")
    assert rate_unit(2.5e9) == (pytest.approx(2.5), "G/sec")


def test_switch_out_events_are_context_and_cgroup_switches() -> None:
    flags = [
        is_switch_out(s) for s in parse_event_list("context-switches,cs,cgroup-switches,page-faults,cycles")
    ]
    assert flags == [True, True, True, False, False]


# -- the counting fds, over a stand-in PMU ---------------------------------------------------------


def test_counter_set_opens_one_disabled_counter_per_cpu_and_closes_all() -> None:
    pmu, specs = _pmu_for(GZIP, ncpu=2)
    with pmu.counter_set(specs, [True] * len(specs), [0, 1]) as cs:
        assert [e.supported for e in cs.events] == [True] * 5
        assert len(pmu.fds) == 10
        cs.enable()
        assert pmu.enabled == set(pmu.fds)
        per_cpu = cs.read()
        cs.disable()
        assert not pmu.enabled
    assert sorted(pmu.closed) == sorted(pmu.fds)
    assert {r for fd, r in pmu.ioctls} == {PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_DISABLE}
    assert sum_readings(per_cpu[1]).scaled == pytest.approx(14_863_135_172, abs=4)


def test_optional_events_that_do_not_open_are_not_supported() -> None:
    pmu = FakePmu({(1, 1): [(5, 10, 10)]})  # task-clock only: no PMU
    specs = parse_event_list("task-clock,cycles,instructions")
    with pmu.counter_set(specs, [True, False, False], [0]) as cs:
        assert [e.supported for e in cs.events] == [True, False, False]
        assert [r is None for r in cs.read()] == [False, True, True]
    assert len(pmu.closed) == 1


def test_a_required_event_that_does_not_open_is_one_sentence() -> None:
    pmu = FakePmu({(1, 1): [(5, 10, 10), (5, 10, 10)]}, missing_errno=errno.EACCES)
    specs = parse_event_list("task-clock,page-faults")
    with pytest.raises(UserError) as info:
        pmu.counter_set(specs, [True, True], [0, 1]).__enter__()
    assert info.value.exit_code == 1
    assert "\n" not in str(info.value)
    assert "run as root" in str(info.value)
    assert sorted(pmu.closed) == sorted(pmu.fds)  # the task-clock fds opened before are closed


class _Stop:
    set = False


def test_a_system_wide_session_with_a_multiplexing_pmu_prints_perfs_metrics() -> None:
    pmu, specs = _pmu_for(GZIP, ncpu=2)
    opts = StatOptions(specs, [True] * len(specs), system_wide=True, duration_s=0.01)
    result = run_stat(opts, _Stop(), [0, 1], counter_set=pmu.counter_set)
    assert sorted(pmu.closed) == sorted(pmu.fds)
    assert result.stopped_by == "duration"
    assert result.exit_code == 0
    table = format_table(result)
    texts = _metric_texts(table)
    for name, _, pct, perf_metric in GZIP:
        if perf_metric:
            assert texts[name] == perf_metric, table
        if pct is not None:
            line = next(ln for ln in table.splitlines() if re.search(rf"\s{name}\s", ln))
            assert line.endswith(f"({pct:.2f}%)"), line
    assert "14,863,135,17" in table  # the scaled-up count (the last digit may round)


def test_by_cpu_gives_each_cpu_its_own_rows() -> None:
    pmu, specs = _pmu_for(POWER9, ncpu=2)
    opts = StatOptions(specs, [True] * len(specs), system_wide=True, by=By.CPU, duration_s=0.01)
    result = run_stat(opts, _Stop(), [0, 1], counter_set=pmu.counter_set)
    assert set(result.final.groups) == {GroupKey(cpu=0), GroupKey(cpu=1)}
    table = format_table(result)
    assert re.search(r"^\s+CPU0\s+[\d,.]+\s+msec task-clock", table, re.M)
    assert re.search(r"^\s+CPU1\s+[\d,]+\s+cycles", table, re.M)


def test_intervals_are_deltas_and_add_up_to_the_total() -> None:
    pmu = FakePmu({(1, 2): [(0, 0, 0)]})
    specs = parse_event_list("page-faults")
    calls: list[tuple[float, Snapshot]] = []
    ticks = iter(range(1, 10**6))

    def bump(fd: int, n: int) -> bytes:  # the counter grows by 10 per read
        k = next(ticks) * 10
        return struct.pack("<QQQ", k, k * 100, k * 100)

    pmu.read = bump  # type: ignore[method-assign]
    opts = StatOptions(specs, [True], system_wide=True, duration_s=0.12, interval_ms=40)
    result = run_stat(opts, _Stop(), [0], lambda e, t, s: calls.append((t, s)), counter_set=pmu.counter_set)
    assert len(calls) >= 2
    assert calls == result.intervals
    assert [s.total[0].value for _, s in calls] == [10] * len(calls)
    assert sum(s.total[0].value for _, s in calls) == result.final.total[0].value


# -- per-task snapshots ----------------------------------------------------------------------------


def test_task_snapshot_groups_by_pid_and_sums_the_total() -> None:
    events = [StatEvent(s) for s in parse_event_list("page-faults")] + [
        StatEvent(parse_event_list("cycles")[0], supported=False)
    ]
    tasks = {
        TaskKey(10, 0, "a"): [Reading(5, 100, 100)],
        TaskKey(11, 0, "b"): [Reading(7, 50, 50)],
        TaskKey(0xFFFFFFFF, 0, ""): [Reading(1, 1, 1)],
    }
    snap = task_snapshot(events, tasks, By.PID, 123)
    assert snap.total == [Reading(13, 151, 151), None]
    assert snap.groups[GroupKey(pid=10, comm="a")] == [Reading(5, 100, 100), None]
    assert snap.groups[OTHER] == [Reading(1, 1, 1), None]
    assert GroupKey(pid=10, comm="a").label == "a-10"
    assert GroupKey(pid=10, tid=12, comm="a").label == "a-12"
    assert OTHER.label == "[other]"


def test_snapshot_minus_gives_the_stretch_between() -> None:
    a = GroupKey(pid=1, comm="a")
    before = Snapshot(100, [Reading(10, 10, 10), None], {a: [Reading(4, 5, 5), None]})
    after = Snapshot(300, [Reading(25, 30, 30), None], {a: [Reading(4, 9, 9), None], OTHER: [ZERO, None]})
    d = after.minus(before)
    assert d.elapsed_ns == 200
    assert d.total == [Reading(15, 20, 20), None]
    assert d.groups == {}  # a counted nothing new (its enabled time alone does not make a row)


def _task_config(names: str):
    events = [StatEvent(s) for s in parse_event_list(names)]
    return task_counter_config(
        events, StatOptions(events=[e.spec for e in events], required=[], system_wide=True)
    )


def test_software_events_are_read_without_times_and_the_clock_stands_for_them() -> None:
    """With a clock among the events no event is read with its times (a clock read each); the
    software PMU's counts are loaded directly; context-switches are charged at switch-out."""
    c = _task_config("cycles,page-faults,context-switches,task-clock")
    assert (c.time_source, c.time_is_value) == (3, True)
    assert c.value_only_mask == 0b1110  # cycles keeps its times: it may be multiplexed
    assert c.direct_mask == 0b0110  # not the clock: its count is brought up to date by a read
    assert c.switch_out_mask == 0b0100
    assert c.per_switch_mask == 0b0100  # charged one at each switch, without reading it
    c = _task_config("cycles,page-faults,context-switches")
    assert (c.time_source, c.time_is_value) == (1, False)
    assert (c.value_only_mask, c.direct_mask) == (0b100, 0b100)  # page-faults is read with times
    c = _task_config("cycles,instructions")
    assert (c.value_only_mask, c.direct_mask) == (0, 0)
    c = _task_config("context-switches:u,context-switches:k,cgroup-switches")
    assert (c.switch_out_mask, c.per_switch_mask) == (0b111, 0)  # read: what they exclude is perf's to say


class _Value:  # a StatValue's three arrays
    def __init__(self, counter, enabled, running):
        self.counter, self.enabled, self.running = counter, enabled, running


def test_task_readings_give_value_only_events_the_time_sources_times() -> None:
    c = _task_config("cycles,page-faults,context-switches,task-clock")
    val = _Value([900, 7, 2, 5000], [6000, 0, 0, 0], [3000, 0, 0, 0])
    assert task_readings(c, val) == [
        Reading(900, 6000, 3000),  # multiplexed: its own times
        Reading(7, 5000, 5000),
        Reading(2, 5000, 5000),
        Reading(5000, 5000, 5000),
    ]
    c = _task_config("cycles,page-faults,context-switches")
    val = _Value([900, 7, 2], [6000, 4000, 0], [3000, 4000, 0])
    assert task_readings(c, val)[1:] == [Reading(7, 4000, 4000), Reading(2, 4000, 4000)]
