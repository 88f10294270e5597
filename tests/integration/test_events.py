"""Events for real: attrs held to `perf stat -vv` (system sysfs, and a fixture Intel PMU bind-mounted
over /sys/bus/event_source/devices in a private mount namespace), `bpfprof list`, and `record -e`
on software events end to end (page faults in a known function), the no-PMU sentence, --fallback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from profiler.events import KNOWN_EVENTS, load_pmus, parse_event
from profiler.perf_event import has_core_pmu
from tests.integration.conftest import ROOT, bpfprof, private_mount_ns, read_folded
from tests.workloads.build import build

# The attr cross-checks need no BPF (and no root but for the mount namespace); the rest is marked bpf.

INTEL = ROOT / "tests" / "fixtures" / "pmu" / "intel"
SYSFS_PMUS = "/sys/bus/event_source/devices"
PAGES, ROUNDS = 1000, 3  # the faults workload: PAGES * ROUNDS minor faults in touch_pages
# ... after sleeping this long, so that its memory map is captured before its faults (and its exit)
DELAY_MS = "1000"


@pytest.fixture(scope="module")
def faults() -> Path:
    return build("faults")


@pytest.fixture(scope="module")
def perf() -> str:
    path = shutil.which("perf")
    if path is None:
        pytest.fail("perf is not installed (scripts/setup.sh --test installs linux-perf)")
    return path


def perf_attr(perf: str, event: str, prefix: tuple[str, ...] = ()) -> dict[str, str]:
    """The first perf_event_attr `perf stat -vv` tried for EVENT (printed even when the open fails)."""
    r = subprocess.run([*prefix, perf, "stat", "-vv", "-e", event, "true"], capture_output=True, text=True)
    blocks = r.stderr.split("perf_event_attr:")
    assert len(blocks) > 1, f"perf did not take {event!r}: {r.stderr[-400:]}"
    fields = {}
    for line in blocks[1].split("-" * 20)[0].splitlines():
        m = re.match(r"\s+(.*?)\s{2,}(\S+)$", line)
        if m:
            fields[m.group(1)] = m.group(2)
    return fields


def as_perf_prints(fields: dict[str, str]) -> tuple[int, int, int, int, bool, bool]:
    """(type, config, config1, config2, exclude_user, exclude_kernel); perf leaves zero fields out."""
    return (
        int(fields.get("type", "0")),
        int(fields.get("config", "0"), 0),
        int(fields.get("{ bp_addr, config1 }", "0"), 0),
        int(fields.get("{ bp_len, config2 }", "0"), 0),
        fields.get("exclude_user") == "1",
        fields.get("exclude_kernel") == "1",
    )


def ours(event: str, pmus: dict | None = None) -> tuple[int, int, int, int, bool, bool]:
    s = parse_event(event, pmus=pmus)
    return (s.type, s.config, s.config1, s.config2, s.exclude_user, s.exclude_kernel)


NAMES = [n for ev in KNOWN_EVENTS for n in (ev.name, *ev.aliases)]
WITH_MODIFIERS = [
    "cycles:u", "instructions:k", "cycles:uk", "page-faults:u", "cpu-clock:k", "LLC-load-misses:u",
    "dTLB-load-misses:k", "r1a8", "rc0:u", "r412e:k",
]  # fmt: skip


@pytest.mark.parametrize("event", NAMES + WITH_MODIFIERS)
def test_attr_matches_perf_stat(perf: str, event: str) -> None:
    assert ours(event, pmus={}) == as_perf_prints(perf_attr(perf, event))


def test_this_machines_sysfs_events_match_perf_stat(perf: str) -> None:
    pmus = load_pmus()
    checked = 0
    for pmu in pmus.values():
        for alias in pmu.events:
            event = f"{pmu.name}/{alias}/"
            assert ours(event, pmus) == as_perf_prints(perf_attr(perf, event)), event
            checked += 1
    if "msr" in pmus:
        assert ours("msr/event=0x0/", pmus) == as_perf_prints(perf_attr(perf, "msr/event=0x0/"))
        assert checked > 0


INTEL_TERMS = [
    "cpu/event=0x3c/",
    "cpu/event=0xd1,umask=0x20/u",
    "cpu/event=0xa3,umask=0x4,cmask=4/",
    "cpu/event=0xc2,umask=0x1,cmask=1,inv/",
    "cpu/event=0xc2,umask=0x1,cmask=1,inv=1,edge,any/k",
    "cpu/mem-loads/",
    "cpu/mem-stores/u",
    "cpu/cycles-ct/",
    "cpu/event=0xb7,umask=0x1,offcore_rsp=0x10003c0244/",
    "cpu/config=0x5300c0/",
    "cpu/config=0x1cd,config1=3/",
    "mem-loads",
]
# Not in the table: `cpu/mem-loads,ldlat=30/`. perf 6.1 ORs the alias's ldlat=3 with the user's 30 and
# opens config1=0x1f; bpfprof lets the later term win (config1=30), as perf's documentation of ldlat
# describes, and the unit tests hold that.


def test_pmu_terms_match_perf_on_a_fixture_intel_pmu(perf: str) -> None:
    """perf reads the fixture as this machine's PMUs (a bind mount in a private mount namespace)."""
    pmus = load_pmus(str(INTEL))
    if os.geteuid() != 0:
        pytest.skip("a private mount namespace needs root")
    mount = f'mount --bind "{INTEL}" {SYSFS_PMUS} && exec "$0" "$@"'
    prefix = tuple(private_mount_ns(mount))
    for event in INTEL_TERMS:
        assert ours(event, pmus) == as_perf_prints(perf_attr(perf, event, prefix)), event
    # the namespace was private: this machine's PMUs are untouched
    assert "cpu" not in os.listdir(SYSFS_PMUS) or has_core_pmu()


@pytest.mark.bpf
def test_list_marks_what_works_here() -> None:
    r = bpfprof("list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "software events:" in lines
    assert "hardware cache events:" in lines
    for name in (
        "cpu-clock",
        "task-clock",
        "page-faults OR faults",
        "context-switches OR cs",
        "minor-faults",
    ):
        assert re.search(rf"^  {re.escape(name)} .* ok$", r.stdout, re.M), name
    cycles = next(line for line in lines if line.startswith("  cpu-cycles OR cycles"))
    if has_core_pmu():
        assert cycles.endswith(" ok")
    else:
        assert cycles.endswith("no: no hardware counters here (ENOENT)")
        assert "note: this machine exposes no hardware counters" in r.stdout
    if Path(SYSFS_PMUS, "msr", "events", "tsc").exists():
        assert re.search(r"^  msr/tsc/ .* ok$", r.stdout, re.M)
    supported = bpfprof("list", "--supported", "faults")
    assert supported.returncode == 0
    assert "page-faults OR faults" in supported.stdout
    assert "hardware events" not in supported.stdout or has_core_pmu()
    none = bpfprof("list", "no-such-thing")
    assert none.returncode == 1
    assert none.stderr.startswith("bpfprof: no event matches")


@pytest.mark.bpf
def test_list_closes_every_perf_fd() -> None:
    import argparse

    from profiler.cmd_list import run

    before = set(os.listdir("/proc/self/fd"))
    with open(os.devnull, "w") as devnull:
        import contextlib

        with contextlib.redirect_stdout(devnull):
            assert run(argparse.Namespace(filter=[], supported=False), []) == 0
    perf_fds = [
        fd
        for fd in set(os.listdir("/proc/self/fd")) - before
        if os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:[perf_event]")
    ]
    assert perf_fds == []


def touch_pages_stacks(stacks: dict[tuple[str, ...], int], comm: str) -> dict[tuple[str, ...], int]:
    return {s: c for s, c in stacks.items() if s[0] == comm and s[-1] == "touch_pages"}


@pytest.mark.bpf
def test_record_page_faults_finds_every_fault(faults: Path, tmp_path: Path) -> None:
    """-e page-faults -c 1: one sample per fault; the workload makes PAGES*ROUNDS of them in touch_pages."""
    folded, speedscope = tmp_path / "pf.folded", tmp_path / "pf.speedscope.json"
    r = bpfprof(
        "record", "-e", "page-faults", "-c", "1", "-o", str(folded), "-o", str(speedscope),
        "--", str(faults), str(PAGES), str(ROUNDS), DELAY_MS,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "every 1 page-faults events" in r.stderr
    ours = touch_pages_stacks(read_folded(folded), faults.name[:15])
    assert PAGES * ROUNDS <= sum(ours.values()) <= PAGES * ROUNDS + 2, r.stderr
    assert any(s[-4:] == ("main", "fault_pages", "touch_pages") or "fault_pages" in s for s in ours)
    assert all("main" in s for s in ours)
    doc = json.loads(speedscope.read_text())
    prof = next(p for p in doc["profiles"] if p["name"].startswith(faults.name[:15]))
    assert prof["unit"] == "none"  # events, not time
    assert doc["name"].startswith("bpfprof page-faults")


@pytest.mark.bpf
def test_record_minor_faults_weighs_by_events(faults: Path, tmp_path: Path) -> None:
    """-c 10: one sample stands for 10 faults; --weight period writes events, the default samples."""
    by_samples, by_events = tmp_path / "s.folded", tmp_path / "e.folded"
    svg = tmp_path / "e.svg"
    args = ("-e", "minor-faults", "-c", "10", "-q", "--", str(faults), str(PAGES), str(ROUNDS), DELAY_MS)
    r = bpfprof("record", "-o", str(by_samples), *args)
    assert r.returncode == 0, r.stderr
    samples = sum(touch_pages_stacks(read_folded(by_samples), faults.name[:15]).values())
    assert abs(samples - PAGES * ROUNDS / 10) <= 2
    r = bpfprof("record", "--weight", "period", "-o", str(by_events), "-o", str(svg), *args)
    assert r.returncode == 0, r.stderr
    events = sum(touch_pages_stacks(read_folded(by_events), faults.name[:15]).values())
    assert abs(events - PAGES * ROUNDS) <= 20
    assert events % 10 == 0
    assert re.search(r"touch_pages \([\d,]+ events, ", svg.read_text())


@pytest.mark.bpf
def test_record_cycles_without_a_pmu_is_one_sentence(faults: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.folded"
    r = bpfprof("record", "-e", "cycles", "-o", str(out), "--", str(faults), "10")
    if has_core_pmu():
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("bpfprof: this machine exposes no hardware counters (a virtual machine?)")
    for works in ("cpu-clock", "page-faults", "context-switches"):
        assert works in lines[0]
    assert "bare metal" in lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.bpf
def test_record_cycles_with_fallback_samples_cpu_clock(faults: Path, tmp_path: Path) -> None:
    if has_core_pmu():
        pytest.skip("this machine has hardware counters: cycles opens, there is nothing to fall back from")
    out = tmp_path / "f.folded"
    r = bpfprof(
        "record", "-e", "cycles", "--fallback", "-c", "100000", "-F", "999", "-o", str(out),
        "--", str(faults), "20000", "20",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr  # -F and -c together are refused before anything else
    r = bpfprof(
        "record", "-e", "cycles", "--fallback", "-F", "999", "-o", str(out), "--", str(faults), "20000", "20"
    )
    assert r.returncode == 0, r.stderr
    assert "bpfprof: cycles cannot be opened: this machine exposes no hardware counters" in r.stderr
    assert "sampling cpu-clock at 999 Hz instead" in r.stderr
    assert "at 999 Hz" in r.stderr
    stacks = read_folded(out)
    assert sum(c for s, c in stacks.items() if s[0] == faults.name[:15]) > 0


@pytest.mark.bpf
@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("nosuchevent", "unknown event 'nosuchevent'; did you mean "),
        ("cache-mises", "did you mean cache-misses"),
        ("cycles:x", "modifier 'x'"),
        ("nopmu/event=1/", "no PMU named 'nopmu'"),
        ("cycles,instructions", "record samples one event"),
    ],
)
def test_record_bad_event_is_one_sentence(event: str, message: str) -> None:
    r = bpfprof("record", "-e", event, "-d", "1")
    assert r.returncode == 2
    assert r.stderr.startswith("bpfprof: ")
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.bpf
def test_record_a_counting_only_pmu_is_one_sentence() -> None:
    if not Path(SYSFS_PMUS, "msr", "events", "tsc").exists():
        pytest.skip("no msr PMU with a tsc event on this machine")
    r = bpfprof("record", "-e", "msr/tsc/", "-d", "1")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "bpfprof: the PMU can count msr/tsc/ but not sample it (msr and uncore PMUs cannot); count it "
        "with bpfprof stat, or sample another event"
    )
