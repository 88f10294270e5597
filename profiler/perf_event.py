"""perf_event_open(2): building attrs (pure) and opening one event per CPU (the syscall edge)."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5
PERF_TYPE_MAX = 6  # dynamic PMUs (sysfs .../PMU/type) have types from here up

PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_TASK_CLOCK = 1

PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7; the kernel accepts any known size, zero-filled

# bit positions in the flags word of struct perf_event_attr (include/uapi/linux/perf_event.h)
ATTR_DISABLED = 1 << 0
ATTR_INHERIT = 1 << 1
ATTR_EXCLUDE_USER = 1 << 4
ATTR_EXCLUDE_KERNEL = 1 << 5
ATTR_EXCLUDE_HV = 1 << 6
ATTR_FREQ = 1 << 10

PERF_FORMAT_TOTAL_TIME_ENABLED = 1 << 0
PERF_FORMAT_TOTAL_TIME_RUNNING = 1 << 1
READ_FORMAT_TIMES = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING

_SYSCALL_NR = {"x86_64": 298, "aarch64": 241}


@dataclass(frozen=True, slots=True)
class EventSpec:
    """A perf event by its attr type and config, with the name the user gave it."""

    name: str
    type: int
    config: int
    is_timer: bool = False  # its period is in nanoseconds
    config1: int = 0  # PMU format fields that live in attr.config1/config2 (sysfs "config1:0-15")
    config2: int = 0
    exclude_user: bool = False  # the ":k" modifier
    exclude_kernel: bool = False  # the ":u" modifier


CPU_CLOCK = EventSpec("cpu-clock", PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, is_timer=True)


@dataclass(frozen=True, slots=True)
class SamplingSpec:
    """How often to sample: ``frequency`` Hz per CPU, or every ``period`` events (ns for timers)."""

    frequency: int | None = 99
    period: int | None = None


def build_attr(event: EventSpec, sampling: SamplingSpec, *, disabled: bool = True) -> bytes:
    """The raw ``struct perf_event_attr`` bytes (PERF_ATTR_SIZE long) for a sampling event."""
    flags = ATTR_EXCLUDE_HV
    if event.exclude_user:
        flags |= ATTR_EXCLUDE_USER
    if event.exclude_kernel:
        flags |= ATTR_EXCLUDE_KERNEL
    if disabled:
        flags |= ATTR_DISABLED
    if sampling.period is not None:
        period_or_freq = sampling.period
    elif sampling.frequency is not None:
        period_or_freq = sampling.frequency
        flags |= ATTR_FREQ
    else:
        raise ValueError("a sampling spec needs a frequency or a period")
    head = struct.pack(
        "<IIQQQQQIIQQ",
        event.type, PERF_ATTR_SIZE, event.config, period_or_freq, 0, 0, flags,
        0, 0, event.config1, event.config2,
    )  # fmt: skip
    return head + bytes(PERF_ATTR_SIZE - len(head))


def parse_cpu_list(text: str) -> list[int]:
    """``0-3,5,7-8`` -> [0, 1, 2, 3, 5, 7, 8]. Raises ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r}: expected numbers and ranges like 0-3,5")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        cpus.update(range(a, b + 1))
    if not cpus:
        raise ValueError(f"empty CPU list {text!r}")
    return sorted(cpus)


def online_cpus(sysfs: str = "/sys/devices/system/cpu/online") -> list[int]:
    return parse_cpu_list(Path(sysfs).read_text())


def max_sample_rate(path: str = "/proc/sys/kernel/perf_event_max_sample_rate") -> int:
    try:
        return int(Path(path).read_text())
    except (OSError, ValueError):
        return 100000


class PerfEventError(OSError):
    """perf_event_open failed; the message (str) says what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


_libc = ctypes.CDLL(None, use_errno=True)


def perf_event_open(
    attr: bytes, pid: int, cpu: int, group_fd: int = -1, flags: int = PERF_FLAG_FD_CLOEXEC
) -> int:
    """The raw syscall; returns an fd or raises OSError with the errno."""
    nr = _SYSCALL_NR.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"perf_event_open: unsupported architecture {platform.machine()}")
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _libc.syscall(
        nr, buf, ctypes.c_int(pid), ctypes.c_int(cpu), ctypes.c_int(group_fd), ctypes.c_ulong(flags)
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def build_count_attr(event: EventSpec, *, disabled: bool = False) -> bytes:
    """The ``struct perf_event_attr`` bytes for counting (no sampling), as ``perf stat`` opens them.

    read_format is TOTAL_TIME_ENABLED|TOTAL_TIME_RUNNING; exclude_hv is left clear because some PMUs
    (msr) refuse any exclude bit.
    """
    flags = 0
    if event.exclude_user:
        flags |= ATTR_EXCLUDE_USER
    if event.exclude_kernel:
        flags |= ATTR_EXCLUDE_KERNEL
    if disabled:
        flags |= ATTR_DISABLED
    head = struct.pack(
        "<IIQQQQQIIQQ",
        event.type, PERF_ATTR_SIZE, event.config, 0, 0, READ_FORMAT_TIMES, flags,
        0, 0, event.config1, event.config2,
    )  # fmt: skip
    return head + bytes(PERF_ATTR_SIZE - len(head))


def probe_event(event: EventSpec, *, pid: int = 0, cpu: int = -1) -> OSError | None:
    """Open ``event`` counting for a moment, by default on this process: None if it opens, else the error.

    ``pid=-1, cpu=N`` probes the system-wide form (uncore and msr-like PMUs count only that way).
    """
    try:
        fd = perf_event_open(build_count_attr(event), pid, cpu)
    except OSError as exc:
        return exc
    os.close(fd)
    return None


# Core PMUs register as PERF_TYPE_RAW (x86 "cpu", arm_pmu's first PMU); hybrid x86 has cpu_core/cpu_atom.
_CORE_PMU_NAMES = ("cpu", "cpu_core", "cpu_atom")


def has_core_pmu(root: str = "/sys/bus/event_source/devices") -> bool:
    """Whether the kernel registered a CPU PMU (hardware counters) on this machine."""
    base = Path(root)
    if any((base / name).is_dir() for name in _CORE_PMU_NAMES):
        return True
    for d in base.glob("*"):
        try:
            if int((d / "type").read_text()) == PERF_TYPE_RAW:
                return True
        except (OSError, ValueError):
            continue
    return False


def working_software_events() -> list[str]:
    """The names of the software events this process can open here (probed one by one)."""
    from profiler.events import SOFTWARE_EVENTS  # the name tables sit above this layer

    return [ev.name for ev in SOFTWARE_EVENTS if probe_event(ev.spec()) is None]


def no_pmu_message(name: str, working: list[str]) -> str:
    """The one sentence for a hardware event on a machine that exposes no hardware counters."""
    works = ", ".join(working) if working else "cpu-clock"
    return (
        f"this machine exposes no hardware counters (a virtual machine?), so {name} cannot be opened; "
        f"the software events work here ({works}), e.g. -e cpu-clock; for hardware counters run on "
        "bare metal or in a VM with a virtual PMU (KVM/QEMU: -cpu host, VMware: virtualize CPU "
        "performance counters)"
    )


_HARDWARE_TYPES = (PERF_TYPE_HARDWARE, PERF_TYPE_HW_CACHE, PERF_TYPE_RAW)


def explain_open_error(
    err: OSError,
    event: EventSpec,
    sampling: SamplingSpec | None,
    cpu: int,
    *,
    working_software: list[str] | None = None,
    core_pmu: bool | None = None,
) -> PerfEventError:
    """Turn a perf_event_open errno into one sentence of what is wrong and what to do.

    ``sampling`` is None for a counting event. ``working_software`` and ``core_pmu`` default to probing
    this machine (only when the error is a hardware event that did not open).
    """
    code = err.errno
    hardware = event.type in _HARDWARE_TYPES or event.type >= PERF_TYPE_MAX
    if code in (errno.ENOENT, errno.EOPNOTSUPP) and hardware:
        if core_pmu is None:
            core_pmu = has_core_pmu()
        if event.type in _HARDWARE_TYPES and not core_pmu:
            if working_software is None:
                working_software = working_software_events()
            msg = no_pmu_message(event.name, working_software)
        elif code == errno.EOPNOTSUPP and sampling is not None:
            msg = (
                f"the PMU can count {event.name} but not sample it (EOPNOTSUPP); count it with "
                "bpfprof stat, or sample another event"
            )
        else:
            msg = (
                f"this machine's PMU does not support {event.name} ({os.strerror(code or 0)}); "
                "bpfprof list shows the events that work here"
            )
    elif code in (errno.EACCES, errno.EPERM):
        msg = "not allowed to open perf events: run as root or with CAP_PERFMON (and CAP_BPF)"
    elif (
        code == errno.EINVAL
        and sampling is not None
        and sampling.frequency is not None
        and sampling.frequency > max_sample_rate()
    ):
        msg = (
            f"sampling frequency {sampling.frequency} Hz is above kernel.perf_event_max_sample_rate "
            f"({max_sample_rate()}); lower -F"
        )
    elif (
        code == errno.EINVAL
        and event.type >= PERF_TYPE_MAX
        and sampling is not None
        and probe_event(event) is None
    ):
        msg = (
            f"the PMU can count {event.name} but not sample it (msr and uncore PMUs cannot); count it "
            "with bpfprof stat, or sample another event"
        )
    elif code == errno.EINVAL and event.type >= PERF_TYPE_MAX:
        msg = (
            f"the PMU refused {event.name} (invalid argument): check its terms against bpfprof list; "
            "msr and uncore PMUs take no :u or :k, and uncore ones count only system-wide"
        )
    elif code == errno.ENODEV:
        msg = f"CPU {cpu} is not online; choose online CPUs with -C"
    elif code == errno.EMFILE:
        msg = "too many open files for one perf event per CPU; raise the limit with ulimit -n"
    else:
        msg = f"perf_event_open({event.name}, cpu {cpu}) failed: {os.strerror(code or 0)}"
    return PerfEventError(code or errno.EIO, msg)


def open_per_cpu(event: EventSpec, sampling: SamplingSpec, cpus: list[int]) -> list[int]:
    """One sampling event per CPU, all tasks (pid -1), disabled until a BPF program enables it."""
    attr = build_attr(event, sampling)
    fds: list[int] = []
    try:
        for cpu in cpus:
            try:
                fds.append(perf_event_open(attr, -1, cpu))
            except OSError as exc:
                raise explain_open_error(exc, event, sampling, cpu) from exc
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds
