"""`bpfprof top`: a live view of the functions on CPU, refreshed every interval, like `perf top`.

On a terminal: the alternate screen in cbreak mode (keys without Enter, no echo), redrawn in place;
`q` or Ctrl-C quits; SIGTERM/SIGHUP, the targets' exit and errors end it too, and in every case the
terminal is given back as it was (modes, main screen, cursor). When stdout is not a terminal, a
plain-text snapshot of the table is printed every interval instead (for `| head`, `| tee`, logs);
a closed pipe ends it quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from profiler import cliargs
from profiler.argtypes import positive_int
from profiler.errors import UserError

if TYPE_CHECKING:
    from profiler.bpf.loader import Sampler
    from profiler.record import RecordOptions, StopFlag
    from profiler.top import LiveTop, TopView

SNAPSHOT_ROWS = 20
SNAPSHOT_WIDTH = 120
MIN_INTERVAL = 0.1

EXAMPLES = """\
examples:
  bpfprof top                          the whole machine, refreshed every second
  bpfprof top -p 1234 -n 0.5           one process, twice a second
  bpfprof top -d 5 --rows 10 | head    plain-text snapshots when stdout is not a terminal
keys: s sort by self, t sort by total, d this interval only / since start, q quit
"""


def interval_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not MIN_INTERVAL <= v <= 3600:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the interval must be from {MIN_INTERVAL} to 3600 seconds"
        )
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "top",
        help="a live view of the functions on CPU, like perf top",
        description="Sample stacks and show the top functions by self and total samples, refreshed live.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cliargs.add_targets(p)
    smp = cliargs.add_sampling(p)
    smp.add_argument(
        "--call-graph",
        default="fp",
        metavar="fp",
        help="user stacks by frame pointers (the only mode of top)",
    )
    view = p.add_argument_group("view")
    view.add_argument(
        "-n",
        "--interval",
        type=interval_seconds,
        default=1.0,
        metavar="SEC",
        help="refresh every SEC seconds (default 1)",
    )
    view.add_argument(
        "--sort", choices=["self", "total"], default="self", help="order rows by self or total samples"
    )
    view.add_argument(
        "--delta", action="store_true", help="show each interval's samples, not the totals since the start"
    )
    view.add_argument(
        "--rows",
        type=positive_int("the row count"),
        metavar="N",
        help=f"rows per table (default: the terminal's height; {SNAPSHOT_ROWS} when stdout is not one)",
    )
    cliargs.add_symbols(p, lines=False)
    cliargs.add_debug(p)
    p.set_defaults(run=run)


# -- the terminal ----------------------------------------------------------------------------------


class Screen:
    """A terminal taken over for a full-screen view; every way out gives it back as it was.

    Output goes to ``out`` (the alternate screen, cursor hidden); keys are read from ``keys_fd``
    (None: no keys) in cbreak mode: no line buffering, no echo, but Ctrl-C still sends SIGINT.
    Ctrl-Z gives the terminal back while stopped and takes it again on `fg`. ``restore()`` may be
    called any number of times.
    """

    ENTER = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J"  # alternate screen, cursor hidden, cleared
    LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, main screen back

    def __init__(self, out: TextIO, keys_fd: int | None) -> None:
        self.out = out
        self.keys_fd = keys_fd
        self.active = False
        self.resized = False  # set on SIGWINCH and after a resume: redraw
        self._saved_mode: list | None = None
        self._saved_handlers: dict[int, object] = {}

    def __enter__(self) -> Screen:
        self._saved_handlers = {
            signal.SIGWINCH: signal.signal(signal.SIGWINCH, self._on_winch),
            signal.SIGTSTP: signal.signal(signal.SIGTSTP, self._on_tstp),
        }
        try:
            self._take()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved_handlers = {}

    def _take(self) -> None:
        import termios
        import tty

        if self.keys_fd is not None:
            self._saved_mode = termios.tcgetattr(self.keys_fd)
            tty.setcbreak(self.keys_fd, termios.TCSANOW)
        self.active = True
        self._write(self.ENTER)

    def restore(self) -> None:
        """The terminal's modes as they were, the main screen and the cursor back. Idempotent."""
        if not self.active:
            return
        self.active = False
        import termios

        if self._saved_mode is not None and self.keys_fd is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.keys_fd, termios.TCSADRAIN, self._saved_mode)
        self._write(self.LEAVE)

    def _on_winch(self, _signum: int, _frame: FrameType | None) -> None:
        self.resized = True

    def _on_tstp(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.active:
            return
        self.restore()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT (`fg`)
        signal.signal(signal.SIGTSTP, self._on_tstp)
        self._take()
        self.resized = True

    def size(self) -> tuple[int, int]:
        """(columns, lines) of the terminal."""
        try:
            size = os.get_terminal_size(self.out.fileno())
            return size.columns or 80, size.lines or 24
        except (OSError, ValueError):
            return 80, 24

    def draw(self, lines: list[str]) -> None:
        """Replace the screen's content by ``lines`` (each already no wider than the terminal)."""
        if self.active:
            self._write("\x1b[H" + "\x1b[K\r\n".join(lines) + "\x1b[K\x1b[J")

    def read_keys(self) -> str:
        """The keys typed since the last call, without waiting ('' when none, or no keys fd)."""
        if self.keys_fd is None or not self.active:
            return ""
        got = ""
        while select.select([self.keys_fd], [], [], 0)[0]:
            data = os.read(self.keys_fd, 64)
            if not data:  # the terminal hung up
                break
            got += data.decode(errors="replace")
        return got

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError):  # a terminal that hung up; SIGHUP ends the run
            self.out.write(text)
            self.out.flush()


# -- the run ---------------------------------------------------------------------------------------


def describe_target(opts: RecordOptions) -> str:
    """``pid 1234, 2 CPUs at 99 Hz``: who is sampled and how often."""
    if opts.pids:
        who = "pid " + ",".join(map(str, opts.pids))
    elif opts.command:
        who = "command " + os.path.basename(opts.command[0])
    else:
        who = "all processes"
    s = opts.sampling
    rate = f"{s.frequency} Hz" if s.frequency else f"every {s.period} ns"
    return f"{who}, {len(opts.cpus)} CPUs at {rate}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class TopSession:
    """Glue between the recording loop (its on_attached/on_tick/on_detached hooks) and the display.

    Interactive (``screen`` given): keys are read every tick, the screen redrawn at each refresh, on a
    key that changes the view and on a resize. Snapshots (no screen): a table on ``out`` at each
    refresh and a last one when sampling stops.
    """

    def __init__(
        self,
        live: LiveTop,
        stop: StopFlag,
        interval: float,
        what: str,
        sort: str,
        delta: bool,
        rows: int | None,
        screen: Screen | None,
        out: TextIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from profiler.top import SortKey

        self.live = live
        self.stop = stop
        self.interval = interval
        self.what = what
        self.sort = SortKey(sort)
        self.delta = delta
        self.rows = rows
        self.screen = screen
        self.out = out
        self.clock = clock
        self.started = clock()
        self.elapsed = 0.0  # of the last refresh
        self.next_at = interval
        self.refreshes = 0
        self.broken_pipe = False
        self.quit_key = False

    # the recording loop's hooks

    def on_attached(self) -> None:
        self.started = self.clock()
        self._show()

    def on_tick(self, sampler: Sampler, elapsed: float) -> None:
        if self.screen is not None:
            redraw = self._keys()
            if self.quit_key:
                return
            if self.screen.resized:
                self.screen.resized, redraw = False, True
            if redraw and elapsed < self.next_at:
                self._show()
        if elapsed >= self.next_at:
            self.next_at = max(self.next_at + self.interval, elapsed + self.interval / 2)
            self.refresh(sampler, elapsed)

    def on_detached(self, sampler: Sampler) -> None:
        """Sampling stopped: the last counts, for the last snapshot (or the table left on the terminal
        when the run ended by itself). Nothing when the user quit, or nobody reads any more."""
        if self.broken_pipe or (self.screen is not None and self.stop.set):
            return
        elapsed = self.clock() - self.started
        if self.refreshes and elapsed - self.elapsed < 0.1:
            return  # a table was just shown: it would only be shown again
        self.refresh(sampler, elapsed, show=self.screen is None)

    # the work

    def refresh(self, sampler: Sampler, elapsed: float, show: bool = True) -> None:
        from profiler.record import live_stats

        stats = live_stats(sampler)
        records = sampler.read_counts()
        self.live.refresh(records, stats, elapsed, sampler.read_stacks)
        self.elapsed = elapsed
        self.refreshes += 1
        if show:
            self._show()

    def _keys(self) -> bool:
        """Act on the keys typed; True when the view changed."""
        from profiler.top import SortKey

        assert self.screen is not None
        changed = False
        for key in self.screen.read_keys():
            if key in "qQ":
                self.quit_key = True
                self.stop.request()
                self.screen.restore()  # at once: the terminal need not wait for the clean-up
                return False
            if key in "sS":
                self.sort, changed = SortKey.SELF, True
            elif key in "tT":
                self.sort, changed = SortKey.TOTAL, True
            elif key in "dD":
                self.delta, changed = not self.delta, True
        return changed

    def view(self, note: str = "", keys_help: bool | None = None) -> TopView:
        return self.live.view(
            self.elapsed,
            self.sort,
            self.delta,
            what=self.what,
            keys_help=self.screen is not None if keys_help is None else keys_help,
            note=note,
        )

    def _show(self) -> None:
        from profiler.top import render

        if self.screen is not None:
            width, height = self.screen.size()
            self.screen.draw(render(self.view(), width, min(height, 4 + self.rows if self.rows else height)))
            return
        if self.refreshes:  # snapshots only once there is something to show
            self.print_table(render(self.view(), SNAPSHOT_WIDTH, 4 + (self.rows or SNAPSHOT_ROWS)))

    def print_table(self, lines: list[str]) -> None:
        """A table on ``out``, then a blank line; a closed pipe stops the run quietly."""
        if self.broken_pipe:
            return
        try:
            self.out.write("\n".join(lines) + "\n\n")
            self.out.flush()
        except BrokenPipeError:
            self.broken_pipe = True
            self.stop.request()
            # nothing more may reach the pipe, not even the interpreter's last flush
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)


def run(ns: argparse.Namespace, command: list[str]) -> int:
    from profiler.cli import build_parser, build_record_options
    from profiler.record import StopFlag, preflight, record
    from profiler.symbolize import LazySymbolizer
    from profiler.targets import check_pids
    from profiler.top import LiveTop, StackNamer, render

    if ns.call_graph != "fp":
        raise UserError(
            f"--call-graph {ns.call_graph}: bpfprof top walks user stacks by frame pointers only; "
            "use bpfprof record --call-graph dwarf for DWARF unwinding",
            2,
        )
    for d in ns.debuginfo_dir:
        if not os.path.isdir(d):
            raise UserError(f"--debuginfo-dir {d}: no such directory", 2)
    # record's defaults for what top does not offer (-e: top samples cpu-clock), then top's own flags
    record_ns = argparse.Namespace(**{**vars(build_parser().parse_args(["record"])), **vars(ns)})
    opts = build_record_options(record_ns, command)
    preflight(command="top")  # before the symbolizer pulls in numpy: a non-root user hears why at once
    check_pids(opts.pids)  # before the screen is taken: an error is then one line on the shell's screen
    interactive = _isatty(sys.stdout)
    keys_fd = sys.stdin.fileno() if interactive and _isatty(sys.stdin) else None

    with LazySymbolizer(demangle=not ns.no_demangle, debug_dirs=ns.debuginfo_dir) as symbolizers:
        live = LiveTop(StackNamer(symbolizers.wait))
        screen_cm = Screen(sys.stdout, keys_fd) if interactive else contextlib.nullcontext()
        with StopFlag() as stop, screen_cm as screen:
            session = TopSession(
                live, stop, ns.interval, describe_target(opts), ns.sort, ns.delta, ns.rows, screen, sys.stdout
            )

            def on_tick(sampler: Sampler, elapsed: float) -> None:
                symbolizers.on_tick(sampler, elapsed)
                session.on_tick(sampler, elapsed)

            def on_attached() -> None:
                symbolizers.warm_up(kernel=opts.kernel_stacks)
                session.on_attached()

            result = record(
                opts,
                stop,
                on_new_process=symbolizers.on_new_process,
                on_tick=on_tick,
                on_attached=on_attached,
                on_detached=session.on_detached,
            )
        if interactive and not stop.set:
            # it ended by itself (-d, the targets exited) and the alternate screen is gone: leave the
            # last table on the terminal
            cols, lines = screen.size()
            table = render(session.view(note=result.stopped_by, keys_help=False), cols, max(8, lines - 2))
            print("\n".join(table), flush=True)
    if result.command is not None:
        return result.command.exit_code
    return 0
