"""speedscope JSON: structure per speedscope's file-format-schema, units, names, and round trips."""

from __future__ import annotations

import io
import json
from importlib import metadata
from typing import Any

import pytest

from exporters.model import Profile, ProfileMeta, Sample
from exporters.speedscope import SCHEMA_URL, UNITS, exporter_name, read_speedscope, write_speedscope
from tests.unit.exporters_fixtures import COMPUTE, MAIN, TICK_NS, kernel, sample_profile, user
from unwind.frame import Frame

Stacks = dict[tuple[str, ...], int]


def write(profile: Profile, **kw: Any) -> str:
    out = io.StringIO()
    write_speedscope(profile, out, **kw)
    return out.getvalue()


def check_schema(doc: Any) -> None:
    """The parts of speedscope's file-format-schema.json (SpeedscopeFile, SampledProfile) we produce."""
    assert isinstance(doc, dict)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    assert isinstance(frames, list)
    for frame in frames:
        assert isinstance(frame["name"], str)
        assert set(frame) <= {"name", "file", "line", "col"}
        assert isinstance(frame.get("file", ""), str)
        assert isinstance(frame.get("line", 0), int)
    assert isinstance(doc["profiles"], list)
    for prof in doc["profiles"]:
        assert prof["type"] == "sampled"
        assert isinstance(prof["name"], str)
        assert prof["unit"] in {"none", "nanoseconds", "microseconds", "milliseconds", "seconds", "bytes"}
        assert isinstance(prof["startValue"], int)
        assert isinstance(prof["endValue"], int)
        samples, weights = prof["samples"], prof["weights"]
        assert len(samples) == len(weights)
        assert all(isinstance(w, int) and w > 0 for w in weights)
        assert prof["endValue"] - prof["startValue"] == sum(weights)
        for stack in samples:
            assert all(isinstance(i, int) and 0 <= i < len(frames) for i in stack)
    if doc["profiles"]:
        assert 0 <= doc.get("activeProfileIndex", 0) < len(doc["profiles"])
    assert isinstance(doc.get("name", ""), str)
    assert isinstance(doc.get("exporter", ""), str)


def expected_by_process(profile: Profile) -> dict[int, Stacks]:
    """pid -> stack of frame labels (root first) -> summed period, computed straight from the model."""
    out: dict[int, Stacks] = {}
    for sample, weight in profile.samples.items():
        stacks = out.setdefault(sample.pid, {})
        key = tuple(f.label() for f in sample.frames)
        stacks[key] = stacks.get(key, 0) + weight.period
    return out


def test_speedscope_golden(golden):
    golden("sample.speedscope.json", write(sample_profile(), exporter="bpfprof@test"))


def test_speedscope_matches_the_schema():
    doc = json.loads(write(sample_profile()))
    check_schema(doc)
    assert doc["$schema"] == SCHEMA_URL
    assert set(UNITS) == {"none", "nanoseconds", "microseconds", "milliseconds", "seconds", "bytes"}


def test_one_profile_per_process_named_comm_pid():
    doc = json.loads(write(sample_profile()))
    assert [p["name"] for p in doc["profiles"]] == [
        "swapper/0 (0)",
        "app (100)",  # the main thread's comm, not the "worker" thread's
        "bash (200)",
        "app (300)",
        "[unknown] (400)",
    ]
    assert doc["activeProfileIndex"] == 1  # the heaviest process opens first


def test_round_trip_gives_back_stacks_and_weights():
    profile = sample_profile()
    expected = expected_by_process(profile)
    names = {0: "swapper/0", 100: "app", 200: "bash", 300: "app", 400: "[unknown]"}
    read = read_speedscope(io.StringIO(write(profile)))
    assert read == {f"{names[pid]} ({pid})": stacks for pid, stacks in expected.items()}
    # pid 100 tids 100 and 101 share a stack: one sample entry with the summed period.
    assert read["app (100)"][("_start", "main", "compute")] == 8 * TICK_NS + 7


def test_round_trip_through_plain_json():
    profile = sample_profile()
    doc = json.loads(write(profile))
    names = [f["name"] for f in doc["shared"]["frames"]]
    got: dict[str, Stacks] = {}
    for prof in doc["profiles"]:
        stacks = got.setdefault(prof["name"], {})
        for indexes, weight in zip(prof["samples"], prof["weights"], strict=True):
            key = tuple(names[i] for i in indexes)
            stacks[key] = stacks.get(key, 0) + weight
    assert got == read_speedscope(io.StringIO(write(profile)))
    assert sum(sum(s.values()) for s in got.values()) == sum(w.period for w in profile.samples.values())


def test_timer_profiles_weigh_nanoseconds():
    doc = json.loads(write(sample_profile()))
    assert {p["unit"] for p in doc["profiles"]} == {"nanoseconds"}
    app = doc["profiles"][1]
    assert app["startValue"] == 0
    assert app["endValue"] == (5 + 3 + 4 + 2) * TICK_NS + 7


def test_event_profiles_weigh_events_with_unit_none():
    profile = Profile(meta=ProfileMeta(event="cache-misses", period_unit="events", frequency_hz=None))
    profile.add(Sample(7, 7, "db", (user("scan"),)), 3, 30_000)
    profile.add(Sample(7, 8, "db", (user("hash"),)), 1, 10_000)
    doc = json.loads(write(profile))
    check_schema(doc)
    (prof,) = doc["profiles"]
    assert prof["unit"] == "none"
    assert sorted(prof["weights"]) == [10_000, 30_000]
    assert prof["endValue"] == 40_000
    assert doc["name"] == "bpfprof cache-misses"


def test_frames_are_shared_and_carry_file_and_line_only_when_known():
    doc = json.loads(write(sample_profile()))
    frames = doc["shared"]["frames"]
    names = [f["name"] for f in frames]
    assert len(names) == len(set(names))  # every frame once, shared by all processes
    assert {"name": "compute", "file": "/src/compute.c", "line": 42} in frames
    assert {"name": "main"} in frames
    assert {"name": "libfoo.so+0x1a2b"} in frames
    assert {"name": "[Missed User Stack]"} in frames
    assert {"name": "[Missed Kernel Stack]"} in frames


def test_names_are_kept_verbatim_in_json():
    doc = json.loads(write(sample_profile()))
    names = {f["name"] for f in doc["shared"]["frames"]}
    assert "parse;header 12" in names  # no ';' problem in JSON: no sanitising
    assert 'std::vector<int>::push_back(int&&) "x"' in names


def test_same_function_with_other_line_is_another_frame():
    profile = Profile()
    profile.add(Sample(1, 1, "app", (MAIN, COMPUTE)), 1, 100)
    profile.add(Sample(1, 1, "app", (MAIN, Frame("compute", file="/src/compute.c", line=50))), 1, 100)
    doc = json.loads(write(profile))
    assert [f.get("line") for f in doc["shared"]["frames"] if f["name"] == "compute"] == [42, 50]


def test_output_does_not_depend_on_insertion_order():
    profile = sample_profile()
    reversed_profile = Profile(meta=profile.meta)
    for sample, weight in reversed(list(profile.samples.items())):
        reversed_profile.add(sample, weight.samples, weight.period)
    assert write(reversed_profile) == write(profile)


def test_exporter_defaults_to_the_installed_version():
    doc = json.loads(write(sample_profile()))
    assert doc["exporter"] == exporter_name() == f"bpfprof@{metadata.version('bpfprof')}"
    assert doc["name"] == "bpfprof cpu-clock: app --fast"


def test_zero_weight_samples_are_left_out():
    profile = Profile()
    profile.add(Sample(1, 1, "app", (user("f"),)), 1, 0)
    profile.add(Sample(2, 2, "app", (kernel("g"),)), 1, 5)
    doc = json.loads(write(profile))
    check_schema(doc)
    assert [p["name"] for p in doc["profiles"]] == ["app (2)"]


def test_empty_profile_is_still_a_valid_file():
    doc = json.loads(write(Profile()))
    check_schema(doc)
    assert doc["profiles"] == []
    assert doc["shared"]["frames"] == []


def one_profile(samples: str, weights: str) -> str:
    return (
        '{"shared": {"frames": [{"name": "a"}]}, "profiles": '
        f'[{{"type": "sampled", "samples": {samples}, "weights": {weights}}}]}}'
    )


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"profiles": []}',
        one_profile("[[1]]", "[1]"),
        one_profile("[[-1]]", "[1]"),
        one_profile("[[0]]", "[]"),
        one_profile("[[0]]", "[1.5]"),
        one_profile("[0]", "[1]"),
    ],
)
def test_read_speedscope_rejects_malformed_files(text: str):
    with pytest.raises(ValueError, match="speedscope"):
        read_speedscope(io.StringIO(text))


def test_read_speedscope_accepts_a_well_formed_one():
    assert read_speedscope(io.StringIO(one_profile("[[0], [0, 0]]", "[1, 2]"))) == {
        "": {("a",): 1, ("a", "a"): 2}
    }
