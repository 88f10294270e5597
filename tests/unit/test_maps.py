"""parse_maps / load_maps / find_mapping on fixture text, on edge cases, and on this live process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unwind.maps import Mapping, find_mapping, load_maps, parse_maps

FIXTURE = Path(__file__).parent.parent / "fixtures" / "maps" / "sample.maps"


@pytest.fixture(scope="module")
def maps() -> list[Mapping]:
    return parse_maps(FIXTURE.read_text())


def by_start(maps: list[Mapping], start: int) -> Mapping:
    (m,) = [m for m in maps if m.start == start]
    return m


def test_valid_lines_kept_bad_lines_skipped(maps: list[Mapping]) -> None:
    # 21 well-formed lines in the fixture; 6 malformed ones and a blank line are skipped.
    assert len(maps) == 21
    assert not [m for m in maps if m.path.startswith(("/missing", "/bad", "/end"))]


def test_sorted_by_start(maps: list[Mapping]) -> None:
    starts = [m.start for m in maps]
    assert starts == sorted(starts)
    assert by_start(maps, 0x7F1A2B800000).path == "/usr/lib/unsorted.so"  # listed last in the file


def test_file_mapping_fields(maps: list[Mapping]) -> None:
    m = by_start(maps, 0x7F1A2C426000)
    assert m == Mapping(
        0x7F1A2C426000,
        0x7F1A2C57C000,
        0x26000,
        "r-xp",
        "fe:00",
        339380,
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    )
    assert m.is_exec
    assert m.is_file
    assert not m.is_anon
    assert not m.deleted
    assert m.name == "libc.so.6"


def test_to_file_offset_is_perf_map_ip(maps: list[Mapping]) -> None:
    m = by_start(maps, 0x7F1A2C426000)
    assert m.to_file_offset(0x7F1A2C426000) == 0x26000
    assert m.to_file_offset(0x7F1A2C427234) == 0x27234
    assert m.to_file_offset(0x7F1A2C57BFFF) == 0x17BFFF


def test_path_with_spaces(maps: list[Mapping]) -> None:
    m = by_start(maps, 0x7F1A2C600000)
    assert m.path == "/opt/My App/lib/libplugin v2.so"
    assert m.name == "libplugin v2.so"
    assert m.is_file


def test_deleted_suffix_removed_and_flagged(maps: list[Mapping]) -> None:
    m = by_start(maps, 0x7F1A2C700000)
    assert m.path == "/tmp/old-build/libhot.so"
    assert m.deleted
    assert m.is_file
    assert m.is_exec
    memfd = by_start(maps, 0x7F1A2C800000)
    assert memfd.path == "/memfd:jit-code"
    assert memfd.deleted
    assert memfd.is_file


def test_anonymous_lines(maps: list[Mapping]) -> None:
    trailing_space = by_start(maps, 0x7F1A2B000000)
    no_path = by_start(maps, 0x7F1A2B021000)
    for m in (trailing_space, no_path):
        assert m.path == ""
        assert m.inode == 0
        assert m.is_anon
        assert not m.is_file
    assert not no_path.is_exec
    assert no_path.perms == "---p"
    named_anon = by_start(maps, 0x7F1A2C900000)
    assert named_anon.path == "[anon:v8 code]"
    assert named_anon.is_anon
    assert named_anon.is_exec


def test_pseudo_paths(maps: list[Mapping]) -> None:
    vdso = by_start(maps, 0x7F1A2CA02000)
    assert vdso.path == "[vdso]"
    assert vdso.is_exec
    assert not vdso.is_file
    assert not vdso.is_anon
    stack = by_start(maps, 0x7FFC1E5D0000)
    assert stack.path == "[stack]"
    assert stack.is_anon
    assert not stack.is_exec
    heap = by_start(maps, 0x55D0CA1FE000)
    assert heap.path == "[heap]"
    assert heap.is_anon
    vsyscall = by_start(maps, 0xFFFFFFFFFF600000)
    assert vsyscall.path == "[vsyscall]"
    assert vsyscall.perms == "--xp"


def test_find_mapping_boundaries(maps: list[Mapping]) -> None:
    libc_text = by_start(maps, 0x7F1A2C426000)
    assert find_mapping(maps, 0x7F1A2C426000) is libc_text
    assert find_mapping(maps, 0x7F1A2C57BFFF) is libc_text
    assert find_mapping(maps, 0x7F1A2C57C000) is by_start(maps, 0x7F1A2C57C000)  # end is exclusive
    assert find_mapping(maps, 0x7F1A2C5D5000) is None  # gap after libc
    assert find_mapping(maps, 0x1000) is None  # before the first mapping
    assert find_mapping(maps, 0xFFFFFFFFFF601000) is None  # past the last one
    assert find_mapping([], 0x1000) is None


def test_find_mapping_agrees_with_linear_scan(maps: list[Mapping]) -> None:
    probes = sorted({a for m in maps for a in (m.start - 1, m.start, m.start + 7, m.end - 1, m.end)})
    for addr in probes:
        expected = next((m for m in maps if m.start <= addr < m.end), None)
        assert find_mapping(maps, addr) is expected, hex(addr)


def test_empty_and_garbage_text() -> None:
    assert parse_maps("") == []
    assert parse_maps("\n\n   \n") == []
    assert parse_maps("\x00\xff garbage - - -\n1-2 r-xp\n") == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789abcdef-: rwxp/[]()\n\tdeleted"), max_size=400))
def test_parse_maps_never_raises(text: str) -> None:
    for m in parse_maps(text):
        assert m.start < m.end
        assert len(m.perms) == 4


def test_load_maps_from_a_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "maps").write_text(FIXTURE.read_text())
    assert load_maps(4242, proc=str(tmp_path)) == parse_maps(FIXTURE.read_text())
    with pytest.raises(FileNotFoundError):
        load_maps(4243, proc=str(tmp_path))


def test_load_maps_of_this_process() -> None:
    maps = load_maps(os.getpid())
    # The code of this very function runs in the interpreter, whose text is an executable mapping.
    exe = os.path.realpath(f"/proc/{os.getpid()}/exe")
    assert any(m.is_exec and os.path.realpath(m.path) == exe for m in maps if m.is_file)
    assert any(m.path == "[stack]" for m in maps)
    # A live heap object lies in some readable mapping.
    assert find_mapping(maps, id(maps)) is not None
