"""`bpfprof top`'s model: counts-map deltas, stack naming with a real Symbolizer, tallies, rendering."""

from __future__ import annotations

import ctypes
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from profiler.bpf.abi import EEXIST, EFAULT, STACK_SKIPPED
from profiler.progress import Losses
from profiler.raw import CountRecord
from profiler.top import (
    HEADER_LINES,
    CountsDelta,
    FunctionKey,
    LiveTop,
    SortKey,
    StackNamer,
    Tallies,
    TopView,
    function_key,
    process_label,
    ranked,
    render,
)
from unwind.frame import MISSED_KERNEL, MISSED_USER, Frame, FrameKind, Reason
from unwind.kallsyms import parse_kallsyms
from unwind.maps import load_maps
from unwind.symbolizer import Symbolizer

KALLSYMS = Path(__file__).resolve().parents[1] / "fixtures" / "kallsyms" / "sample.txt"

# kernel addresses of tests/fixtures/kallsyms/sample.txt; a kernel stack is leaf first, and every ip
# but the leaf is a return address (looked up at ip - 1)
SYS_GETPID = 0xFFFFFFFF81100210  # __x64_sys_getpid+0x10
ENTRY_RET = 0xFFFFFFFF81000491  # entry_SYSCALL_64+0x11, a return address
EXT4_READ = 0xFFFFFFFFC0200020  # ext4_file_read_iter [ext4]


def rec(pid=10, tid=10, comm="app", user=STACK_SKIPPED, kernel=STACK_SKIPPED, samples=1, gen=0):
    return CountRecord(pid, tid, comm, user, kernel, samples, samples * 1000, gen)


def fk(name: str, module: str = "app") -> FunctionKey:
    return FunctionKey(name, module)


# -- CountsDelta --------------------------------------------------------------------------------------


def test_counts_delta_gives_what_each_key_gained() -> None:
    d = CountsDelta()
    a, b = rec(user=1, samples=5), rec(user=2, samples=3)
    assert d.update([a, b]) == [(a, 5), (b, 3)]
    a2, c = rec(user=1, samples=9), rec(user=3, samples=1)
    assert d.update([a2, rec(user=2, samples=3), c]) == [(a2, 4), (c, 1)]  # b did not grow
    assert d.update([a2, c]) == []
    assert len(d) == 3


def test_counts_delta_keys_differ_by_every_field() -> None:
    d = CountsDelta()
    base = rec(user=1, kernel=2, samples=1)
    variants = [
        base,
        rec(pid=11, user=1, kernel=2),
        rec(tid=12, user=1, kernel=2),
        rec(comm="other", user=1, kernel=2),
        rec(user=9, kernel=2),
        rec(user=1, kernel=9),
        rec(user=1, kernel=2, gen=1),
    ]
    assert [n for _, n in d.update(variants)] == [1] * 7


def test_counts_delta_a_smaller_count_is_a_new_key() -> None:
    d = CountsDelta()
    d.update([rec(user=1, samples=10)])
    r = rec(user=1, samples=4)  # deleted and counted again from zero
    assert d.update([r]) == [(r, 4)]


# -- FunctionKey ----------------------------------------------------------------------------------------


def test_function_key_modules() -> None:
    assert function_key(Frame("f", "/usr/lib/libx.so.1")) == FunctionKey("f", "libx.so.1")
    assert function_key(Frame("schedule", None, FrameKind.KERNEL)) == FunctionKey("schedule", "[kernel]")
    assert function_key(Frame("ext4_readdir", "ext4", FrameKind.KERNEL)) == FunctionKey(
        "ext4_readdir", "[ext4]"
    )
    assert function_key(MISSED_USER) == FunctionKey("[Missed User Stack]", "")
    unnamed = Frame(None, "/bin/app", unknown=Reason.NO_SYMBOL, file_off=0x1A2B)
    assert function_key(unnamed) == FunctionKey("app+0x1a2b", "app")
    assert function_key(Frame(None, unknown=Reason.NO_MAPPING)) == FunctionKey("[unknown]", "")


# -- StackNamer, with a real Symbolizer -------------------------------------------------------------------


class StackMap:
    """The stack map's contents, read as the loader's read_stacks does (ids it lacks are left out)."""

    def __init__(self, stacks: dict[int, tuple[int, ...]]) -> None:
        self.stacks = stacks
        self.asked: list[set[int]] = []

    def read(self, ids: set[int]) -> dict[int, tuple[int, ...]]:
        self.asked.append(set(ids))
        return {i: self.stacks[i] for i in ids if i in self.stacks}


@pytest.fixture
def symbolizer():
    with Symbolizer(kallsyms=parse_kallsyms(KALLSYMS.read_text()), cache=False, debuginfod=False) as sym:
        yield sym


def libc_getpid() -> int:
    return ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value or 0


def test_namer_names_user_then_kernel_frames_root_first(symbolizer: Symbolizer) -> None:
    stacks = StackMap({1: (libc_getpid(),), 2: (SYS_GETPID, ENTRY_RET)})
    namer = StackNamer(lambda: symbolizer)
    r = rec(pid=os.getpid(), user=1, kernel=2)
    namer.prefetch([r], stacks.read)
    names = namer.name(r)
    assert names[0].name.endswith("getpid"), names
    assert names[0].module.startswith("libc.so")
    assert names[1:] == (
        FunctionKey("entry_SYSCALL_64", "[kernel]"),
        FunctionKey("__x64_sys_getpid", "[kernel]"),
    )


def test_namer_reads_each_stack_id_once(symbolizer: Symbolizer) -> None:
    stacks = StackMap({2: (SYS_GETPID, ENTRY_RET), 3: (EXT4_READ,)})
    namer = StackNamer(lambda: symbolizer)
    first = [rec(kernel=2), rec(tid=11, kernel=3)]
    namer.prefetch(first, stacks.read)
    namer.prefetch([*first, rec(tid=12, kernel=2)], stacks.read)  # nothing new: no read
    assert stacks.asked == [{2, 3}]
    assert namer.name(first[1]) == (FunctionKey("ext4_file_read_iter", "[ext4]"),)


def test_namer_lost_and_skipped_stacks(symbolizer: Symbolizer) -> None:
    namer = StackNamer(lambda: symbolizer)
    stacks = StackMap({2: (SYS_GETPID,)})
    records = [
        rec(user=-EFAULT, kernel=2),  # no user stack: a marker, then the kernel frames
        rec(user=-EEXIST, kernel=STACK_SKIPPED),  # a collision
        rec(user=STACK_SKIPPED, kernel=-EFAULT),
        rec(user=7, kernel=STACK_SKIPPED),  # an id the stack map no longer holds
    ]
    namer.prefetch(records, stacks.read)
    missed_user, missed_kernel = function_key(MISSED_USER), function_key(MISSED_KERNEL)
    assert namer.name(records[0]) == (missed_user, FunctionKey("__x64_sys_getpid", "[kernel]"))
    assert namer.name(records[1]) == (missed_user,)
    assert namer.name(records[2]) == (missed_kernel,)
    assert namer.name(records[3]) == (missed_user,)
    assert namer.name(rec()) == ()  # neither asked for


def test_namer_gone_process_is_named_unknown(symbolizer: Symbolizer) -> None:
    namer = StackNamer(lambda: symbolizer)
    r = rec(pid=2**22 + 7, user=1)  # above pid_max: never a process
    namer.prefetch([r], StackMap({1: (0x401000, 0x401234)}).read)
    assert namer.name(r) == (FunctionKey("[unknown]", ""), FunctionKey("[unknown]", ""))


class CountingSymbolizer:
    """A real Symbolizer whose calls are counted by method name."""

    def __init__(self, sym: Symbolizer) -> None:
        self.sym = sym
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> object:
        self.calls[name] += 1
        return getattr(self.sym, name)


def test_namer_names_new_stacks_in_one_call_per_process_and_for_the_kernel(symbolizer: Symbolizer) -> None:
    libc = next(m for m in load_maps(os.getpid()) if m.is_exec and m.name.startswith("libc.so"))
    rng = np.random.default_rng(7)
    user_ips = [tuple(rng.integers(libc.start, libc.end, 12).tolist()) for _ in range(300)]
    kernel_ips = [(SYS_GETPID, ENTRY_RET), (EXT4_READ,), (EXT4_READ, ENTRY_RET)]
    stacks = StackMap(
        {
            **{100 + i: ips for i, ips in enumerate(user_ips)},
            1: kernel_ips[0],
            2: kernel_ips[1],
            3: kernel_ips[2],
        }
    )
    records = [rec(pid=os.getpid(), tid=i, user=100 + i, kernel=1 + i % 3) for i in range(len(user_ips))]
    records.append(rec(pid=os.getpid(), user=100, kernel=STACK_SKIPPED))  # a stack named twice over
    counting = CountingSymbolizer(symbolizer)
    namer = StackNamer(lambda: counting)  # type: ignore[arg-type,return-value]
    namer.prefetch(records, stacks.read)
    assert counting.calls == Counter({"symbolize_user_addrs": 1, "symbolize_kernel_addrs": 1})
    named = [namer.name(r) for r in records]
    assert counting.calls == Counter({"symbolize_user_addrs": 1, "symbolize_kernel_addrs": 1})  # all kept
    for r, names in zip(records, named, strict=True):  # as a call per stack names them
        user = [
            function_key(f)
            for f in reversed(symbolizer.symbolize_user(r.pid, stacks.stacks[r.user_stack_id]))
        ]
        kernel = []
        if r.kernel_stack_id >= 0:
            kernel = [
                function_key(f)
                for f in reversed(symbolizer.symbolize_kernel(stacks.stacks[r.kernel_stack_id]))
            ]
        assert names == (*user, *kernel)
    assert sum(k.module.startswith("libc.so") for names in named for k in names) > 3000


# -- Tallies and ranking ----------------------------------------------------------------------------------


def test_tallies_self_total_and_recursion_once() -> None:
    t = Tallies()
    t.add(1, "app", (fk("main"), fk("walk"), fk("walk"), fk("leaf")), 3)
    t.add(1, "app", (fk("main"), fk("walk")), 2)
    t.add(2, "other", (fk("main"), fk("other")), 5)
    assert t.samples == 10
    f = t.functions
    assert (f[fk("main")].self_samples, f[fk("main")].total_samples) == (0, 10)
    assert (f[fk("walk")].self_samples, f[fk("walk")].total_samples) == (2, 5)  # not 8: once per sample
    assert (f[fk("leaf")].self_samples, f[fk("leaf")].total_samples) == (3, 3)
    assert f[fk("main")].procs == Counter({(1, "app"): 5, (2, "other"): 5})


def test_tallies_empty_stack_counts_as_the_thread() -> None:
    t = Tallies()
    t.add(0, "swapper/0", (), 4)
    assert t.functions[FunctionKey("[swapper/0]", "")].self_samples == 4


def test_ranked_by_self_or_total_with_ties() -> None:
    t = Tallies()
    t.add(1, "app", (fk("main"), fk("a")), 5)
    t.add(1, "app", (fk("main"), fk("b")), 5)
    t.add(1, "app", (fk("main"), fk("b"), fk("c")), 1)
    by_self = [k.name for k, _ in ranked(t, SortKey.SELF, 10)]
    assert by_self == ["b", "a", "c", "main"]  # a and b tie on self 5: b has more total
    assert [k.name for k, _ in ranked(t, SortKey.TOTAL, 2)] == ["main", "b"]
    assert ranked(t, SortKey.SELF, 0) == []


def test_process_label() -> None:
    assert process_label(Counter()) == ""
    assert process_label(Counter({(7, "app"): 3})) == "app[7]"
    # threads of pid 9 add up; the comm shown is its busiest thread's
    procs = Counter({(7, "app"): 5, (9, "worker"): 4, (9, "main"): 3, (11, "x"): 1})
    assert process_label(procs) == "worker[9] +2"


# -- LiveTop ----------------------------------------------------------------------------------------------


def test_live_top_since_start_and_last_interval(symbolizer: Symbolizer) -> None:
    live = LiveTop(StackNamer(lambda: symbolizer))
    stacks = StackMap({2: (SYS_GETPID, ENTRY_RET), 3: (EXT4_READ,)})
    live.refresh([rec(kernel=2, samples=10)], {"kept": 10, "seen": 10}, 1.0, stacks.read)
    assert live.rate == pytest.approx(10.0)
    assert live.since_start.samples == live.last.samples == 10
    live.refresh(
        [rec(kernel=2, samples=12), rec(tid=11, kernel=3, samples=6)],
        {"kept": 18, "seen": 20, "user_collision": 1, "counts_full": 2},
        1.5,
        stacks.read,
    )
    assert live.rate == pytest.approx(16.0)  # 8 samples in 0.5 s
    assert live.losses == Losses(collisions=1, missing=0, dropped=2)
    getpid, ext4 = FunctionKey("__x64_sys_getpid", "[kernel]"), FunctionKey("ext4_file_read_iter", "[ext4]")
    assert live.since_start.functions[getpid].self_samples == 12
    assert live.last.functions[getpid].self_samples == 2
    assert live.last.functions[ext4].self_samples == 6
    assert live.last.samples == 8
    view = live.view(1.5, SortKey.SELF, delta=True)
    assert view.tallies is live.last
    assert view.kept == 18


# -- render -----------------------------------------------------------------------------------------------


def sample_view(**kw) -> TopView:
    t = Tallies()
    t.add(
        4242, "cpu_split", (fk("main", "cpu_split"), fk("path_a", "cpu_split"), fk("func_a", "cpu_split")), 50
    )
    t.add(4242, "cpu_split", (fk("main", "cpu_split"), fk("func_c", "cpu_split")), 20)
    t.add(
        4242,
        "cpu_split",
        (
            fk("main", "cpu_split"),
            fk(
                "std::vector<std::pair<int, int>, std::allocator<std::pair<int, int> > >::_M_realloc_insert",
                "libstdc++.so.6",
            ),
        ),
        25,
    )
    t.add(
        17, "kworker/0:1", (FunctionKey("worker_thread", "[kernel]"), FunctionKey("schedule", "[kernel]")), 5
    )
    base = {
        "elapsed_s": 3.04,
        "kept": 100,
        "rate": 98.7,
        "losses": Losses(collisions=1, missing=2, dropped=0),
        "tallies": t,
        "what": "pid 4242, 2 CPUs at 99 Hz",
    }
    base.update(kw)
    return TopView(**base)  # type: ignore[arg-type]


def test_render_golden(golden) -> None:
    golden("top/render-100x12.txt", "\n".join(render(sample_view(), 100, 12)) + "\n")
    golden(
        "top/render-total-delta-70x8.txt",
        "\n".join(render(sample_view(sort=SortKey.TOTAL, delta=True), 70, 8)) + "\n",
    )


@pytest.mark.parametrize("width", [1, 40, 57, 80, 133, 250])
@pytest.mark.parametrize("height", [1, 5, 9, 40])
def test_render_fits_any_size(width: int, height: int) -> None:
    lines = render(sample_view(), width, height)
    assert all(len(line) <= max(width, 40) for line in lines)
    assert len(lines) == max(HEADER_LINES, min(height, HEADER_LINES + 7))


def test_render_content() -> None:
    lines = render(sample_view(), 120, 20)
    assert (
        lines[0]
        == "bpfprof top: 3.0 s, 99 samples/s, 100 samples, lost 3 (1 collisions, 2 missing stacks, 0 dropped)"
    )
    assert lines[1].startswith(
        "pid 4242, 2 CPUs at 99 Hz; by self, since start | s self, t total, d delta, q quit"
    )
    first = lines[HEADER_LINES].split()
    assert first[:5] == ["50.0%", "50.0%", "50", "50", "func_a"]
    assert first[-1] == "cpu_split[4242]"
    assert any("std::vector<std::pair<int, int>, std::" in line and ".." in line for line in lines)


def test_render_without_samples() -> None:
    lines = render(TopView(0.0, 0, 0.0, Losses(), Tallies(), keys_help=False), 80, 24)
    assert lines[1] == "by self, since start"
    assert lines[-1] == "  (no samples yet)"
