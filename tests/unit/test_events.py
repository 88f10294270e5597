"""Event names to EventSpecs: the tables against the kernel's header, sysfs PMU formats on a fixture
modelled on an Intel `cpu` PMU, modifiers, lists, errors, default periods, the no-PMU sentence, the
--fallback decision, `bpfprof list`'s sections and the exporters' weight choice."""

from __future__ import annotations

import errno
import io
import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

from exporters.folded import FoldedOptions, fold_profile, parse_folded
from exporters.model import Profile, ProfileMeta, Sample, Weight
from exporters.output import write_profile
from exporters.speedscope import read_speedscope, speedscope_document
from exporters.svg import SvgOptions, write_svg
from profiler.events import (
    CACHE_EVENTS,
    HARDWARE_EVENTS,
    KNOWN_EVENTS,
    SOFTWARE_EVENTS,
    EventError,
    EventKind,
    FormatField,
    SettledEvent,
    default_period,
    event_kind,
    load_pmus,
    parse_event,
    parse_event_list,
    parse_format,
    settle_event,
    split_event_list,
)
from profiler.perf_event import (
    CPU_CLOCK,
    PERF_ATTR_SIZE,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_HW_CACHE,
    PERF_TYPE_RAW,
    PERF_TYPE_SOFTWARE,
    EventSpec,
    PerfEventError,
    SamplingSpec,
    build_attr,
    build_count_attr,
    explain_open_error,
    has_core_pmu,
)
from unwind.frame import Frame

INTEL = Path(__file__).parents[1] / "fixtures" / "pmu" / "intel"
SOFTWARE_NAMES = [ev.name for ev in SOFTWARE_EVENTS]


@pytest.fixture(scope="module")
def intel() -> dict:
    return load_pmus(str(INTEL))


# -- the tables, held to include/uapi/linux/perf_event.h ------------------------------------------

C_ENUMS = r"""
#include <linux/perf_event.h>
#include <stdio.h>
#define P(x) printf(#x " %d\n", (int)(x))
int main(void) {
    P(PERF_COUNT_HW_CPU_CYCLES); P(PERF_COUNT_HW_INSTRUCTIONS); P(PERF_COUNT_HW_CACHE_REFERENCES);
    P(PERF_COUNT_HW_CACHE_MISSES); P(PERF_COUNT_HW_BRANCH_INSTRUCTIONS); P(PERF_COUNT_HW_BRANCH_MISSES);
    P(PERF_COUNT_HW_BUS_CYCLES); P(PERF_COUNT_HW_STALLED_CYCLES_FRONTEND);
    P(PERF_COUNT_HW_STALLED_CYCLES_BACKEND); P(PERF_COUNT_HW_REF_CPU_CYCLES);
    P(PERF_COUNT_SW_CPU_CLOCK); P(PERF_COUNT_SW_TASK_CLOCK); P(PERF_COUNT_SW_PAGE_FAULTS);
    P(PERF_COUNT_SW_CONTEXT_SWITCHES); P(PERF_COUNT_SW_CPU_MIGRATIONS); P(PERF_COUNT_SW_PAGE_FAULTS_MIN);
    P(PERF_COUNT_SW_PAGE_FAULTS_MAJ); P(PERF_COUNT_SW_ALIGNMENT_FAULTS); P(PERF_COUNT_SW_EMULATION_FAULTS);
    P(PERF_COUNT_SW_CGROUP_SWITCHES);
    P(PERF_COUNT_HW_CACHE_L1D); P(PERF_COUNT_HW_CACHE_L1I); P(PERF_COUNT_HW_CACHE_LL);
    P(PERF_COUNT_HW_CACHE_DTLB); P(PERF_COUNT_HW_CACHE_ITLB); P(PERF_COUNT_HW_CACHE_BPU);
    P(PERF_COUNT_HW_CACHE_NODE); P(PERF_COUNT_HW_CACHE_OP_READ); P(PERF_COUNT_HW_CACHE_OP_WRITE);
    P(PERF_COUNT_HW_CACHE_OP_PREFETCH); P(PERF_COUNT_HW_CACHE_RESULT_ACCESS);
    P(PERF_COUNT_HW_CACHE_RESULT_MISS);
    P(PERF_TYPE_HARDWARE); P(PERF_TYPE_SOFTWARE); P(PERF_TYPE_HW_CACHE); P(PERF_TYPE_RAW);
    return 0;
}
"""

HW_ENUM = {
    "cpu-cycles": "CPU_CYCLES", "instructions": "INSTRUCTIONS", "cache-references": "CACHE_REFERENCES",
    "cache-misses": "CACHE_MISSES", "branch-instructions": "BRANCH_INSTRUCTIONS",
    "branch-misses": "BRANCH_MISSES", "bus-cycles": "BUS_CYCLES",
    "stalled-cycles-frontend": "STALLED_CYCLES_FRONTEND", "stalled-cycles-backend": "STALLED_CYCLES_BACKEND",
    "ref-cycles": "REF_CPU_CYCLES",
}  # fmt: skip
SW_ENUM = {
    "cpu-clock": "CPU_CLOCK", "task-clock": "TASK_CLOCK", "page-faults": "PAGE_FAULTS",
    "context-switches": "CONTEXT_SWITCHES", "cpu-migrations": "CPU_MIGRATIONS",
    "minor-faults": "PAGE_FAULTS_MIN", "major-faults": "PAGE_FAULTS_MAJ",
    "alignment-faults": "ALIGNMENT_FAULTS", "emulation-faults": "EMULATION_FAULTS",
    "cgroup-switches": "CGROUP_SWITCHES",
}  # fmt: skip
CACHE_ENUM = {"L1-dcache": "L1D", "L1-icache": "L1I", "LLC": "LL", "dTLB": "DTLB", "iTLB": "ITLB",
              "branch": "BPU", "node": "NODE"}  # fmt: skip
OP_ENUM = {"load": "READ", "store": "WRITE", "prefetch": "PREFETCH"}


@pytest.fixture(scope="module")
def kernel_enums(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    d = tmp_path_factory.mktemp("enums")
    (d / "e.c").write_text(C_ENUMS)
    subprocess.run(["gcc", "-o", str(d / "e"), str(d / "e.c")], check=True)
    out = subprocess.run([str(d / "e")], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_hardware_and_software_tables_match_the_kernel_header(kernel_enums: dict[str, int]) -> None:
    assert {ev.name: ev.config for ev in HARDWARE_EVENTS} == {
        n: kernel_enums[f"PERF_COUNT_HW_{e}"] for n, e in HW_ENUM.items()
    }
    assert {ev.name: ev.config for ev in SOFTWARE_EVENTS} == {
        n: kernel_enums[f"PERF_COUNT_SW_{e}"] for n, e in SW_ENUM.items()
    }
    assert all(ev.type == kernel_enums["PERF_TYPE_HARDWARE"] for ev in HARDWARE_EVENTS)
    assert all(ev.type == kernel_enums["PERF_TYPE_SOFTWARE"] for ev in SOFTWARE_EVENTS)
    assert [ev.name for ev in SOFTWARE_EVENTS if ev.is_timer] == ["cpu-clock", "task-clock"]


def test_cache_events_encode_cache_op_result(kernel_enums: dict[str, int]) -> None:
    pattern = re.compile(
        r"(L1-dcache|L1-icache|LLC|dTLB|iTLB|branch|node)-(load|store|prefetch)(?:e?s|-(misses))"
    )
    for ev in CACHE_EVENTS:
        m = pattern.fullmatch(ev.name)
        assert m, ev.name
        cache, op, miss = m.groups()
        result = "MISS" if miss else "ACCESS"
        want = (
            kernel_enums[f"PERF_COUNT_HW_CACHE_{CACHE_ENUM[cache]}"]
            | kernel_enums[f"PERF_COUNT_HW_CACHE_OP_{OP_ENUM[op]}"] << 8
            | kernel_enums[f"PERF_COUNT_HW_CACHE_RESULT_{result}"] << 16
        )
        assert (ev.type, ev.config) == (kernel_enums["PERF_TYPE_HW_CACHE"], want), ev.name
    # perf's valid (cache, op) pairs: L1-icache has no stores, iTLB/branch only loads
    names = {ev.name for ev in CACHE_EVENTS}
    assert len(names) == len(CACHE_EVENTS) == 32
    assert {"L1-dcache-load-misses", "LLC-loads", "LLC-load-misses", "dTLB-load-misses"} <= names
    assert not names & {"L1-icache-stores", "iTLB-stores", "branch-prefetches"}


def test_names_are_unique_across_tables() -> None:
    all_names = [n.lower() for ev in KNOWN_EVENTS for n in (ev.name, *ev.aliases)]
    assert len(all_names) == len(set(all_names))


@pytest.mark.parametrize(
    ("text", "type_", "config"),
    [
        ("cycles", PERF_TYPE_HARDWARE, 0),
        ("cpu-cycles", PERF_TYPE_HARDWARE, 0),
        ("branches", PERF_TYPE_HARDWARE, 4),
        ("branch-instructions", PERF_TYPE_HARDWARE, 4),
        ("idle-cycles-backend", PERF_TYPE_HARDWARE, 8),
        ("ref-cycles", PERF_TYPE_HARDWARE, 9),
        ("faults", PERF_TYPE_SOFTWARE, 2),
        ("cs", PERF_TYPE_SOFTWARE, 3),
        ("major-faults", PERF_TYPE_SOFTWARE, 6),
        ("LLC-load-misses", PERF_TYPE_HW_CACHE, 0x10002),
        ("llc-load-misses", PERF_TYPE_HW_CACHE, 0x10002),
        ("dTLB-load-misses", PERF_TYPE_HW_CACHE, 0x10003),
        ("L1-icache-prefetches", PERF_TYPE_HW_CACHE, 0x201),
        ("r1a8", PERF_TYPE_RAW, 0x1A8),
        ("r0x1a8", PERF_TYPE_RAW, 0x1A8),
        ("rC0", PERF_TYPE_RAW, 0xC0),
    ],
)
def test_named_and_raw_events(text: str, type_: int, config: int) -> None:
    spec = parse_event(text, pmus={})
    assert (spec.name, spec.type, spec.config) == (text, type_, config)
    assert (spec.config1, spec.config2, spec.exclude_user, spec.exclude_kernel) == (0, 0, False, False)


@pytest.mark.parametrize(
    ("mods", "exclude_user", "exclude_kernel"),
    [(":u", False, True), (":k", True, False), (":uk", False, False), (":ku", False, False)],
)
def test_modifiers_as_perf_sets_them(mods: str, exclude_user: bool, exclude_kernel: bool) -> None:
    for base in ("cache-misses", "page-faults", "r1a8", "LLC-loads"):
        spec = parse_event(base + mods, pmus={})
        assert (spec.exclude_user, spec.exclude_kernel) == (exclude_user, exclude_kernel)
        assert spec.name == base + mods


def test_timer_flag_only_for_the_clocks() -> None:
    assert parse_event("cpu-clock:u", pmus={}).is_timer
    assert parse_event("task-clock", pmus={}).is_timer
    assert not parse_event("page-faults", pmus={}).is_timer
    assert not parse_event("cycles", pmus={}).is_timer


# -- sysfs format files and a fixture modelled on an Intel `cpu` PMU --------------------------------


@pytest.mark.parametrize(
    ("text", "word", "bits"),
    [
        ("config:0-7\n", "config", tuple(range(8))),
        ("config:21", "config", (21,)),
        ("config1:0-15", "config1", tuple(range(16))),
        ("config2:0-63", "config2", tuple(range(64))),
        ("config:0-7,32-35", "config", (*range(8), 32, 33, 34, 35)),  # AMD's split event field
    ],
)
def test_parse_format(text: str, word: str, bits: tuple[int, ...]) -> None:
    assert parse_format("f", text) == FormatField("f", word, bits)


@pytest.mark.parametrize("text", ["", "config", "config:", "config3:0-7", "config:7-x", "config:0-64", "c:1"])
def test_parse_format_rejects(text: str) -> None:
    with pytest.raises(EventError, match="cannot read"):
        parse_format("f", text)


def test_split_field_spreads_value_bits_low_first() -> None:
    amd_event = parse_format("event", "config:0-7,32-35")
    assert amd_event.encode(0x1C0) == 0xC0 | 1 << 32
    with pytest.raises(EventError, match="does not fit in the 12-bit field event"):
        amd_event.encode(0x1000)


def test_load_pmus_reads_type_formats_and_events(intel: dict) -> None:
    cpu = intel["cpu"]
    assert cpu.type == PERF_TYPE_RAW
    assert cpu.formats["event"] == FormatField("event", "config", tuple(range(8)))
    assert cpu.formats["umask"].bits == tuple(range(8, 16))
    assert cpu.formats["cmask"].bits == tuple(range(24, 32))
    assert cpu.formats["ldlat"] == FormatField("ldlat", "config1", tuple(range(16)))
    assert cpu.events["mem-loads"] == "event=0xcd,umask=0x1,ldlat=3"
    assert "ref-cycles.scale" not in cpu.events  # .scale/.unit files describe events, are not events
    assert intel["software"].type == PERF_TYPE_SOFTWARE
    assert has_core_pmu(str(INTEL))
    assert not has_core_pmu(str(INTEL / "cpu" / "format"))


@pytest.mark.parametrize(
    ("text", "config", "config1"),
    [
        ("cpu/event=0x3c/", 0x3C, 0),
        ("cpu/event=0x3c,umask=0x0/", 0x3C, 0),
        ("cpu/event=0xd1,umask=0x20/", 0x20D1, 0),
        ("cpu/event=0xa3,umask=0x4,cmask=4/", 0x40004A3, 0),
        ("cpu/event=0xc2,umask=0x1,cmask=1,inv/", 0x18001C2, 0),  # bare term: the field's bit set
        ("cpu/event=0xc2,umask=0x1,cmask=1,inv=1,edge,any/", 0x1A401C2, 0),
        ("cpu/mem-loads/", 0x1CD, 3),  # alias: ldlat lives in config1
        ("cpu/mem-loads,ldlat=30/", 0x1CD, 30),  # a term after the alias overrides its value
        ("cpu/cycles-ct/", 0x30000003C, 0),
        ("cpu/event=0xb7,umask=0x1,offcore_rsp=0x10003c0244/", 0x1B7, 0x10003C0244),
        ("cpu/config=0x5300c0/", 0x5300C0, 0),
        ("cpu/config=0x1cd,config1=3/", 0x1CD, 3),
        ("mem-loads", 0x1CD, 3),  # a bare sysfs alias name
    ],
)
def test_pmu_terms_encode(intel: dict, text: str, config: int, config1: int) -> None:
    spec = parse_event(text, pmus=intel)
    assert (spec.name, spec.type, spec.config, spec.config1, spec.config2) == (
        text, PERF_TYPE_RAW, config, config1, 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("suffix", "exclude_user", "exclude_kernel"),
    [("u", False, True), (":k", True, False), ("", False, False)],
)
def test_pmu_modifiers(intel: dict, suffix: str, exclude_user: bool, exclude_kernel: bool) -> None:
    spec = parse_event(f"cpu/event=0x3c/{suffix}", pmus=intel)
    assert (spec.exclude_user, spec.exclude_kernel) == (exclude_user, exclude_kernel)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpu/event=0x100/", "does not fit in the 8-bit field event"),
        ("cpu/umask=300/", "does not fit in the 8-bit field umask"),
        ("cpu/evnt=0x3c/", "did you mean event"),
        ("cpu/mem-load/", "did you mean mem-loads"),
        ("cpu/event=zz/", "not a number"),
        ("cpu/config/", "config needs a value"),
        ("cpu/event=0x3c,period=1000/", "with -c or -F"),
        ("cpu//", "no terms"),
        ("cpx/event=0x3c/", "no PMU named 'cpx' (did you mean cpu?)"),
        ("cpu/event=0x3c", "unclosed"),
        ("cpu/event=0x3c/p", "modifier 'p'"),
        ("cycles:pp", "modifier 'p'"),
        ("cycles:", "modifier ''"),
        ("cache-mises", "did you mean cache-misses"),
        ("LLC-misses", "did you mean LLC-load-misses"),
        ("cycels", "did you mean cycles"),
        ("nosuchevent", "unknown event 'nosuchevent'"),
        ("", "no event given"),
        ("cycles,,instructions", "empty entry"),
        ("r", "unknown event 'r'"),
        ("r12345678901234567", "unknown event"),
    ],
)
def test_errors_are_one_sentence(intel: dict, text: str, message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event_list(text, pmus=intel)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_name_lists_the_closest_names() -> None:
    with pytest.raises(EventError, match=r"did you mean cache-misses, [\w-]+, [\w-]+\?"):
        parse_event("cache-mises", pmus={})
    with pytest.raises(EventError, match="bpfprof list"):
        parse_event("xyz", pmus={})


def test_alias_in_two_pmus_must_be_named(intel: dict) -> None:
    from profiler.events import Pmu

    two = {**intel, "cpu_atom": Pmu("cpu_atom", 10, intel["cpu"].formats, intel["cpu"].events)}
    with pytest.raises(EventError, match=r"write cpu/mem-loads/ or cpu_atom/mem-loads/"):
        parse_event("mem-loads", pmus=two)
    assert parse_event("cpu_atom/mem-loads/", pmus=two).type == 10


def test_event_lists_split_outside_pmu_terms(intel: dict) -> None:
    text = "cycles,cpu/event=0xc2,umask=0x1,cmask=1,inv/u,page-faults:u,cpu/mem-loads,ldlat=30/"
    assert split_event_list(text) == [
        "cycles", "cpu/event=0xc2,umask=0x1,cmask=1,inv/u", "page-faults:u", "cpu/mem-loads,ldlat=30/",
    ]  # fmt: skip
    specs = parse_event_list(text, pmus=intel)
    assert [s.name for s in specs] == split_event_list(text)
    assert [s.type for s in specs] == [PERF_TYPE_HARDWARE, PERF_TYPE_RAW, PERF_TYPE_SOFTWARE, PERF_TYPE_RAW]
    assert specs[3].config1 == 30


def test_event_kind() -> None:
    kinds = [event_kind(parse_event(t, pmus={})) for t in ("cycles", "LLC-loads", "faults", "r1a8")]
    assert kinds == [EventKind.HARDWARE, EventKind.CACHE, EventKind.SOFTWARE, EventKind.RAW]
    assert event_kind(EventSpec("msr/tsc/", 9, 0)) is EventKind.PMU


def test_default_periods() -> None:
    def period(text: str) -> int:
        return default_period(parse_event(text, pmus={}))

    assert period("cycles") == period("instructions") == 2_000_003
    assert period("cache-misses") == period("LLC-load-misses") == period("branch-misses") == 10_007
    assert period("cache-references") == period("LLC-loads") == 100_003
    assert period("page-faults") == period("minor-faults") == 1_009
    assert period("major-faults") == period("context-switches") == period("cpu-migrations") == 1
    with pytest.raises(ValueError, match="timer"):
        default_period(CPU_CLOCK)


# -- attrs ------------------------------------------------------------------------------------------

C_ATTR = r"""
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    struct perf_event_attr a; memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_RAW; a.size = %(size)d; a.config = 0x1cd; a.config1 = 30; a.config2 = 7;
    %(body)s
    const unsigned char *p = (const void *)&a;
    for (unsigned i = 0; i < %(size)d; i++) printf("%%02x", p[i]);
    return 0;
}
"""


def c_attr(tmp_path: Path, body: str) -> bytes:
    src = tmp_path / "attr.c"
    src.write_text(C_ATTR % {"size": PERF_ATTR_SIZE, "body": body})
    subprocess.run(["gcc", "-o", str(tmp_path / "attr"), str(src)], check=True)
    out = subprocess.run([str(tmp_path / "attr")], capture_output=True, text=True, check=True).stdout
    return bytes.fromhex(out)


MEM_LOADS_U = EventSpec("cpu/mem-loads,ldlat=30/u", PERF_TYPE_RAW, 0x1CD, False, 30, 7, False, True)


def test_sampling_attr_carries_config1_config2_and_modifiers(tmp_path: Path) -> None:
    want = c_attr(
        tmp_path, "a.sample_period = 10000; a.disabled = 1; a.exclude_hv = 1; a.exclude_kernel = 1;"
    )
    assert build_attr(MEM_LOADS_U, SamplingSpec(frequency=None, period=10000)) == want


def test_count_attr_matches_kernel_header(tmp_path: Path) -> None:
    want = c_attr(
        tmp_path,
        "a.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;"
        " a.exclude_kernel = 1;",
    )
    assert build_count_attr(MEM_LOADS_U) == want
    flags = struct.unpack_from("<Q", build_count_attr(MEM_LOADS_U, disabled=True), 40)[0]
    assert flags & 1


# -- the no-PMU sentence and --fallback ---------------------------------------------------------------

CYCLES = parse_event("cycles", pmus={})


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EOPNOTSUPP])
def test_no_pmu_sentence_names_the_software_events_that_work(code: int) -> None:
    err = explain_open_error(
        OSError(code, "x"),
        CYCLES,
        SamplingSpec(),
        0,
        core_pmu=False,
        working_software=["cpu-clock", "faults"],
    )
    text = str(err)
    assert text.startswith("this machine exposes no hardware counters (a virtual machine?)")
    assert "(cpu-clock, faults)" in text
    assert "bare metal" in text
    assert "vPMU" in text or "virtual PMU" in text
    assert "\n" not in text
    assert "Errno" not in text
    assert err.errno == code


def test_with_a_pmu_an_unsupported_event_is_not_called_no_pmu() -> None:
    err = explain_open_error(
        OSError(errno.ENOENT, "x"), parse_event("stalled-cycles-frontend", pmus={}), SamplingSpec(), 0,
        core_pmu=True, working_software=[],
    )  # fmt: skip
    assert "does not support stalled-cycles-frontend" in str(err)
    assert "no hardware counters" not in str(err)
    sampling = explain_open_error(
        OSError(errno.EOPNOTSUPP, "x"), CYCLES, SamplingSpec(), 0, core_pmu=True, working_software=[]
    )
    assert "can count cycles but not sample it" in str(sampling)


def test_software_event_errors_are_not_blamed_on_the_pmu() -> None:
    err = explain_open_error(OSError(errno.EACCES, "x"), parse_event("page-faults", pmus={}), None, -1)
    assert "CAP_PERFMON" in str(err)


def probe_fails(code: int):
    calls: list[EventSpec] = []

    def probe(event: EventSpec) -> OSError | None:
        calls.append(event)
        return OSError(code, "x")

    probe.calls = calls  # type: ignore[attr-defined]
    return probe


def test_settle_without_fallback_raises_the_sentence() -> None:
    with pytest.raises(PerfEventError, match="no hardware counters") as info:
        settle_event(
            CYCLES, SamplingSpec(None, 10_000), fallback=False, probe=probe_fails(errno.ENOENT),
            core_pmu=False, working_software=["cpu-clock"],
        )  # fmt: skip
    assert "\n" not in str(info.value)


def test_settle_with_fallback_samples_cpu_clock_and_says_so() -> None:
    settled = settle_event(
        CYCLES, SamplingSpec(None, 10_000), fallback=True, probe=probe_fails(errno.ENOENT), core_pmu=False
    )
    assert settled.event == CPU_CLOCK
    assert settled.sampling == SamplingSpec(frequency=99)
    assert settled.note is not None
    assert "cycles cannot be opened" in settled.note
    assert "no hardware counters" in settled.note
    assert "cpu-clock at 99 Hz" in settled.note
    assert "-c 10000 counted cycles" in settled.note
    kept_hz = settle_event(
        CYCLES,
        SamplingSpec(frequency=499),
        fallback=True,
        probe=probe_fails(errno.EOPNOTSUPP),
        core_pmu=False,
    )
    assert kept_hz.sampling == SamplingSpec(frequency=499)


def test_settle_leaves_working_and_software_events_alone() -> None:
    works = settle_event(CYCLES, SamplingSpec(), fallback=True, probe=lambda e: None)
    assert works == SettledEvent(CYCLES, SamplingSpec())
    probe = probe_fails(errno.ENOENT)
    faults = parse_event("page-faults", pmus={})
    assert settle_event(faults, SamplingSpec(None, 1), fallback=False, probe=probe).event == faults
    assert probe.calls == []  # type: ignore[attr-defined]


def test_fallback_does_not_hide_other_errors() -> None:
    with pytest.raises(PerfEventError, match="CAP_PERFMON"):
        settle_event(CYCLES, SamplingSpec(), fallback=True, probe=probe_fails(errno.EACCES), core_pmu=False)


# -- `bpfprof list` -------------------------------------------------------------------------------------


def fake_probe(works: set[str], system_wide: set[str] = frozenset()):  # type: ignore[assignment]
    def probe(event: EventSpec, *, pid: int = 0, cpu: int = -1) -> OSError | None:
        if event.name in works or (pid == -1 and event.name in system_wide):
            return None
        return OSError(errno.EINVAL if event.type >= 6 else errno.ENOENT, "x")

    return probe


def test_list_sections_without_a_pmu(intel: dict) -> None:
    from profiler.cmd_list import OK, build_sections, filter_sections, render

    probe = fake_probe({*SOFTWARE_NAMES, "cpu/cpu-cycles/"}, system_wide={"cpu/mem-loads/"})
    sections = build_sections(intel, probe, core_pmu=False)
    titles = [s.title for s in sections]
    assert titles[:3] == ["software events", "hardware events", "hardware cache events"]
    rows = {r.name: r for s in sections for r in s.rows}
    assert rows["page-faults OR faults"].status == OK
    assert rows["cpu-cycles OR cycles"].status == "no: no hardware counters here (ENOENT)"
    assert rows["LLC-load-misses"].status.startswith("no: no hardware counters")
    assert rows["cpu/cpu-cycles/"].status == OK
    assert rows["cpu/mem-loads/"].status == "system-wide only (bpfprof stat -a)"
    assert rows["cpu/mem-loads/"].description == "event=0xcd,umask=0x1,ldlat=3"
    assert rows["cpu/mem-stores/"].status == "no: no hardware counters here (ENOENT)"
    assert "ldlat=config1:0-15" in rows["cpu/term=value,.../"].description
    assert "event=config:0-7" in rows["cpu/term=value,.../"].description
    supported = filter_sections(sections, [], supported=True)
    assert {r.name for s in supported for r in s.rows} == {
        *(" OR ".join((ev.name, *ev.aliases)) for ev in SOFTWARE_EVENTS),
        "cpu/cpu-cycles/",
        "cpu/mem-loads/",
    }
    cache_only = filter_sections(sections, ["dtlb"], supported=False)
    assert [s.title for s in cache_only] == ["hardware cache events"]
    assert len(cache_only[0].rows) == 6
    out = io.StringIO()
    render(sections, out)
    text = out.getvalue()
    assert re.search(r"^  cpu-clock +CPU time in ns, a per-CPU timer +ok$", text, re.M)
    assert re.search(
        r"^  instructions +instructions retired +no: no hardware counters here \(ENOENT\)$", text, re.M
    )


def test_list_sections_with_a_pmu_name_the_reason() -> None:
    from profiler.cmd_list import build_sections

    rows = {r.name: r for s in build_sections({}, fake_probe({"cycles"}), core_pmu=True) for r in s.rows}
    assert rows["stalled-cycles-frontend OR idle-cycles-frontend"].status == (
        "no: not supported by this machine (ENOENT)"
    )
    assert rows["rNNN"].status == "ok"


def test_list_bits_rendering() -> None:
    from profiler.cmd_list import _bits

    assert _bits((0, 1, 2, 7, 32, 33)) == "0-2,7,32-33"
    assert _bits((21,)) == "21"


# -- what outputs weigh stacks by ---------------------------------------------------------------------


def pmc_profile() -> Profile:
    """cache-misses at -c 10000: one sample stands for 10,000 misses."""
    profile = Profile(
        meta=ProfileMeta(event="cache-misses", period_unit="events", frequency_hz=None, period=10_000)
    )
    hot, cold = Frame("hot", module="/bin/app"), Frame("cold", module="/bin/app")
    profile.add(Sample(10, 10, "app", (Frame("main", module="/bin/app"), hot)), 3, 30_000)
    profile.add(Sample(10, 10, "app", (Frame("main", module="/bin/app"), cold)), 1, 10_000)
    return profile


def test_weight_by() -> None:
    w = Weight(3, 30_000)
    assert (w.by("samples"), w.by("period")) == (3, 30_000)
    with pytest.raises(ValueError, match="unknown weight"):
        w.by("events")


def test_folded_weights() -> None:
    profile = pmc_profile()
    assert fold_profile(profile, FoldedOptions()) == {("app", "main", "hot"): 3, ("app", "main", "cold"): 1}
    assert fold_profile(profile, FoldedOptions(weight="period")) == {
        ("app", "main", "hot"): 30_000, ("app", "main", "cold"): 10_000,
    }  # fmt: skip


def test_svg_weights() -> None:
    out = io.StringIO()
    write_svg(pmc_profile(), out, SvgOptions(weight="period", count_name="events"))
    assert "all (40,000 events, 100%)" in out.getvalue()
    assert "hot (30,000 events, 75.00%)" in out.getvalue()
    out = io.StringIO()
    write_svg(pmc_profile(), out)
    assert "all (4 samples, 100%)" in out.getvalue()


def test_speedscope_weights() -> None:
    by_period = speedscope_document(pmc_profile(), exporter="t")["profiles"][0]
    assert (by_period["unit"], sorted(by_period["weights"])) == ("none", [10_000, 30_000])
    by_samples = speedscope_document(pmc_profile(), exporter="t", weight="samples")["profiles"][0]
    assert (by_samples["unit"], sorted(by_samples["weights"])) == ("none", [1, 3])


def test_write_profile_weight_overrides_each_format(tmp_path: Path) -> None:
    profile = pmc_profile()
    for weight, folded_total, speedscope_total in (
        (None, 4, 40_000),
        ("period", 40_000, 40_000),
        ("samples", 4, 4),
    ):
        write_profile(profile, tmp_path / "p.folded", "folded", weight=weight)
        write_profile(profile, tmp_path / "p.json", "speedscope", weight=weight)
        with (tmp_path / "p.folded").open() as f:
            assert sum(parse_folded(f).values()) == folded_total
        with (tmp_path / "p.json").open() as f:
            assert sum(sum(p.values()) for p in read_speedscope(f).values()) == speedscope_total
        json.loads((tmp_path / "p.json").read_text())


# -- record's flags ----------------------------------------------------------------------------------


def record_options(*argv: str):
    from profiler.cli import build_parser, build_record_options

    ns = build_parser().parse_args(["record", *argv])
    return build_record_options(ns, [])


def test_record_event_flags() -> None:
    from profiler.errors import UserError

    faults = record_options("-e", "page-faults")
    assert faults.event.name == "page-faults"
    assert faults.sampling == SamplingSpec(frequency=None, period=1_009)
    assert record_options("-e", "page-faults", "-c", "1").sampling == SamplingSpec(None, 1)
    assert record_options("-e", "cache-misses", "-F", "999").sampling == SamplingSpec(999)
    assert record_options("-e", "cache-misses").sampling == SamplingSpec(None, 10_007)
    assert record_options().event == CPU_CLOCK
    assert record_options().sampling == SamplingSpec(99)
    assert record_options("-e", "task-clock").sampling == SamplingSpec(99)
    with pytest.raises(UserError, match="below 10000 ns"):
        record_options("-c", "100")
    with pytest.raises(UserError, match="did you mean cache-misses") as info:
        record_options("-e", "cache-mises")
    assert info.value.exit_code == 2
    with pytest.raises(UserError, match="record samples one event"):
        record_options("-e", "cycles,instructions")
