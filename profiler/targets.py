"""Who is profiled: running PIDs, a launched command held until sampling is attached, or everything."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

from profiler.errors import UserError


def parse_pid_list(text: str) -> list[int]:
    """``1234,5678`` -> [1234, 5678]; raises UserError for anything that is not a positive number."""
    pids = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) <= 0:
            raise UserError(f"bad PID {part!r} in -p {text!r}: give process ids like -p 1234,5678")
        pids.append(int(part))
    return pids


def process_alive(pid: int, proc: str = "/proc") -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # the state follows the last ')' of the comm field (proc(5))
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def check_pids(pids: list[int]) -> None:
    for pid in pids:
        if not process_alive(pid):
            raise UserError(f"no process with PID {pid}: check the id with ps or pgrep")


@dataclass
class LaunchedCommand:
    """A child forked and held on a pipe before exec, so sampling is attached before its first instruction."""

    argv: list[str]
    pid: int = 0
    _go_w: int = -1
    _err_r: int = -1
    status: int | None = None

    def start_held(self) -> int:
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(go_w)
                os.close(err_r)
                go = os.read(go_r, 1)  # wait for the profiler to attach
                os.close(go_r)
                if go == b"g":  # EOF instead: the profiler gave up, so do not run the command
                    os.execvp(self.argv[0], self.argv)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.write(err_w, f"{exc.errno}".encode())
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(err_w)
        self.pid, self._go_w, self._err_r = pid, go_w, err_r
        return pid

    def release(self) -> None:
        """Let the child exec; raises UserError if the exec fails (no such command, not executable)."""
        os.write(self._go_w, b"g")
        os.close(self._go_w)
        self._go_w = -1
        data = os.read(self._err_r, 32)  # EOF on successful exec (the fd is close-on-exec)
        os.close(self._err_r)
        self._err_r = -1
        if data:
            err = int(data)
            self.wait(block=True)
            raise UserError(f"cannot run {self.argv[0]!r}: {os.strerror(err)}", exit_code=127)

    def abandon(self) -> None:
        """The profiler could not start: the held child exits without running the command."""
        for fd in (self._go_w, self._err_r):
            if fd >= 0:
                os.close(fd)
        self._go_w = self._err_r = -1
        if self.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)

    def terminate(self, grace_s: float = 2.0) -> bool:
        """End a command still running when the recording stops (as perf record does): SIGTERM, and
        SIGKILL after ``grace_s``. True if it was still running."""
        if self.wait():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while not self.wait() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.wait():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait(block=True)
        return True

    def wait(self, block: bool = False) -> bool:
        """Reap the child if it has exited; True once it has."""
        if self.status is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.status = 0
            return True
        if pid == 0:
            return False
        self.status = os.waitstatus_to_exitcode(status)
        return True

    @property
    def exit_code(self) -> int:
        """The command's exit status, shell style (128+N for a signal)."""
        if self.status is None:
            return 0
        return 128 - self.status if self.status < 0 else self.status
