"""The ctypes mirrors in profiler/bpf/abi.py against profile.h, compiled by a real C compiler."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from profiler.bpf import abi

HEADER = Path(__file__).resolve().parents[2] / "profiler" / "bpf" / "profile.h"

C_PROBE = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include "profile.h"
#define F(s, f) printf("%s.%s %zu %zu\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f));
int main(void) {
    printf("sizeof stack_key %zu\nsizeof stack_value %zu\nsizeof profile_config %zu\n",
           sizeof(struct stack_key), sizeof(struct stack_value), sizeof(struct profile_config));
    F(stack_key, tgid) F(stack_key, tid) F(stack_key, user_stack_id) F(stack_key, kernel_stack_id)
    F(stack_key, exec_gen) F(stack_key, comm) F(stack_value, samples) F(stack_value, period)
    F(profile_config, filter_tgids) F(profile_config, include_idle) F(profile_config, user_stacks)
    F(profile_config, kernel_stacks) F(profile_config, follow_forks)
    F(proc_notice, tgid) F(proc_notice, kind) F(proc_notice, exec_gen)
    F(profile_config, dwarf_stack_size) F(profile_config, samples_wakeup_bytes)
    printf("dwarf_header %zu\n", offsetof(struct dwarf_sample, stack));
    printf("const DWARF_STACK_MAX %d\nconst DWARF_FLAG_STACK_CUT %d\n",
           DWARF_STACK_MAX, DWARF_FLAG_STACK_CUT);
    printf("const STACK_SKIPPED %d\nconst STAT_MAX %d\nconst MAX_STACK_DEPTH %d\n",
           STACK_SKIPPED, STAT_MAX, MAX_STACK_DEPTH);
    printf("const NOTICE_EXEC %d\nconst NOTICE_FIRST %d\nsizeof proc_notice %zu\n",
           NOTICE_EXEC, NOTICE_FIRST, sizeof(struct proc_notice));
    return 0;
}
"""

MIRRORS = {
    "stack_key": abi.StackKey,
    "stack_value": abi.StackValue,
    "profile_config": abi.ProfileConfig,
    "proc_notice": abi.ProcNotice,
}


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("abi")
    (d / "probe.c").write_text(C_PROBE)
    subprocess.run(["gcc", "-I", str(HEADER.parent), "-o", str(d / "probe"), str(d / "probe.c")], check=True)
    return subprocess.run([str(d / "probe")], capture_output=True, text=True, check=True).stdout


def test_struct_sizes_match_header(c_layout: str) -> None:
    for name, cls in MIRRORS.items():
        size = int(re.search(rf"sizeof {name} (\d+)", c_layout).group(1))
        assert ctypes.sizeof(cls) == size, name


def test_field_offsets_match_header(c_layout: str) -> None:
    for struct, field, off, size in re.findall(r"(\w+)\.(\w+) (\d+) (\d+)", c_layout):
        desc = getattr(MIRRORS[struct], field)
        assert (desc.offset, desc.size) == (int(off), int(size)), f"{struct}.{field}"


def test_constants_match_header(c_layout: str) -> None:
    consts = dict(re.findall(r"const (\w+) (-?\d+)", c_layout))
    assert int(consts["STACK_SKIPPED"]) == abi.STACK_SKIPPED
    assert int(consts["STAT_MAX"]) == abi.STAT_MAX
    assert int(consts["MAX_STACK_DEPTH"]) == abi.MAX_STACK_DEPTH
    assert int(consts["NOTICE_EXEC"]) == abi.NOTICE_EXEC
    assert int(consts["NOTICE_FIRST"]) == abi.NOTICE_FIRST
    assert int(consts["DWARF_STACK_MAX"]) == abi.DWARF_STACK_MAX
    assert int(consts["DWARF_FLAG_STACK_CUT"]) == abi.DWARF_FLAG_STACK_CUT


def test_dwarf_sample_header_matches_header(c_layout: str) -> None:
    assert int(re.search(r"dwarf_header (\d+)", c_layout).group(1)) == abi.DWARF_HEADER.size


def test_stat_enum_order_matches_header() -> None:
    text = HEADER.read_text()
    body = text[text.index("enum stat_index") : text.index("STAT_MAX")]
    names = re.findall(r"^\s*STAT_(\w+)", body, re.M)
    assert names == [s.name for s in abi.Stat]
