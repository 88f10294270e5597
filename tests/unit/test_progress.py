"""The status line of `bpfprof record`: drawn on a real pty, absent on a pipe, cleared before the summary."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import struct
import termios
from collections.abc import Iterator

import pytest

from profiler.progress import CLEAR_LINE, Losses, Progress, progress_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tty() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """(a text stream on a pty's terminal side, the fd of its other side) at 160 columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    yield stream, master
    stream.close()
    os.close(master)


def drain(master: int) -> str:
    """What was written to the terminal so far (the pty line discipline maps \\n to \\r\\n)."""
    out = b""
    os.set_blocking(master, False)
    try:
        while True:
            out += os.read(master, 65536)
    except BlockingIOError:
        pass
    return out.decode()


def stats(kept: int, **lost: int) -> dict[str, int]:
    return {"seen": kept + sum(lost.values()), "kept": kept, **lost}


def test_line_is_rewritten_in_place_and_throttled(tty) -> None:
    stream, master = tty
    clock = Clock()
    reads = []

    def read(s: dict[str, int]):
        def f() -> dict[str, int]:
            reads.append(s)
            return s

        return f

    p = Progress(stream, clock=clock, every=0.5)
    assert p.enabled
    p.tick(1.0, read(stats(100)))
    clock.now += 0.2
    p.tick(1.2, read(stats(120)))  # too soon: the stats are not even read
    clock.now += 0.3
    p.tick(1.5, read(stats(150, user_collision=2, counts_full=1)))
    assert len(reads) == 2
    out = drain(master)
    assert out == (
        CLEAR_LINE
        + "bpfprof: 1.0 s, 100 samples, 100/s, lost 0"
        + CLEAR_LINE
        + "bpfprof: 1.5 s, 150 samples, 100/s, lost 3 (2 collisions, 0 missing stacks, 1 dropped)"
    )
    p.clear()
    assert drain(master) == CLEAR_LINE
    p.clear()  # nothing shown: nothing written
    assert drain(master) == ""


def test_rate_is_over_the_last_update(tty) -> None:
    stream, master = tty
    clock = Clock()
    p = Progress(stream, clock=clock, every=0.5)
    p.tick(2.0, lambda: stats(400))  # first: the average since the start
    clock.now += 1.0
    p.tick(3.0, lambda: stats(450))
    assert drain(master).endswith("bpfprof: 3.0 s, 450 samples, 50/s, lost 0")


def test_cleared_on_exit_even_on_error(tty) -> None:
    stream, master = tty

    def fail() -> None:
        with Progress(stream) as p:
            p.tick(0.5, lambda: stats(10))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert drain(master).endswith(CLEAR_LINE)


def test_cut_to_the_terminal_width(tty) -> None:
    stream, master = tty
    fcntl.ioctl(stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 24, 30, 0, 0))
    Progress(stream).tick(1.0, lambda: stats(5, user_missing=123456))
    text = drain(master)
    assert text.startswith(CLEAR_LINE)
    assert len(text) - len(CLEAR_LINE) == 29  # never wraps: \r would only rewrite the last row


def test_absent_on_a_pipe_and_when_disabled(tty) -> None:
    r, w = os.pipe()
    with open(w, "w") as pipe:
        p = Progress(pipe)
        assert not p.enabled
        p.tick(1.0, lambda: pytest.fail("stats read for a pipe"))
        p.clear()
    with open(r) as f:
        assert f.read() == ""
    stream, master = tty
    quiet = Progress(stream, enabled=False)  # -q
    quiet.tick(1.0, lambda: pytest.fail("stats read with -q"))
    quiet.clear()
    assert drain(master) == ""


def test_a_terminal_that_went_away_stops_the_line() -> None:
    master, slave = pty.openpty()
    stream = open(slave, "w", encoding="utf-8")  # noqa: SIM115
    p = Progress(stream)
    assert p.enabled
    os.close(master)  # hang-up: writes to the terminal side now fail with EIO
    p.tick(1.0, lambda: stats(1))
    assert not p.enabled
    p.tick(2.0, lambda: pytest.fail("stats read after the terminal went away"))
    with contextlib.suppress(OSError):  # the unwritten line is still buffered
        stream.close()


def test_losses_and_text() -> None:
    s = {
        "user_collision": 1,
        "kernel_collision": 2,
        "user_missing": 3,
        "kernel_missing": 4,
        "user_error": 5,
        "kernel_error": 6,
        "stack_vanished": 7,
        "counts_full": 8,
        "samples_dropped": 9,
        "seen": 1000,
        "kept": 990,
        "idle_skipped": 50,
    }
    losses = Losses.from_stats(s)
    assert losses == Losses(collisions=3, missing=25, dropped=17)
    assert losses.total == 45
    assert Losses().describe() == "lost 0"
    assert progress_text(2.25, 990, losses, 440.4) == (
        "bpfprof: 2.2 s, 990 samples, 440/s, lost 45 (3 collisions, 25 missing stacks, 17 dropped)"
    )
