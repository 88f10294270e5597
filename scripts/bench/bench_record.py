#!/usr/bin/env python3
"""bpfprof record side by side with perf and bpftrace, in one run, as ratios (median of N, alternating).

Measures: exec-to-sampling latency of `-- CMD`; a 1 s system-wide profile to a written output (wall,
peak RSS); the slowdown of a CPU-bound workload while profiling system-wide at 999 Hz.
Run as root: `.venv/bin/python scripts/bench/bench_record.py [--runs 3] [--out BENCH.md]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
from tests.workloads.build import build  # noqa: E402

BPFPROF = [str(ROOT / ".venv/bin/bpfprof")]
PERF = shutil.which("perf")
BPFTRACE = shutil.which("bpftrace")
TMP = Path(tempfile.mkdtemp(prefix="bpfprof-bench-"))


def peak_rss_tool() -> str:
    """scripts/bench/peak_rss.c, built once: it runs a command and reports that command's own peak RSS."""
    tool = TMP / "peak_rss"
    if not tool.exists():
        subprocess.run(["gcc", "-O2", "-o", str(tool), str(HERE / "peak_rss.c")], check=True)
    return str(tool)


def peak_rss_run(
    cmd: list[str], env: dict[str, str] | None = None, with_stderr: bool = False
) -> tuple[float, int, str]:
    """Wall, peak RSS (KiB) and stdout (``with_stderr``: and stderr) of one command (through a file: a
    pipe could fill).

    The command runs under peak_rss (scripts/bench/peak_rss.c): ``wait4`` on a child of this Python
    would report at least this Python's own RSS. Until 2026-12-07 it did; that floor (17 MB here) was
    below every figure this script reported, and above some of a benchmark that imports numpy."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        t = time.monotonic()
        err = subprocess.STDOUT if with_stderr else subprocess.DEVNULL
        status = subprocess.run([peak_rss_tool(), rss.name, *cmd], stdout=out, stderr=err, env=env).returncode
        wall = time.monotonic() - t
        out.seek(0)
        text = out.read().decode(errors="replace")
        peak = int(rss.read().strip() or 0)
    if status != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {status}): {text[-2000:]}")
    return wall, peak, text


def attach_latency(stamp: Path) -> dict[str, float]:
    cmds = {
        "bpfprof": [*BPFPROF, "record", "-q", "-F", "99", "-o", str(TMP / "a.folded"), "--", str(stamp)],
    }
    if PERF:
        cmds["perf record -g"] = [
            PERF,
            "record",
            "-q",
            "-F",
            "99",
            "-g",
            "-o",
            str(TMP / "a.data"),
            "--",
            str(stamp),
        ]
    if BPFTRACE:
        cmds["bpftrace"] = [BPFTRACE, "-e", "profile:hz:99 { @[ustack] = count(); }", "-c", str(stamp)]
    out = {}
    for name, cmd in cmds.items():
        t0 = time.monotonic_ns()
        _, _, text = peak_rss_run(cmd)
        stamp_ns = int(text.split("STAMP ", 1)[1].split()[0])
        out[name] = (stamp_ns - t0) / 1e6
    return out


def system_profile() -> dict[str, tuple[float, int]]:
    out = {}
    wall, rss, _ = peak_rss_run(
        [*BPFPROF, "record", "-q", "-a", "-F", "99", "-d", "1", "-o", str(TMP / "s.svg")]
    )
    out["bpfprof (-> svg)"] = (wall, rss)
    if PERF:
        w1, r1, _ = peak_rss_run(
            [PERF, "record", "-q", "-a", "-g", "-F", "99", "-o", str(TMP / "s.data"), "--", "sleep", "1"]
        )
        w2, r2, _ = peak_rss_run([PERF, "script", "-i", str(TMP / "s.data")])
        out["perf record -a -g + perf script"] = (w1 + w2, max(r1, r2))
    if BPFTRACE:
        prog = "profile:hz:99 { @[kstack, ustack, comm] = count(); } interval:s:1 { exit(); }"
        out["bpftrace"] = peak_rss_run([BPFTRACE, "-e", prog])[:2]
    return out


def workload_time(work: Path, rounds: int) -> float:
    t = time.monotonic()
    procs = [subprocess.Popen([str(work), "rounds", str(rounds)]) for _ in range(os.cpu_count() or 1)]
    for p in procs:
        p.wait()
    return time.monotonic() - t


def under(cmd: list[str] | None, work: Path, rounds: int) -> float:
    if cmd is None:
        return workload_time(work, rounds)
    prof = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached well before the workload starts
    try:
        return workload_time(work, rounds)
    finally:
        prof.send_signal(signal.SIGINT)
        prof.wait()


def slowdown(work: Path, rounds: int, hz: int) -> dict[str, float]:
    record = [*BPFPROF, "record", "-q", "-a", "-F", str(hz), "-o", str(TMP / "w.folded")]
    cmds: dict[str, list[str] | None] = {
        "baseline": None,
        f"bpfprof -a -F {hz}": record,
        f"bpfprof -a -F {hz} --call-graph dwarf": [*record, "--call-graph", "dwarf"],
    }
    if PERF:
        perf = [PERF, "record", "-q", "-a", "-F", str(hz), "-o", str(TMP / "w.data")]
        cmds[f"perf record -a -g -F {hz}"] = [*perf, "-g"]
        cmds[f"perf record -a --call-graph dwarf -F {hz}"] = [*perf, "--call-graph", "dwarf"]
    return {name: under(cmd, work, rounds) for name, cmd in cmds.items()}


def prog_stats(name: str, pid: int) -> tuple[int, int]:
    """run_time_ns and run_cnt of program ``name`` held by process ``pid`` (others may run bpfprof too):
    its program ids from /proc/PID/fdinfo (``prog_id:``), their stats from ``bpftool -j prog show``."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("prog_id:"):
                ids.add(int(line.split()[1]))
    show = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    for prog in json.loads(show):
        if prog.get("name") == name and prog.get("id") in ids:
            return prog.get("run_time_ns", 0), prog.get("run_cnt", 0)
    raise RuntimeError(f"no BPF program {name} held by pid {pid}")


def bpf_cost(work: Path) -> dict[str, float]:
    """Mean ns per run of each sampler program (kernel.bpf_stats_enabled), under a busy workload."""
    out = {}
    for mode, prog in (("fp", "do_sample"), ("dwarf", "do_sample_dwarf")):
        Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
        prof = subprocess.Popen(
            [*BPFPROF, "record", "-q", "-a", "-F", "999", "--call-graph", mode, "-o", str(TMP / "c.folded")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            workload_time(work, 1500)
            ns, runs = prog_stats(prog, prof.pid)
            out[f"{mode} ({prog})"] = ns / max(runs, 1)
        finally:
            prof.send_signal(signal.SIGINT)
            prof.wait()
            Path("/proc/sys/kernel/bpf_stats_enabled").write_text("0")
    return out


def median_of(n: int, fn, *args):
    runs = [fn(*args) for _ in range(n)]
    keys = runs[0].keys()
    if isinstance(next(iter(runs[0].values())), tuple):
        return {k: tuple(statistics.median(r[k][i] for r in runs) for i in range(2)) for k in keys}
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2500, help="workload rounds per CPU (~2.5 ms each)")
    ap.add_argument("--out", help="also write the tables to this Markdown file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    stamp = TMP / "stamp"
    subprocess.run(["gcc", "-O2", "-o", str(stamp), str(ROOT / "scripts/bench/stamp.c")], check=True)
    work = build("cpu_split")
    lines = [
        f"# bpfprof record benchmarks ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {platform.node()}, kernel {platform.release()}, {os.cpu_count()} CPUs; "
        f"perf {'yes' if PERF else 'no'}, bpftrace {'yes' if BPFTRACE else 'no'}; median of {args.runs}.",
        "",
    ]

    lat = median_of(args.runs, attach_latency, stamp)
    lines += [
        "## exec -> sampling attached (`-- CMD`)",
        "",
        "| tool | ms | ratio to bpfprof |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} | {v / lat['bpfprof']:.2f} |" for k, v in lat.items()]

    sysp = median_of(args.runs, system_profile)
    base_w, base_r = sysp["bpfprof (-> svg)"]
    lines += [
        "",
        "## 1 s system-wide profile to a written output",
        "",
        "| tool | wall s | peak RSS MB | wall ratio | RSS ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {w:.2f} | {r / 1024:.0f} | {w / base_w:.2f} | {r / base_r:.2f} |"
        for k, (w, r) in sysp.items()
    ]

    lines += [
        "",
        "## CPU-bound workload throughput while profiling system-wide",
        "",
        "| mode | workload s | throughput vs baseline |",
        "|---|---|---|",
    ]
    for hz in (99, 999):
        slow = median_of(args.runs, slowdown, work, args.rounds, hz)
        lines += [f"| {k} | {v:.3f} | {slow['baseline'] / v:.3f} |" for k, v in slow.items()]
    cost = bpf_cost(work)
    lines += ["", "## BPF cost per sample (kernel.bpf_stats_enabled, 999 Hz, busy workload)", ""]
    lines += ["| program | ns per sample |", "|---|---|", *(f"| {k} | {v:.0f} |" for k, v in cost.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
