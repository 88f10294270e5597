#!/usr/bin/env python3
"""Source lines (``--lines``): DWARF lookups of libc, beside ``addr2line -f -i`` on the same addresses.

1. The first resolved frame of a binary: a new Symbolizer (symbol tables already in the disk cache)
   asked for one libc address with lines, DWARF cold (nothing kept) and with the DWARF answers of an
   earlier run in the disk cache; ``addr2line -f -i -e LIBC_DEBUG ADDR`` (a process) beside it.
2. 10k distinct random libc addresses (every one a different place: the worst case, a real profile
   repeats its hot spots), as 200 stacks of 50 through ``symbolize_profile(lines=True)`` (what
   ``record --lines`` does): cold (empty disk cache), symbol tables cached but DWARF not (the first
   ``--lines`` run after plain ones), and everything cached (a second ``--lines`` run); beside
   ``addr2line -f -i`` reading the same 10k addresses in one process.
3. As root: ``bpfprof record --lines -F 999 -d 10 -p PID`` of a libc-heavy workload
   (scripts/bench/libc_heavy.c; ~10k samples): its "symbolize+write" time and peak RSS, with an empty
   cache and again with the first run's cache. The process is alive at the stop, so all of its
   symbolizing happens after it (nothing was done while recording).

Targets from the issue: first resolved frame <= 50 ms; a 10k-sample profile of a libc-heavy workload
with ``--lines`` <= 1.5 s (<= 0.5 s with a native DWARF engine); <= 100 MB RSS. Needs libc's DWARF
(Debian: libc6-dbg, which ``scripts/setup.sh --test`` installs).

Run: `.venv/bin/python scripts/bench/bench_lines.py [--runs 5]`. Each figure is a median of --runs.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
import bench_record as br  # noqa: E402

from exporters.model import ProfileMeta  # noqa: E402
from profiler.raw import RawProfile, RawStack, StackStatus  # noqa: E402
from profiler.symbolize import symbolize_profile  # noqa: E402
from unwind.debuginfo import find_debug_file  # noqa: E402
from unwind.elf import ElfFile  # noqa: E402
from unwind.maps import Mapping, load_maps  # noqa: E402
from unwind.symbolizer import Symbolizer  # noqa: E402
from unwind.symcache import SymbolCache  # noqa: E402

N_ADDRS = 10_000
TARGETS = {"first frame": 0.050, "10k-sample profile": 1.5, "rss_mb": 100}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.1f} ms"


def libc_mapping() -> Mapping:
    ctypes.CDLL(None).getpid  # noqa: B018  # libc is mapped (it always is)
    return next(m for m in load_maps(os.getpid()) if m.is_exec and m.name.startswith("libc.so"))


def libc_dwarf_file(path: str) -> str:
    """libc's separate debug file (by build-id), or exit: without it there are no lines to time."""
    with ElfFile.open(path) as elf:
        found = find_debug_file(elf, path, [])
        if found is None:
            sys.exit("bench_lines: libc has no debug file; install libc6-dbg (scripts/setup.sh --test does)")
        debug = found.path
        found.elf.close()
    return debug


def addr2line_seconds(debug: str, vaddrs: list[int]) -> tuple[float, int]:
    """Wall time of ``addr2line -f -i -e DEBUG`` over ``vaddrs`` (on stdin), and the lines it named."""
    text = "".join(f"{v:#x}\n" for v in vaddrs)
    t = time.perf_counter()
    r = subprocess.run(["addr2line", "-f", "-i", "-e", debug], input=text, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"bench_lines: addr2line failed: {r.stderr.strip()}")
    return took, sum(1 for line in r.stdout.splitlines() if re.search(r":[1-9]\d*", line))


def random_addresses(libc: Mapping, n: int, seed: int = 1) -> list[int]:
    return random.Random(seed).sample(range(libc.start, libc.end), n)


def raw_profile(addrs: list[int]) -> RawProfile:
    """200 stacks of 50 leaf-first addresses of this process (return addresses at ip + 1: looked up at ip)."""
    raw = RawProfile()
    pid, ok, skipped = os.getpid(), StackStatus.OK, StackStatus.SKIPPED
    for i in range(0, len(addrs), 50):
        chunk = addrs[i : i + 50]
        ips = (chunk[0], *(a + 1 for a in chunk[1:]))
        raw.add(RawStack(pid, pid, "bench", ips, (), ok, skipped), 1, 1)
    return raw


def first_frame(addr: int, cache: SymbolCache) -> float:
    """Seconds from a new Symbolizer to the source frames of ``addr``."""
    t = time.perf_counter()
    with Symbolizer(lines=True, cache=cache, debuginfod=False) as sym:
        (frames,) = sym.symbolize_user_lines(os.getpid(), [addr])
        took = time.perf_counter() - t
    if frames[-1].line is None:
        sys.exit(f"bench_lines: no line for libc address {addr:#x}")
    return took


def profile_seconds(raw: RawProfile, cache: SymbolCache) -> tuple[float, int]:
    """Seconds to symbolize ``raw`` with lines (closing the Symbolizer, which writes the disk cache, is
    timed too), and how many frames have a line."""
    t = time.perf_counter()
    with Symbolizer(lines=True, cache=cache, debuginfod=False) as sym:
        profile = symbolize_profile(raw, sym, ProfileMeta(), lines=True)
    took = time.perf_counter() - t
    return took, sum(1 for s in profile.samples for f in s.frames if f.line is not None)


def in_process(runs: int) -> list[str]:
    libc = libc_mapping()
    debug = libc_dwarf_file(libc.path)
    addrs = random_addresses(libc, N_ADDRS)
    with ElfFile.open(libc.path) as elf:
        vaddrs = [elf.file_offset_to_vaddr(libc.to_file_offset(a)) or 0 for a in addrs]
    out = [f"libc: {libc.path}, DWARF from {debug}", ""]

    cold, kept, a2l = [], [], []
    with tempfile.TemporaryDirectory() as home:
        for i in range(runs):
            cache = SymbolCache(os.path.join(home, str(i)))
            with Symbolizer(cache=cache, debuginfod=False) as sym:  # the symbol tables, into the cache
                sym.symbolize_user(os.getpid(), [addrs[i]])
            cold.append(first_frame(addrs[i], cache))
            kept.append(first_frame(addrs[i], cache))
            a2l.append(addr2line_seconds(debug, [vaddrs[i]])[0])
    out += [
        "== the first resolved frame (a new Symbolizer, symbol tables in the disk cache)",
        f"{'':44} {'median':>11}   target {ms(TARGETS['first frame'])}",
        f"{'DWARF read (nothing kept)':44} {ms(statistics.median(cold))}",
        f"{'DWARF answers from the disk cache':44} {ms(statistics.median(kept))}",
        f"{'addr2line -f -i, one address (a process)':44} {ms(statistics.median(a2l))}",
        "",
    ]

    raw = raw_profile(addrs)
    rows: dict[str, list[float]] = {"cold": [], "tables cached": [], "all cached": [], "addr2line": []}
    named = 0
    with tempfile.TemporaryDirectory() as home:
        for i in range(runs):
            cache = SymbolCache(os.path.join(home, str(i)))
            rows["cold"].append(profile_seconds(raw, cache)[0])
            for entry in os.scandir(cache.dir):  # the DWARF answers go, the tables stay
                if entry.name.endswith(".lin"):
                    os.unlink(entry.path)
            rows["tables cached"].append(profile_seconds(raw, cache)[0])
            took, named = profile_seconds(raw, cache)
            rows["all cached"].append(took)
            took, a2l_named = addr2line_seconds(debug, vaddrs)
            rows["addr2line"].append(took)
    a2l_med = statistics.median(rows["addr2line"])
    out += [
        f"== {N_ADDRS} distinct random libc addresses, 200 stacks of 50, symbolize_profile(lines=True)",
        f"{'':44} {'median':>11} {'vs addr2line':>13}",
    ]
    labels = {
        "cold": "cold (empty disk cache)",
        "tables cached": "symbol tables cached, DWARF not",
        "all cached": "DWARF answers from the disk cache",
    }
    for key, label in labels.items():
        med = statistics.median(rows[key])
        out.append(f"{label:44} {ms(med)} {med / a2l_med:12.2f}x")
    out += [
        f"{'addr2line -f -i, the same addresses':44} {ms(a2l_med)} {1:12.2f}x",
        f"(frames with a line: {named}; lines addr2line printed: {a2l_named})",
        "",
    ]
    return out


def record_runs(runs: int, seconds: int) -> list[str]:
    """``bpfprof record --lines`` of libc_heavy by pid: symbolize+write and peak RSS, cold and warm."""
    tmp = Path(tempfile.mkdtemp(prefix="bpfprof-bench-lines-"))
    work = tmp / "libc_heavy"
    subprocess.run(["gcc", "-O2", "-fno-omit-frame-pointer", "-o", str(work), str(HERE / "libc_heavy.c")],
                   check=True)  # fmt: skip
    bpfprof = ROOT / ".venv" / "bin" / "bpfprof"
    results: dict[str, list[tuple[int, float, float]]] = {"cold": [], "warm": []}
    for i in range(runs):
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / f"cache{i}")}
        for kind in ("cold", "warm"):
            target = subprocess.Popen([str(work), str(seconds + 3)], stdout=subprocess.DEVNULL)
            out = tmp / f"{kind}{i}.folded"
            cmd = [str(bpfprof), "record", "--lines", "-F", "999", "-d", str(seconds), "-p", str(target.pid),
                   "-o", str(out)]  # fmt: skip
            try:
                _, peak, text = br.peak_rss_run(cmd, env=env, with_stderr=True)
            except RuntimeError as e:
                return [f"bpfprof record --lines failed: {e}"]
            finally:
                target.kill()
                target.wait()
            samples = re.search(r"(\d+) samples in", text)
            took = re.search(r"symbolize\+write (\d+) ms", text)
            if not samples or not took:
                return [f"bpfprof record --lines: no timings in its summary: {text[-2000:]}"]
            results[kind].append((int(samples.group(1)), int(took.group(1)) / 1e3, peak / 1024))
    lines = [
        f"== bpfprof record --lines -F 999 -d {seconds} -p PID (libc_heavy), by the summary's timings",
        f"{'':44} {'samples':>8} {'symbolize+write':>16} {'peak RSS':>10}",
        f"{'targets':44} {'':>8} {ms(TARGETS['10k-sample profile']):>16} {TARGETS['rss_mb']:>7} MB",
    ]
    for kind, label in (("cold", "empty disk cache"), ("warm", "the first run's disk cache")):
        rows = results[kind]
        n = statistics.median(r[0] for r in rows)
        took = statistics.median(r[1] for r in rows)
        rss = statistics.median(r[2] for r in rows)
        lines.append(f"{label:44} {n:>8.0f} {ms(took):>16} {rss:>7.0f} MB")
    shutil.rmtree(tmp, ignore_errors=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10, help="length of each recording (default 10)")
    args = parser.parse_args()
    out = in_process(args.runs)
    if os.geteuid() == 0:
        out += record_runs(max(1, args.runs // 2), args.seconds)
    else:
        out.append("(the recording runs need root: skipped)")
    print("\n".join(out))
    shutil.rmtree(br.TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
