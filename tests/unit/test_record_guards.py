"""record's guards that need no BPF: map sizes against available memory, process identity by start time."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiler.errors import UserError
from profiler.record import RecordOptions, check_map_memory, start_time


def meminfo(tmp_path: Path, available_kib: int) -> str:
    path = tmp_path / "meminfo"
    path.write_text(
        f"MemTotal:       24683712 kB\nMemFree:        1000 kB\nMemAvailable:   {available_kib} kB\n"
    )
    return str(path)


def test_default_map_sizes_fit_a_small_machine(tmp_path: Path) -> None:
    check_map_memory(RecordOptions(), meminfo(tmp_path, 512 * 1024))  # ~21 MB of maps, 512 MiB free


def test_map_sizes_beyond_half_the_available_memory_are_refused(tmp_path: Path) -> None:
    # 2^20 stack buckets of ~1 KiB: ~1 GiB, with 1 GiB available
    with pytest.raises(UserError, match=r"need about 1\.0 GiB .* lower them") as info:
        check_map_memory(RecordOptions(stack_storage_size=1 << 20), meminfo(tmp_path, 1 << 20))
    assert info.value.exit_code == 2


def test_stack_buckets_round_up_to_a_power_of_two(tmp_path: Path) -> None:
    # 2^19 + 1 entries take 2^20 buckets, as the kernel allocates them
    with pytest.raises(UserError):
        check_map_memory(RecordOptions(stack_storage_size=(1 << 19) + 1), meminfo(tmp_path, 1 << 21))
    check_map_memory(RecordOptions(stack_storage_size=1 << 19), meminfo(tmp_path, 1 << 21))


def test_unreadable_meminfo_checks_nothing(tmp_path: Path) -> None:
    check_map_memory(RecordOptions(stack_storage_size=1 << 30), str(tmp_path / "missing"))


def test_start_time_reads_field_22_after_a_comm_with_parentheses(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    rest = " ".join(str(n) for n in range(4, 22))  # fields 4..21
    (tmp_path / "42" / "stat").write_text(f"42 (a) (b c) R {rest} 987654 0 0\n")
    assert start_time(42, str(tmp_path)) == 987654
    assert start_time(43, str(tmp_path)) is None
