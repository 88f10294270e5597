"""`bpfprof top`'s terminal handling on a real pty (modes saved and restored, keys, the alternate
screen), its key bindings and snapshots, and its argument errors."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import signal
import struct
import termios
from collections.abc import Iterator

import pytest

from profiler.cli import main
from profiler.cmd_top import Screen, TopSession, describe_target
from profiler.record import RecordOptions, StopFlag
from profiler.top import LiveTop, SortKey, StackNamer


@pytest.fixture
def term() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """(a text stream on a pty's terminal side, 100x30, the fd of the other side)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    stream = open(slave, "w", encoding="utf-8")  # noqa: SIM115
    yield stream, master
    with contextlib.suppress(OSError):
        stream.close()
    os.close(master)


def output(master: int) -> str:
    out = b""
    os.set_blocking(master, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(master, 65536):
            out += chunk
    return out.decode()


def lflag(fd: int) -> int:
    return termios.tcgetattr(fd)[3]


def test_screen_takes_and_gives_back_the_terminal(term) -> None:
    stream, master = term
    fd = stream.fileno()
    before = termios.tcgetattr(fd)
    assert lflag(fd) & termios.ICANON
    assert lflag(fd) & termios.ECHO
    with Screen(stream, fd) as screen:
        assert not lflag(fd) & (termios.ICANON | termios.ECHO)
        assert lflag(fd) & termios.ISIG  # Ctrl-C still interrupts
        assert screen.size() == (100, 30)
        screen.draw(["first", "second"])
        screen.restore()  # `q`: at once
        assert termios.tcgetattr(fd) == before
        screen.draw(["not drawn"])
    assert termios.tcgetattr(fd) == before
    text = output(master)
    assert text.startswith(Screen.ENTER)
    # home, each line cleared to its end, the rest of the screen cleared (the pty adds \r to \n)
    assert "\x1b[Hfirst\x1b[K\r\r\nsecond\x1b[K\x1b[J" in text
    assert text.endswith(Screen.LEAVE)
    assert text.count(Screen.LEAVE) == 1
    assert "not drawn" not in text


def test_screen_restored_on_error_and_signal_handlers_back(term) -> None:
    stream, _master = term
    fd = stream.fileno()
    before = termios.tcgetattr(fd)
    winch, tstp = signal.getsignal(signal.SIGWINCH), signal.getsignal(signal.SIGTSTP)

    def crash() -> None:
        with Screen(stream, fd):
            assert signal.getsignal(signal.SIGWINCH) != winch
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        crash()
    assert termios.tcgetattr(fd) == before
    assert signal.getsignal(signal.SIGWINCH) == winch
    assert signal.getsignal(signal.SIGTSTP) == tstp


def test_screen_reads_keys_without_waiting(term) -> None:
    stream, master = term
    with Screen(stream, stream.fileno()) as screen:
        assert screen.read_keys() == ""
        os.write(master, b"tq")  # no Enter: cbreak mode hands each key over at once
        assert screen.read_keys() == "tq"
        assert screen.read_keys() == ""


def test_screen_resize_is_noticed(term) -> None:
    stream, _master = term
    with Screen(stream, stream.fileno()) as screen:
        fcntl.ioctl(stream.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
        os.kill(os.getpid(), signal.SIGWINCH)
        assert screen.resized
        assert screen.size() == (132, 40)


def session(screen: Screen | None, stop: StopFlag, out) -> TopSession:
    live = LiveTop(StackNamer(lambda: pytest.fail("nothing to symbolize")))
    return TopSession(live, stop, 1.0, "pid 1, 2 CPUs at 99 Hz", "self", False, None, screen, out)


def test_keys_sort_delta_and_quit(term) -> None:
    stream, master = term
    fd = stream.fileno()
    before = termios.tcgetattr(fd)
    with StopFlag() as stop, Screen(stream, fd) as screen:
        s = session(screen, stop, stream)
        s.on_attached()
        assert "by self, since start" in output(master)
        os.write(master, b"t")
        s.on_tick(None, 0.2)  # type: ignore[arg-type]  # before the first refresh: no map is read
        assert s.sort is SortKey.TOTAL
        assert "by total, since start" in output(master)
        os.write(master, b"d")
        s.on_tick(None, 0.3)  # type: ignore[arg-type]
        assert s.delta
        assert "by total, last interval" in output(master)
        os.write(master, b"sq")
        s.on_tick(None, 0.4)  # type: ignore[arg-type]
        assert s.sort is SortKey.SELF
        assert s.quit_key
        assert stop.set
        assert termios.tcgetattr(fd) == before  # given back before the run's clean-up
        s.on_detached(None)  # type: ignore[arg-type]  # the user quit: no last read
    assert termios.tcgetattr(fd) == before


def test_snapshots_stop_quietly_on_a_closed_pipe() -> None:
    r, w = os.pipe()
    os.close(r)
    out = open(w, "w")  # noqa: SIM115
    try:
        with StopFlag() as stop:
            s = session(None, stop, out)
            s.print_table(["bpfprof top: ..."])
            assert s.broken_pipe
            assert stop.set
            s.print_table(["again"])  # ignored
        out.write("the interpreter's last flush goes to /dev/null\n")
        out.flush()
    finally:
        out.close()


def test_snapshots_are_plain_text() -> None:
    out = io.StringIO()
    with StopFlag() as stop:
        s = session(None, stop, out)
        s.on_attached()
        assert out.getvalue() == ""  # nothing before the first read
        s.refreshes = 1
        s._show()
    text = out.getvalue()
    assert text.startswith(
        "bpfprof top: 0.0 s, 0 samples/s, 0 samples, lost 0\npid 1, 2 CPUs at 99 Hz; by self"
    )
    assert text.endswith("(no samples yet)\n\n")
    assert "\x1b" not in text
    assert "q quit" not in text


def test_describe_target() -> None:
    assert describe_target(RecordOptions(pids=[3, 4], cpus=[0, 1])) == "pid 3,4, 2 CPUs at 99 Hz"
    assert (
        describe_target(RecordOptions(command=["/bin/app", "x"], cpus=[0])) == "command app, 1 CPUs at 99 Hz"
    )
    assert describe_target(RecordOptions(cpus=[0, 1, 2])) == "all processes, 3 CPUs at 99 Hz"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["top", "-n", "0"], "the interval must be from 0.1 to 3600 seconds"),
        (["top", "-n", "soon"], "'soon' is not a number of seconds"),
        (["top", "--sort", "name"], "invalid choice: 'name'"),
        (["top", "--call-graph", "dwarf"], "bpfprof top walks user stacks by frame pointers only"),
        (["top", "-p", "1", "-a"], "-a profiles the whole machine"),
        (["top", "-F", "99", "-c", "100000"], "give either -F HZ or -c PERIOD"),
        (
            ["top", "--debuginfo-dir", "/nonexistent/dir"],
            "--debuginfo-dir /nonexistent/dir: no such directory",
        ),
    ],
)
def test_bad_arguments_are_one_sentence(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bpfprof: ")
    assert message in err
    assert err.count("\n") == 1
