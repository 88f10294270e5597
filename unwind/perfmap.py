"""JIT symbol maps (``/tmp/perf-PID.map``) as written by V8 (--perf-basic-prof), the JVM agents,
CPython 3.12+ (-X perf), .NET and LuaJIT, read in bulk and looked up by absolute address."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# perf's format (tools/perf/Documentation/jit-interface.txt): "START SIZE NAME", START and SIZE in
# hex with or without 0x, NAME to the end of the line (it may hold spaces).
_LINE = re.compile(
    rb"^(?:0x)?([0-9a-fA-F]{1,16})[ \t]+(?:0x)?([0-9a-fA-F]{1,16})[ \t]+(.+?)\r?$", re.MULTILINE
)
MAX_PERF_MAP_BYTES = 256 << 20  # a larger map is read up to here


@dataclass(frozen=True, slots=True, eq=False)
class PerfMap:
    """JIT code regions sorted by start (absolute addresses); the latest entry wins where they overlap."""

    starts: np.ndarray  # uint64
    ends: np.ndarray  # uint64, exclusive
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, abs_addrs: Sequence[int]) -> list[str | None]:
        """The JIT symbol covering each address, or None."""
        if not len(self.names) or not len(abs_addrs):
            return [None] * len(abs_addrs)
        q = np.asarray(abs_addrs, dtype=np.uint64)
        idx = np.searchsorted(self.starts, q, side="right").astype(np.int64) - 1
        ok = (idx >= 0) & (q < self.ends[np.maximum(idx, 0)])
        return [self.names[i] if good else None for i, good in zip(idx.tolist(), ok.tolist(), strict=True)]


def parse_perf_map(data: bytes) -> PerfMap:
    """Parse perf-map text. Grammar, one region a line: ``START SIZE NAME`` (hex, optional 0x).

    Malformed lines and zero-size regions are skipped; never raises. A region written later
    replaces an earlier one at the same start (JITs rewrite code in place).
    """
    latest: dict[int, tuple[int, str]] = {}
    for m in _LINE.finditer(data):
        start, size = int(m.group(1), 16), int(m.group(2), 16)
        if size == 0 or start + size > 2**64 - 1:
            continue
        latest[start] = (start + size, m.group(3).decode(errors="replace").strip())
    if not latest:
        return PerfMap(np.zeros(0, np.uint64), np.zeros(0, np.uint64), ())
    starts = sorted(latest)
    return PerfMap(
        np.array(starts, dtype=np.uint64),
        np.array([latest[s][0] for s in starts], dtype=np.uint64),
        tuple(latest[s][1] for s in starts),
    )


def namespace_pid(pid: int, proc: str = "/proc") -> int:
    """The pid of ``pid`` inside its own (innermost) PID namespace, from NSpid in /proc/PID/status."""
    try:
        with open(f"{proc}/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return pid


def open_perf_map(pid: int, proc: str = "/proc") -> int | None:
    """An fd on the process's perf map, found through its root (containers) and namespace pid."""
    nspid = namespace_pid(pid, proc)
    candidates = [f"{proc}/{pid}/root/tmp/perf-{nspid}.map"]
    if nspid != pid:
        candidates.append(f"{proc}/{pid}/root/tmp/perf-{pid}.map")
    for path in candidates:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
    return None


def read_perf_map(fd: int) -> PerfMap:
    """Read a perf map from the start through an fd kept open (it may have grown since)."""
    chunks, offset = [], 0
    while offset < MAX_PERF_MAP_BYTES:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return parse_perf_map(b"".join(chunks))
