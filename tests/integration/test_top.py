"""`bpfprof top` in a real terminal (tmux: send-keys, capture-pane) and on pipes, and `record`'s progress
line on a real pty, all with real BPF programs on real perf events profiling cpu_split."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from profiler.progress import CLEAR_LINE
from tests.integration.conftest import ROOT, TRUE_SPLIT, bpfprof

pytestmark = pytest.mark.bpf

BPFPROF = f"{shlex.quote(sys.executable)} -m profiler"
ROW = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)")


class Tmux:
    """A private tmux server with one window running a plain bash, as a user's terminal."""

    def __init__(self, width: int = 150, height: int = 40) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed (scripts/setup.sh --test installs it)")
        self.socket = f"bpfprof-test-{uuid.uuid4().hex[:8]}"
        self.env = {**os.environ, "TERM": "xterm-256color"}
        self.tmux(
            "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "bash --norc --noprofile"
        )
        self.type(f"PS1='READY$ '; cd {shlex.quote(str(ROOT))}; clear")
        self.wait_for(lambda s: s.strip() == "READY$", "the shell prompt")

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        ).stdout

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        self.tmux("send-keys", "-t", "t", "-l", line)
        self.tmux("send-keys", "-t", "t", "Enter")

    def key(self, key: str) -> None:
        self.tmux("send-keys", "-t", "t", key)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, ok: Callable[[str], object], what: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if ok(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    yield t
    t.close()


@pytest.fixture
def workload(cpu_split: Path) -> Iterator[subprocess.Popen]:
    """cpu_split burning its 50/30/20 split for up to 60 s."""
    p = subprocess.Popen([str(cpu_split), "split", "60"])
    yield p
    p.kill()
    p.wait()


def rows(screen: str) -> dict[str, tuple[float, float, int, int, str, str]]:
    """Table rows by function: (self %, total %, self, total, module, process)."""
    out = {}
    for line in screen.splitlines():
        m = ROW.match(line)
        if m:
            out[m[5]] = (float(m[1]), float(m[2]), int(m[3]), int(m[4]), m[6], m[7])
    return out


def header_samples(screen: str) -> int:
    m = re.search(r"bpfprof top: [\d.]+ s, \d+ samples/s, (\d+) samples", screen)
    return int(m[1]) if m else 0


def terminal_is_sane(screen: str) -> None:
    """`stty -a` ran after bpfprof: line editing and echo are back."""
    assert re.search(r"(?<![-\w])icanon\b", screen), screen
    assert re.search(r"(?<![-\w])echo\b", screen), screen
    assert "-icanon" not in screen
    assert not re.search(r"-echo\b", screen)


def exit_status(tmux: Tmux) -> int:
    screen = tmux.wait_for(lambda s: re.search(r"^rc=\d+", s, re.M), "bpfprof to exit")
    return int(re.search(r"^rc=(\d+)", screen, re.M)[1])  # type: ignore[index]


def test_top_live_view_keys_and_quit(tmux: Tmux, workload: subprocess.Popen, cpu_split: Path) -> None:
    pid = workload.pid
    tmux.type(f"{BPFPROF} top -p {pid} -F 499 -n 0.5; echo rc=$?; stty -a")
    screen = tmux.wait_for(  # enough samples that a share is within 0.08 by more than 3 sigma
        lambda s: header_samples(s) >= 600 and {"func_a", "func_b", "func_c"} <= rows(s).keys(),
        "600 samples of cpu_split's functions",
    )
    assert f"pid {pid}, {os.cpu_count()} CPUs at 499 Hz" in screen
    table = rows(screen)
    hot = {name: table[name][2] for name in TRUE_SPLIT}
    for name, share in TRUE_SPLIT.items():
        got = hot[name] / sum(hot.values())
        assert abs(got - share) < 0.08, (name, got, screen)
    comm = f"{cpu_split.name[:15]}[{pid}]"
    assert table["func_a"][4].startswith("cpu_split-")  # the module: the binary's name, cut to fit
    assert table["__libc_start_call_main"][4].startswith("libc.so")
    assert table["func_a"][5] == comm
    assert table["main"][1] > 95.0  # every sample runs under main
    assert screen.splitlines()[1].endswith("s self, t total, d delta, q quit")

    tmux.key("t")  # by total: the callers come first
    screen = tmux.wait_for(lambda s: "by total" in s, "the total view")
    first = next(iter(rows(screen).values()))
    assert first[1] > 95.0, screen
    tmux.key("d")
    tmux.wait_for(lambda s: "last interval" in s, "the delta view")

    t0 = time.monotonic()
    tmux.key("q")
    assert exit_status(tmux) == 0
    assert time.monotonic() - t0 < 10
    screen = tmux.screen()
    terminal_is_sane(screen)
    assert "SELF%" not in screen  # the alternate screen is gone, the shell's screen is back
    assert workload.poll() is None  # the target is left running


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_top_signals_restore_the_terminal(tmux: Tmux, tmp_path: Path, how: str) -> None:
    pidfile = tmp_path / "pid"
    tmux.type(f"sh -c 'echo $$ > {pidfile}; exec {BPFPROF} top -n 0.5'; echo rc=$?; stty -a")
    tmux.wait_for(lambda s: header_samples(s) > 0, "a first refresh")
    if how == "SIGTERM":
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    else:
        tmux.key("C-c")
    assert exit_status(tmux) == 0
    screen = tmux.screen()
    terminal_is_sane(screen)
    assert "SELF%" not in screen


def test_top_of_a_command_ends_with_it_and_leaves_the_last_table(tmux: Tmux, cpu_split: Path) -> None:
    tmux.type(f"{BPFPROF} top -n 0.5 -- {cpu_split} split 2 3; echo rc=$?; stty -a")
    assert exit_status(tmux) == 3  # the command's status
    screen = tmux.screen()
    terminal_is_sane(screen)
    assert "targets exited" in screen
    table = rows(screen)
    assert {"func_a", "func_b", "func_c", "main"} <= table.keys(), screen
    assert table["func_a"][2] > table["func_c"][2]
    assert "q quit" not in screen  # no keys any more


def test_top_error_is_one_line_on_the_shell_screen(tmux: Tmux) -> None:
    tmux.type(f"{BPFPROF} top -p {2**22 + 5}; echo rc=$?; stty -a")  # above pid_max: no such process
    assert exit_status(tmux) == 2  # as record -p
    screen = tmux.screen()
    assert f"bpfprof: no process with PID {2**22 + 5}: check the id with ps or pgrep" in screen
    assert "Traceback" not in screen
    terminal_is_sane(screen)


def test_top_prints_snapshots_to_a_pipe(workload: subprocess.Popen) -> None:
    r = bpfprof("top", "-p", str(workload.pid), "-F", "499", "-n", "0.5", "-d", "2.2", "--rows", "6")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "\x1b" not in r.stdout
    assert "\r" not in r.stdout
    tables = [t for t in re.split(r"(?m)^(?=bpfprof top: )", r.stdout) if t]
    assert 4 <= len(tables) <= 6, r.stdout  # every 0.5 s, and the last counts at the end
    for t in tables:
        lines = t.rstrip("\n").splitlines()
        assert lines[0].startswith("bpfprof top: ")
        assert len(lines) <= 4 + 6
    last = tables[-1]
    assert header_samples(last) > 200  # 499 Hz for 2.2 s, on a busy machine
    assert next(iter(rows(last))) == "func_a", last  # the hottest by self


def test_top_stops_quietly_when_the_pipe_closes(workload: subprocess.Popen) -> None:
    cmd = f"{BPFPROF} top -p {workload.pid} -n 0.3 | head -n 2; echo status=${{PIPESTATUS[0]}}"
    t0 = time.monotonic()
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert time.monotonic() - t0 < 15
    assert r.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    lines = r.stdout.splitlines()
    assert lines[0].startswith("bpfprof top: ")
    assert lines[-1] == "status=0"


def read_pty(master: int, proc: subprocess.Popen, timeout: float = 60) -> str:
    """Everything the process wrote to the terminal, until it exits and the terminal is closed."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no process holds the terminal side any more
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=5)
    return out.decode()


def record_on_pty(args: list[str]) -> tuple[subprocess.Popen, str]:
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "profiler", "record", *args],
            stdout=subprocess.DEVNULL,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
        os.close(slave)
        return proc, read_pty(master, proc)
    finally:
        os.close(master)


def test_record_progress_line_on_a_terminal(workload: subprocess.Popen, tmp_path: Path) -> None:
    out = tmp_path / "p.folded"
    proc, text = record_on_pty(["-p", str(workload.pid), "-F", "499", "-d", "2.5", "-o", str(out)])
    assert proc.returncode == 0, text
    updates = [u for u in text.split(CLEAR_LINE)[1:-1] if u]
    assert len(updates) >= 3, repr(text)  # about every 0.5 s for 2.5 s
    for u in updates:
        assert re.fullmatch(r"bpfprof: [\d.]+ s, \d+ samples, \d+/s, lost \d+.*", u), repr(u)
    kept = [int(re.search(r"(\d+) samples", u)[1]) for u in updates]  # type: ignore[index]
    assert kept == sorted(kept)
    assert kept[-1] > 100  # ~1000 at 499 Hz, far fewer on a busy machine
    # cleared before the summary: the summary starts a clean line right after the last clear
    summary = text.rsplit(CLEAR_LINE, 1)[1]
    assert re.match(r"bpfprof: \d+ samples in [\d.]+ s", summary), repr(text[-300:])
    assert out.exists()


def test_record_progress_line_absent_with_q_and_on_a_pipe(workload: subprocess.Popen, tmp_path: Path) -> None:
    proc, text = record_on_pty(["-q", "-p", str(workload.pid), "-d", "1.2", "-o", str(tmp_path / "q.folded")])
    assert proc.returncode == 0
    assert text == ""
    r = bpfprof("record", "-p", str(workload.pid), "-d", "1.2", "-o", str(tmp_path / "p.folded"))
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    assert "\x1b" not in r.stderr
    assert r.stderr.startswith("bpfprof: ")  # the summary, and nothing before it
