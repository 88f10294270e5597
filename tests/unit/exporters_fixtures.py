"""A small hand-built Profile that exercises every exporter: several pids and threads, user and kernel
frames, missed user and kernel stacks, awkward names, an unnamed frame (``libfoo.so+0x1a2b``)."""

from __future__ import annotations

from exporters.model import Profile, ProfileMeta, Sample
from unwind.frame import MISSED_KERNEL, MISSED_USER, Frame, FrameKind, Reason

TICK_NS = 10_101_010  # one cpu-clock sample at 99 Hz


def user(name: str) -> Frame:
    return Frame(name, module="/usr/bin/app")


def kernel(name: str) -> Frame:
    return Frame(name, kind=FrameKind.KERNEL)


START = user("_start")
MAIN = user("main")
COMPUTE = Frame("compute", module="/usr/bin/app", file="/src/compute.c", line=42)
LIBFOO = Frame(None, module="/usr/lib/libfoo.so", file_off=0x1A2B, unknown=Reason.NO_SYMBOL)
ODD = user("parse;header 12")  # a ';' and a trailing number
TEMPLATE = user('std::vector<int>::push_back(int&&) "x"')
SYSCALL = (kernel("entry_SYSCALL_64"), kernel("do_syscall_64"))


def sample_profile() -> Profile:
    """The shared test profile; its expected folded lines are spelled out in test_exporters_folded."""
    profile = Profile(meta=ProfileMeta(event="cpu-clock", frequency_hz=99, command=["app", "--fast"]))
    # pid 100, two threads with the same comm and stack: one folded line.
    profile.add(Sample(100, 100, "app", (START, MAIN, COMPUTE)), 5, 5 * TICK_NS)
    profile.add(Sample(100, 101, "app", (START, MAIN, COMPUTE)), 3, 3 * TICK_NS + 7)
    # pid 100, a named thread in a system call, through awkward names.
    profile.add(
        Sample(100, 102, "worker", (user("start_thread"), ODD, TEMPLATE, *SYSCALL, kernel("ksys_read"))),
        4,
        4 * TICK_NS,
    )
    # pid 100: an unnamed user frame, and a kernel stack that was lost.
    profile.add(Sample(100, 100, "app", (START, MAIN, LIBFOO, MISSED_KERNEL)), 2, 2 * TICK_NS)
    # pid 200: the user stack was lost.
    profile.add(Sample(200, 200, "bash", (MISSED_USER, *SYSCALL, kernel("ksys_write"))), 1, TICK_NS)
    # pid 300: another process with the same comm and stack as pid 100: merges in folded output.
    profile.add(Sample(300, 300, "app", (START, MAIN, COMPUTE)), 2, 2 * TICK_NS)
    # pid 0: idle, kernel only (no user stack is normal there, so no marker).
    idle = (kernel("secondary_startup_64"), kernel("cpu_startup_entry"), kernel("do_idle"))
    profile.add(Sample(0, 0, "swapper/0", idle), 7, 7 * TICK_NS)
    # pid 400: an empty comm, a page fault taken in user code; a whitespace-mangled name.
    profile.add(Sample(400, 400, "", (user("bad\nname\t x"), kernel("asm_exc_page_fault"))), 1, TICK_NS)
    return profile
