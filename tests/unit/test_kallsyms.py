"""parse_kallsyms / KernelSymbols.lookup on fixtures (modules, __pfx_, aliases, restricted) and live data."""

from __future__ import annotations

import bisect
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unwind.kallsyms import MAX_KERNEL_SYMBOL_SIZE, KernelSymbols, load_kallsyms, parse_kallsyms

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kallsyms"


@pytest.fixture(scope="module")
def ksyms() -> KernelSymbols:
    return parse_kallsyms((FIXTURES / "sample.txt").read_text())


def one(ksyms: KernelSymbols, addr: int) -> tuple[str | None, str | None]:
    (result,) = ksyms.lookup([addr])
    return result


def test_arrays_sorted_unique(ksyms: KernelSymbols) -> None:
    assert ksyms.addrs.dtype == np.uint64
    assert np.all(ksyms.addrs[1:] > ksyms.addrs[:-1])
    assert len(ksyms.names) == len(ksyms.modules) == len(ksyms.addrs)
    assert not ksyms.restricted


def test_no_pfx_names(ksyms: KernelSymbols) -> None:
    assert not [n for n in ksyms.names if n and n.startswith("__pfx_")]


def test_exact_and_inside(ksyms: KernelSymbols) -> None:
    assert one(ksyms, 0xFFFFFFFF81000090) == ("do_one_initcall", None)
    assert one(ksyms, 0xFFFFFFFF810002FF) == ("do_one_initcall", None)
    assert one(ksyms, 0xFFFFFFFF81100010 + 0x55) == ("schedule", None)
    assert one(ksyms, 0xFFFFFFFF81000410) == ("arch_post_acpi_subsys_init", None)  # W type


def test_pfx_padding_belongs_to_the_function_it_pads(ksyms: KernelSymbols) -> None:
    # __pfx_do_one_initcall is at 0x...080, do_one_initcall at 0x...090.
    assert one(ksyms, 0xFFFFFFFF81000080) == ("do_one_initcall", None)
    assert one(ksyms, 0xFFFFFFFF8100008F) == ("do_one_initcall", None)
    # ... and it ends the function before it.
    assert one(ksyms, 0xFFFFFFFF8100007F) == ("srso_alias_safe_ret", None)


def test_aliases_pick_fewest_underscores(ksyms: KernelSymbols) -> None:
    assert one(ksyms, 0xFFFFFFFF81000000) == ("srso_alias_untrain_ret", None)
    assert one(ksyms, 0xFFFFFFFF81000480) == ("entry_SYSCALL_64", None)
    assert one(ksyms, 0xFFFFFFFF83783010) == ("start_kernel", None)


def test_position_independent_copies_lose_to_the_original(ksyms: KernelSymbols) -> None:
    assert one(ksyms, 0xFFFFFFFF81100241) == ("__x86_return_thunk", None)


def test_end_markers_and_data_bound_functions(ksyms: KernelSymbols) -> None:
    assert one(ksyms, 0xFFFFFFFF810005FF) == ("entry_SYSCALL_64", None)
    assert one(ksyms, 0xFFFFFFFF81000600) == (None, None)  # __entry_text_end
    assert one(ksyms, 0xFFFFFFFF810FFFFF) == (None, None)
    assert one(ksyms, 0xFFFFFFFF8110023F) == ("__x64_sys_getpid", None)
    assert one(ksyms, 0xFFFFFFFF81100280) == (None, None)  # _etext
    assert one(ksyms, 0xFFFFFFFF82400100) == (None, None)  # linux_banner is data
    assert one(ksyms, 0xFFFFFFFF83784000) == (None, None)  # _einittext


def test_modules(ksyms: KernelSymbols) -> None:
    assert one(ksyms, 0xFFFFFFFFC0200010) == ("ext4_file_read_iter", "ext4")
    assert one(ksyms, 0xFFFFFFFFC0200005) == ("ext4_file_read_iter", "ext4")  # its __pfx_
    assert one(ksyms, 0xFFFFFFFFC0200250) == ("ext4_readdir", "ext4")
    assert one(ksyms, 0xFFFFFFFFC0300040) == ("bpf_prog_6deef7357e7b4530_profile", "bpf")
    assert one(ksyms, 0xFFFFFFFFC0400020) == ("nft_do_chain", "nf_tables")
    assert one(ksyms, 0xFFFFFFFFC0400100) == (None, None)  # a module's data symbol


def test_last_symbol_is_bounded(ksyms: KernelSymbols) -> None:
    # ftrace_trampoline is followed by a BPF program 1 MiB later: beyond the cap it is not the trampoline.
    assert one(ksyms, 0xFFFFFFFFC0201000 + MAX_KERNEL_SYMBOL_SIZE - 1)[0] == "ftrace_trampoline"
    assert one(ksyms, 0xFFFFFFFFC0201000 + MAX_KERNEL_SYMBOL_SIZE) == (None, None)
    assert one(ksyms, 0xFFFFFFFFFFFFFFFF) == (None, None)


def test_below_first_symbol(ksyms: KernelSymbols) -> None:
    assert one(ksyms, 0xFFFFFFFF80FFFFFF) == (None, None)


def test_lookup_keeps_order_and_length(ksyms: KernelSymbols) -> None:
    addrs = [0xFFFFFFFFC0200250, 0, 0xFFFFFFFF81100010, 0xFFFFFFFF81100010]
    assert ksyms.lookup(addrs) == [
        ("ext4_readdir", "ext4"),
        (None, None),
        ("schedule", None),
        ("schedule", None),
    ]
    assert ksyms.lookup([]) == []
    assert ksyms.lookup(np.array(addrs, dtype=np.uint64))[2] == ("schedule", None)


def test_restricted_all_zero() -> None:
    ksyms = parse_kallsyms((FIXTURES / "restricted.txt").read_text())
    assert ksyms.restricted
    assert len(ksyms) == 0
    assert ksyms.lookup([0xFFFFFFFF81100010, 0]) == [(None, None), (None, None)]


def test_empty_and_garbage() -> None:
    assert not parse_kallsyms("").restricted
    assert parse_kallsyms("").lookup([1]) == [(None, None)]
    assert len(parse_kallsyms("not kallsyms\n\x00\n zz T foo\n")) == 0


def test_short_addresses_parse_too() -> None:
    # 32-bit style dumps have 8-digit addresses (the slow path of the hex parser).
    ksyms = parse_kallsyms("c1000000 T startup_32\nc1000100 t helper\nc1000200 T _etext\n")
    assert ksyms.lookup([0xC1000050, 0xC1000150, 0xC1000200]) == [
        ("startup_32", None),
        ("helper", None),
        (None, None),
    ]


def test_load_kallsyms(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text((FIXTURES / "sample.txt").read_text())
    assert load_kallsyms(str(path)).lookup([0xFFFFFFFF81100010]) == [("schedule", None)]
    with pytest.raises(FileNotFoundError):
        load_kallsyms(str(tmp_path / "missing"))


def _reference(lines: list[tuple[int, str, str]], addr: int) -> set[str]:
    """Names a correct lookup may give: the text symbols at the greatest address <= addr."""
    addrs = sorted({a for a, _, _ in lines})
    i = bisect.bisect_right(addrs, addr) - 1
    if i < 0:
        return set()
    start = addrs[i]
    names = {n.removeprefix("__pfx_") for a, t, n in lines if a == start and t in "tTwW"}
    return names


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4096), st.sampled_from("tTwWdD"), st.sampled_from(["a", "b", "_c", "__pfx_d"])
        ),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.integers(0, 5000), min_size=1, max_size=20),
)
def test_lookup_matches_reference(rows: list[tuple[int, str, str]], probes: list[int]) -> None:
    base = 0xFFFFFFFF81000000
    lines = [(base + off, t, f"{n}{i}") for i, (off, t, n) in enumerate(rows)]
    text = "".join(f"{a:016x} {t} {n}\n" for a, t, n in lines)
    ksyms = parse_kallsyms(text)
    for probe, (name, module) in zip(probes, ksyms.lookup([base + p for p in probes]), strict=True):
        allowed = _reference(lines, base + probe)
        assert module is None
        if name is None:
            assert not allowed  # unnamed only when no text symbol starts at the covering address
        else:
            assert name in allowed


def test_live_kallsyms_resolves_its_own_addresses() -> None:
    try:
        text = Path("/proc/kallsyms").read_text()
    except OSError:
        pytest.skip("/proc/kallsyms is not readable here")
    ksyms = parse_kallsyms(text)
    if ksyms.restricted:
        assert ksyms.lookup([0xFFFFFFFF81000000]) == [(None, None)]
        return
    by_addr: dict[int, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "tTwW" and not parts[2].startswith("__pfx_"):
            by_addr.setdefault(int(parts[0], 16), set()).add(parts[2])
    sample = random.Random(7).sample(sorted(by_addr), min(500, len(by_addr)))
    for addr, (name, _module) in zip(sample, ksyms.lookup(sample), strict=True):
        assert name is None or name in by_addr[addr], hex(addr)
    resolved = sum(1 for name, _ in ksyms.lookup(sample) if name is not None)
    assert resolved >= 0.95 * len(sample)


@pytest.mark.parametrize("source", ["fixture", "live"])
def test_bulk_parser_agrees_with_line_parser(source: str) -> None:
    from unwind.kallsyms import _parse_fixed_layout, _parse_lines

    path = FIXTURES / "sample.txt" if source == "fixture" else Path("/proc/kallsyms")
    try:
        data = path.read_bytes()
    except OSError:
        pytest.skip(f"{path} is not readable")
    bulk = _parse_fixed_layout(data)
    assert bulk is not None, "the 64-bit layout must take the bulk path"
    slow = _parse_lines(data.decode())
    assert bulk.restricted == slow.restricted
    assert bulk.addrs.tolist() == slow.addrs.tolist()
    assert list(bulk.names) == list(slow.names)
    assert list(bulk.modules) == list(slow.modules)
