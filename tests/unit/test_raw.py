"""Decoding of the kernel's map records into raw stacks."""

from __future__ import annotations

import ctypes
import struct

from profiler.bpf.abi import EEXIST, EFAULT, STACK_SKIPPED, StackKey, StackValue
from profiler.bpf.loader import decode_counts, decode_stack
from profiler.raw import StackStatus, stack_status


def test_stack_status_of_ids() -> None:
    assert stack_status(0) is StackStatus.OK
    assert stack_status(17) is StackStatus.OK
    assert stack_status(-EFAULT) is StackStatus.MISSING
    assert stack_status(-EEXIST) is StackStatus.COLLISION
    assert stack_status(STACK_SKIPPED) is StackStatus.SKIPPED
    assert stack_status(-12) is StackStatus.ERROR


def test_decode_counts_batch() -> None:
    k1 = StackKey(tgid=10, tid=11, user_stack_id=3, kernel_stack_id=-EFAULT, comm=b"worker")
    k2 = StackKey(tgid=20, tid=20, user_stack_id=STACK_SKIPPED, kernel_stack_id=5, comm=b"a" * 16)
    v1, v2 = StackValue(samples=7, period=7_000_000), StackValue(samples=1, period=10_101_010)
    recs = decode_counts(bytes(k1) + bytes(k2), bytes(v1) + bytes(v2), 2)
    assert [
        (r.pid, r.tid, r.comm, r.user_stack_id, r.kernel_stack_id, r.samples, r.period) for r in recs
    ] == [
        (10, 11, "worker", 3, -EFAULT, 7, 7_000_000),
        (20, 20, "a" * 16, STACK_SKIPPED, 5, 1, 10_101_010),
    ]
    assert ctypes.sizeof(StackKey) == 36


def test_decode_stack_stops_at_zero() -> None:
    raw = struct.pack("<4Q", 0xFFFFFFFF81000010, 0x401000, 0, 0x999) + bytes(8 * 123)
    assert decode_stack(raw) == (0xFFFFFFFF81000010, 0x401000)


def test_unknown_report_names_module_share_and_remedy() -> None:
    from exporters.model import Profile, Sample
    from profiler.summary import unknown_report
    from unwind.frame import Frame, FrameKind, Reason

    libc_named = Frame("memcpy", "/usr/lib/libc.so.6", FrameKind.USER)
    libc_unnamed = Frame(None, "/usr/lib/libc.so.6", FrameKind.USER, unknown=Reason.NO_SYMBOL, file_off=0x10)
    nomap = Frame(None, None, FrameKind.USER, unknown=Reason.NO_MAPPING)
    main = Frame("main", "/app", FrameKind.USER)
    p = Profile()
    p.add(Sample(1, 1, "app", (main, libc_named)), 30, 0)
    p.add(Sample(1, 1, "app", (nomap, main, libc_unnamed)), 10, 0)
    libc, nomap_line = sorted(unknown_report(p), key=lambda line: "[" in line)
    assert libc.startswith("  libc.so.6: 10 of 40 frames unnamed (25.0%): stripped")
    assert "debuginfo-dir" in libc
    assert nomap_line.startswith("  [no mapping]: 10 frames (11.1% of all frames): ")
    assert "frame pointers" in nomap_line


def test_unknown_report_labels_module_less_frames_by_their_cause() -> None:
    from exporters.model import Profile, Sample
    from profiler.summary import unknown_report
    from unwind.frame import Frame, FrameKind, Reason

    p = Profile()
    for i, reason in enumerate((Reason.NO_MAPPING, Reason.ANON, Reason.NO_PROCESS, Reason.NOT_CODE)):
        p.add(Sample(1, 1, "app", (Frame(None, None, FrameKind.USER, unknown=reason),)), 10 + i, 0)
    lines = unknown_report(p)
    labels = [line.split(":")[0].strip() for line in lines]
    assert labels == ["[not code]", "[process gone]", "[anonymous memory]", "[no mapping]"]
    assert "holds no code" in lines[0]
    assert "JIT" in lines[2]


def test_every_reason_has_a_remedy() -> None:
    from profiler.summary import REMEDIES
    from unwind.frame import Reason

    assert set(REMEDIES) == set(Reason)
