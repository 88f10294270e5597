"""perf-map parsing, lookup, namespace pids."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from unwind.perfmap import namespace_pid, open_perf_map, parse_perf_map, read_perf_map

SAMPLE = b"""\
7f0000001000 40 LazyCompile:*hot /tmp/app.js:3
0x7f0000002000 0x20 Builtin:ArgumentsAdaptorTrampoline
7f0000003000 0 zero-size is skipped
not a line
7f0000004000 10 py::loop:/srv/app.py
7f0000001000 30 LazyCompile:*hot2 /tmp/app.js:3
"""


def test_parse_and_lookup() -> None:
    pm = parse_perf_map(SAMPLE)
    assert len(pm) == 3
    got = pm.lookup([0x7F0000001000, 0x7F000000102F, 0x7F0000001030, 0x7F000000201F, 0x7F0000004005, 0x10])
    # the later entry at 0x...1000 (size 0x30) replaced the first
    assert got == [
        "LazyCompile:*hot2 /tmp/app.js:3",
        "LazyCompile:*hot2 /tmp/app.js:3",
        None,
        "Builtin:ArgumentsAdaptorTrampoline",
        "py::loop:/srv/app.py",
        None,
    ]


def test_read_through_fd_sees_growth(tmp_path) -> None:
    path = tmp_path / "perf-1.map"
    path.write_bytes(b"1000 10 first\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        with path.open("ab") as f:
            f.write(b"2000 10 second\n")
        path.unlink()  # the fd keeps it readable, as after the process (and its /tmp) is gone
        assert read_perf_map(fd).lookup([0x1000, 0x2005]) == ["first", "second"]
    finally:
        os.close(fd)


def test_namespace_pid_of_self_is_self() -> None:
    assert namespace_pid(os.getpid()) == os.getpid()


def test_open_perf_map_through_proc_root(tmp_path) -> None:
    """A fake /proc: the map is found under root/tmp with the namespace pid from status."""
    proc = tmp_path / "proc"
    (proc / "4242" / "root" / "tmp").mkdir(parents=True)
    (proc / "4242" / "status").write_text("Name:\tnode\nNSpid:\t4242\t7\n")
    (proc / "4242" / "root" / "tmp" / "perf-7.map").write_text("1000 10 jitted\n")
    fd = open_perf_map(4242, str(proc))
    assert fd is not None
    try:
        assert read_perf_map(fd).lookup([0x1001]) == ["jitted"]
    finally:
        os.close(fd)
    assert open_perf_map(999999, str(proc)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_malformed_maps_never_raise(data: bytes) -> None:
    pm = parse_perf_map(data)
    pm.lookup([0, 1, 2**64 - 1])
