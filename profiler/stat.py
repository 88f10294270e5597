"""`bpfprof stat`: counting events like ``perf stat``, system-wide, per CPU, or exactly per task.

Counting perf events are opened one per online CPU per event (pid -1), with read_format
TOTAL_TIME_ENABLED|TOTAL_TIME_RUNNING, so a multiplexed hardware counter is scaled up as perf does
(value * enabled / running). System-wide totals and ``--by cpu`` read those fds. Per task
(``--by pid|tid``, ``-p PID``, ``-- CMD``) the same fds sit in a BPF_MAP_TYPE_PERF_EVENT_ARRAY and
stat.bpf.c charges each counter's delta to the task that ran, at every context switch; at the end
the counters are disabled and the share of the task still running on each CPU is flushed, so the
sum over tasks equals the per-CPU totals exactly (for ``-a``).

Why per-CPU events filtered in BPF for ``-p``, not per-thread events with inherit (perf's way):
threads that exist when counting starts would each need their own event, found by listing
/proc/PID/task, which races with thread creation; the BPF filter sees every thread and (following
forks in the kernel) every child from the first switch on, needs the same fds for one or many PIDs,
and gives ``--by tid`` at no cost.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from profiler.errors import UserError
from profiler.perf_event import (
    PERF_TYPE_HARDWARE,
    PERF_TYPE_SOFTWARE,
    EventSpec,
    build_count_attr,
    explain_open_error,
    perf_event_open,
)

PERF_EVENT_IOC_ENABLE = 0x2400  # _IO('$', 0), include/uapi/linux/perf_event.h
PERF_EVENT_IOC_DISABLE = 0x2401  # _IO('$', 1)
READ_TIMES = struct.Struct("<QQQ")  # value, time_enabled, time_running (read_format TIMES, no group)

# enum perf_sw_ids
SW_CPU_CLOCK, SW_TASK_CLOCK, SW_CONTEXT_SWITCHES, SW_CGROUP_SWITCHES = 0, 1, 3, 11
# enum perf_hw_id
HW_CYCLES, HW_INSTRUCTIONS, HW_CACHE_REFERENCES, HW_CACHE_MISSES = 0, 1, 2, 3
HW_BRANCHES, HW_BRANCH_MISSES = 4, 5

# perf stat's default list; the hardware ones are shown as <not supported> where they do not open
DEFAULT_EVENTS = (
    "task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions,branches,branch-misses"
)

POLL_S = 0.1


class By(Enum):
    """How counts are broken down: not at all, per process, per thread, per CPU."""

    NONE = "none"
    PID = "pid"
    TID = "tid"
    CPU = "cpu"


# -- readings, scaling, metrics (pure) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """A raw count and the ns its counter was enabled and running (on the PMU) while counting it."""

    value: int
    enabled: int
    running: int

    def __add__(self, other: Reading) -> Reading:
        return Reading(self.value + other.value, self.enabled + other.enabled, self.running + other.running)

    def __sub__(self, other: Reading) -> Reading:
        return Reading(self.value - other.value, self.enabled - other.enabled, self.running - other.running)

    @property
    def counted(self) -> bool:
        """False when the counter was enabled but never on the PMU (perf's ``<not counted>``)."""
        return self.running > 0 or self.enabled == 0

    @property
    def scaled(self) -> float:
        """The count scaled for multiplexing, as perf_counts_values__scale does: value * enabled / running."""
        if self.running <= 0:
            return 0.0
        if self.running < self.enabled:
            return self.value * self.enabled / self.running
        return float(self.value)

    @property
    def percent_running(self) -> float | None:
        """The share of the enabled time the counter was on the PMU, in %; None if never enabled."""
        if self.enabled <= 0:
            return None
        return 100.0 * self.running / self.enabled

    @property
    def multiplexed(self) -> bool:
        return 0 < self.running < self.enabled


ZERO = Reading(0, 0, 0)


def decode_reading(buf: bytes) -> Reading:
    """A counting fd's read(2) with read_format TOTAL_TIME_ENABLED|TOTAL_TIME_RUNNING."""
    if len(buf) != READ_TIMES.size:
        raise OSError(errno.EIO, f"short read of a perf counter ({len(buf)} bytes)")
    return Reading(*READ_TIMES.unpack(buf))


def sum_readings(readings: list[Reading]) -> Reading:
    total = ZERO
    for r in readings:
        total = total + r
    return total


@dataclass(frozen=True, slots=True)
class StatEvent:
    """An event of the session: supported when its counters opened on this machine."""

    spec: EventSpec
    supported: bool = True

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def unit(self) -> str:
        """perf's unit column: ``msec`` for the clocks (counted in ns, shown in ms)."""
        return "msec" if is_clock(self.spec) else ""


def is_clock(spec: EventSpec) -> bool:
    return spec.type == PERF_TYPE_SOFTWARE and spec.config in (SW_CPU_CLOCK, SW_TASK_CLOCK)


def counts_every_switch(spec: EventSpec) -> bool:
    """context-switches with no exclusions: one for every switch out of a task (perf_event_task_sched_out;
    it counts in kernel mode, so ``:u`` would count none), which stat.bpf.c charges at the switch."""
    return (
        spec.type == PERF_TYPE_SOFTWARE
        and spec.config == SW_CONTEXT_SWITCHES
        and not (spec.exclude_user or spec.exclude_kernel)
    )


def is_switch_out(spec: EventSpec) -> bool:
    """Counted by perf_event_task_sched_out(), after the sched_switch tracepoint has fired."""
    return spec.type == PERF_TYPE_SOFTWARE and spec.config in (SW_CONTEXT_SWITCHES, SW_CGROUP_SWITCHES)


def _hw(spec: EventSpec, config: int) -> bool:
    return spec.type == PERF_TYPE_HARDWARE and spec.config == config


@dataclass(frozen=True, slots=True)
class Metric:
    """A derived value, as perf prints it after ``#``: ``key`` names it in JSON, ``text`` in tables."""

    key: str
    value: float
    text: str


def rate_unit(per_s: float) -> tuple[float, str]:
    """A rate as perf shows it: scaled to K/M/G per second."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if per_s >= factor:
            return per_s / factor, f"{prefix}/sec"
    return per_s, "/sec"


def derive_metrics(
    events: list[StatEvent], values: list[float | None], elapsed_ns: int
) -> list[Metric | None]:
    """The metric perf shows beside each count (tools/perf/util/stat-shadow.c), from scaled values.

    task-clock/cpu-clock: CPUs utilized (clock / elapsed); cycles: GHz (cycles / clock ns);
    instructions: insn per cycle; branch-misses: % of all branches; cache-misses: % of all cache
    refs; any other: a rate per second of the clock. A metric needs its inputs counted with the
    same :u/:k modifiers; without them it is None.
    """

    def find(pred: Callable[[EventSpec], bool], like: EventSpec) -> float | None:
        for ev, v in zip(events, values, strict=True):
            if (
                v is not None
                and pred(ev.spec)
                and (ev.spec.exclude_user, ev.spec.exclude_kernel) == (like.exclude_user, like.exclude_kernel)
            ):
                return v
        return None

    out: list[Metric | None] = []
    for ev, v in zip(events, values, strict=True):
        spec = ev.spec
        metric: Metric | None = None
        clock = find(is_clock, spec)
        if v is None:
            pass
        elif is_clock(spec):
            if elapsed_ns > 0:
                metric = Metric("cpus_utilized", v / elapsed_ns, "CPUs utilized")
        elif _hw(spec, HW_CYCLES):
            if clock:
                metric = Metric("ghz", v / clock, "GHz")
        elif _hw(spec, HW_INSTRUCTIONS):
            cycles = find(lambda s: _hw(s, HW_CYCLES), spec)
            if cycles:
                metric = Metric("insn_per_cycle", v / cycles, "insn per cycle")
        elif _hw(spec, HW_BRANCH_MISSES):
            branches = find(lambda s: _hw(s, HW_BRANCHES), spec)
            if branches:
                metric = Metric("branch_miss_percent", 100.0 * v / branches, "of all branches")
        elif _hw(spec, HW_CACHE_MISSES):
            refs = find(lambda s: _hw(s, HW_CACHE_REFERENCES), spec)
            if refs:
                metric = Metric("cache_miss_percent", 100.0 * v / refs, "of all cache refs")
        if metric is None and v is not None and clock and not is_clock(spec):
            metric = Metric("per_second", v / clock * 1e9, "/sec")
        out.append(metric)
    return out


# -- groups and snapshots ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupKey:
    """One row group of ``--by``: a process (pid, comm), a thread (pid, tid, comm) or a CPU."""

    pid: int | None = None
    tid: int | None = None
    comm: str | None = None
    cpu: int | None = None

    @property
    def label(self) -> str:
        if self.cpu is not None:
            return f"CPU{self.cpu}"
        if self.pid is None:
            return self.comm or "[other]"
        return f"{self.comm}-{self.tid if self.tid is not None else self.pid}"


OTHER = GroupKey(comm="[other]")  # shares charged when the kernel's task map was full


@dataclass
class Snapshot:
    """Counts over one stretch of time: a total per event and, with --by, per group.

    Lists are aligned with the session's events; None stands for an event that is not supported.
    """

    elapsed_ns: int
    total: list[Reading | None]
    groups: dict[GroupKey, list[Reading | None]] = field(default_factory=dict)

    def minus(self, before: Snapshot) -> Snapshot:
        """This cumulative snapshot less an earlier one: the counts of the stretch in between."""

        def sub(now: list[Reading | None], then: list[Reading | None] | None) -> list[Reading | None]:
            if then is None:
                return list(now)
            return [None if a is None else a - (b or ZERO) for a, b in zip(now, then, strict=True)]

        groups = {k: sub(v, before.groups.get(k)) for k, v in self.groups.items()}
        groups = {k: v for k, v in groups.items() if any(r is not None and r.value for r in v)}
        return Snapshot(self.elapsed_ns - before.elapsed_ns, sub(self.total, before.total), groups)


def align(events: list[StatEvent], readings: list[Reading]) -> list[Reading | None]:
    """Readings of the supported events (in order) spread over all events, None for the others."""
    it = iter(readings)
    return [next(it) if ev.supported else None for ev in events]


# -- counting fds (the syscall edge) -------------------------------------------------------------


class CounterSet:
    """Counting perf events, one per online CPU per event, all tasks (pid -1), opened disabled.

    An event that must count (given with -e) and does not open raises UserError with the reason in
    one sentence; an optional one (perf's default hardware events) becomes ``<not supported>``.
    The system calls are parameters so that tests can stand in for a PMU this machine lacks.
    """

    def __init__(
        self,
        specs: list[EventSpec],
        required: list[bool],
        cpus: list[int],
        *,
        open_fn: Callable[[bytes, int, int], int] = perf_event_open,
        ioctl_fn: Callable[[int, int, int], object] = fcntl.ioctl,
        read_fn: Callable[[int, int], bytes] = os.read,
        close_fn: Callable[[int], None] = os.close,
    ) -> None:
        self.specs = specs
        self.required = required
        self.cpus = cpus
        self._open, self._ioctl, self._read, self._close = open_fn, ioctl_fn, read_fn, close_fn
        self.fds: list[list[int] | None] = []
        self.events: list[StatEvent] = []

    def __enter__(self) -> CounterSet:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> list[StatEvent]:
        for spec, must in zip(self.specs, self.required, strict=True):
            attr = build_count_attr(spec, disabled=True)
            fds: list[int] = []
            self.fds.append(fds)
            try:
                for cpu in self.cpus:
                    fds.append(self._open(attr, -1, cpu))  # noqa: PERF401 (one by one: closed on failure)
            except OSError as exc:
                for fd in fds:
                    self._close(fd)
                self.fds[-1] = None
                if must:
                    raise UserError(str(explain_open_error(exc, spec, None, self.cpus[len(fds)])), 1) from exc
                self.events.append(StatEvent(spec, supported=False))
                continue
            self.events.append(StatEvent(spec))
        return self.events

    @property
    def open_fds(self) -> list[list[int]]:
        """The fds of the supported events, in order: [event][cpu index]."""
        return [fds for fds in self.fds if fds is not None]

    def _each(self, request: int) -> None:
        for fds in self.open_fds:
            for fd in fds:
                self._ioctl(fd, request, 0)

    def enable(self) -> None:
        self._each(PERF_EVENT_IOC_ENABLE)

    def disable(self) -> None:
        self._each(PERF_EVENT_IOC_DISABLE)

    def read(self) -> list[list[Reading] | None]:
        """Per event (None: not supported), per CPU: the cumulative readings."""
        return [
            None if fds is None else [decode_reading(self._read(fd, READ_TIMES.size)) for fd in fds]
            for fds in self.fds
        ]

    def close(self) -> None:
        for fds in self.fds:
            for fd in fds or ():
                self._close(fd)
        self.fds = []


def cpu_snapshot(
    per_cpu: list[list[Reading] | None], cpus: list[int], elapsed_ns: int, by_cpu: bool
) -> Snapshot:
    """Totals over CPUs (summed, then scaled by the caller: perf's aggregation), and per CPU with --by cpu."""
    total = [None if r is None else sum_readings(r) for r in per_cpu]
    snap = Snapshot(elapsed_ns, total)
    if by_cpu:
        for i, cpu in enumerate(cpus):
            snap.groups[GroupKey(cpu=cpu)] = [None if r is None else r[i] for r in per_cpu]
    return snap


# -- the BPF side: per-task counts ---------------------------------------------------------------


def default_object_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("profiler.bpf") / "stat.bpf.o"))


@dataclass(frozen=True, slots=True)
class TaskKey:
    """A `tasks` map key: tid is 0 unless counting by thread; comm is the thread's or the process's."""

    tgid: int
    tid: int
    comm: str


@dataclass(frozen=True, slots=True)
class TaskCounterConfig:
    nr_events: int
    switch_out_mask: int = 0
    value_only_mask: int = 0
    direct_mask: int = 0
    per_switch_mask: int = 0
    # the event whose times the value-only events have (the BPF program charges them none); a
    # clock (time_is_value) is value-only too: its times are its count
    time_source: int = 0
    time_is_value: bool = False
    by_tid: bool = False
    filter_tgids: bool = False
    follow_forks: bool = False
    tasks_size: int = 16384


class TaskCounter:
    """stat.bpf.o loaded and configured; see the module docstring. A context manager: links, then the
    object (with its maps, which hold the perf events) are released on exit, also on errors."""

    def __init__(self, config: TaskCounterConfig, obj_path: Path | None = None) -> None:
        from profiler.bpf.libbpf import Libbpf

        self.config = config
        self.obj_path = obj_path or default_object_path()
        self.bpf = Libbpf.get()
        self.obj = 0
        self.links: list[int] = []
        self.nr_cpus = 0

    def __enter__(self) -> TaskCounter:
        try:
            self._open_and_load()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_and_load(self) -> None:
        from profiler.bpf.libbpf import LibbpfError
        from profiler.bpf.stat_abi import STAT_MAX_EVENTS, StatConfig

        b, c = self.bpf, self.config
        if not 0 < c.nr_events <= STAT_MAX_EVENTS:
            raise ValueError(f"{c.nr_events} events: stat counts 1 to {STAT_MAX_EVENTS} per task")
        if not self.obj_path.exists():
            raise LibbpfError(
                f"BPF object {self.obj_path} is missing (run scripts/build_bpf.sh)", errno.ENOENT
            )
        self.obj = b.check_ptr(
            b.lib.bpf_object__open_file(str(self.obj_path).encode(), None), "open BPF object"
        )
        self.nr_cpus = b.check_int(b.lib.libbpf_num_possible_cpus(), "count possible CPUs")
        self._size("counters", c.nr_events * self.nr_cpus)
        self._size("tasks", c.tasks_size + 1)  # + the catch-all
        size = ctypes.c_size_t()
        ptr = b.check_ptr(
            b.lib.bpf_map__initial_value(self._map(".rodata"), ctypes.byref(size)), "read .rodata"
        )
        if size.value != ctypes.sizeof(StatConfig):
            raise LibbpfError(
                f".rodata is {size.value} bytes, expected {ctypes.sizeof(StatConfig)} "
                "(the BPF object is out of date: run scripts/build_bpf.sh)",
                errno.EINVAL,
            )
        cfg = StatConfig.from_address(ptr)
        cfg.nr_events = c.nr_events
        cfg.nr_cpus = self.nr_cpus
        cfg.switch_out_mask = c.switch_out_mask
        cfg.value_only_mask = c.value_only_mask
        cfg.direct_mask = c.direct_mask
        cfg.per_switch_mask = c.per_switch_mask
        cfg.by_tid = int(c.by_tid)
        cfg.filter_tgids = int(c.filter_tgids)
        cfg.follow_forks = int(c.follow_forks)
        b.check_int(b.lib.bpf_object__load(self.obj), "load BPF programs")
        self._insert_other()

    def _size(self, name: str, entries: int) -> None:
        self.bpf.check_int(self.bpf.lib.bpf_map__set_max_entries(self._map(name), entries), f"size {name}")

    def _map(self, name: str) -> int:
        return self.bpf.check_ptr(
            self.bpf.lib.bpf_object__find_map_by_name(self.obj, name.encode()), f"map {name}"
        )

    def _map_fd(self, name: str) -> int:
        return self.bpf.check_int(self.bpf.lib.bpf_map__fd(self._map(name)), f"fd of map {name}")

    def _prog(self, name: str) -> int:
        return self.bpf.check_ptr(
            self.bpf.lib.bpf_object__find_program_by_name(self.obj, name.encode()), f"program {name}"
        )

    def _update(self, map_name: str, key: object, value: object, what: str) -> None:
        fd = self._map_fd(map_name)
        self.bpf.check_int(
            self.bpf.lib.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), 0), what
        )

    def _insert_other(self) -> None:
        from profiler.bpf.stat_abi import STAT_TGID_OTHER, StatKey, StatValue

        self._update("tasks", StatKey(tgid=STAT_TGID_OTHER), StatValue(), "insert the catch-all task")

    def place_counters(self, fds: list[list[int]], cpus: list[int]) -> None:
        """Put event i's fd of CPU cpus[j] at i * nr_cpus + cpus[j] of `counters` (the map takes a
        reference: the caller still closes its fds)."""
        for i, per_cpu in enumerate(fds):
            for cpu, fd in zip(cpus, per_cpu, strict=True):
                key, value = ctypes.c_uint32(i * self.nr_cpus + cpu), ctypes.c_uint32(fd)
                self._update("counters", key, value, f"place counter {i} of CPU {cpu}")

    def add_targets(self, tgids: list[int]) -> None:
        for tgid in tgids:
            self._update("targets", ctypes.c_uint32(tgid), ctypes.c_uint8(1), f"add target {tgid}")

    def attach(self) -> None:
        progs = ["stat_switch"] + (["stat_fork"] if self.config.follow_forks else [])
        for name in progs:
            link = self.bpf.check_ptr(self.bpf.lib.bpf_program__attach(self._prog(name)), f"attach {name}")
            self.links.append(link)

    def flush(self, cpus: list[int]) -> None:
        """Charge the share of the task running on each CPU now (stat_flush, run there by an IPI)."""
        from profiler.bpf.libbpf import BPF_F_TEST_RUN_ON_CPU, BpfTestRunOpts

        prog_fd = self.bpf.check_int(
            self.bpf.lib.bpf_program__fd(self._prog("stat_flush")), "fd of stat_flush"
        )
        for cpu in cpus:
            opts = BpfTestRunOpts(sz=ctypes.sizeof(BpfTestRunOpts), flags=BPF_F_TEST_RUN_ON_CPU, cpu=cpu)
            self.bpf.check_int(
                self.bpf.lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), f"flush CPU {cpu}"
            )

    def read_tasks(self) -> dict[TaskKey, list[Reading]]:
        """Every `tasks` entry with something counted: readings of the first nr_events events."""
        from profiler.bpf.stat_abi import STAT_TGID_OTHER, StatKey, StatValue

        fd = self._map_fd("tasks")
        lib = self.bpf.lib
        key, nxt, val = StatKey(), StatKey(), StatValue()
        out: dict[TaskKey, list[Reading]] = {}
        prev = None
        while lib.bpf_map_get_next_key(fd, prev, ctypes.byref(nxt)) == 0:
            ctypes.memmove(ctypes.byref(key), ctypes.byref(nxt), ctypes.sizeof(key))
            prev = ctypes.byref(key)
            if lib.bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(val)) != 0:
                continue
            readings = task_readings(self.config, val)
            if key.tgid == STAT_TGID_OTHER and not any(r.value or r.enabled for r in readings):
                continue
            tk = TaskKey(key.tgid, key.tid, key.comm.decode(errors="replace"))
            out[tk] = readings
        return out

    def read_health(self) -> dict[str, int]:
        from profiler.bpf.stat_abi import HEALTH_MAX, Health

        fd = self._map_fd("health")
        vals = (ctypes.c_uint64 * self.nr_cpus)()
        out = {}
        for idx in range(HEALTH_MAX):
            key = ctypes.c_uint32(idx)
            if self.bpf.lib.bpf_map_lookup_elem(fd, ctypes.byref(key), vals) == 0:
                out[Health(idx).name.lower()] = sum(vals)
        return out

    def detach(self) -> None:
        while self.links:
            self.bpf.lib.bpf_link__destroy(self.links.pop())

    def close(self) -> None:
        self.detach()
        if self.obj:
            self.bpf.lib.bpf_object__close(self.obj)
            self.obj = 0


def task_readings(c: TaskCounterConfig, val: object) -> list[Reading]:
    """A `tasks` value (StatValue) as readings: value-only events get the time source's times."""
    src = c.time_source
    times = (val.counter[src],) * 2 if c.time_is_value else (val.enabled[src], val.running[src])
    return [
        Reading(val.counter[i], *times)
        if c.value_only_mask >> i & 1
        else Reading(val.counter[i], val.enabled[i], val.running[i])
        for i in range(c.nr_events)
    ]


def task_counter_config(supported: list[StatEvent], opts: StatOptions) -> TaskCounterConfig:
    """What the BPF program reads how: software events never multiplex, so one event's times stand
    for them all (a clock's times are its count, so then none is read with times); those of the
    software PMU that are not clocks have their counts loaded without a helper call."""
    software = [i for i, ev in enumerate(supported) if ev.spec.type == PERF_TYPE_SOFTWARE]
    clocks = [i for i in software if is_clock(supported[i].spec)]
    source = (clocks or software or [0])[0]
    return TaskCounterConfig(
        nr_events=len(supported),
        switch_out_mask=sum(1 << i for i, ev in enumerate(supported) if is_switch_out(ev.spec)),
        value_only_mask=sum(1 << i for i in software if i != source or clocks),
        direct_mask=sum(1 << i for i in software if i != source and i not in clocks),
        per_switch_mask=sum(1 << i for i, ev in enumerate(supported) if counts_every_switch(ev.spec)),
        time_source=source,
        time_is_value=bool(clocks),
        by_tid=opts.by is By.TID,
        filter_tgids=not opts.system_wide,
        follow_forks=not opts.system_wide,
        tasks_size=opts.tasks_size,
    )


def group_of(key: TaskKey, by: By) -> GroupKey:
    from profiler.bpf.stat_abi import STAT_TGID_OTHER

    if key.tgid == STAT_TGID_OTHER:
        return OTHER
    if by is By.TID:
        return GroupKey(pid=key.tgid, tid=key.tid, comm=key.comm)
    return GroupKey(pid=key.tgid, comm=key.comm)


def task_snapshot(
    events: list[StatEvent], tasks: dict[TaskKey, list[Reading]], by: By, elapsed_ns: int
) -> Snapshot:
    """Per-task readings as groups (with --by pid/tid) and their sum as the total."""
    supported = sum(ev.supported for ev in events)
    sums = [ZERO] * supported
    groups: dict[GroupKey, list[Reading | None]] = {}
    for key, readings in tasks.items():
        sums = [a + b for a, b in zip(sums, readings, strict=True)]
        if by in (By.PID, By.TID):
            g = group_of(key, by)
            mine = align(events, readings)
            if g in groups:  # by pid: one tgid and comm over several keys cannot happen; be safe
                mine = [None if a is None else a + (b or ZERO) for a, b in zip(mine, groups[g], strict=True)]
            groups[g] = mine
    return Snapshot(elapsed_ns, align(events, sums), groups)


# -- the session ---------------------------------------------------------------------------------


@dataclass
class StatOptions:
    events: list[EventSpec]
    required: list[bool]  # per event: must open (given with -e) or may be <not supported>
    pids: list[int] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    system_wide: bool = False  # -a (the default without -p or a command)
    by: By = By.NONE
    duration_s: float | None = None
    interval_ms: int | None = None
    tasks_size: int = 16384

    @property
    def per_task(self) -> bool:
        """Whether the BPF program charges counts to tasks."""
        return self.by in (By.PID, By.TID) or not self.system_wide


@dataclass
class StatResult:
    events: list[StatEvent]
    options: StatOptions
    final: Snapshot
    intervals: list[tuple[float, Snapshot]]
    command: object | None  # a LaunchedCommand
    stopped_by: str
    health: dict[str, int]
    start_s: float  # from run_stat() to counters enabled

    @property
    def exit_code(self) -> int:
        return 0 if self.command is None else self.command.exit_code  # type: ignore[attr-defined]


def _explain_libbpf(exc: Exception) -> UserError:
    code = getattr(exc, "errno", None)
    if code in (errno.EPERM, errno.EACCES):
        return UserError(
            "the kernel refused to load BPF programs: run as root or with CAP_BPF and CAP_PERFMON", 1
        )
    log = getattr(exc, "log", "")
    detail = f" ({log.strip().splitlines()[-1]})" if log.strip() else ""
    return UserError(f"BPF set-up failed: {exc}{detail}", 1)


def _preflight_bpf(euid: int | None = None, btf: str = "/sys/kernel/btf/vmlinux") -> None:
    if (os.geteuid() if euid is None else euid) != 0:
        raise UserError(
            "counting per task (--by pid/tid, -p, or a command) needs root (or CAP_BPF and CAP_PERFMON): "
            "run it with sudo",
            1,
        )
    if not Path(btf).exists():
        raise UserError(
            "this kernel exposes no BTF (/sys/kernel/btf/vmlinux), which per-task counting needs; "
            "count system-wide with -a instead",
            1,
        )


def run_stat(
    opts: StatOptions,
    stop: object,
    cpus: list[int],
    on_interval: Callable[[list[StatEvent], float, Snapshot], None] | None = None,
    counter_set: Callable[[list[EventSpec], list[bool], list[int]], CounterSet] = CounterSet,
) -> StatResult:
    """Count until the duration ends, ``stop.set`` is true, or every target has exited.

    With an interval, ``on_interval(events, seconds since start, counts of the interval)`` is called
    after each one, and once more for the stretch after the last. ``counter_set`` opens the
    counting fds (tests pass one with a stand-in PMU).
    """
    from profiler.targets import LaunchedCommand, check_pids, process_alive

    t0 = time.monotonic()
    check_pids(opts.pids)
    if opts.per_task:
        _preflight_bpf()
    counters = counter_set(opts.events, opts.required, cpus).__enter__()
    stack = contextlib.ExitStack()
    tc: TaskCounter | None = None
    launched: LaunchedCommand | None = None
    released = False
    try:
        events = counters.events
        supported = [ev for ev in events if ev.supported]
        if not supported:
            raise UserError("none of the events can be counted on this machine; try -e task-clock", 1)
        if opts.per_task:
            tc = _start_task_counter(opts, supported, counters, cpus)
        if opts.command:
            launched = LaunchedCommand(opts.command)
            child = launched.start_held()
            if tc is not None and not opts.system_wide:
                tc.add_targets([child])
        if tc is not None:
            try:
                tc.attach()
            except Exception as exc:
                raise _explain_libbpf(exc) from exc
        counters.enable()
        t_start = time.monotonic_ns()
        start_s = time.monotonic() - t0
        if launched is not None:
            released = True
            launched.release()

        def snapshot() -> Snapshot:
            elapsed = time.monotonic_ns() - t_start
            if tc is not None:
                tc.flush(cpus)
            per_cpu = counters.read()
            snap = cpu_snapshot(per_cpu, cpus, elapsed, opts.by is By.CPU)
            if tc is not None:
                tasks = task_snapshot(events, tc.read_tasks(), opts.by, elapsed)
                snap.groups.update(tasks.groups)
                if not opts.system_wide:
                    snap.total = tasks.total
            return snap

        intervals: list[tuple[float, Snapshot]] = []
        exit_fds = _pidfds([launched.pid] if launched is not None else opts.pids)
        stack.callback(lambda: [os.close(fd) for fd in exit_fds])  # those still open
        deadline = t0 + start_s + opts.duration_s if opts.duration_s else None
        next_tick = time.monotonic() + opts.interval_ms / 1000 if opts.interval_ms else None
        previous = Snapshot(0, [None if not ev.supported else ZERO for ev in events])
        stopped_by = "signal"
        while True:
            if getattr(stop, "set", False):
                stopped_by = "signal"
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                stopped_by = "duration"
                break
            if launched is not None and launched.wait():
                stopped_by = "command exited"
                break
            if opts.pids and not any(process_alive(p) for p in opts.pids):
                stopped_by = "targets exited"
                break
            if next_tick is not None and now >= next_tick:
                cur = snapshot()
                interval = cur.minus(previous)
                previous = cur
                intervals.append(((cur.elapsed_ns) / 1e9, interval))
                if on_interval is not None:
                    on_interval(events, cur.elapsed_ns / 1e9, interval)
                next_tick += opts.interval_ms / 1000  # type: ignore[operator]
            wake = [now + POLL_S]
            if deadline is not None:
                wake.append(deadline)
            if next_tick is not None:
                wake.append(next_tick)
            _wait_exit(exit_fds, max(0.0, min(wake) - time.monotonic()))
        counters.disable()
        elapsed_final = time.monotonic_ns() - t_start
        final = snapshot()  # the counters are frozen: the flush charges exactly what is left
        final.elapsed_ns = elapsed_final
        if opts.interval_ms and final.elapsed_ns - previous.elapsed_ns >= 1_000_000:
            tail = final.minus(previous)  # the last stretch, shorter than an interval
            intervals.append((final.elapsed_ns / 1e9, tail))
            if on_interval is not None:
                on_interval(events, final.elapsed_ns / 1e9, tail)
        health = tc.read_health() if tc is not None else {}
        if launched is not None and stopped_by != "command exited":
            launched.wait()
        return StatResult(events, opts, final, intervals, launched, stopped_by, health, start_s)
    except BaseException:
        if launched is not None and not released:
            launched.abandon()
        raise
    finally:
        stack.close()
        if tc is not None:
            tc.close()
        counters.close()


def _pidfds(pids: list[int]) -> list[int]:
    """A pidfd per process (readable once it exits), so the wait ends at once; none where unsupported."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except (OSError, AttributeError):
            continue  # gone already, or no pidfds (Linux < 5.3): the poll notices within POLL_S
    return fds


def _wait_exit(fds: list[int], timeout: float) -> None:
    """Sleep up to ``timeout`` seconds, or until one of the processes behind ``fds`` exits; the fds
    of exited processes are closed and dropped from the list."""
    if not fds:
        time.sleep(timeout)
        return
    ready, _, _ = select.select(fds, [], [], timeout)
    for fd in ready:
        fds.remove(fd)
        os.close(fd)


def _start_task_counter(
    opts: StatOptions, supported: list[StatEvent], counters: CounterSet, cpus: list[int]
) -> TaskCounter:
    from profiler.bpf.libbpf import LibbpfError, LibbpfMissing
    from profiler.bpf.stat_abi import STAT_MAX_EVENTS

    if len(supported) > STAT_MAX_EVENTS:
        raise UserError(f"{len(supported)} events: per-task counting takes at most {STAT_MAX_EVENTS}", 2)
    config = task_counter_config(supported, opts)
    try:
        tc = TaskCounter(config).__enter__()
    except LibbpfMissing as exc:
        raise UserError(str(exc), 1) from exc
    except LibbpfError as exc:
        raise _explain_libbpf(exc) from exc
    try:
        tc.place_counters(counters.open_fds, cpus)
        if not opts.system_wide and opts.pids:
            tc.add_targets(opts.pids)
    except LibbpfError as exc:
        tc.close()
        raise _explain_libbpf(exc) from exc
    except BaseException:
        tc.close()
        raise
    return tc
