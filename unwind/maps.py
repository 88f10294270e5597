"""Process memory maps: parse ``/proc/PID/maps`` and find the mapping that holds an absolute address."""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

DELETED_SUFFIX = " (deleted)"
VDSO = "[vdso]"
READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC  # how the symbolizer opens what it reads


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of ``/proc/PID/maps``: ``[start, end)`` in the process's absolute address space.

    ``offset`` is the file offset mapped at ``start``; ``path`` is the file path, a pseudo-path such as
    ``[vdso]``/``[stack]``/``[heap]``, or ``""`` for anonymous memory. ``deleted`` is True when the
    kernel marked the path `` (deleted)`` (the suffix is removed from ``path``).
    """

    start: int
    end: int
    offset: int
    perms: str
    dev: str
    inode: int
    path: str
    deleted: bool = False

    def to_file_offset(self, abs_addr: int) -> int:
        """The file offset of ``abs_addr`` (absolute address in this mapping); perf's ``map__map_ip``."""
        return abs_addr - self.start + self.offset

    def contains(self, abs_addr: int) -> bool:
        """True when ``abs_addr`` is in ``[start, end)``."""
        return self.start <= abs_addr < self.end

    @property
    def is_exec(self) -> bool:
        """True when the mapping is executable (``x`` in perms)."""
        return "x" in self.perms

    @property
    def is_file(self) -> bool:
        """True when a file backs the mapping: a path not in brackets, with an inode or deleted.

        Shared anonymous memory (``/dev/zero (deleted)``, ``/SYSV... (deleted)``) is not a file.
        """
        if not self.path or self.path.startswith("["):
            return False
        if self.deleted and (self.path == "/dev/zero" or self.path.startswith("/SYSV")):
            return False
        return self.inode != 0 or self.deleted

    @property
    def is_anon(self) -> bool:
        """True for memory no file backs: no path, ``[anon:NAME]``, ``[heap]``, ``[stack]`` (not vDSO)."""
        return not self.is_file and self.path != VDSO

    @property
    def name(self) -> str:
        """The basename of the path, or the pseudo-path itself (``[vdso]``), or ``""``."""
        return os.path.basename(self.path) if self.is_file else self.path


def _parse_line(line: str) -> Mapping | None:
    fields = line.split(None, 5)
    if len(fields) < 5:
        return None
    addrs, perms, offset, dev, inode = fields[:5]
    path = fields[5].rstrip("\n") if len(fields) == 6 else ""
    lo, sep, hi = addrs.partition("-")
    if not sep or len(perms) != 4 or ":" not in dev:
        return None
    try:
        start, end, off, ino = int(lo, 16), int(hi, 16), int(offset, 16), int(inode, 10)
    except ValueError:
        return None
    if start >= end or min(start, off, ino) < 0:
        return None
    deleted = path.endswith(DELETED_SUFFIX)
    if deleted:
        path = path[: -len(DELETED_SUFFIX)]
    return Mapping(start, end, off, perms, dev, ino, path, deleted)


def parse_maps(text: str) -> list[Mapping]:
    """Parse the text of ``/proc/PID/maps`` into mappings sorted by start address.

    Grammar, one mapping per line (``proc(5)``)::

        line  := START "-" END WS PERMS WS OFFSET WS DEV WS INODE [WS+ PATH]
        START, END, OFFSET := hex digits          (absolute addresses; file offset)
        PERMS := [r-][w-][x-][ps]                 DEV := hex ":" hex      INODE := decimal
        PATH  := rest of the line after the padding: may contain spaces; may end in " (deleted)";
                 pseudo-paths "[vdso]", "[vvar]", "[stack]", "[heap]", "[anon:NAME]"; absent for anon memory

    Lines that do not fit the grammar are skipped; this never raises on bad input.
    """
    out = [m for m in map(_parse_line, text.splitlines()) if m is not None]
    out.sort(key=lambda m: m.start)
    return out


def load_maps(pid: int, proc: str = "/proc") -> list[Mapping]:
    """Read and parse ``PROC/PID/maps``; raises OSError when the process is gone or not readable."""
    with open(os.path.join(proc, str(pid), "maps"), encoding="utf-8", errors="surrogateescape") as f:
        return parse_maps(f.read())


def find_mapping(mappings: Sequence[Mapping], abs_addr: int) -> Mapping | None:
    """The mapping holding ``abs_addr`` (absolute address), by bisection; ``mappings`` sorted by start."""
    i = bisect.bisect_right(mappings, abs_addr, key=lambda m: m.start) - 1
    if i >= 0 and abs_addr < mappings[i].end:
        return mappings[i]
    return None


@dataclass(eq=False, slots=True)
class EarlyCapture:
    """A process's maps with the files of its executable mappings held open (and its vDSO's bytes),
    read at exec while the symbolizer is still being made: a short process is gone by the time it is
    (``Symbolizer.capture(..., early=)`` takes it over). Needs no ELF code and no numpy."""

    maps: list[Mapping]
    fds: dict[int, int]  # mapping start -> fd of its file, opened through /proc/PID/map_files
    vdso: bytes | None
    captured: float  # time.monotonic()

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def map_files_path(pid: int, m: Mapping, proc: str = "/proc") -> str:
    """``PROC/PID/map_files/START-END``: the file mapped at ``m`` itself, even if deleted or replaced."""
    return os.path.join(proc, str(pid), "map_files", f"{m.start:x}-{m.end:x}")


def read_vdso(pid: int, m: Mapping, proc: str = "/proc") -> bytes:
    """The bytes of the vDSO mapping ``m`` of ``pid``, from ``PROC/PID/mem``; raises OSError."""
    fd = os.open(os.path.join(proc, str(pid), "mem"), READ_FLAGS)
    try:
        return os.pread(fd, m.end - m.start, m.start)
    finally:
        os.close(fd)


def capture_early(pid: int, proc: str = "/proc") -> EarlyCapture | None:
    """An EarlyCapture of ``pid``, or None when the process is gone or unreadable."""
    now = time.monotonic()
    try:
        maps = load_maps(pid, proc)
    except OSError:
        return None
    fds: dict[int, int] = {}
    vdso = None
    for m in maps:
        try:
            if m.path == VDSO:
                vdso = read_vdso(pid, m, proc)
            elif m.is_exec and m.is_file:
                fds[m.start] = os.open(map_files_path(pid, m, proc), READ_FLAGS)
        except OSError:
            continue  # gone meanwhile, or not ours to read: the symbolizer tries the paths later
    return EarlyCapture(maps, fds, vdso, now)
