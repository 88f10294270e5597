"""pprof output: the protobuf encoding, a decode round trip, a golden, and `go tool pprof` as the reader."""

from __future__ import annotations

import gzip
import io
import itertools
from pathlib import Path

import pytest

from exporters.folded import FoldedOptions, fold_profile, sanitize_name
from exporters.model import Profile, ProfileMeta, Sample
from exporters.output import FORMATS, format_for_path, write_profile
from exporters.pprof import (
    KERNEL_MAPPING,
    MAPPING_BASE,
    PAGE,
    PprofProfile,
    _read_varint,
    _varint,
    decode_profile,
    encode_profile,
    location_groups,
    parse_fields,
    write_pprof,
)
from tests.pprof_tool import go_pprof, parse_raw_samples, parse_top_total, parse_traces
from tests.unit.exporters_fixtures import MAIN, START, TICK_NS, kernel, sample_profile
from unwind.frame import MISSED_KERNEL, Frame, FrameKind

APP = "/usr/bin/app"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def at(name: str | None, off: int, module: str = APP, **kw: object) -> Frame:
    return Frame(name, module=module, file_off=off, **kw)  # type: ignore[arg-type]


# main at 0x1100 calls work at 0x1234, into which helper() and leaf() were inlined (innermost last)
HOLDER = at("work", 0x1234, file="/src/work.c", line=10)
INLINED = at("helper", 0x1234, file="/src/util.h", line=20, inlined=True)
INNER = at("leaf", 0x1234, file="/src/util.h", line=30, inlined=True)


def tiny_profile() -> Profile:
    """Two processes, an inlined chain, libc, vmlinux and a module's frames, a missed kernel stack."""
    meta = ProfileMeta(
        event="cpu-clock",
        frequency_hz=99,
        duration_s=1.5,
        start_time_ns=1_700_000_000_123_456_789,
        command=["./app", "-x", "a b"],
        build_ids={APP: "0123456789abcdef", KERNEL_MAPPING: "feedface"},
    )
    p = Profile(meta=meta)
    main = at("main", 0x1100)
    p.add(Sample(10, 10, "app", (main, HOLDER, INLINED, INNER)), 6, 6 * TICK_NS)
    p.add(
        Sample(10, 11, "app", (main, at("write", 0x9000, LIBC), kernel("do_syscall_64"), ext4("ext4_write"))),
        2,
        2 * TICK_NS,
    )
    p.add(Sample(20, 20, "other", (at("main", 0x1100), MISSED_KERNEL)), 1, TICK_NS)
    return p


def ext4(name: str) -> Frame:
    return Frame(name, module="ext4", kind=FrameKind.KERNEL)


def folded_counts(profile: Profile) -> dict[tuple[str, ...], int]:
    return fold_profile(profile, FoldedOptions())


def sanitized(decoded: PprofProfile) -> dict[tuple[str, ...], int]:
    """pprof stacks -> sample counts, names as the folded output renders them (merging what it merges)."""
    out: dict[tuple[str, ...], int] = {}
    for stack, values in decoded.stacks().items():
        key = tuple(sanitize_name(n) for n in stack)
        out[key] = out.get(key, 0) + values[0]
    return out


# -- wire format -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (2**63, b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"),
        (-1, b"\xff" * 9 + b"\x01"),  # int64 -1: ten bytes, two's complement
    ],
)
def test_varint(value: int, encoded: bytes) -> None:
    out = bytearray()
    _varint(value, out)
    assert bytes(out) == encoded
    assert _read_varint(encoded, 0) == (value % 2**64, len(encoded))


def test_parse_fields_rejects_damage() -> None:
    with pytest.raises(ValueError, match="truncated varint"):
        parse_fields(b"\x08\x80")
    with pytest.raises(ValueError, match="run past the end"):
        parse_fields(b"\x0a\x05ab")
    with pytest.raises(ValueError, match="unsupported wire type"):
        parse_fields(b"\x0b")


def test_decoder_rejects_a_broken_profile() -> None:
    good = encode_profile(tiny_profile(), exporter="t")
    with pytest.raises(ValueError, match=r"truncated|past the end|string.table"):
        decode_profile(good[: len(good) // 2])
    with pytest.raises(ValueError, match="bad gzip"):
        decode_profile(b"\x1f\x8b\x08\x00garbage")
    # a sample pointing at location 99, and a string index past the table
    with pytest.raises(ValueError, match="location 99"):
        decode_profile(good + b"\x12\x07\x0a\x01\x63\x12\x02\x01\x01")  # ids [99], values [1, 1]
    with pytest.raises(ValueError, match="outside the string table"):
        decode_profile(good + b"\x72\x02\x08\x7f")  # period_type.type = 127


# -- content ---------------------------------------------------------------------------------------


def test_round_trip_same_stacks_and_counts_as_folded() -> None:
    for profile in (sample_profile(), tiny_profile()):
        decoded = decode_profile(encode_profile(profile))
        assert sanitized(decoded) == folded_counts(profile)
        assert sum(s.values[0] for s in decoded.samples) == profile.total_samples
        assert sum(s.values[1] for s in decoded.samples) == sum(w.period for w in profile.samples.values())


def test_sample_types_period_and_header() -> None:
    d = decode_profile(encode_profile(tiny_profile(), exporter="bpfprof@test"))
    assert d.string_table[0] == ""
    assert d.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert d.period_type == ("cpu", "nanoseconds")
    assert d.period == round(1e9 / 99)
    assert d.default_sample_type == "cpu"
    assert d.time_nanos == 1_700_000_000_123_456_789
    assert d.duration_nanos == 1_500_000_000
    assert d.comments == ["bpfprof@test", "event cpu-clock, 99 Hz", "command: ./app -x 'a b'"]
    labels = {s.labels for s in d.samples}
    assert (("pid", 10), ("tid", 11)) in labels


def test_pmc_profile_weighs_by_event_count() -> None:
    p = tiny_profile()
    p.meta = ProfileMeta(event="cache-misses", period_unit="events", frequency_hz=None, period=10007)
    d = decode_profile(encode_profile(p))
    assert d.sample_types == [("samples", "count"), ("cache-misses", "count")]
    assert d.period_type == ("cache-misses", "count")
    assert d.period == 10007
    p.meta.period, p.meta.frequency_hz = None, 1000  # -F with a PMC: no fixed period, the mean
    d = decode_profile(encode_profile(p))
    assert d.period == round(9 * TICK_NS / 9)


def test_fixed_timer_period() -> None:
    p = tiny_profile()
    p.meta.frequency_hz, p.meta.period = None, 250_000
    assert decode_profile(encode_profile(p)).period == 250_000


def test_locations_one_per_module_and_file_offset_with_inlined_lines() -> None:
    d = decode_profile(encode_profile(tiny_profile()))
    names = {f.id: f for f in d.functions.values()}
    by_mapping: dict[str, list] = {}
    for loc in d.locations.values():
        mapping = d.mappings[loc.mapping_id].filename if loc.mapping_id else None
        by_mapping.setdefault(mapping or "", []).append(loc)
    # main at 0x1100 is shared by pids 10 and 20: one Location; work+helper+leaf: one Location
    app_locs = by_mapping[APP]
    assert len(app_locs) == 2
    app = next(m for m in d.mappings.values() if m.filename == APP)
    inlined = next(loc for loc in app_locs if len(loc.lines) == 3)
    assert [names[ln.function_id].name for ln in inlined.lines] == [
        "leaf",
        "helper",
        "work",
    ]  # innermost first
    assert [ln.line for ln in inlined.lines] == [30, 20, 10]
    assert [names[ln.function_id].filename for ln in inlined.lines] == ["/src/util.h"] * 2 + ["/src/work.c"]
    # address - memory_start + file_offset is the file offset
    assert inlined.address - app.memory_start + app.file_offset == 0x1234
    assert (app.has_inline_frames, app.has_functions, app.has_line_numbers, app.has_filenames) == (True,) * 4
    assert app.build_id == "0123456789abcdef"
    # the stack reads root first with the inlined calls as frames: main, work, helper, leaf
    assert ("app", "main", "work", "helper", "leaf") in d.stacks()


def test_mappings_main_binary_first_page_aligned_apart() -> None:
    d = decode_profile(encode_profile(tiny_profile()))
    files = [m.filename for m in d.mappings.values()]
    assert files[0] == APP  # pprof's "main binary": the file at the root of most samples
    assert set(files) == {APP, LIBC, KERNEL_MAPPING, "[ext4]"}
    users = sorted((m for m in d.mappings.values() if m.memory_limit), key=lambda m: m.memory_start)
    assert users[0].memory_start == MAPPING_BASE
    for m in users:
        assert (m.memory_start % PAGE, m.memory_limit % PAGE, m.file_offset) == (0, 0, 0)
    for a, b in itertools.pairwise(users):
        assert a.memory_limit < b.memory_start
    for loc in d.locations.values():
        m = d.mappings.get(loc.mapping_id)
        if m is not None and m.memory_limit:
            assert m.memory_start <= loc.address < m.memory_limit
    kernel_map = next(m for m in d.mappings.values() if m.filename == KERNEL_MAPPING)
    assert (kernel_map.build_id, kernel_map.memory_limit) == ("feedface", 0)


def test_kernel_marker_and_root_locations() -> None:
    d = decode_profile(encode_profile(tiny_profile()))
    by_name = {}
    for loc in d.locations.values():
        if len(loc.lines) == 1:
            by_name[d.functions[loc.lines[0].function_id].name] = loc
    assert d.mappings[by_name["do_syscall_64"].mapping_id].filename == KERNEL_MAPPING
    assert d.mappings[by_name["ext4_write"].mapping_id].filename == "[ext4]"
    for marker in ("[Missed Kernel Stack]", "app", "other"):  # markers and the comm root: no mapping
        assert (by_name[marker].mapping_id, by_name[marker].address) == (0, 0)
    assert all(f.system_name == "" for f in d.functions.values())


def test_unnamed_frame_keeps_its_module_and_offset() -> None:
    p = Profile()
    p.add(Sample(1, 1, "x", (at(None, 0x1A2B, "/usr/lib/libfoo.so"),)), 1, 1)
    d = decode_profile(encode_profile(p))
    assert ("x", "libfoo.so+0x1a2b") in d.stacks()
    (m,) = d.mappings.values()
    assert not m.has_functions  # pprof may symbolize it from the local file: the address is right
    loc = next(loc for loc in d.locations.values() if loc.mapping_id)
    assert loc.address - m.memory_start == 0x1A2B


def test_location_groups_split_recursion_but_keep_inlined_chains() -> None:
    rec = at("f", 0x10)
    groups = list(location_groups((rec, rec, HOLDER, INLINED, INNER, at("g", 0x1234))))
    assert [len(g) for g in groups] == [1, 1, 3, 1]


def test_samples_without_weight_are_left_out() -> None:
    p = tiny_profile()
    p.add(Sample(30, 30, "zero", (START, MAIN)), 0, 0)
    assert not any("zero" in s for s in decode_profile(encode_profile(p)).stacks())


# -- file ------------------------------------------------------------------------------------------


def test_write_pprof_is_deterministic_gzip() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    write_pprof(tiny_profile(), a, exporter="t")
    write_pprof(tiny_profile(), b, exporter="t")
    assert a.getvalue() == b.getvalue()
    assert a.getvalue()[:2] == b"\x1f\x8b"
    assert gzip.decompress(a.getvalue()) == encode_profile(tiny_profile(), exporter="t")


def test_golden_tiny_profile(golden) -> None:
    data = encode_profile(tiny_profile(), exporter="bpfprof@test")
    golden("tiny.pprof.hex", "".join(data[i : i + 32].hex() + "\n" for i in range(0, len(data), 32)))


def test_registered_format(tmp_path: Path) -> None:
    assert FORMATS["pprof"].extensions == (".pb.gz", ".pprof")
    assert format_for_path("out.pb.gz") == "pprof"
    assert format_for_path("OUT.PPROF") == "pprof"
    assert format_for_path("out.txt", "pprof") == "pprof"
    target = tmp_path / "p.pb.gz"
    write_profile(tiny_profile(), target, "pprof")
    assert sanitized(decode_profile(target.read_bytes())) == folded_counts(tiny_profile())
    assert not list(tmp_path.glob(".*.tmp"))


# -- the reference reader --------------------------------------------------------------------------


def test_go_tool_pprof_reads_the_same_stacks(tmp_path: Path) -> None:
    """``go tool pprof`` accepts the file and shows folded's stacks and counts (names without newlines)."""
    profile = tiny_profile()
    for sample, weight in sample_profile().samples.items():
        if not any("\n" in f.label() for f in sample.frames):
            profile.add(sample, weight.samples, weight.period)
    path = tmp_path / "t.pb.gz"
    write_profile(profile, path, "pprof")
    traces = parse_traces(go_pprof("-traces", "-sample_index=samples", path).stdout)
    expected = folded_counts(profile)
    assert {tuple(sanitize_name(n) for n in s): c for s, c in traces.items()} == expected
    assert parse_top_total(go_pprof("-top", "-sample_index=samples", path).stdout) == sum(expected.values())
    raw = go_pprof("-raw", path).stdout
    assert "PeriodType: cpu nanoseconds" in raw
    assert f"Period: {round(1e9 / 99)}" in raw
    values = parse_raw_samples(raw)
    assert sum(v[0] for v in values) == profile.total_samples
    assert sum(v[1] for v in values) == sum(w.period for w in profile.samples.values())
    assert "0123456789abcdef" in raw  # the build-id of the main binary's mapping


def test_main_binary_is_the_executable_not_libc_at_the_root() -> None:
    """With frame pointers the root-most frame is libc's __libc_start_call_main: the app still comes first."""
    p = Profile()
    start = at("__libc_start_call_main", 0x27000, LIBC)
    p.add(Sample(1, 1, "app", (start, at("main", 0x1100), at("work", 0x1200))), 9, 9)
    p.add(Sample(1, 1, "app", (start, at("main", 0x1100), at("write", 0x9000, LIBC))), 1, 1)
    files = [m.filename for m in decode_profile(encode_profile(p)).mappings.values()]
    assert files == [APP, LIBC]
