"""The live status line of `bpfprof record` on a terminal, and the loss counts it shares with `top`.

One line on stderr, rewritten in place (``\\r`` + clear to end of line, ECMA-48 EL) about twice a
second: elapsed time, samples kept, samples lost, samples per second over the last update. Only on a
terminal: a pipe or a file gets nothing, so logs hold no carriage returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

CLEAR_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line

# the `stats` names (profiler/record.py STAT_NAMES) that count a lost sample or a lost stack
COLLISION_KEYS = ("user_collision", "kernel_collision")
MISSING_KEYS = ("user_missing", "kernel_missing", "user_error", "kernel_error", "stack_vanished")
DROPPED_KEYS = ("counts_full", "samples_dropped")


@dataclass(frozen=True, slots=True)
class Losses:
    """What was lost so far: stacks lost to stack-map collisions, stacks the kernel could not walk (or
    other stack errors), and whole samples dropped (counts map full, DWARF ring buffer full)."""

    collisions: int = 0
    missing: int = 0
    dropped: int = 0

    @classmethod
    def from_stats(cls, stats: dict[str, int]) -> Losses:
        return cls(
            collisions=sum(stats.get(k, 0) for k in COLLISION_KEYS),
            missing=sum(stats.get(k, 0) for k in MISSING_KEYS),
            dropped=sum(stats.get(k, 0) for k in DROPPED_KEYS),
        )

    @property
    def total(self) -> int:
        return self.collisions + self.missing + self.dropped

    def describe(self) -> str:
        """``lost 0`` or ``lost 12 (3 collisions, 9 missing stacks, 0 dropped)``."""
        if not self.total:
            return "lost 0"
        return (
            f"lost {self.total} ({self.collisions} collisions, {self.missing} missing stacks, "
            f"{self.dropped} dropped)"
        )


def progress_text(elapsed_s: float, kept: int, losses: Losses, rate: float) -> str:
    """``bpfprof: 3.0 s, 594 samples, 198/s, lost 0``."""
    return f"bpfprof: {elapsed_s:.1f} s, {kept} samples, {rate:.0f}/s, {losses.describe()}"


class Progress:
    """The status line; a context manager that clears it on exit (also on errors).

    ``tick(elapsed, read_stats)`` is cheap to call often: the stats are read (``read_stats()``, the
    `stats` map by name) only when an update is due, every ``every`` seconds. Disabled (every call a
    no-op) unless ``enabled`` and ``stream`` is a terminal.
    """

    def __init__(
        self,
        stream: TextIO,
        enabled: bool = True,
        every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.enabled = enabled and _isatty(stream)
        self.every = every
        self._clock = clock
        self._next = 0.0
        self._last: tuple[float, int] | None = None  # (clock, kept) at the last update
        self._shown = False

    def tick(self, elapsed_s: float, read_stats: Callable[[], dict[str, int]]) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.every
        stats = read_stats()
        kept = stats.get("kept", 0)
        if self._last is None:
            rate = kept / elapsed_s if elapsed_s > 0 else 0.0
        else:
            dt = now - self._last[0]
            rate = (kept - self._last[1]) / dt if dt > 0 else 0.0
        self._last = (now, kept)
        text = progress_text(elapsed_s, kept, Losses.from_stats(stats), rate)
        self._write(CLEAR_LINE + text[: max(10, _columns(self.stream) - 1)])
        self._shown = True

    def clear(self) -> None:
        """Erase the line (before the summary); nothing when none is shown."""
        if self._shown:
            self._write(CLEAR_LINE)
            self._shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:  # the terminal went away (hang-up): stop drawing, the recording goes on
            self.enabled = self._shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file
        return False


def _columns(stream: TextIO) -> int:
    """The terminal's width (a line longer than it would wrap, and ``\\r`` would rewrite only its end)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80
