"""Event names to EventSpecs: perf's names, the cache events, raw ``rNNN`` and ``pmu/term=v,.../``.

The grammar, as perf(1) and ``perf list`` spell it::

    list     := event ("," event)*              commas inside pmu/.../ do not split
    event    := name [":" mods]                 cycles, cache-misses:u, L1-dcache-load-misses
              | "r" HEX [":" mods]              r1a8 or r0x1a8: PERF_TYPE_RAW, config = HEX
              | pmu "/" terms "/" [[":"] mods]  cpu/event=0x3c,umask=0x0/u, msr/tsc/
    terms    := term ("," term)*
    term     := field ["=" value]               a format field of the PMU (bare: = 1), or
              | alias                           an event named in the PMU's events/ directory, or
              | ("config" | "config1" | "config2") "=" value
    mods     := ("u" | "k")+                    u: user only (exclude_kernel), k: kernel only

A name that is none of the built-in ones may name a sysfs event alias of one PMU (``tsc``). Values
are decimal or 0x-hex. The PMU's format fields come from
``/sys/bus/event_source/devices/PMU/format/FIELD`` (``config:0-7``, ``config1:0-15``,
``config:0-7,32-35``) and its type from ``.../PMU/type``. Every failure raises EventError, whose text
is one sentence for users; an unknown name lists the closest known names.
"""

from __future__ import annotations

import difflib
import errno
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from profiler.perf_event import (
    CPU_CLOCK,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_HW_CACHE,
    PERF_TYPE_RAW,
    PERF_TYPE_SOFTWARE,
    EventSpec,
    SamplingSpec,
    explain_open_error,
    has_core_pmu,
)

SYSFS_PMUS = "/sys/bus/event_source/devices"


class EventError(ValueError):
    """An event string that cannot be used; str() is one sentence for users."""


class EventKind(Enum):
    HARDWARE = "hardware"
    CACHE = "hardware cache"
    SOFTWARE = "software"
    RAW = "raw"
    PMU = "pmu"


@dataclass(frozen=True, slots=True)
class KnownEvent:
    """A named event of the built-in tables (perf's names; ``aliases`` are perf's other spellings)."""

    name: str
    kind: EventKind
    type: int
    config: int
    description: str = ""
    aliases: tuple[str, ...] = ()
    is_timer: bool = False

    def spec(self, name: str | None = None) -> EventSpec:
        return EventSpec(name or self.name, self.type, self.config, is_timer=self.is_timer)


# include/uapi/linux/perf_event.h: enum perf_hw_id
HARDWARE_EVENTS: tuple[KnownEvent, ...] = tuple(
    KnownEvent(name, EventKind.HARDWARE, PERF_TYPE_HARDWARE, config, desc, aliases)
    for name, config, desc, aliases in (
        ("cpu-cycles", 0, "CPU cycles", ("cycles",)),
        ("instructions", 1, "instructions retired", ()),
        ("cache-references", 2, "cache accesses (usually the last-level cache)", ()),
        ("cache-misses", 3, "cache misses (usually the last-level cache)", ()),
        ("branch-instructions", 4, "branch instructions retired", ("branches",)),
        ("branch-misses", 5, "mispredicted branches", ()),
        ("bus-cycles", 6, "bus cycles", ()),
        ("stalled-cycles-frontend", 7, "cycles the front end stalled", ("idle-cycles-frontend",)),
        ("stalled-cycles-backend", 8, "cycles the back end stalled", ("idle-cycles-backend",)),
        ("ref-cycles", 9, "reference cycles, not scaled by frequency changes", ()),
    )
)

# enum perf_sw_ids; cpu-clock and task-clock count nanoseconds
SOFTWARE_EVENTS: tuple[KnownEvent, ...] = tuple(
    KnownEvent(name, EventKind.SOFTWARE, PERF_TYPE_SOFTWARE, config, desc, aliases, is_timer=config in (0, 1))
    for name, config, desc, aliases in (
        ("cpu-clock", 0, "CPU time in ns, a per-CPU timer", ()),
        ("task-clock", 1, "CPU time of the task in ns", ()),
        ("page-faults", 2, "page faults", ("faults",)),
        ("context-switches", 3, "context switches", ("cs",)),
        ("cpu-migrations", 4, "moves of a task to another CPU", ("migrations",)),
        ("minor-faults", 5, "page faults served without I/O", ()),
        ("major-faults", 6, "page faults that needed I/O", ()),
        ("alignment-faults", 7, "alignment fix-ups", ()),
        ("emulation-faults", 8, "instruction emulations", ()),
        ("cgroup-switches", 11, "context switches between cgroups", ()),
    )
)

# enum perf_hw_cache_id / _op_id / _op_result_id; config = cache | op << 8 | result << 16.
# The (cache, op) pairs perf lists (tools/perf/util/evsel.c evsel__hw_cache_stat).
_CACHES = (
    ("L1-dcache", 0),
    ("L1-icache", 1),
    ("LLC", 2),
    ("dTLB", 3),
    ("iTLB", 4),
    ("branch", 5),
    ("node", 6),
)
_OPS = (("load", 0), ("store", 1), ("prefetch", 2))
_CACHE_OPS = {0: (0, 1, 2), 1: (0, 2), 2: (0, 1, 2), 3: (0, 1, 2), 4: (0,), 5: (0,), 6: (0, 1, 2)}


def _cache_events() -> tuple[KnownEvent, ...]:
    out = []
    for cache, cid in _CACHES:
        for op, oid in _OPS:
            if oid not in _CACHE_OPS[cid]:
                continue
            ops = "prefetches" if op == "prefetch" else op + "s"
            out.append(
                KnownEvent(
                    f"{cache}-{ops}", EventKind.CACHE, PERF_TYPE_HW_CACHE, cid | oid << 8, f"{cache} {ops}"
                )
            )
            out.append(
                KnownEvent(
                    f"{cache}-{op}-misses", EventKind.CACHE, PERF_TYPE_HW_CACHE, cid | oid << 8 | 1 << 16,
                    f"{cache} {op} misses",
                )
            )  # fmt: skip
    return tuple(out)


CACHE_EVENTS = _cache_events()
KNOWN_EVENTS: tuple[KnownEvent, ...] = HARDWARE_EVENTS + CACHE_EVENTS + SOFTWARE_EVENTS

_BY_NAME: dict[str, KnownEvent] = {
    n.lower(): ev for ev in KNOWN_EVENTS for n in (ev.name, *ev.aliases)
}  # fmt: skip


def known_event(name: str) -> KnownEvent | None:
    """The table entry for a name or alias (case-insensitive), or None."""
    return _BY_NAME.get(name.lower())


# -- sysfs PMUs --------------------------------------------------------------------------------

_CONFIG_WORDS = ("config", "config1", "config2")


@dataclass(frozen=True, slots=True)
class FormatField:
    """A PMU format field: which attr word it lives in, and its bit positions, lowest value bit first."""

    name: str
    word: str  # "config", "config1" or "config2"
    bits: tuple[int, ...]

    def encode(self, value: int) -> int:
        """``value`` spread over this field's bits, as a mask of the attr word."""
        if value < 0 or value >> len(self.bits):
            raise EventError(
                f"{self.name}={value:#x} does not fit in the {len(self.bits)}-bit field {self.name}"
            )
        out = 0
        for i, bit in enumerate(self.bits):
            if value >> i & 1:
                out |= 1 << bit
        return out

    @property
    def mask(self) -> int:
        return sum(1 << b for b in self.bits)


def parse_format(name: str, text: str) -> FormatField:
    """A sysfs format file: ``config:0-7``, ``config1:0-15``, ``config:21``, ``config:0-7,32-35``.

    Raises EventError on anything else.
    """
    word, sep, ranges = text.strip().partition(":")
    bits: list[int] = []
    if sep and word in _CONFIG_WORDS:
        for part in ranges.split(","):
            lo, dash, hi = part.partition("-")
            if not lo.isdigit() or (dash and not hi.isdigit()):
                bits = []
                break
            a, b = int(lo), int(hi) if dash else int(lo)
            bits.extend(range(a, b + 1))
    if not bits or max(bits) > 63 or len(set(bits)) != len(bits):
        raise EventError(f"PMU format field {name} has a definition bpfprof cannot read: {text.strip()!r}")
    return FormatField(name, word, tuple(bits))


@dataclass(frozen=True, slots=True)
class Pmu:
    """One directory of /sys/bus/event_source/devices: its attr type, format fields and named events."""

    name: str
    type: int
    formats: Mapping[str, FormatField] = field(default_factory=dict)
    events: Mapping[str, str] = field(default_factory=dict)  # alias -> terms, "event=0xcd,umask=0x1"


def load_pmus(root: str = SYSFS_PMUS) -> dict[str, Pmu]:
    """Every PMU under ``root`` that has a readable type; unreadable format files are left out."""
    pmus: dict[str, Pmu] = {}
    base = Path(root)
    if not base.is_dir():
        return pmus
    for d in sorted(base.iterdir()):
        try:
            typ = int((d / "type").read_text().strip())
        except (OSError, ValueError):
            continue
        formats: dict[str, FormatField] = {}
        for f in sorted((d / "format").glob("*")):
            try:
                formats[f.name] = parse_format(f.name, f.read_text())
            except (OSError, EventError):
                continue
        events: dict[str, str] = {}
        for f in sorted((d / "events").glob("*")):
            if "." in f.name:  # .scale, .unit, .per-pkg, .snapshot describe the event of that name
                continue
            try:
                events[f.name] = f.read_text().strip()
            except OSError:
                continue
        pmus[d.name] = Pmu(d.name, typ, formats, events)
    return pmus


@functools.cache
def system_pmus() -> dict[str, Pmu]:
    """This machine's PMUs, read once."""
    return load_pmus()


# -- parsing -----------------------------------------------------------------------------------

_RAW = re.compile(r"r(?:0x)?([0-9a-fA-F]{1,16})")
_MODIFIERS = {"u": "user only", "k": "kernel only"}


def _parse_mods(event: str, mods: str) -> tuple[bool, bool]:
    """Modifier letters -> (exclude_user, exclude_kernel), as perf sets them (``:uk`` = both)."""
    bad = sorted(set(mods) - set(_MODIFIERS))
    if not mods or bad:
        what = repr(mods) if not mods else ", ".join(repr(c) for c in bad)
        raise EventError(
            f"event {event!r}: modifier {what} is not one bpfprof knows (u = user only, k = kernel only)"
        )
    user, kernel = "u" in mods, "k" in mods
    return (not user and kernel, user and not kernel)


def _value(event: str, key: str, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise EventError(f"event {event!r}: {key}={text} is not a number (decimal or 0x hex)") from None


def _suggest(name: str, candidates: list[str], n: int = 3) -> str:
    """The closest candidates, closest first; a looser match when no close one exists."""
    by_lower = {c.lower(): c for c in candidates}
    for cutoff in (0.6, 0.4):
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=cutoff)
        if close:
            return ", ".join(by_lower[c] for c in close)
    return ""


def known_names(pmus: Mapping[str, Pmu] | None = None) -> list[str]:
    """Every name parse_event takes without terms: the tables, their aliases, and sysfs aliases."""
    names = [n for ev in KNOWN_EVENTS for n in (ev.name, *ev.aliases)]
    for pmu in (pmus or {}).values():
        names.extend(f"{pmu.name}/{alias}/" for alias in pmu.events)
        names.extend(pmu.events)
    return names


def _parse_terms(event: str, pmu: Pmu, terms: str, depth: int = 0) -> dict[str, int]:
    """``event=0x3c,umask=1,inv`` -> {field or config word: value}; event aliases expand in place."""
    values: dict[str, int] = {}
    for term in terms.split(","):
        term = term.strip()
        if not term:
            continue
        key, eq, text = term.partition("=")
        key = key.strip()
        if key in pmu.formats or key in _CONFIG_WORDS:
            if not eq and key in _CONFIG_WORDS:
                raise EventError(f"event {event!r}: {key} needs a value, as in {key}=0x1a8")
            values.pop(key, None)  # the last one wins, after the alias it overrides
            values[key] = _value(event, key, text.strip()) if eq else 1
        elif key in pmu.events and not eq and depth == 0:
            values.update(_parse_terms(event, pmu, pmu.events[key], depth + 1))
        elif key in ("period", "freq", "sample_period", "sample_freq"):
            raise EventError(f"event {event!r}: set the sampling period with -c or -F, not in the event")
        else:
            hint = _suggest(key, [*pmu.formats, *pmu.events, *_CONFIG_WORDS])
            known = ", ".join(sorted(pmu.formats)) or "none"
            raise EventError(
                f"event {event!r}: PMU {pmu.name} has no format field or event {key!r}"
                + (f" (did you mean {hint}?)" if hint else f" (its format fields: {known})")
            )
    if depth == 0 and not values:
        raise EventError(f"event {event!r}: no terms between the slashes, as in {pmu.name}/event=0x3c/")
    return values


def _encode_terms(event: str, pmu: Pmu, values: dict[str, int]) -> tuple[int, int, int]:
    words = dict.fromkeys(_CONFIG_WORDS, 0)
    for key, value in values.items():
        if key in _CONFIG_WORDS:
            if value < 0 or value >> 64:
                raise EventError(f"event {event!r}: {key}={value:#x} does not fit in 64 bits")
            words[key] = value
            continue
        fmt = pmu.formats[key]
        try:
            bits = fmt.encode(value)
        except EventError as exc:
            raise EventError(f"event {event!r}: {exc}") from None
        words[fmt.word] = words[fmt.word] & ~fmt.mask | bits
    return words["config"], words["config1"], words["config2"]


def _pmu_event(event: str, pmu: Pmu, terms: str, mods: str) -> EventSpec:
    config, config1, config2 = _encode_terms(event, pmu, _parse_terms(event, pmu, terms))
    ex_user, ex_kernel = _parse_mods(event, mods) if mods else (False, False)
    return EventSpec(event, pmu.type, config, False, config1, config2, ex_user, ex_kernel)


def parse_event(text: str, *, pmus: Mapping[str, Pmu] | None = None) -> EventSpec:
    """One event string -> EventSpec (see the module docstring for the grammar).

    ``pmus`` defaults to this machine's (read from sysfs only when a PMU or an unknown name needs them).
    Raises EventError with one sentence for users.
    """
    event = text.strip()
    if not event:
        raise EventError("empty event name; bpfprof list shows the events of this machine")
    if "/" in event:
        pmu_name, _, rest = event.partition("/")
        terms, slash, mods = rest.rpartition("/")
        if not slash or not pmu_name:
            raise EventError(
                f"event {event!r}: a PMU event is written pmu/term=value,.../, as in cpu/event=0x3c/"
            )
        if pmus is None:
            pmus = system_pmus()
        pmu = pmus.get(pmu_name)
        if pmu is None:
            hint = _suggest(pmu_name, list(pmus))
            raise EventError(
                f"event {event!r}: this machine has no PMU named {pmu_name!r}"
                + (
                    f" (did you mean {hint}?)"
                    if hint
                    else f" (its PMUs: {', '.join(sorted(pmus)) or 'none'})"
                )
            )
        return _pmu_event(event, pmu, terms, mods.removeprefix(":"))
    name, colon, mods = event.partition(":")
    ex_user, ex_kernel = _parse_mods(event, mods) if colon else (False, False)
    known = known_event(name)
    if known is not None:
        spec = known.spec(event)
        return EventSpec(spec.name, spec.type, spec.config, spec.is_timer, 0, 0, ex_user, ex_kernel)
    raw = _RAW.fullmatch(name)
    if raw:
        return EventSpec(event, PERF_TYPE_RAW, int(raw.group(1), 16), False, 0, 0, ex_user, ex_kernel)
    if pmus is None:
        pmus = system_pmus()
    owners = [pmu for pmu in pmus.values() if name in pmu.events]
    if len(owners) == 1:
        return _pmu_event(event, owners[0], name, mods)
    if owners:
        spelled = " or ".join(f"{p.name}/{name}/" for p in owners)
        raise EventError(f"event {name!r} is named by several PMUs: write {spelled}")
    hint = _suggest(name, known_names(pmus))
    raise EventError(
        f"unknown event {name!r}"
        + (f"; did you mean {hint}?" if hint else "")
        + " (bpfprof list shows the events of this machine)"
    )


def split_event_list(text: str) -> list[str]:
    """Split at the commas that are not inside a ``pmu/.../`` term list."""
    parts: list[str] = []
    start, inside = 0, False
    for i, ch in enumerate(text):
        if ch == "/":
            inside = not inside
        elif ch == "," and not inside:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_event_list(text: str, *, pmus: Mapping[str, Pmu] | None = None) -> list[EventSpec]:
    """``cycles,cpu/event=0x3c,umask=0/,page-faults:u`` -> one EventSpec each, in order."""
    if not text.strip():
        raise EventError("no event given; bpfprof list shows the events of this machine")
    if text.count("/") % 2:
        raise EventError(f"event list {text!r} has an unclosed pmu/.../ term list")
    parts = split_event_list(text)
    if any(not p.strip() for p in parts):
        raise EventError(f"event list {text!r} has an empty entry; separate events with single commas")
    return [parse_event(p, pmus=pmus) for p in parts]


def event_kind(spec: EventSpec) -> EventKind:
    if spec.type == PERF_TYPE_HARDWARE:
        return EventKind.HARDWARE
    if spec.type == PERF_TYPE_HW_CACHE:
        return EventKind.CACHE
    if spec.type == PERF_TYPE_SOFTWARE:
        return EventKind.SOFTWARE
    if spec.type == PERF_TYPE_RAW:
        return EventKind.RAW
    return EventKind.PMU


def is_hardware(spec: EventSpec) -> bool:
    """Counted by a PMU (core or sysfs), so it fails where the machine exposes none."""
    return event_kind(spec) is not EventKind.SOFTWARE


# Default sample periods for -e EVENT without -c or -F, in events. Primes, so that sampling does not
# fall into step with a loop (the same reason VTune's default is 2000003).
_PERIOD_CYCLES = 2_000_003  # ~1 ms at 2 GHz
_PERIOD_ACCESSES = 100_003
_PERIOD_MISSES = 10_007
_SOFTWARE_PERIODS = {2: 1_009, 3: 1, 4: 1, 5: 1_009, 6: 1, 7: 1, 8: 1, 11: 1}  # faults: ~1 per 4 MB touched


def default_period(spec: EventSpec) -> int:
    """The sample period for ``record -e EVENT`` when neither -c nor -F is given (not for timers)."""
    if spec.is_timer:
        raise ValueError("timer events sample at -F 99 by default, not by a period")
    kind = event_kind(spec)
    if kind is EventKind.SOFTWARE:
        return _SOFTWARE_PERIODS.get(spec.config, 1)
    if kind is EventKind.HARDWARE:
        if spec.config in (3, 5):  # cache-misses, branch-misses
            return _PERIOD_MISSES
        if spec.config in (2, 4):  # cache-references, branch-instructions
            return _PERIOD_ACCESSES
        return _PERIOD_CYCLES
    if kind is EventKind.CACHE:
        return _PERIOD_MISSES if spec.config >> 16 & 0xFF else _PERIOD_ACCESSES
    return _PERIOD_CYCLES  # raw and PMU events: unknown rate; treat as cycles-like


@dataclass(frozen=True, slots=True)
class SettledEvent:
    """The event a recording will sample, and the note to print when it is not the one asked for."""

    event: EventSpec
    sampling: SamplingSpec
    note: str | None = None


def settle_event(
    event: EventSpec,
    sampling: SamplingSpec,
    *,
    fallback: bool,
    probe: Callable[[EventSpec], OSError | None],
    core_pmu: bool | None = None,
    working_software: list[str] | None = None,
) -> SettledEvent:
    """Check, before anything is loaded, that a hardware ``event`` opens here (``probe``: counting).

    An event that cannot be counted here (ENOENT/EOPNOTSUPP) raises the one-sentence PerfEventError
    of explain_open_error, or, with ``fallback``, becomes cpu-clock (at -F, or 99 Hz) with a note
    saying so. Software events are not probed: they open wherever perf events do.
    """
    if not is_hardware(event):
        return SettledEvent(event, sampling)
    err = probe(event)
    if err is None:
        return SettledEvent(event, sampling)
    cannot = err.errno in (errno.ENOENT, errno.EOPNOTSUPP)
    if not (fallback and cannot):
        raise explain_open_error(
            err, event, sampling, -1, core_pmu=core_pmu, working_software=working_software
        )
    if core_pmu is None:
        core_pmu = has_core_pmu()
    if core_pmu:
        why = "this machine's PMU does not support it"
    else:
        why = "this machine exposes no hardware counters (a virtual machine?)"
    hz = sampling.frequency or 99
    dropped = f" (-c {sampling.period} counted {event.name})" if sampling.period is not None else ""
    note = (
        f"{event.name} cannot be opened: {why}; sampling cpu-clock at {hz} Hz instead{dropped}, "
        "as --fallback asks"
    )
    return SettledEvent(CPU_CLOCK, SamplingSpec(frequency=hz), note)
