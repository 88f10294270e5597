#!/usr/bin/env python3
"""DWARF unwinding in user space: unwind-table build time per binary, and unwinding throughput.

Build: ``build_unwind_table`` of libc, the Python interpreter and (if installed) libLLVM-15, parsed
(no cache) and loaded from the disk cache, best of ``--runs``. Throughput: snapshots recorded under gdb
(scripts/record_snapshot.py; what the BPF program sends) from python3.11 in a pure-Python loop (12-13
frames) and cpu_split (6-9 frames; and 49 in ``deep`` mode), unwound through
``Symbolizer.unwind_resolver`` on one core: samples/s once the tables are built and their row caches
warm, and on the first pass (row caches empty). Not a test: numbers, no thresholds.

Run: ``.venv/bin/python scripts/bench/bench_unwind.py [--runs 3] [--samples 20000]`` (needs gdb, gcc).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.workloads.build import build  # noqa: E402
from unwind.cfi import build_unwind_table  # noqa: E402
from unwind.elf import ElfFile  # noqa: E402
from unwind.symbolizer import Symbolizer  # noqa: E402
from unwind.unwinder import Regs, unwind  # noqa: E402

LOOP = (
    "def f(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n\nwhile True:\n    f(1000)\n"
)


def _record_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("record_snapshot", ROOT / "scripts" / "record_snapshot.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["record_snapshot"] = module
    spec.loader.exec_module(module)
    return module


def bench_build(runs: int) -> None:
    paths = [
        Path("/usr/lib/x86_64-linux-gnu/libc.so.6"),
        Path(os.path.realpath(sys.executable)),
        Path("/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1"),
    ]
    print(f"unwind table build (best of {runs})")
    print(f"  {'binary':<28} {'FDEs':>7} {'rows':>8} {'MiB':>6} {'parse ms':>9} {'cached ms':>10}")
    with tempfile.TemporaryDirectory() as cache:
        for path in paths:
            if not path.exists():
                continue
            with ElfFile.open(path) as elf:
                parse = []
                for _ in range(runs):
                    t = time.perf_counter()
                    table = build_unwind_table(elf, use_cache=False)
                    parse.append(time.perf_counter() - t)
                build_unwind_table(elf, cache_dir=cache)  # store
                load = []
                for _ in range(runs):
                    t = time.perf_counter()
                    build_unwind_table(elf, cache_dir=cache)
                    load.append(time.perf_counter() - t)
            print(
                f"  {path.name:<28} {table.fde_count:>7} {len(table):>8} {table.nbytes / 2**20:>6.1f} "
                f"{min(parse) * 1e3:>9.1f} {min(load) * 1e3:>10.1f}"
            )


def record(command: list[str], stops: list[dict], sym: Symbolizer) -> list:
    """Snapshots of ``command`` at ``stops``; the symbolizer captures the process while it is stopped."""
    rec_mod = _record_module()
    out = []
    with rec_mod.Recording(command, stops, timeout=120) as rec:
        for snap in rec.snapshots():
            resolve = sym.unwind_resolver(snap.pid)  # capture + tables, while the process lives
            unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack, resolve)
            out.append((snap, resolve))
    return out


def bench_unwind(samples: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bpfprof-bench-unwind-") as tmp:
        (Path(tmp) / "loop.py").write_text(LOOP)
        _bench_unwind(Path(tmp), samples, runs)


def _bench_unwind(tmp: Path, samples: int, runs: int) -> None:
    exe = build("cpu_split", ["-O2", "-g", "-fomit-frame-pointer"], suffix="-nofp")
    sets: dict[str, list] = {}
    with Symbolizer(cache=False, debuginfod=False) as sym:
        rand = [{"interrupt": random.uniform(0.005, 0.05)} for _ in range(60)]
        sets["python3.11 loop"] = record(["/usr/bin/python3.11", str(tmp / "loop.py")], rand, sym)
        sets["cpu_split split"] = record([str(exe), "split", "60"], rand[:30], sym)
        sets["cpu_split deep"] = record([str(exe), "deep", "60"], rand[:20], sym)
        print(f"\nunwinding on one core ({samples} samples per set, best of {runs})")
        print(
            f"  {'snapshots':<18} {'frames':>7} {'complete':>9} {'first pass/s':>13} {'samples/s':>10} "
            f"{'frames/s':>10}"
        )
        for name, snaps in sets.items():
            # the first pass: tables built, row caches empty
            for snap, resolve in snaps:
                for ip in unwind(Regs(snap.ip, snap.sp, snap.bp), snap.stack, resolve).ips:
                    found = resolve(ip)
                    if found is not None and found[0] is not None:
                        found[0].row_cache.clear()
            t = time.perf_counter()
            results = [unwind(Regs(s.ip, s.sp, s.bp), s.stack, r) for s, r in snaps]
            first = len(snaps) / (time.perf_counter() - t)
            frames = statistics.mean(len(r.ips) for r in results)
            complete = sum(r.status.complete for r in results) / len(results)
            work = [(Regs(s.ip, s.sp, s.bp), s.stack, r) for s, r in snaps]
            work = (work * (samples // len(work) + 1))[:samples]
            best = 0.0
            for _ in range(runs):
                t = time.perf_counter()
                for regs, stack, resolve in work:
                    unwind(regs, stack, resolve)
                best = max(best, samples / (time.perf_counter() - t))
            print(
                f"  {name:<18} {frames:>7.1f} {complete:>9.0%} {first:>13,.0f} {best:>10,.0f} "
                f"{best * frames:>10,.0f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20000)
    ns = parser.parse_args()
    bench_build(ns.runs)
    bench_unwind(ns.samples, ns.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
