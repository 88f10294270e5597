"""`bpfprof list`: the events this machine supports, each tested by opening it (counting) and closing it."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from profiler.events import KnownEvent, Pmu
    from profiler.perf_event import EventSpec

EXAMPLES = """\
examples:
  bpfprof list                 every event, and whether it opens here
  bpfprof list cache           only names or kinds containing 'cache'
  bpfprof list --supported     only what works on this machine
"""

OK = "ok"
# PMUs with format fields that are probes, not counters: left out of the PMU-term rows
_NOT_COUNTERS = frozenset({"uprobe", "kprobe", "tracepoint", "breakpoint", "software"})

# probe(event, pid=..., cpu=...) -> None when it opens, else the OSError
Probe = Callable[..., "OSError | None"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list",
        help="the events this machine supports (each one tested)",
        description="List the perf events bpfprof takes with -e, grouped by kind; each is opened once "
        "(counting, on bpfprof itself) and closed, and those that do not open say why.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "filter", nargs="*", metavar="WORD", help="only events whose name or kind contains a WORD"
    )
    parser.add_argument("--supported", action="store_true", help="only the events that open here")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Row:
    """One listed event: its name(s), what it counts, and ``ok`` or why it does not open."""

    name: str
    description: str
    status: str


@dataclass(slots=True)
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)


def why_not(err: OSError, *, hardware: bool, core_pmu: bool) -> str:
    """A few words on why perf_event_open refused an event (the errno name in parentheses)."""
    code = err.errno or 0
    name = errno.errorcode.get(code, str(code))
    if code in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV) and hardware and not core_pmu:
        reason = "no hardware counters here"
    elif code in (errno.ENOENT, errno.EOPNOTSUPP):
        reason = "not supported by this machine"
    elif code in (errno.EACCES, errno.EPERM):
        reason = "not allowed: run as root or with CAP_PERFMON"
    elif code == errno.EINVAL:
        reason = "refused by the PMU"
    else:
        reason = os.strerror(code).lower()
    return f"{reason} ({name})"


def _status(spec: EventSpec, probe: Probe, *, hardware: bool, core_pmu: bool, cpu: int | None = None) -> str:
    err = probe(spec)
    if err is None:
        return OK
    # uncore-like PMUs count only system-wide, on one CPU of their cpumask
    system_wide = cpu is not None and err.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOENT)
    if system_wide and probe(spec, pid=-1, cpu=cpu) is None:
        return "system-wide only (bpfprof stat -a)"
    return "no: " + why_not(err, hardware=hardware, core_pmu=core_pmu)


def _table_rows(events: tuple[KnownEvent, ...], probe: Probe, core_pmu: bool) -> list[Row]:
    from profiler.events import EventKind

    rows = []
    for ev in events:
        name = " OR ".join((ev.name, *ev.aliases))
        hardware = ev.kind is not EventKind.SOFTWARE
        rows.append(
            Row(name, ev.description, _status(ev.spec(), probe, hardware=hardware, core_pmu=core_pmu))
        )
    return rows


def _first_cpu(pmu_dir: str) -> int:
    """The first CPU of a PMU's sysfs ``cpumask`` (0 when it has none)."""
    from profiler.perf_event import parse_cpu_list

    try:
        with open(os.path.join(pmu_dir, "cpumask")) as f:
            return parse_cpu_list(f.read())[0]
    except (OSError, ValueError):
        return 0


def build_sections(
    pmus: Mapping[str, Pmu],
    probe: Probe,
    *,
    core_pmu: bool,
    first_cpu: Callable[[str], int] = lambda name: 0,
) -> list[Section]:
    """Every event bpfprof knows, grouped by kind, each with the result of ``probe``."""
    from profiler.events import CACHE_EVENTS, HARDWARE_EVENTS, SOFTWARE_EVENTS, EventError, parse_event

    sections = [
        Section("software events", _table_rows(SOFTWARE_EVENTS, probe, core_pmu)),
        Section("hardware events", _table_rows(HARDWARE_EVENTS, probe, core_pmu)),
        Section("hardware cache events", _table_rows(CACHE_EVENTS, probe, core_pmu)),
    ]
    pmu_rows = []
    for pmu in sorted(pmus.values(), key=lambda p: p.name):
        for alias, terms in sorted(pmu.events.items()):
            name = f"{pmu.name}/{alias}/"
            try:
                spec = parse_event(name, pmus=pmus)
            except EventError as exc:
                pmu_rows.append(Row(name, terms, f"no: {exc}"))
                continue
            status = _status(spec, probe, hardware=True, core_pmu=core_pmu, cpu=first_cpu(pmu.name))
            pmu_rows.append(Row(name, terms, status))
    sections.append(Section("PMU events (/sys/bus/event_source/devices/*/events)", pmu_rows))
    raw_status = (
        OK if core_pmu else "no: " + why_not(OSError(errno.ENOENT, ""), hardware=True, core_pmu=False)
    )
    raw_rows = [Row("rNNN", "raw CPU PMU event: config NNN in hex (CPU manual)", raw_status)]
    for pmu in sorted(pmus.values(), key=lambda p: p.name):
        if pmu.formats and pmu.name not in _NOT_COUNTERS:
            fields = ", ".join(f"{f.name}={f.word}:{_bits(f.bits)}" for f in pmu.formats.values())
            raw_rows.append(Row(f"{pmu.name}/term=value,.../", f"format fields: {fields}", ""))
    sections.append(Section("raw and PMU-term events", raw_rows))
    return sections


def _bits(bits: tuple[int, ...]) -> str:
    """(0, 1, 2, 7) -> '0-2,7', as sysfs writes them."""
    runs: list[list[int]] = []
    for bit in bits:
        if runs and bit == runs[-1][1] + 1:
            runs[-1][1] = bit
        else:
            runs.append([bit, bit])
    return ",".join(f"{a}-{b}" if b != a else str(a) for a, b in runs)


def filter_sections(sections: list[Section], words: list[str], supported: bool) -> list[Section]:
    """Rows whose name (or section title) contains a word; with ``supported``, only those that open."""
    out = []
    for sec in sections:
        rows = [
            r
            for r in sec.rows
            if (not words or any(w.lower() in (r.name + " " + sec.title).lower() for w in words))
            and (not supported or r.status == OK or r.status.startswith("system-wide"))
        ]
        if rows:
            out.append(Section(sec.title, rows))
    return out


def render(sections: list[Section], out: TextIO) -> None:
    width = max((len(r.name) for s in sections for r in s.rows), default=0) + 2
    desc_width = min(56, max((len(r.description) for s in sections for r in s.rows), default=0)) + 2
    for i, sec in enumerate(sections):
        if i:
            print(file=out)
        print(f"{sec.title}:", file=out)
        for r in sec.rows:
            line = f"  {r.name:<{width}}{r.description:<{desc_width}}  {r.status}"
            print(line.rstrip(), file=out)


def run(ns: argparse.Namespace, command: list[str]) -> int:
    from profiler.errors import UserError
    from profiler.events import SYSFS_PMUS, system_pmus
    from profiler.perf_event import has_core_pmu, no_pmu_message, probe_event, working_software_events

    if command:
        raise UserError("bpfprof list takes no command after --", 2)
    core_pmu = has_core_pmu()
    sections = build_sections(
        system_pmus(),
        probe_event,
        core_pmu=core_pmu,
        first_cpu=lambda name: _first_cpu(os.path.join(SYSFS_PMUS, name)),
    )
    shown = filter_sections(sections, ns.filter, ns.supported)
    if not shown:
        raise UserError(f"no event matches {' '.join(ns.filter)!r}; bpfprof list shows them all", 1)
    render(shown, sys.stdout)
    if not core_pmu:
        print(f"\nnote: {no_pmu_message('a hardware event', working_software_events())}.", file=sys.stdout)
    return 0
