#!/usr/bin/env python3
"""Every benchmark of bpfprof, side by side with perf, bpftrace and bcc in one run, into BENCHMARKS.md.

Runs, as root, on an otherwise idle machine (it takes ~25 min; --quick ~3 min, a smoke run whose figures
mean little):

  sudo .venv/bin/python scripts/bench/run_all.py [--runs 3] [--out BENCHMARKS.md] [--quick]

Each figure is a median of --runs (>= 3) runs; within a run the tools take turns (bpfprof, then each
anchor), so a slow minute of the machine hits them alike; each figure is also given as a ratio against
its anchor (perf, the tool users compare with) measured in the same run. Sections: exec -> sampling
latency; a 1 s system-wide profile to a written output (wall, peak RSS); CPU-bound throughput while
sampling system-wide at 99 / 999 / 4999 Hz, frame pointers and DWARF; BPF cost per sample
(kernel.bpf_stats_enabled); symbolization (scripts/bench/bench_symbolize.py), source lines beside
addr2line (scripts/bench/bench_lines.py) and DWARF unwinding (scripts/bench/bench_unwind.py)
throughput; `bpfprof stat --by pid -a` against `perf stat -a`
(scripts/bench/bench_stat.py); RSS over a 10-minute system-wide run under a fork-heavy load
(sampled every 10 s), bpfprof next to perf record and bpftrace running alongside. bcc's `profile` runs
where it can; where it cannot (it compiles at start and needs the kernel's headers) it is listed as
skipped, with the reason it gave.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
import bench_record as br  # noqa: E402

from profiler.perf_event import max_sample_rate  # noqa: E402
from tests.workloads.build import build  # noqa: E402

BCC_PROFILE = shutil.which("profile-bpfcc") or (
    "/usr/share/bcc/tools/profile" if os.path.exists("/usr/share/bcc/tools/profile") else None
)


# -- the machine -------------------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0] if text else f"unavailable (exit {r.returncode})"


def _deb_version(package: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "not installed"


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    distro = re.search(r'^PRETTY_NAME="?([^"\n]+)', os_release, re.M)
    from profiler import __version__
    from profiler.perf_event import has_core_pmu

    rows = [
        ("CPU", model.group(1) if model else platform.processor() or "unknown"),
        ("CPUs online", str(os.cpu_count())),
        ("memory", f"{int(mem.group(1)) / 2**20:.1f} GiB" if mem else "unknown"),
        ("hardware PMU", "yes" if has_core_pmu() else "no (software events only)"),
        ("kernel", platform.release()),
        ("distribution", distro.group(1) if distro else "unknown"),
        (
            "kernel.perf_event_max_sample_rate",
            Path("/proc/sys/kernel/perf_event_max_sample_rate").read_text(),
        ),
        ("Python", platform.python_version()),
        ("bpfprof", __version__),
        ("libbpf (libbpf1)", _deb_version("libbpf1")),
        ("perf", _first_line([br.PERF, "--version"]) if br.PERF else "not installed"),
        ("bpftrace", _first_line([br.BPFTRACE, "--version"]) if br.BPFTRACE else "not installed"),
        ("bcc (bpfcc-tools)", _deb_version("bpfcc-tools")),
    ]
    return ["| | |", "|---|---|", *(f"| {k} | {v.strip()} |" for k, v in rows)]


# -- bcc -----------------------------------------------------------------------------------------------


def bcc_status() -> str | None:
    """None when bcc's profile runs here; else why not, in its own words where it gave any."""
    if BCC_PROFILE is None:
        return "bcc's profile is not installed (Debian: bpfcc-tools)"
    try:
        r = subprocess.run(
            [BCC_PROFILE, "-F", "99", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "bcc's profile did not finish a 1 s profile within 120 s"
    if r.returncode == 0:
        return None
    lines = [line for line in (r.stdout + "\n" + r.stderr).splitlines() if line.strip()]
    for line in lines:
        if "kernel headers" in line.lower():
            return f"bcc's profile cannot compile here: {line.strip()}"
    return f"bcc's profile failed (exit {r.returncode}): {lines[-1] if lines else 'no message'}"


# -- measurements --------------------------------------------------------------------------------------


def attach_latency(stamp: Path, bcc_ok: bool) -> dict[str, float]:
    out = br.attach_latency(stamp)
    if bcc_ok:  # bcc's profile has no -- CMD: time from start to "Sampling" is its attach time
        t = time.monotonic()
        p = subprocess.Popen(
            [BCC_PROFILE, "-F", "99", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("Sampling"):
                out["bcc profile (start -> sampling)"] = (time.monotonic() - t) * 1000
                break
        p.wait()
    return out


def system_profile(bcc_ok: bool) -> dict[str, tuple[float, int]]:
    out = br.system_profile()
    if bcc_ok:
        out["bcc profile -f"] = br.peak_rss_run([BCC_PROFILE, "-f", "-F", "99", "1"])[:2]
    return out


def median_of(runs: int, fn, *args):
    return br.median_of(runs, fn, *args)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_run(work: Path, seconds: int, every: int, tmp: Path) -> tuple[list[str], dict[str, list[int]]]:
    """bpfprof -a, perf record -a -g and bpftrace side by side for ``seconds`` under a fork-heavy load
    (a shell loop starting short CPU-bound processes, plus one long one per CPU); RSS every ``every`` s."""
    counter = tmp / "spawned"
    loop = f'while :; do "{work}" split 0.02; printf . >> "{counter}"; done'
    load = [subprocess.Popen(["sh", "-c", loop], start_new_session=True)]
    load += [
        subprocess.Popen([str(work), "split", str(seconds + 30)], start_new_session=True)
        for _ in range(max(1, (os.cpu_count() or 2) - 1))
    ]
    tools: dict[str, subprocess.Popen] = {}
    bpfprof_err = tmp / "memory.err"
    with bpfprof_err.open("w") as err:
        tools["bpfprof -a -F 99"] = subprocess.Popen(
            [*br.BPFPROF, "record", "-a", "-F", "99", "-d", str(seconds), "-o", str(tmp / "memory.svg")],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    if br.PERF:
        tools["perf record -a -g -F 99"] = subprocess.Popen(
            [
                br.PERF,
                "record",
                "-q",
                "-a",
                "-g",
                "-F",
                "99",
                "-o",
                str(tmp / "memory.data"),
                "--",
                "sleep",
                str(seconds),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    if br.BPFTRACE:
        prog = f"profile:hz:99 {{ @[kstack, ustack, comm] = count(); }} interval:s:{seconds} {{ exit(); }}"
        tools["bpftrace"] = subprocess.Popen(
            [br.BPFTRACE, "-e", prog], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    rss: dict[str, list[int]] = {name: [] for name in tools}
    spawned: list[int] = []
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end - 1:
            time.sleep(every)
            spawned.append(counter.stat().st_size if counter.exists() else 0)
            for name, p in tools.items():
                rss[name].append(rss_kib(p.pid) or 0)
        for p in tools.values():
            p.wait(timeout=600)
    finally:
        for p in load:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    summary = bpfprof_err.read_text().splitlines()
    lines = [
        f"{seconds} s system-wide at 99 Hz under a fork-heavy load: {spawned[-1] if spawned else 0} short "
        f"processes started (a shell loop, ~20 ms of CPU each), plus {len(load) - 1} long CPU-bound one(s). "
        f"RSS sampled every {every} s; the three tools ran at the same time.",
        "",
        "| tool | RSS at first sample MB | at end MB | max MB | growth MB | growth per 1000 processes MB |",
        "|---|---|---|---|---|---|",
    ]
    n_proc = max(1, (spawned[-1] - spawned[0]) if spawned else 1)
    for name, values in rss.items():
        values = [v for v in values if v]
        if not values:
            lines.append(f"| {name} | - | - | - | - | - |")
            continue
        growth = (values[-1] - values[0]) / 1024
        lines.append(
            f"| {name} | {values[0] / 1024:.0f} | {values[-1] / 1024:.0f} | {max(values) / 1024:.0f} | "
            f"{growth:+.1f} | {growth * 1000 / n_proc:+.2f} |"
        )
    lines += ["", f"RSS MB, every {every * 6} s (the growth is steady or a step):", ""]
    for name, values in rss.items():
        lines.append(f"- {name}: " + " ".join(f"{v / 1024:.0f}" for v in values[::6] if v))
    lines += ["", "bpfprof's summary of that run:", "", "```", *summary[:40], "```"]
    return lines, rss


def run_script(script: str, args: list[str]) -> list[str]:
    """Another benchmark script's output, as a code block (it prints its own tables)."""
    r = subprocess.run(
        [sys.executable, str(HERE / script), *args], capture_output=True, text=True, timeout=3600, cwd=ROOT
    )
    text = (r.stdout + (r.stderr if r.returncode else "")).rstrip()
    status = "" if r.returncode == 0 else f" (exit {r.returncode})"
    return [f"`{script} {' '.join(args)}`{status}:", "", "```", text, "```"]


# -- the report -----------------------------------------------------------------------------------------


def ratio(value: float, anchor: float | None) -> str:
    return f"{value / anchor:.2f}" if anchor else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure, the median is reported (>= 3)")
    ap.add_argument("--out", help="where to write (default: BENCHMARKS.md at the top of the checkout)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: one run each, short workloads, a 30 s memory run; writes to a temporary file",
    )
    ap.add_argument("--memory-seconds", type=int, help="length of the memory run (default 600, --quick 30)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run_all: run as root (BPF, perf -a, bpf_stats)", file=sys.stderr)
        return 1
    if not args.quick and args.runs < 3:
        print("run_all: --runs must be at least 3 (a median of fewer says little); --quick for a smoke run")
        return 2
    runs = 1 if args.quick else args.runs
    rounds = 300 if args.quick else 2500
    mem_s = args.memory_seconds or (30 if args.quick else 600)
    every = 3 if args.quick else 10
    tmp = Path(tempfile.mkdtemp(prefix="bpfprof-run-all-"))
    default = Path(tempfile.gettempdir()) / "BENCHMARKS-quick.md" if args.quick else ROOT / "BENCHMARKS.md"
    out = Path(args.out) if args.out else default
    started = time.time()

    def step(name: str) -> None:
        print(f"run_all: {name} ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    stamp = tmp / "stamp"
    subprocess.run(["gcc", "-O2", "-o", str(stamp), str(HERE / "stamp.c")], check=True)
    work = build("cpu_split")
    step("bcc")
    bcc_reason = bcc_status()
    bcc_ok = bcc_reason is None
    lines = [
        "# bpfprof benchmarks",
        "",
        f"Written by `scripts/bench/run_all.py{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; median of {runs} run(s), tools alternating within each run. "
        "Ratios are against the anchor measured in the same run (perf unless said otherwise): below 1 is "
        "less time or memory than the anchor, above 1 more. The machine was shared unless said otherwise: "
        "treat small differences as noise.",
        "",
    ]
    if args.quick:
        lines += [
            "**A --quick smoke run: one run each, short workloads. These figures are not results.**",
            "",
        ]
    lines += ["## Machine", "", *machine(), ""]
    lines += [f"bcc: {'runs here' if bcc_ok else 'skipped: ' + str(bcc_reason)}", ""]

    step("exec -> sampling")
    lat = median_of(runs, attach_latency, stamp, bcc_ok)
    anchor = lat.get("perf record -g")
    lines += ["## exec -> sampling attached (`-- CMD`)", "", "| tool | ms | vs perf |", "|---|---|---|"]
    lines += [f"| {k} | {v:.0f} | {ratio(v, anchor)} |" for k, v in lat.items()]

    step("1 s system-wide profile")
    sysp = median_of(runs, system_profile, bcc_ok)
    aw, ar = sysp.get("perf record -a -g + perf script", (None, None))
    lines += [
        "",
        "## 1 s system-wide profile to a written output",
        "",
        "| tool | wall s | peak RSS MB | wall vs perf | RSS vs perf |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {w:.2f} | {r / 1024:.0f} | {ratio(w, aw)} | {ratio(r, ar)} |" for k, (w, r) in sysp.items()
    ]

    lines += [
        "",
        "## CPU-bound throughput while sampling system-wide",
        "",
        f"`cpu_split rounds {rounds}` on every CPU; throughput = time alone / time while sampled "
        "(1.000 = no slowdown). `vs perf` compares bpfprof's throughput with perf's in the same mode.",
        "",
        "| rate | tool | workload s | throughput | vs perf |",
        "|---|---|---|---|---|",
    ]
    for hz in (99, 999, 4999):
        step(f"throughput at {hz} Hz")
        if hz > max_sample_rate():
            limit = max_sample_rate()
            lines.append(f"| {hz} Hz | skipped: above kernel.perf_event_max_sample_rate ({limit}) | | | |")
            continue
        slow = median_of(runs, br.slowdown, work, rounds, hz)
        base = slow["baseline"]
        perf_fp = slow.get(f"perf record -a -g -F {hz}")
        perf_dwarf = slow.get(f"perf record -a --call-graph dwarf -F {hz}")
        for k, v in slow.items():
            anchor_t = perf_dwarf if "dwarf" in k else perf_fp
            vs = f"{anchor_t / v:.3f}" if anchor_t and k.startswith("bpfprof") else ""
            lines.append(f"| {hz} Hz | {k} | {v:.3f} | {base / v:.3f} | {vs} |")

    step("BPF cost per sample")
    cost = median_of(runs, br.bpf_cost, work)
    lines += [
        "",
        "## BPF cost per sample (kernel.bpf_stats_enabled, 999 Hz, busy CPUs)",
        "",
        "| program | ns per sample |",
        "|---|---|",
        *(f"| {k} | {v:.0f} |" for k, v in cost.items()),
    ]

    step("symbolization")
    lines += ["", "## Symbolization throughput", ""]
    lines += run_script("bench_symbolize.py", ["--runs", str(max(runs, 3))])
    step("source lines")
    lines += ["", "## Source lines (`--lines`) beside addr2line", ""]
    lines += run_script(
        "bench_lines.py", ["--runs", str(max(runs, 3)), "--seconds", "3" if args.quick else "10"]
    )
    step("DWARF unwinding")
    lines += ["", "## DWARF unwinding throughput", ""]
    lines += run_script(
        "bench_unwind.py", ["--runs", str(runs), "--samples", "2000" if args.quick else "20000"]
    )

    step("stat")
    lines += ["", "## `bpfprof stat --by pid -a` against `perf stat -a`", ""]
    lines += run_script(
        "bench_stat.py", ["--runs", str(runs), "--rounds", "20000" if args.quick else "200000"]
    )

    step(f"memory over {mem_s} s")
    mem_lines, _ = memory_run(work, mem_s, every, tmp)
    lines += ["", f"## Memory over a {mem_s / 60:.1f}-minute system-wide run", "", *mem_lines]

    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)
    print(f"run_all: wrote {out} in {time.time() - started:.0f} s", file=sys.stderr)
    if args.quick:
        print(
            "run_all: a --quick run; the full one: sudo .venv/bin/python scripts/bench/run_all.py",
            file=sys.stderr,
        )
    shutil.rmtree(br.TMP, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
