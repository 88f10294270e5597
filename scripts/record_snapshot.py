#!/usr/bin/env python3
"""Record user-stack snapshots without BPF: what the DWARF-mode BPF program sends, plus gdb's backtrace.

A program is run under gdb (as gdb's child: no root, no ptrace_scope trouble) with an empty
environment and ASLR off. At each stop (a breakpoint, or a SIGINT from outside at a random instant) the
gdb script saves what the BPF side would send (``ip``/``sp``/``bp`` and the stack bytes from ``sp`` up,
at most ``--stack-bytes``, not past the end of the mapping that holds ``sp``), the process's maps and
vDSO image, and gdb's own backtrace (``set backtrace past-main on``: down to ``_start``/``clone3``) as
the expected answer, then waits until it is released. While it waits the process is alive and stopped,
so the caller may inspect it (``/proc/PID/maps``, ``/proc/PID/mem``).

Snapshot directory layout::

    snapshot.json   {"regs": {"ip", "sp", "bp"}, "pid", "command", "maps" (text of /proc/PID/maps),
                     "frames": [{"pc", "name"}] (gdb, leaf first; caller pcs are return addresses;
                     inline frames and the tail-call frames gdb infers from DWARF call sites, which
                     are not on the stack, are left out), "stop": {...}}
    stack.bin       the stack bytes: user memory from regs.sp upwards
    vdso.bin        the vDSO image (absent if the process had none)

Usage (writes OUTDIR/0, OUTDIR/1, ...; the program's files are not copied)::

    scripts/record_snapshot.py OUTDIR --break func_b --break tick -- ./prog split 5
    scripts/record_snapshot.py OUTDIR --interrupt 0.3 --interrupt 0.2 -- python3.11 loop.py

``--break`` stops take effect in order (each breakpoint is deleted after it hits); ``--interrupt S``
sends SIGINT S seconds after the previous stop was released. gdb keeps the program's arguments as one
string: an argument may not contain a newline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STACK_BYTES = 16384

# Runs inside gdb (its own Python). CONFIG is set by a preceding `python CONFIG = ...` command.
_GDB_SCRIPT = r"""
import json, os, time
import gdb

cfg = json.loads(CONFIG)  # noqa: F821 - defined by the caller
out = cfg["out"]
for cmd in ("set pagination off", "set confirm off", "set startup-with-shell off", "set auto-load off",
            "set backtrace past-main on", "set backtrace past-entry on", "set disable-randomization on",
            "unset environment", "set environment LC_ALL=C",
            # the program's own signals reach it unseen; only our SIGINT stops it
            "handle all nostop noprint pass", "handle SIGINT stop print nopass"):
    gdb.execute(cmd)
with __import__("contextlib").suppress(gdb.error):
    gdb.execute("set debuginfod enabled off")


def wait_for(path, timeout):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise SystemExit("record_snapshot: nobody released the stop; giving up")
        time.sleep(0.01)


def dump(k, stop):
    d = os.path.join(out, str(k))
    os.makedirs(d, exist_ok=True)
    inf = gdb.selected_inferior()
    frame = gdb.newest_frame()
    regs = {r: int(frame.read_register(r)) & (2**64 - 1) for r in ("rip", "rsp", "rbp")}
    with open(f"/proc/{inf.pid}/maps") as f:
        maps = f.read()
    stack_end = vdso = None
    for line in maps.splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= regs["rsp"] < hi:
            stack_end = hi
        if line.endswith("[vdso]"):
            vdso = (lo, hi)
    n = min(cfg["stack_bytes"], (stack_end or regs["rsp"]) - regs["rsp"])
    with open(os.path.join(d, "stack.bin"), "wb") as f:
        f.write(inf.read_memory(regs["rsp"], n).tobytes() if n > 0 else b"")
    if vdso is not None:
        with open(os.path.join(d, "vdso.bin"), "wb") as f:
            f.write(inf.read_memory(vdso[0], vdso[1] - vdso[0]).tobytes())
    frames = []
    f = frame
    while f is not None:
        if f.type() not in (gdb.INLINE_FRAME, gdb.TAILCALL_FRAME):  # not on the stack: synthesized
            frames.append({"pc": int(f.pc()), "name": f.name()})
        f = f.older()
    snap = {"regs": {"ip": regs["rip"], "sp": regs["rsp"], "bp": regs["rbp"]}, "pid": inf.pid,
            "command": cfg["command"], "maps": maps, "frames": frames, "stop": stop}
    with open(os.path.join(d, "snapshot.json.tmp"), "w") as f:
        json.dump(snap, f, indent=1)
    os.rename(os.path.join(d, "snapshot.json.tmp"), os.path.join(d, "snapshot.json"))


gdb.execute("starti")
with open(os.path.join(out, "pid.tmp"), "w") as f:
    f.write(str(gdb.selected_inferior().pid))
os.rename(os.path.join(out, "pid.tmp"), os.path.join(out, "pid"))
for k, stop in enumerate(cfg["stops"]):
    if "break" in stop:
        gdb.Breakpoint(stop["break"]).ignore_count = stop.get("ignore", 0)
    gdb.execute("continue")
    gdb.execute("delete")
    if not gdb.selected_inferior().pid:
        raise SystemExit("record_snapshot: the program exited before the stop")
    dump(k, stop)
    wait_for(os.path.join(out, str(k), "release"), cfg["timeout"])
gdb.execute("kill")
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One recorded stop: registers (absolute addresses), stack bytes from ``sp``, maps, gdb's frames."""

    ip: int
    sp: int
    bp: int
    stack: bytes
    maps: str
    frames: tuple[tuple[int, str | None], ...]  # gdb's (pc, name), leaf first
    pid: int
    vdso: bytes | None = None
    command: tuple[str, ...] = ()
    stop: dict[str, Any] = field(default_factory=dict)
    build_ids: dict[str, str | None] = field(default_factory=dict)  # path -> hex (--build-ids)


def load_snapshot(directory: str | os.PathLike[str]) -> Snapshot:
    """Read a snapshot directory (see the module docstring)."""
    d = Path(directory)
    meta = json.loads((d / "snapshot.json").read_text())
    vdso = d / "vdso.bin"
    return Snapshot(
        ip=meta["regs"]["ip"],
        sp=meta["regs"]["sp"],
        bp=meta["regs"]["bp"],
        stack=(d / "stack.bin").read_bytes(),
        maps=meta["maps"],
        frames=tuple((f["pc"], f["name"]) for f in meta["frames"]),
        pid=meta["pid"],
        vdso=vdso.read_bytes() if vdso.exists() else None,
        command=tuple(meta.get("command", ())),
        stop=meta.get("stop", {}),
        build_ids=meta.get("build_ids", {}),
    )


class Recording:
    """A program running under gdb, stopped at each of ``stops`` in turn (see the module docstring).

    ``next()`` waits for the next stop and returns its snapshot (the process stays stopped until
    ``release()``); ``close()`` (or ``with``) ends gdb and the program. ``stops`` items:
    ``{"break": LOCATION}`` (optionally ``"ignore": N``: the first N hits do not stop) or
    ``{"interrupt": SECONDS}``.
    """

    def __init__(
        self,
        command: Sequence[str],
        stops: Sequence[dict[str, Any]],
        out: str | os.PathLike[str] | None = None,
        *,
        stack_bytes: int = DEFAULT_STACK_BYTES,
        timeout: float = 60.0,
        gdb: str = "gdb",
    ) -> None:
        self._own_dir = out is None
        self.out = Path(out if out is not None else tempfile.mkdtemp(prefix="bpfprof-snap-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.stops = list(stops)
        self.timeout = timeout
        self.pid: int | None = None
        self._k = 0
        self._released = True
        cfg = {
            "out": str(self.out),
            "stops": self.stops,
            "stack_bytes": stack_bytes,
            "timeout": timeout,
            "command": list(command),
        }
        script = self.out / "gdb_script.py"
        script.write_text(_GDB_SCRIPT)
        self._log = open(self.out / "gdb.log", "wb")  # noqa: SIM115 - closed in close()
        config = f"python CONFIG = {json.dumps(json.dumps(cfg))}"
        self._gdb = subprocess.Popen(
            [gdb, "-nx", "-batch", "-ex", config, "-x", str(script), "--args", *command],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, path: Path) -> None:
        end = time.monotonic() + self.timeout
        while not path.exists():
            if self._gdb.poll() is not None:
                raise RuntimeError(f"gdb exited ({self._gdb.returncode}) before {path.name}: {self.log()}")
            if time.monotonic() > end:
                raise TimeoutError(f"no {path} after {self.timeout} s: {self.log()}")
            time.sleep(0.01)

    def log(self) -> str:
        """What gdb printed so far (its last 2000 characters)."""
        self._log.flush()
        return (self.out / "gdb.log").read_text(errors="replace")[-2000:]

    def next(self) -> Snapshot:
        """Wait for the next stop; the previous one is released first."""
        self.release()
        if self._k >= len(self.stops):
            raise IndexError("no more stops")
        if self.pid is None:
            self._wait(self.out / "pid")
            self.pid = int((self.out / "pid").read_text())
        stop = self.stops[self._k]
        if "interrupt" in stop:
            time.sleep(float(stop["interrupt"]))
            os.kill(self.pid, signal.SIGINT)
        d = self.out / str(self._k)
        self._wait(d / "snapshot.json")
        self._released = False
        return load_snapshot(d)

    def release(self) -> None:
        """Let the program run on from the current stop."""
        if not self._released:
            (self.out / str(self._k) / "release").touch()
            self._k += 1
            self._released = True

    def snapshots(self) -> Iterator[Snapshot]:
        """Every stop in turn; each is released when the next is asked for."""
        while True:
            self.release()
            if self._k >= len(self.stops):
                return
            yield self.next()

    def close(self) -> None:
        """Stop gdb and the program; remove the output directory if this object made it."""
        if self._gdb.poll() is None:
            self.release()
            self._gdb.terminate()
            try:
                self._gdb.wait(5)
            except subprocess.TimeoutExpired:
                self._gdb.kill()
                self._gdb.wait()
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._log.close()
        if self._own_dir:
            shutil.rmtree(self.out, ignore_errors=True)


def add_build_ids(directory: Path, maps: str) -> None:
    """Record the GNU build-id of every file in ``maps`` in ``directory/snapshot.json``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from unwind.elf import ElfError, ElfFile  # the repository's own reader
    from unwind.maps import parse_maps

    ids: dict[str, str | None] = {}
    for m in parse_maps(maps):
        if m.is_file and m.path not in ids:
            try:
                with ElfFile.open(m.path) as elf:
                    ids[m.path] = elf.build_id.hex() if elf.build_id else None
            except (ElfError, OSError):
                ids[m.path] = None
    meta = json.loads((directory / "snapshot.json").read_text())
    meta["build_ids"] = ids
    (directory / "snapshot.json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output directory: one numbered snapshot directory per stop")
    parser.add_argument(
        "--break",
        dest="stops",
        action="append",
        type=lambda s: {"break": s},
        default=[],
        help="stop at this gdb location (in order)",
    )
    parser.add_argument(
        "--interrupt",
        dest="stops",
        action="append",
        type=lambda s: {"interrupt": float(s)},
        help="stop with SIGINT this many seconds after the previous stop",
    )
    parser.add_argument("--stack-bytes", type=int, default=DEFAULT_STACK_BYTES)
    parser.add_argument(
        "--build-ids",
        action="store_true",
        help='add {"build_ids": {path: hex}} of the mapped files to snapshot.json (to check them later)',
    )
    parser.add_argument("command", nargs="+", help="the program and its arguments (after --)")
    ns = parser.parse_args(argv)
    if not ns.stops:
        parser.error("give at least one --break or --interrupt")
    with Recording(ns.command, ns.stops, ns.out, stack_bytes=ns.stack_bytes) as rec:
        for k, snap in enumerate(rec.snapshots()):
            if ns.build_ids:
                add_build_ids(Path(ns.out) / str(k), snap.maps)
            names = " <- ".join(str(name) for _, name in snap.frames)
            print(f"{ns.out}/{k}: ip={snap.ip:#x} sp={snap.sp:#x} {len(snap.stack)} bytes; gdb: {names}")
        for name in ("pid", "gdb_script.py", "gdb.log"):
            (Path(ns.out) / name).unlink(missing_ok=True)
        for k in range(len(ns.stops)):
            (Path(ns.out) / str(k) / "release").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
