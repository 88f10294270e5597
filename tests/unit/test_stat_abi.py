"""The ctypes mirrors in profiler/bpf/stat_abi.py against stat.h, compiled by a real C compiler."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from profiler.bpf import stat_abi

HEADER = Path(__file__).resolve().parents[2] / "profiler" / "bpf" / "stat.h"

C_PROBE = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include "stat.h"
#define F(s, f) printf("%s.%s %zu %zu\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f));
#define S(s) printf("sizeof %s %zu\n", #s, sizeof(struct s));
int main(void) {
    S(stat_key) S(stat_value) S(stat_cpu_state) S(stat_config)
    F(stat_key, tgid) F(stat_key, tid) F(stat_key, comm)
    F(stat_value, counter) F(stat_value, enabled) F(stat_value, running)
    F(stat_cpu_state, last) F(stat_cpu_state, pending) F(stat_cpu_state, has_pending)
    F(stat_config, nr_events) F(stat_config, nr_cpus) F(stat_config, switch_out_mask)
    F(stat_config, value_only_mask) F(stat_config, direct_mask) F(stat_config, per_switch_mask)
    F(stat_config, by_tid) F(stat_config, filter_tgids) F(stat_config, follow_forks)
    printf("const STAT_COMM_LEN %d\nconst STAT_MAX_EVENTS %d\nconst HEALTH_MAX %d\n",
           STAT_COMM_LEN, STAT_MAX_EVENTS, HEALTH_MAX);
    printf("const STAT_TGID_OTHER %u\n", STAT_TGID_OTHER);
    return 0;
}
"""

MIRRORS = {
    "stat_key": stat_abi.StatKey,
    "stat_value": stat_abi.StatValue,
    "stat_cpu_state": stat_abi.StatCpuState,
    "stat_config": stat_abi.StatConfig,
}


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("stat_abi")
    (d / "probe.c").write_text(C_PROBE)
    subprocess.run(["gcc", "-I", str(HEADER.parent), "-o", str(d / "probe"), str(d / "probe.c")], check=True)
    return subprocess.run([str(d / "probe")], capture_output=True, text=True, check=True).stdout


def test_struct_sizes_match_header(c_layout: str) -> None:
    for name, cls in MIRRORS.items():
        size = int(re.search(rf"sizeof {name} (\d+)", c_layout).group(1))
        assert ctypes.sizeof(cls) == size, name


def test_field_offsets_match_header(c_layout: str) -> None:
    fields = re.findall(r"(\w+)\.(\w+) (\d+) (\d+)", c_layout)
    assert len(fields) == 18
    for struct, field, off, size in fields:
        desc = getattr(MIRRORS[struct], field)
        assert (desc.offset, desc.size) == (int(off), int(size)), f"{struct}.{field}"


def test_constants_match_header(c_layout: str) -> None:
    consts = {k: int(v) for k, v in re.findall(r"const (\w+) (-?\d+)", c_layout)}
    assert consts == {
        "STAT_COMM_LEN": stat_abi.STAT_COMM_LEN,
        "STAT_MAX_EVENTS": stat_abi.STAT_MAX_EVENTS,
        "HEALTH_MAX": stat_abi.HEALTH_MAX,
        "STAT_TGID_OTHER": stat_abi.STAT_TGID_OTHER,
    }


def test_health_enum_order_matches_header() -> None:
    text = HEADER.read_text()
    body = text[text.index("enum stat_health_index") : text.index("HEALTH_MAX")]
    names = re.findall(r"^\s*HEALTH_(\w+)", body, re.M)
    assert names == [h.name for h in stat_abi.Health]
