"""perf_event_attr building and CPU lists; the attr bytes are held to the kernel's own header."""

from __future__ import annotations

import errno
import re
import struct
import subprocess

import pytest

from profiler.perf_event import (
    CPU_CLOCK,
    PERF_ATTR_SIZE,
    PERF_TYPE_HARDWARE,
    EventSpec,
    SamplingSpec,
    build_attr,
    explain_open_error,
    parse_cpu_list,
)

C_ATTR = r"""
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    struct perf_event_attr a; memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE; a.size = %(size)d; a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.%(field)s = %(value)d; a.freq = %(freq)d; a.disabled = 1; a.exclude_hv = 1;
    const unsigned char *p = (const void *)&a;
    for (unsigned i = 0; i < %(size)d; i++) printf("%%02x", p[i]);
    return 0;
}
"""


def c_attr(tmp_path, field: str, value: int, freq: int) -> bytes:
    src = tmp_path / "attr.c"
    src.write_text(C_ATTR % {"size": PERF_ATTR_SIZE, "field": field, "value": value, "freq": freq})
    subprocess.run(["gcc", "-o", str(tmp_path / "attr"), str(src)], check=True)
    return bytes.fromhex(
        subprocess.run([str(tmp_path / "attr")], capture_output=True, text=True, check=True).stdout
    )


def test_frequency_attr_matches_kernel_header(tmp_path) -> None:
    assert build_attr(CPU_CLOCK, SamplingSpec(frequency=999)) == c_attr(tmp_path, "sample_freq", 999, 1)


def test_period_attr_matches_kernel_header(tmp_path) -> None:
    got = build_attr(CPU_CLOCK, SamplingSpec(frequency=None, period=250000))
    assert got == c_attr(tmp_path, "sample_period", 250000, 0)


def test_attr_fields() -> None:
    attr = build_attr(EventSpec("cycles", PERF_TYPE_HARDWARE, 0), SamplingSpec(frequency=49))
    assert len(attr) == PERF_ATTR_SIZE
    typ, size, config, freq = struct.unpack_from("<IIQQ", attr)
    assert (typ, size, config, freq) == (PERF_TYPE_HARDWARE, PERF_ATTR_SIZE, 0, 49)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", [0]), ("0-3", [0, 1, 2, 3]), ("0-1,4,6-7\n", [0, 1, 4, 6, 7]), ("3,1,1", [1, 3])],
)
def test_parse_cpu_list(text: str, cpus: list[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "1,,x", "-2"])
def test_parse_cpu_list_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="CPU"):
        parse_cpu_list(text)


def test_no_pmu_error_is_one_clear_sentence() -> None:
    err = explain_open_error(
        OSError(errno.ENOENT, "x"), EventSpec("cycles", PERF_TYPE_HARDWARE, 0), SamplingSpec(), 0
    )
    assert "no hardware counters" in str(err)
    assert "cpu-clock" in str(err)
    assert not re.search(r"\n", str(err))


def test_permission_error_names_capabilities() -> None:
    err = explain_open_error(OSError(errno.EACCES, "x"), CPU_CLOCK, SamplingSpec(), 0)
    assert "CAP_PERFMON" in str(err)


def test_missing_libbpf_says_how_to_install() -> None:
    from profiler.bpf.libbpf import Libbpf, LibbpfMissing

    with pytest.raises(LibbpfMissing, match="apt-get install libbpf1"):
        Libbpf("/nonexistent/libbpf.so.1")


def test_no_btf_is_one_sentence(tmp_path) -> None:
    from profiler.errors import UserError
    from profiler.record import preflight

    with pytest.raises(UserError, match="CONFIG_DEBUG_INFO_BTF") as info:
        preflight(btf=str(tmp_path / "vmlinux"), euid=0)
    assert "\n" not in str(info.value)


def test_not_root_is_one_sentence() -> None:
    from profiler.errors import UserError
    from profiler.record import preflight

    with pytest.raises(UserError, match="needs root"):
        preflight(euid=1000)
