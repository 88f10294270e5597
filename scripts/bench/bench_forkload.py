#!/usr/bin/env python3
"""bpfprof's RSS and lost user stacks over a system-wide run under a fork-heavy load (issue #7).

The load: a shell loop starting short CPU-bound processes (tests/workloads cpu_split, ~20 ms each) and
another running /bin/true back to back. bpfprof records the whole machine at 99 Hz; its RSS is read
every ``--every`` seconds. Prints the RSS growth per 1000 short processes and the share of user stacks
lost to stack-map collisions (from bpfprof's summary). A figure of one run on a shared machine: rough.

  sudo .venv/bin/python scripts/bench/bench_forkload.py [--seconds 60] [--root CHECKOUT]

``--root`` runs the bpfprof of another checkout (a before/after comparison in one session).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.workloads.build import build  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import rss_kib  # noqa: E402


def run(root: Path, seconds: int, every: float, tmp: Path) -> dict[str, object]:
    work = build("cpu_split")
    counter = tmp / "spawned"
    loops = [
        f'while :; do "{work}" split 0.02; printf . >> "{counter}"; done',
        "while :; do /bin/true; done",
    ]
    load = [subprocess.Popen(["sh", "-c", loop], start_new_session=True) for loop in loops]
    err_path = tmp / "bpfprof.err"
    try:
        with err_path.open("w") as err:
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "profiler",
                    "record",
                    "-a",
                    "-F",
                    "99",
                    "-d",
                    str(seconds),
                    "-o",
                    str(tmp / "out.folded"),
                ],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            samples: list[tuple[float, int, int]] = []  # (s, short processes spawned, RSS KiB)
            t0 = time.monotonic()
            while p.poll() is None:
                time.sleep(every)
                rss = rss_kib(p.pid)
                if rss is not None and p.poll() is None:
                    spawned = counter.stat().st_size if counter.exists() else 0
                    samples.append((time.monotonic() - t0, spawned, rss))
            p.wait()
    finally:
        for proc in load:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = err_path.read_text()
    stat = {
        k: int(v) for v, k in re.findall(r"^\s+(\d+) (user stacks lost to stack-map collisions)", text, re.M)
    }
    kept = re.search(r"^bpfprof: (\d+) samples", text, re.M)
    procs = re.search(r"(\d+) processes;", text)
    warm = [s for s in samples if s[0] >= 10] or samples
    (_, n0, r0), (_, n1, r1) = warm[0], warm[-1]
    return {
        "samples": samples,
        "kept": int(kept.group(1)) if kept else 0,
        "processes": int(procs.group(1)) if procs else 0,
        "collisions": next(iter(stat.values()), 0),
        "per_1000_kib": (r1 - r0) * 1000 / max(1, n1 - n0),
        "rss_first_mib": r0 / 1024,
        "rss_last_mib": r1 / 1024,
        "rss_max_mib": max(s[2] for s in samples) / 1024,
        "summary": text,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose bpfprof to run")
    ap.add_argument("--show-summary", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_forkload: run as root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bpfprof-forkload-") as tmp:
        r = run(args.root.resolve(), args.seconds, args.every, Path(tmp))
    kept = r["kept"] or 1
    print(
        f"{args.seconds} s -a -F 99 under a fork loop ({args.root}): "
        f"RSS {r['rss_first_mib']:.1f} MiB at 10 s -> "
        f"{r['rss_last_mib']:.1f} MiB at end (max {r['rss_max_mib']:.1f}); "
        f"{r['per_1000_kib']:+.0f} KiB per 1000 short processes; {r['processes']} processes in the profile; "
        f"user stacks lost to collisions: {r['collisions']} of {r['kept']} samples "
        f"({100 * r['collisions'] / kept:.1f}%)"
    )
    print("(s, short processes, RSS KiB):", [(round(t), n, k) for t, n, k in r["samples"]])
    if args.show_summary:
        print(r["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
