"""The bulk (numpy) paths of symbolization give exactly what the per-address paths give.

Real inputs: this process's libc (and its maps), readelf's symbol list as the source of interesting
addresses, the kallsyms fixture and the live /proc/kallsyms when readable.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import mmap
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import unwind.symbolizer as symbolizer_module
from exporters.model import ProfileMeta
from profiler.raw import RawProfile, RawStack, StackStatus
from profiler.symbolize import symbolize_profile
from tests.unit.conftest import run
from unwind.elf import ElfFile
from unwind.frame import Frame, FrameKind, Reason
from unwind.kallsyms import LazyNames, load_kallsyms, parse_kallsyms
from unwind.maps import Mapping, load_maps
from unwind.symbolizer import Symbolizer
from unwind.symtab import lookup_unique, unique_inverse

ROOT = Path(__file__).resolve().parents[2]
KALLSYMS = ROOT / "tests" / "fixtures" / "kallsyms"
PID = os.getpid()
_ANON: list[mmap.mmap] = []  # anonymous pages kept mapped for the whole module


def libc_maps() -> list[Mapping]:
    ctypes.CDLL(None).getpid  # noqa: B018  # libc is mapped (it always is)
    exe = next(m for m in load_maps(PID) if m.is_exec and m.name.startswith("libc.so"))
    return [m for m in load_maps(PID) if m.path == exe.path]


def readelf_funcs(path: str) -> list[tuple[int, int]]:
    """(value, size) of the defined FUNC symbols of ``path``, from ``readelf -sW --dyn-syms``."""
    out = []
    for line in run("readelf", "-sW", "--dyn-syms", path).splitlines():
        m = re.match(r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+I?FUNC\s+\w+\s+\w+\s+\d+\s", line)
        if m and int(m[1], 16):
            out.append((int(m[1], 16), int(m[2])))
    return out


def absolute(maps: list[Mapping], elf: ElfFile, vaddr: int) -> int | None:
    """Where ELF vaddr ``vaddr`` of the file behind ``maps`` is in this process, if it is mapped."""
    for seg in elf.load_segments:
        if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            off = vaddr - seg.vaddr + seg.offset
            for m in maps:
                if m.offset <= off < m.offset + (m.end - m.start):
                    return m.start + off - m.offset
    return None


@pytest.fixture(scope="module")
def libc_addresses() -> list[int]:
    """Thousands of addresses: every exported libc function's start, end (one past its last byte) and
    the byte before it, random bytes of every libc mapping (text, data: no symbol), addresses in no
    mapping (page 0, just past libc, the top of the address space), and one in anonymous memory."""
    maps = libc_maps()
    addrs: list[int] = []
    with ElfFile.open(maps[0].path) as elf:
        for value, size in readelf_funcs(maps[0].path):
            for v in (value, value - 1, value + size, value + size - 1):
                a = absolute(maps, elf, v)
                if a is not None:
                    addrs.append(a)
    rng = np.random.default_rng(3)
    for m in maps:
        addrs += rng.integers(m.start, m.end, 300, dtype=np.uint64).tolist()
    addrs += [0x8, 0x1000, max(m.end for m in maps) + 0x10, 2**64 - 1, 2**47 - 1]
    _ANON.append(mmap.mmap(-1, 4096))  # anonymous data (not code)
    _ANON.append(
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    )  # code (a JIT's)
    for anon in _ANON[-2:]:
        buf = ctypes.c_char.from_buffer(anon)
        addrs.append(ctypes.addressof(buf))
        del buf  # (a live export would keep the mmap from closing at exit)
    addrs += addrs[:200]  # repeats: the same frame object comes back
    return addrs


def per_address(addrs: list[int], **options: object) -> list[Frame]:
    """Each address alone (the per-address path: bisect, not numpy)."""
    with Symbolizer(cache=False, debuginfod=False, **options) as sym:  # type: ignore[arg-type]
        return [sym.symbolize_user_addrs(PID, [a])[0] for a in addrs]


def test_bulk_path_equals_per_address_path_on_libc(libc_addresses: list[int]) -> None:
    with Symbolizer(cache=False, debuginfod=False, demangle=False) as sym:
        sym.bulk_min = 1  # every batch through numpy
        bulk = sym.symbolize_user_addrs(PID, libc_addresses)
        again = sym.symbolize_user_addrs(PID, libc_addresses)
    one_by_one = per_address(libc_addresses, demangle=False)
    assert len(libc_addresses) > 3000
    assert bulk == one_by_one
    assert [f.file_off for f in bulk] == [f.file_off for f in one_by_one]
    # from the per-process cache (an address in no mapping is looked for again: a refresh may map it)
    assert all(a is b for a, b in zip(bulk, again, strict=True) if a.unknown is not Reason.NO_MAPPING)
    first: dict[int, Frame] = {}
    for addr, f in zip(libc_addresses, bulk, strict=True):  # a repeated address: the same frame
        assert f.unknown is Reason.NO_MAPPING or first.setdefault(addr, f) is f
    reasons = {f.unknown for f in bulk}
    # named frames, unnamed ones in the file, no mapping, anonymous code and data (anonymous, and libc's
    # own data mappings) are all exercised
    assert {None, Reason.NO_SYMBOL, Reason.NO_MAPPING, Reason.ANON, Reason.NOT_CODE} <= reasons
    maps = load_maps(PID)
    for addr, f in zip(libc_addresses, bulk, strict=True):  # not code: exactly the non-executable ones
        m = next((m for m in maps if m.start <= addr < m.end), None)
        if f.unknown is not None and f.unknown is not Reason.NO_MAPPING and m is not None:
            assert (f.unknown is Reason.NOT_CODE) == (not m.is_exec), (hex(addr), m, f)
    named = [f for f in bulk if f.name]
    assert len({f.name for f in named}) > 500
    libc = libc_maps()[0].path
    assert all(f.module == libc and f.file_off is not None for f in named)


def test_bulk_and_small_batches_agree_in_one_symbolizer(libc_addresses: list[int]) -> None:
    """Small batches (per address) first, then a big one (numpy) reusing their module frames."""
    with Symbolizer(cache=False, debuginfod=False) as sym:
        small = [
            f for i in range(0, 600, 20) for f in sym.symbolize_user_addrs(PID, libc_addresses[i : i + 20])
        ]
        big = sym.symbolize_user_addrs(PID, libc_addresses)
    assert big[:600] == small
    assert all(a is b for a, b in zip(big[:600], small, strict=True) if a.unknown is not Reason.NO_MAPPING)
    assert big == per_address(libc_addresses)


def test_symbolize_user_applies_ip_minus_one(libc_addresses: list[int]) -> None:
    ips = libc_addresses[:500]
    with Symbolizer(cache=False, debuginfod=False) as sym:
        stack = sym.symbolize_user(PID, ips)
        looked_up = sym.symbolize_user_addrs(PID, [ips[0]] + [ip - 1 for ip in ips[1:]])
    assert stack == looked_up


def test_addresses_outside_64_bits_are_in_no_mapping() -> None:
    with Symbolizer(cache=False, debuginfod=False) as sym:
        sym.bulk_min = 1
        frames = sym.symbolize_user_addrs(PID, [-1, 2**64, 2**70, 0x8])
    assert [f.unknown for f in frames] == [Reason.NO_MAPPING] * 4


def test_make_frames_equals_the_constructor() -> None:
    made = symbolizer_module._make_frames(
        3, ["f", None, "g"], ["/lib/x.so", "/lib/x.so", None], FrameKind.USER,
        [None, Reason.NO_SYMBOL, None], [0x10, 0x20, None],
    )  # fmt: skip
    want = [
        Frame("f", "/lib/x.so", FrameKind.USER, file_off=0x10),
        Frame(None, "/lib/x.so", FrameKind.USER, unknown=Reason.NO_SYMBOL, file_off=0x20),
        Frame("g", None, FrameKind.USER),
    ]
    assert made == want
    assert [hash(f) for f in made] == [hash(f) for f in want]
    assert [f._asdict() for f in made] == [f._asdict() for f in want]  # every field, by name
    assert [repr(f) for f in made] == [repr(f) for f in want]
    assert all(type(f) is Frame for f in made)
    with pytest.raises(AttributeError):
        made[0].name = "h"  # type: ignore[misc]


def test_frame_hash_and_equality_follow_every_field() -> None:
    base = Frame("f", "/lib/x.so", FrameKind.USER, "a.c", 3, False, None, 0x10)
    others = ("g", "/lib/y.so", FrameKind.KERNEL, "b.c", 4, True, Reason.NO_SYMBOL, 0x11)
    for field, other in zip(Frame._fields, others, strict=True):
        changed = base._replace(**{field: other})
        assert changed != base, field
        assert len({base, changed, base._replace()}) == 2, field  # equal frames are one key


def test_unknown_frames_are_counted_by_summary_key() -> None:
    frames = [
        Frame("f", "/lib/x.so", file_off=1),  # named: not counted
        Frame(None, "/lib/x.so", unknown=Reason.NO_SYMBOL, file_off=2),
        Frame(None, "/lib/x.so", unknown=Reason.NO_SYMBOL, file_off=3),
        Frame(None, "/lib/y.so", unknown=Reason.BAD_ELF, file_off=4),
        Frame(None, None, FrameKind.KERNEL, unknown=Reason.NO_KERNEL_SYMBOL),
        Frame(None, "", FrameKind.KERNEL, unknown=Reason.KALLSYMS_RESTRICTED),
        Frame(None, None, unknown=Reason.ANON),
        Frame(None, None, unknown=Reason.NO_MAPPING),
        Frame(None, None, unknown=Reason.NO_MAPPING),
    ]
    with Symbolizer(cache=False, debuginfod=False) as sym:
        assert sym._count(frames) is frames
        want = collections.Counter(symbolizer_module._summary_key(f) for f in frames if f.unknown)
        assert sym.unknown_by_module() == dict(want)
        assert sym.unknown_by_module() == {
            "/lib/x.so": 2, "/lib/y.so": 1, "[kernel]": 2, "[anon]": 1, "[unknown]": 2,
        }  # fmt: skip


def test_symtab_names_of_equals_name() -> None:
    maps = libc_maps()
    with ElfFile.open(maps[0].path) as elf:
        table = elf.symbols()
        idx = [*range(-1, len(table), 7), -1, 0]
        assert table.names_of(idx) == [None if i < 0 else table.name(i) for i in idx]
        assert table.names_of([]) == []


def test_file_offsets_to_vaddrs_fast_path_equals_scalar() -> None:
    maps = libc_maps()
    with ElfFile.open(maps[0].path) as elf:
        size = os.path.getsize(maps[0].path)
        offs = [*range(0, size + 0x3000, 0x1F1), 2**64 - 1]
        vaddrs, found = elf.file_offsets_to_vaddrs(np.array(offs, np.uint64))
        want = [elf.file_offset_to_vaddr(o) for o in offs]
        assert elf._disjoint_loads() is not None  # the searchsorted path ran
    assert [int(v) if ok else None for v, ok in zip(vaddrs, found, strict=True)] == want
    assert not found[-1]


# -- kernel -------------------------------------------------------------------------------------


def kernel_addresses(ksyms: object) -> list[int]:
    addrs = ksyms.addrs  # type: ignore[attr-defined]
    out = [0, 2**64 - 1]
    for a in addrs.tolist():
        out += [a, (a - 1) & (2**64 - 1), a + 1, a + 0x10]
    return out


@pytest.mark.parametrize("source", ["fixture", "live"])
def test_kernel_batch_equals_per_address(source: str) -> None:
    if source == "fixture":
        ksyms = parse_kallsyms((KALLSYMS / "sample.txt").read_bytes())
        assert isinstance(ksyms.names, LazyNames)
    else:
        try:
            ksyms = load_kallsyms()
        except OSError:
            pytest.skip("/proc/kallsyms is not readable here")
        if ksyms.restricted:
            pytest.skip("kernel symbols are restricted (kptr_restrict; not root)")
    addrs = kernel_addresses(ksyms)
    if len(addrs) > 20000:
        addrs = [addrs[i] for i in np.random.default_rng(5).choice(len(addrs), 20000, replace=False)]
    with Symbolizer(kallsyms=ksyms, cache=False) as sym:
        bulk = sym.symbolize_kernel_addrs(addrs)
    with Symbolizer(kallsyms=ksyms, cache=False) as sym:
        alone = [sym.symbolize_kernel_addrs([a])[0] for a in addrs]
    assert bulk == alone
    reference = ksyms.lookup(addrs)  # the per-address reference: (name, module)
    assert [(f.name, f.module) for f in bulk] == reference
    assert [f.unknown for f in bulk] == [None if name else Reason.NO_KERNEL_SYMBOL for name, _ in reference]
    by_symbol: dict[int, Frame] = {}
    for f, i in zip(bulk, ksyms.lookup_indices(addrs).tolist(), strict=True):
        assert by_symbol.setdefault(i, f) is f  # kernel frames carry no address: one object per symbol


def test_lazy_names_get_many_equals_getitem() -> None:
    ksyms = parse_kallsyms((KALLSYMS / "sample.txt").read_bytes())
    names = ksyms.names
    assert isinstance(names, LazyNames)
    idx = list(range(len(names)))[::-1]
    assert names.get_many(idx) == [names[i] for i in idx]
    assert ksyms.modules.get_many(idx) == [ksyms.modules[i] for i in idx]  # type: ignore[attr-defined]


def test_symbolize_profile_loads_kallsyms_in_a_thread_while_user_frames_are_made(
    libc_addresses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    ksyms = parse_kallsyms((KALLSYMS / "sample.txt").read_bytes())
    kaddrs = kernel_addresses(ksyms)
    ok = StackStatus.OK
    raw = RawProfile()
    raw.add(RawStack(PID, PID, "t", tuple(libc_addresses[:10]), tuple(kaddrs[:5]), ok, ok), 1, 100)
    events: list[str] = []
    with Symbolizer(cache=False, debuginfod=False) as sym:
        assert not sym.kernel_loaded()

        def preload() -> None:  # kallsyms of the fixture, as if read from /proc
            events.append(threading.current_thread().name)
            sym._kallsyms, sym._kallsyms_cached = ksyms, False

        real_user = sym.symbolize_user_addrs
        real_kernel = sym.symbolize_kernel_addrs

        def user(*args: object) -> object:
            events.append("user")
            return real_user(*args)  # type: ignore[arg-type]

        def kernel(*args: object) -> object:
            events.append(f"kernel (loaded: {sym.kernel_loaded()})")
            return real_kernel(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(sym, "preload_kernel", preload)
        monkeypatch.setattr(sym, "symbolize_user_addrs", user)
        monkeypatch.setattr(sym, "symbolize_kernel_addrs", kernel)
        profile = symbolize_profile(raw, sym, ProfileMeta())
        assert sorted(events[:2]) == ["bpfprof-kallsyms", "user"]
        assert events[2:] == ["kernel (loaded: True)"]
        (sample,) = profile.samples
        assert [f.kind for f in sample.frames[-5:]] == [FrameKind.KERNEL] * 5
        events.clear()
        symbolize_profile(raw, sym, ProfileMeta())  # loaded: no thread
        assert events == ["user", "kernel (loaded: True)"]


def test_a_module_keeps_frames_for_other_images_once_a_second_one_uses_it(libc_addresses: list[int]) -> None:
    """One image's frames are its own (no second cache per module); once another image (here: the
    same process captured as a second exec generation) resolves through a module, the module keeps
    its frames, and a third image gets the very same objects."""
    named = [a for a in libc_addresses[:2000] if a < 2**47]
    with Symbolizer(cache=False, debuginfod=False) as sym:
        first = sym.symbolize_user_addrs(PID, named)
        modules = [h for h in sym._procs[(PID, 0)].handles.values() if not isinstance(h, Reason)]
        assert modules
        assert all(not m.frames for m in modules)  # one image: nothing kept twice
        second = sym.symbolize_user_addrs(PID, named, gen=1)
        assert second == first  # equal frames (made again: the first image kept its own)
        assert any(m.frames for m in modules)
        third = sym.symbolize_user_addrs(PID, named, gen=2)
        assert third == first
        kept = [f for f in third if f.file_off is not None and f.unknown is None]
        assert kept
        by_addr = dict(zip(named, second, strict=True))
        assert all(f is by_addr[a] for a, f in zip(named, third, strict=True) if f in kept)


# -- symbolize_profile ---------------------------------------------------------------------------


def test_symbolize_profile_calls_once_per_process_and_matches_per_stack(
    libc_addresses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    ksyms = parse_kallsyms((KALLSYMS / "sample.txt").read_bytes())
    kaddrs = kernel_addresses(ksyms)
    raw = RawProfile()
    ok, skipped = StackStatus.OK, StackStatus.SKIPPED
    for i in range(0, 1000, 10):
        user = tuple(libc_addresses[i : i + 10])
        kernel = tuple(kaddrs[i % 50 : i % 50 + 5]) if i % 20 == 0 else ()
        raw.add(RawStack(PID, PID, "t", user, kernel, ok, ok if kernel else skipped), 1, 100)
    raw.add(RawStack(PID, PID, "t", (), (), StackStatus.COLLISION, StackStatus.MISSING), 2, 200)
    calls: list[str] = []
    with Symbolizer(kallsyms=ksyms, cache=False, debuginfod=False) as sym:
        for name in ("symbolize_user_addrs", "symbolize_kernel_addrs"):
            real = getattr(sym, name)

            def counted(*args: object, _real: object = real, _name: str = name) -> object:
                calls.append(_name)
                return _real(*args)  # type: ignore[operator]

            monkeypatch.setattr(sym, name, counted)
        profile = symbolize_profile(raw, sym, ProfileMeta())
    assert calls == ["symbolize_user_addrs", "symbolize_kernel_addrs"]
    with Symbolizer(kallsyms=ksyms, cache=False, debuginfod=False) as sym:
        want = {}
        for stack in raw.stacks:
            frames: tuple[Frame, ...] = ()
            if stack.user_status is ok:
                frames += tuple(reversed(sym.symbolize_user(PID, stack.user_ips)))
            if stack.kernel_status is ok:
                frames += tuple(reversed(sym.symbolize_kernel(stack.kernel_ips)))
            want[frames] = stack
    got = [s.frames for s in profile.samples]
    assert got[:-1] == list(want)[:-1]
    assert [f.name for f in got[-1]] == ["[Missed User Stack]", "[Missed Kernel Stack]"]
    with Symbolizer(kallsyms=ksyms, cache=False, debuginfod=False) as sym:
        frozen = gc.get_freeze_count()
        try:
            final = symbolize_profile(raw, sym, ProfileMeta(), final=True)  # as record's last profile
            assert gc.isenabled()
            assert gc.get_freeze_count() > frozen  # what it made is out of the collector's sight
        finally:
            gc.unfreeze()
    assert final.samples == profile.samples


@pytest.mark.parametrize("wide", [False, True])
def test_symbolize_profile_with_lines_calls_once_per_process_and_matches_per_stack(
    libc_addresses: list[int], monkeypatch: pytest.MonkeyPatch, wide: bool
) -> None:
    """``--lines``: one ``symbolize_user_lines_addrs`` call for the process, each stack's frames (inlined
    calls included, root first) those of a ``symbolize_user_lines`` call of its own; also with an
    address that does not fit in 64 bits (``wide``: a damaged saved recording), looked up one by one."""
    raw = RawProfile()
    ok, skipped = StackStatus.OK, StackStatus.SKIPPED
    stacks = [tuple(libc_addresses[i : i + 10]) for i in range(0, 1000, 10)]
    if wide:
        stacks[3] = (*stacks[3][:5], 2**64 + 5, *stacks[3][6:])
    for user in stacks:
        raw.add(RawStack(PID, PID, "t", user, (), ok, skipped), 1, 100)
    calls: list[int] = []
    with Symbolizer(lines=True, cache=False, debuginfod=False) as sym:
        real = sym.symbolize_user_lines_addrs
        monkeypatch.setattr(sym, "symbolize_user_lines_addrs", lambda *a: calls.append(len(a[1])) or real(*a))
        profile = symbolize_profile(raw, sym, ProfileMeta(), lines=True)
    assert len(calls) == 1
    assert calls[0] == len({a - (j > 0) for user in stacks for j, a in enumerate(user)})
    with Symbolizer(lines=True, cache=False, debuginfod=False) as sym:
        want = [
            tuple(reversed([f for inner_first in sym.symbolize_user_lines(PID, user) for f in inner_first]))
            for user in stacks
        ]
    got = [s.frames for s in profile.samples]
    assert got == want
    frames = [f for stack in got for f in stack]
    assert sum(f.line is not None for f in frames) > 500  # libc's DWARF (libc6-dbg) was read
    assert any(f.inlined for f in frames)
    assert len(frames) > 1000  # inlined calls are frames of their own


def _bucket_of(keys: np.ndarray) -> np.ndarray:
    """A lookup for lookup_unique's test: which of 15 buckets of 7 each key falls in."""
    return np.searchsorted(np.arange(0, 100, 7), keys)


@pytest.mark.parametrize("sort", [True, False])
def test_unique_inverse_and_lookup_unique_equal_numpy_unique(sort: bool) -> None:
    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 7, 1000):
        values = rng.integers(-1, 50, n, dtype=np.int64)
        if sort:
            values.sort()
        uniq, inverse = unique_inverse(values)
        want, want_inverse = np.unique(values, return_inverse=True)
        assert uniq.tolist() == want.tolist()
        assert inverse.tolist() == want_inverse.tolist()
        assert (uniq[inverse] == values).all()
        for in_order in (True, False):  # a lookup through lookup_unique, keys sorted or as given
            found, found_inverse = lookup_unique(values, _bucket_of, in_order)
            want, want_inverse = np.unique(_bucket_of(values), return_inverse=True)
            assert found.tolist() == want.tolist()
            assert found_inverse.tolist() == want_inverse.tolist()


@pytest.mark.parametrize("bulk_min", [1, 10_000])
def test_an_address_in_a_mapped_data_file_is_not_code(tmp_path: Path, bulk_min: int) -> None:
    """A file mapped read-only that is no ELF file (a locale archive, a database): an address in it is
    named for what it is, not code, with its file and offset, in both the bulk and the per-address path."""
    data = tmp_path / "LC_CTYPE"
    data.write_bytes(b"not an ELF file\n" * 1024)
    with open(data, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        start = next(m.start for m in load_maps(PID) if m.path == str(data))
        addrs = [start + 0x10, start + 0x2000, start + 0x10]
        with Symbolizer(cache=False, debuginfod=False) as sym:
            sym.bulk_min = bulk_min
            frames = sym.symbolize_user_addrs(PID, addrs)
        assert len(mapped) == 16 * 1024
    assert [(f.unknown, f.module, f.file_off) for f in frames] == [
        (Reason.NOT_CODE, str(data), 0x10),
        (Reason.NOT_CODE, str(data), 0x2000),
        (Reason.NOT_CODE, str(data), 0x10),
    ]
