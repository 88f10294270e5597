"""The on-disk symbol cache: same answers as a parse, faster; damaged, old or unwritable caches only cost
speed; keys follow the files they come from; kallsyms entries follow the boot, modules and BPF programs."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import ROOT, nm_addr, run
from tests.unit.symbolize_helpers import (
    BASE,
    build_id_path,
    fake_process,
    names_of,
    place,
    renamed_debug,
)
from unwind import debuginfo
from unwind.dwarf import SourceFrame
from unwind.elf import ElfFile
from unwind.frame import Reason
from unwind.kallsyms import KernelSymbols, load_kallsyms, parse_kallsyms
from unwind.maps import load_maps
from unwind.symbolizer import Symbolizer
from unwind.symcache import (
    FORMAT,
    DemangledNames,
    LineResults,
    SymbolCache,
    line_key,
    load_kernel_symbols,
    table_key,
)
from unwind.symtab import StringSource, SymbolArrays, SymbolTable

KALLSYMS = ROOT / "tests" / "fixtures" / "kallsyms" / "sample.txt"


def libc_path() -> str:
    ctypes.CDLL(None).getpid  # noqa: B018  # libc is mapped in this process
    return next(m.path for m in load_maps(os.getpid()) if m.is_exec and m.name.startswith("libc.so"))


def same_table(a: SymbolTable, b: SymbolTable, probes: np.ndarray) -> None:
    assert np.array_equal(a.addrs, b.addrs)
    assert np.array_equal(a.sizes, b.sizes)
    assert [a.name(i) for i in range(len(a))] == [b.name(i) for i in range(len(b))]
    assert np.array_equal(a.lookup_indices(probes), b.lookup_indices(probes))


def probes_for(table: SymbolTable) -> np.ndarray:
    lo, hi = int(table.addrs[0]), int(table.addrs[-1]) + 4096
    return np.random.default_rng(7).integers(lo - 64, hi, 20_000).astype(np.uint64)


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[object]:
    """Record the calls of ``owner.name`` (the first argument of each) while still calling it."""
    calls: list[object] = []
    original: Callable[..., object] = getattr(owner, name)

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


# -- tables -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["libc", "prog", "libfix_stripped.so"])
def test_round_trip_gives_the_same_table(fx: Path, tmp_path: Path, which: str) -> None:
    path = libc_path() if which == "libc" else str(fx / which)
    with ElfFile.open(path) as elf:
        table = elf.symbols()
        cache = SymbolCache(str(tmp_path))
        cache.store("k", table)
        loaded = cache.load("k")
        assert loaded is not None
        same_table(table, loaded, probes_for(table))
    assert Path(cache.path("k")).parent.name == f"symbols-v{FORMAT}"
    assert loaded.name(0) is not None  # readable after the ELF is closed: names live in the cache file


def test_merged_tables_round_trip(fx: Path, tmp_path: Path) -> None:
    # debug file + binary: two string tables, offsets rebased into one blob and back
    with ElfFile.open(fx / "prog.debug") as debug, ElfFile.open(fx / "prog_stripped") as elf:
        table = SymbolTable(debug.symbol_parts() + elf.symbol_parts())
        cache = SymbolCache(str(tmp_path))
        cache.store("k", table)
        loaded = cache.load("k")
        assert loaded is not None
        same_table(table, loaded, probes_for(table))


def test_second_symbolizer_reads_the_cache_not_the_elf(
    fx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = fx / "prog_stripped"
    debug_dir = tmp_path / "debug"
    place(fx / "prog.debug", build_id_path(debug_dir, exe))
    probes = [nm_addr(fx / "prog", "static_helper") + 1, nm_addr(fx / "prog", "main") + 1]
    opts = {"debug_dirs": [str(debug_dir)], "debuginfod": False, "cache": SymbolCache(str(tmp_path / "c"))}
    parsed = count_calls(monkeypatch, ElfFile, "symbol_parts")
    assert names_of(exe, tmp_path, probes, **opts) == ["static_helper", "main"]
    assert len(parsed) == 2  # the debug file and the binary
    assert len(os.listdir(tmp_path / "c" / f"symbols-v{FORMAT}")) == 1
    parsed.clear()
    assert names_of(exe, tmp_path, probes, **opts) == ["static_helper", "main"]
    assert parsed == []


def test_cached_load_is_faster_than_a_parse(tmp_path: Path) -> None:
    path = libc_path()
    cache = SymbolCache(str(tmp_path))
    parse, load = [], []
    for _ in range(5):
        t = time.perf_counter()
        with ElfFile.open(path) as elf:
            table = elf.symbols()
            table.name(0)
            parse.append(time.perf_counter() - t)
            cache.store("libc", table)
        t = time.perf_counter()
        loaded = cache.load("libc")
        assert loaded is not None
        loaded.name(0)
        load.append(time.perf_counter() - t)
    assert min(load) < min(parse)


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) - 5]
    elif how == "flipped-size-byte":
        (n,) = struct.unpack_from("<Q", data, 24)  # header: magic, format, crc, kind, n, m, blob length
        sizes = np.frombuffer(bytes(data), "<u8", n, 48 + 8 * n)
        i = int(np.flatnonzero(sizes)[0])
        data[48 + 8 * n + 8 * i + 4] ^= 0x01  # a size grows by 4 GiB: only the checksum can tell
    elif how == "old-format":
        struct.pack_into("<I", data, 8, FORMAT - 1)
    elif how == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif how == "empty":
        data = bytearray()
    elif how == "header-only":
        data = data[:48]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "how", ["truncated", "flipped-size-byte", "old-format", "garbage", "empty", "header-only"]
)
def test_damaged_entry_is_ignored_and_replaced(fx: Path, tmp_path: Path, how: str) -> None:
    cache = SymbolCache(str(tmp_path / "c"))
    probes = [nm_addr(fx / "prog", "static_helper") + 1, nm_addr(fx / "prog", "leaf_work") + 1]
    opts = {"debuginfod": False, "cache": cache}
    assert names_of(fx / "prog", tmp_path, probes, **opts) == ["static_helper", "leaf_work"]
    (entry,) = (tmp_path / "c" / f"symbols-v{FORMAT}").iterdir()
    key = entry.name.removesuffix(".sym")
    assert cache.load(key) is not None
    corrupt(entry, how)
    assert cache.load(key) is None
    assert names_of(fx / "prog", tmp_path, probes, **opts) == ["static_helper", "leaf_work"]
    assert cache.load(key) is not None  # parsed again and written over the damaged one


def test_inconsistent_arrays_are_refused() -> None:
    strings = (StringSource(b"f\0g\0", 0, 4),)
    u64 = np.uint64

    def arrays(addrs: list[int], offs: list[int]) -> SymbolArrays:
        sizes, zero_ends = np.ones(len(addrs), u64), np.zeros(0, u64)
        return SymbolArrays(np.array(addrs, u64), sizes, np.array(offs, u64), zero_ends, strings)

    assert SymbolTable.from_arrays(arrays([16, 32], [0, 2])).lookup(np.array([16, 32, 40], u64)) == [
        "f",
        "g",
        None,
    ]
    with pytest.raises(ValueError, match="sorted"):
        SymbolTable.from_arrays(arrays([32, 16], [0, 2]))
    with pytest.raises(ValueError, match="past the end"):
        SymbolTable.from_arrays(arrays([16, 32], [0, 9]))


def test_unwritable_cache_only_costs_speed(
    fx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_dir / "sub"))  # chmod would not stop root: this does
    probes = [nm_addr(fx / "prog", "leaf_work") + 1]
    lib_probes = [nm_addr(fx / "libfix.so", "fixlib_local") + 1]
    with caplog.at_level(logging.WARNING, logger="unwind.symcache"):
        for _ in range(2):
            assert names_of(fx / "prog", tmp_path, probes, debuginfod=False) == ["leaf_work"]
        proc, pid = fake_process(fx / "libfix.so", tmp_path)
        with Symbolizer(proc=proc, debuginfod=False) as sym:
            assert sym.symbolize_user(pid, [BASE + lib_probes[0]])[0].name == "fixlib_local"
            assert sym.symbolize_kernel([0xFFFFFFFF81100010])[0] is not None
            (warning,) = sym.warnings()
    assert "cannot write the symbol cache" in warning
    (record,) = caplog.records  # once per process and directory, whatever the number of symbolizers
    assert "cannot write the symbol cache" in record.getMessage()


def test_entry_keyed_by_build_id_serves_every_copy(
    fx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [place(fx / "prog", tmp_path / d / "prog") for d in ("a", "b")]
    probes = [nm_addr(fx / "prog", "static_helper") + 1]
    opts = {"debuginfod": False, "cache": SymbolCache(str(tmp_path / "c"))}
    parsed = count_calls(monkeypatch, ElfFile, "symbol_parts")
    assert [names_of(exe, tmp_path, probes, **opts) for exe in copies] == [["static_helper"]] * 2
    assert len(parsed) == 1


def test_file_without_build_id_is_keyed_by_path_inode_size_mtime(
    fx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = ROOT / "tests" / "fixtures" / "src" / "prog.c"
    exe = tmp_path / "prog_noid"
    run("gcc", "-O1", "-Wl,--build-id=none", "-o", exe, src)
    with ElfFile.open(exe) as elf:
        assert elf.build_id is None
    probes = [nm_addr(exe, "static_helper") + 1]
    opts = {"debuginfod": False, "cache": SymbolCache(str(tmp_path / "c"))}
    parsed = count_calls(monkeypatch, ElfFile, "symbol_parts")
    assert names_of(exe, tmp_path, probes, **opts) == ["static_helper"]
    assert names_of(exe, tmp_path, probes, **opts) == ["static_helper"]
    assert len(parsed) == 1
    os.utime(exe, ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime: a new key
    assert names_of(exe, tmp_path, probes, **opts) == ["static_helper"]
    assert len(parsed) == 2
    # The vDSO-like case: no build-id and no file identity is not cached at all.
    assert table_key(None, None, ("self",)) is None


def test_debug_file_change_is_not_hidden_by_the_cache(fx: Path, tmp_path: Path) -> None:
    exe = fx / "prog_stripped"
    debug = place(fx / "prog.debug", build_id_path(tmp_path / "d", exe))
    probes = [nm_addr(fx / "prog", "static_helper") + 1]
    opts = {
        "debug_dirs": [str(tmp_path / "d")],
        "debuginfod": False,
        "cache": SymbolCache(str(tmp_path / "c")),
    }
    assert names_of(exe, tmp_path, probes, **opts) == ["static_helper"]
    renamed_debug(fx / "prog.debug", tmp_path / "renamed.debug", "new_name")
    os.replace(tmp_path / "renamed.debug", debug)
    assert names_of(exe, tmp_path, probes, **opts) == ["new_name"]
    debug.unlink()
    assert names_of(exe, tmp_path, probes, **opts) == [None]


def test_debuglink_crc_is_computed_once(fx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(fx / "prog_linked", tmp_path / "prog_linked")
    place(fx / "prog.debug", tmp_path / "prog.debug")
    probes = [nm_addr(fx / "prog", "static_helper") + 1]
    opts = {"debuginfod": False, "cache": SymbolCache(str(tmp_path / "c"))}
    crcs = count_calls(monkeypatch, debuginfo, "_fd_crc32")
    assert names_of(tmp_path / "prog_linked", tmp_path, probes, **opts) == ["static_helper"]
    assert len(crcs) == 1
    assert names_of(tmp_path / "prog_linked", tmp_path, probes, **opts) == ["static_helper"]
    assert len(crcs) == 1
    assert names_of(tmp_path / "prog_linked", tmp_path, probes, debuginfod=False, cache=False) == [
        "static_helper"
    ]
    assert len(crcs) == 2  # without the cache it is checked every time


# -- kallsyms ---------------------------------------------------------------------------------------


def fake_kernel_proc(root: Path, kallsyms: str, boot_id: str = "b0", modules: str = "") -> Path:
    proc = root / "proc"
    (proc / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(boot_id + "\n")
    (proc / "modules").write_text(modules)
    (proc / "kallsyms").write_text(kallsyms)
    return proc


def kernel_lookup(ksyms: KernelSymbols) -> list[tuple[str | None, str | None]]:
    return ksyms.lookup([0xFFFFFFFF81000095, 0xFFFFFFFF81100010, 0xFFFFFFFFC0200210, 0xFFFFFFFF82400100])


def test_kallsyms_cached_per_boot_and_modules(tmp_path: Path) -> None:
    text = KALLSYMS.read_text()
    proc = fake_kernel_proc(tmp_path, text, modules="ext4 1 0 - Live 0xffffffffc0200000\n")
    cache = SymbolCache(str(tmp_path / "c"))
    first, cached = load_kernel_symbols(str(proc), cache)
    assert not cached
    again, cached = load_kernel_symbols(str(proc), cache)
    assert cached
    assert kernel_lookup(again) == kernel_lookup(first) == kernel_lookup(parse_kallsyms(text))
    assert kernel_lookup(first)[1] == ("schedule", None)
    (proc / "modules").write_text("ext4 2 0 - Live 0xffffffffc0200000\n")  # module state changed
    assert load_kernel_symbols(str(proc), cache)[1] is False
    assert load_kernel_symbols(str(proc), cache)[1] is True
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text("b1\n")  # rebooted
    assert load_kernel_symbols(str(proc), cache)[1] is False
    entries = [p.name for p in (tmp_path / "c" / f"symbols-v{FORMAT}").iterdir()]
    assert len(entries) == 1  # older boots' entries are removed
    (proc / "sys" / "kernel" / "random" / "boot_id").unlink()
    assert load_kernel_symbols(str(proc), cache)[1] is False  # no boot id: never from the cache


def test_kallsyms_in_another_layout_round_trips(tmp_path: Path) -> None:
    # 8-digit addresses: parsed line by line (names are a tuple, not LazyNames); stored all the same
    text = "c1000000 T _stext\nc1000010 T start_here\nc1000100 t helper\t[mod]\nc1000200 T _etext\n"
    proc = fake_kernel_proc(tmp_path, text)
    cache = SymbolCache(str(tmp_path / "c"))
    live, _ = load_kernel_symbols(str(proc), cache)
    cached, from_cache = load_kernel_symbols(str(proc), cache)
    assert from_cache
    probes = [0xC1000000, 0xC1000011, 0xC1000150, 0xC1000200]
    assert cached.lookup(probes) == live.lookup(probes) == [
        ("_stext", None), ("start_here", None), ("helper", "mod"), (None, None)
    ]  # fmt: skip


def test_restricted_kallsyms_are_not_cached(tmp_path: Path) -> None:
    proc = fake_kernel_proc(tmp_path, (KALLSYMS.parent / "restricted.txt").read_text())
    cache = SymbolCache(str(tmp_path / "c"))
    assert load_kernel_symbols(str(proc), cache)[0].restricted
    assert load_kernel_symbols(str(proc), cache)[1] is False


def test_symbolizer_rereads_kallsyms_for_a_newer_bpf_program(tmp_path: Path) -> None:
    text = KALLSYMS.read_text()
    proc = fake_kernel_proc(tmp_path, text)
    cache = SymbolCache(str(tmp_path / "c"))
    load_kernel_symbols(str(proc), cache)  # a previous run cached this boot's kallsyms
    # Since then a BPF program was loaded: no module load, no reboot, so the key is unchanged.
    newer = text.replace(
        "ffffffffc0400000 T nft_do_chain", "ffffffffc0310000 t bpf_prog_0123456789abcdef_newer\t[bpf]\n"
        "ffffffffc0400000 T nft_do_chain",
    )  # fmt: skip
    (proc / "kallsyms").write_text(newer)
    with Symbolizer(proc=str(proc), cache=cache, debuginfod=False) as sym:
        (frame,) = sym.symbolize_kernel([0xFFFFFFFFC0310010])
    assert (frame.name, frame.module) == ("bpf_prog_0123456789abcdef_newer", "bpf")
    # Known functions come from the cache alone: kallsyms is not even read.
    (proc / "kallsyms").unlink()
    with Symbolizer(proc=str(proc), cache=cache, debuginfod=False) as sym:
        frames = sym.symbolize_kernel([0xFFFFFFFF81100010, 0xFFFFFFFFC0200210])
    assert [(f.name, f.module) for f in frames] == [("schedule", None), ("ext4_readdir", "ext4")]
    # ... until an address needs the live symbols, which are now gone: an unknown frame, no error,
    # and the cached symbols (refreshed by the first re-read) still name what they know.
    with Symbolizer(proc=str(proc), cache=cache, debuginfod=False) as sym:
        frames = sym.symbolize_kernel([0xFFFFFFFFC0800000, 0xFFFFFFFF81100010, 0xFFFFFFFFC0310010])
    assert frames[0].unknown is Reason.NO_KERNEL_SYMBOL
    assert [f.name for f in frames[1:]] == ["schedule", "bpf_prog_0123456789abcdef_newer"]


def test_real_kallsyms_round_trip(tmp_path: Path) -> None:
    try:
        live = load_kallsyms()
    except OSError:
        pytest.skip("/proc/kallsyms is not readable")
    if live.restricted or len(live) == 0:
        pytest.skip("kernel symbols are restricted here")
    cache = SymbolCache(str(tmp_path))
    key = cache.kernel_key()
    assert key is not None
    cache.store_kernel(key, live)
    cached = cache.load_kernel(key)
    assert cached is not None
    probes = np.random.default_rng(3).choice(live.addrs, 5000) + np.uint64(1)
    assert cached.lookup(probes) == live.lookup(probes)


def test_demangled_names_round_trip_merge_and_follow_their_table(tmp_path: Path) -> None:
    cache = SymbolCache(str(tmp_path))
    names = DemangledNames(cache, "k", 123)
    assert names.get([5, 6]) == [None, None]
    names.add(5, "ns::f(int)")
    names.add(9, "ns::g() const")
    names.save()
    again = DemangledNames(cache, "k", 123)
    assert again.get([9, 6, 5]) == ["ns::g() const", None, "ns::f(int)"]
    again.add(6, "h<int>()")
    again.save()  # merged with what was there
    assert DemangledNames(cache, "k", 123).get([5, 6, 9, 7]) == [
        "ns::f(int)",
        "h<int>()",
        "ns::g() const",
        None,
    ]
    # another table under the same key (another CRC): not its names
    assert DemangledNames(cache, "k", 124).get([5, 6]) == [None, None]


# -- DWARF answers (--lines) ----------------------------------------------------------------------------

DEEP = [
    SourceFrame("hdr_mix", "/src/inline.h", 3, True),
    SourceFrame("add3", "/src/inline.c", 9, True),
    SourceFrame("outer", "/src/inline.c", 40, False),
]
ODD = [SourceFrame(None, "/src/ü\udcff.c", None, False), SourceFrame("f", None, 0, False)]


def test_line_results_round_trip_and_merge(tmp_path: Path) -> None:
    cache = SymbolCache(str(tmp_path))
    kept = cache.line_results("k")
    assert kept.get([0x1000, 0x2000]) == [None, None]
    kept.add(0x2000, DEEP)
    kept.add(0x1000, [])  # DWARF has nothing there: an answer too
    kept.add(0x1800, ODD)  # no name, no file, no line; a file name that is not UTF-8
    assert kept.get([0x2000, 0x3000]) == [DEEP, None]  # before the save: this run's
    kept.save()
    again = cache.line_results("k")
    assert again.get([0x3000, 0x2000, 0x1000, 0x1800, 0x2000]) == [None, DEEP, [], ODD, DEEP]
    again.add(0x1400, DEEP[1:])
    again.add(0x2000, ODD)  # kept before: the old answer stays (it is the same DWARF)
    again.save()  # merged with what was there, in address order
    third = cache.line_results("k")
    assert third.get([0x1000, 0x1400, 0x1800, 0x2000, 0]) == [[], DEEP[1:], ODD, DEEP, None]
    assert cache.line_results("other").get([0x2000]) == [None]
    entry = tmp_path / f"symbols-v{FORMAT}" / "k.lin"
    strings = {t for f in DEEP + ODD for t in (f.function, f.file) if t}
    blob = sum(len(t.encode(errors="surrogateescape")) for t in strings)
    assert (
        entry.stat().st_size == 48 + 4 * 16 + 7 * 48 + blob
    )  # header, 4 addresses, 7 rows: each string once


def test_line_results_keep_no_malformed_answer(tmp_path: Path) -> None:
    kept = SymbolCache(str(tmp_path)).line_results("k")
    kept.add(0x10, [SourceFrame("f", "a.c", 2**64, False)])  # a line DWARF can encode, no i64 holds
    kept.add(2**64, DEEP)
    kept.add(0x20, DEEP)
    kept.save()
    assert SymbolCache(str(tmp_path)).line_results("k").get([0x10, 0x20]) == [None, DEEP]


def test_line_results_stop_growing_at_their_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LineResults, "MAX_ADDRESSES", 3)
    kept = SymbolCache(str(tmp_path)).line_results("k")
    for vaddr in range(5):
        kept.add(vaddr, DEEP)
    kept.save()
    assert SymbolCache(str(tmp_path)).line_results("k").get(list(range(5))) == [DEEP] * 3 + [None] * 2


@pytest.mark.parametrize("how", ["truncated", "old-format", "garbage", "empty", "header-only"])
def test_damaged_line_results_are_a_miss(tmp_path: Path, how: str) -> None:
    cache = SymbolCache(str(tmp_path))
    kept = cache.line_results("k")
    kept.add(0x2000, DEEP)
    kept.save()
    corrupt(tmp_path / f"symbols-v{FORMAT}" / "k.lin", how)
    assert cache.line_results("k").get([0x2000]) == [None]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8))
def test_line_results_with_any_arrays_never_raise(tmp_path: Path, edits: list[tuple[int, int]]) -> None:
    """An entry whose CRC is right but whose arrays are not what ``save`` writes (unsorted addresses, rows
    past the end, strings outside the blob) is a miss or valid answers, never an exception."""
    cache = SymbolCache(str(tmp_path / "fuzz"))
    kept = cache.line_results("k")
    kept.add(0x2000, DEEP)
    kept.add(0x1000, ODD)
    kept.save()
    entry = tmp_path / "fuzz" / f"symbols-v{FORMAT}" / "k.lin"
    data = bytearray(entry.read_bytes())
    for at, value in edits:
        data[48 + at % (len(data) - 48)] = value
    n, m = struct.unpack_from("<QQ", data, 24)  # header: magic, format, crc, kind, n, m, blob length
    struct.pack_into("<I", data, 12, zlib.crc32(data[16 : 48 + 8 * (2 * n + 6 * m)]))  # the CRC made right
    entry.write_bytes(bytes(data))
    got = cache.line_results("k").get([0x1000, 0x2000, 0])
    assert all(g is None or all(isinstance(f, SourceFrame) for f in g) for g in got)


def test_line_keys_follow_their_dwarf() -> None:
    bid = bytes(range(20))
    assert line_key(bid, None, "self") != line_key(bid, None, "debug")
    assert line_key(bid, None, "debug") == line_key(bid, "/x\0 1\0 2", "debug")  # by build-id alone
    assert line_key(None, "/x\0 1\0 2", "self") is not None
    assert line_key(None, "/x\0 1\0 2", "debug") is None  # a debug file found by name: not keyed
    assert line_key(bid, None, "self") != table_key(bid, None, ("self",))
