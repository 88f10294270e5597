"""`bpfprof doctor` on this machine and on real binaries: the machine checks (probed for real, as root
and as an unprivileged user), and frame-pointer verdicts validated against `objdump -d` on the
workloads built with and without frame pointers, Debian's libc and python3, and a running process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from profiler.doctor import measure_frame_pointers
from tests.integration.conftest import bpfprof, run_with_privileges
from tests.workloads.build import FP_FLAGS, NOFP_FLAGS, build
from unwind.elf import ElfFile

pytestmark = pytest.mark.bpf  # the machine checks load trivial BPF programs to probe support

LINE = re.compile(r"^(OK|WARN|FAIL)  ? ?\s*[^:]+: .+$")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
PYTHON = os.path.realpath("/usr/bin/python3")


@pytest.fixture(scope="module")
def fp_binary() -> Path:
    return build("cpu_split")


@pytest.fixture(scope="module")
def nofp_binary() -> Path:
    return build("cpu_split", NOFP_FLAGS, suffix="-nofp")


@pytest.fixture(scope="module")
def static_binary() -> Path:
    return build("cpu_split", [*FP_FLAGS, "-static"], suffix="-static")


def objdump_frame_pointers(path: Path) -> tuple[int, int]:
    """The reference: (functions that set rbp up as a frame pointer, functions that make a frame
    without one), from objdump's disassembly of each function's first instructions."""
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed as the reference"
    text = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", "-j", ".text", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with_fp = without_fp = 0
    for body in re.split(r"\n(?=[0-9a-f]+ <[^>]+>:\n)", text)[1:]:
        insns = [
            line.split("\t", 1)[1].split("#")[0].split() for line in body.splitlines()[1:] if "\t" in line
        ]
        insns = [i for i in insns if i and i[0] != "endbr64"][:10]
        if not insns:
            continue
        pushes = [n for n, i in enumerate(insns[:6]) if i == ["push", "%rbp"]]
        if pushes and ["mov", "%rsp,%rbp"] in insns[pushes[0] + 1 : pushes[0] + 8]:
            with_fp += 1
        elif re.fullmatch(r"push %(rbx|rbp|rsi|rdi|r1[2-5])|sub \$0x[0-9a-f]+,%rsp", " ".join(insns[0])):
            without_fp += 1
    return with_fp, without_fp


@pytest.mark.parametrize("which", ["fp", "nofp", "static"])
def test_frame_pointer_counts_match_objdump(which, fp_binary, nofp_binary, static_binary):
    path = {"fp": fp_binary, "nofp": nofp_binary, "static": static_binary}[which]
    with ElfFile.open(path) as elf:
        ours = measure_frame_pointers(elf)
    ref_fp, ref_nofp = objdump_frame_pointers(path)
    # the reference sees every function in .text; ours the sized function symbols (not _start & co.)
    assert ours.with_fp == pytest.approx(ref_fp, abs=max(2, 0.03 * ref_fp))
    assert ours.without_fp == pytest.approx(ref_nofp, abs=max(2, 0.05 * ref_nofp))


def doctor(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return bpfprof("doctor", *args, **kw)


def verdict(out: str, module: str) -> str:
    m = re.search(rf"^(OK|WARN)\s+\S*{re.escape(module)} frame pointers: (\w+)", out, re.M)
    assert m, out
    return m.group(2)


def test_frame_pointer_verdicts_on_real_binaries(fp_binary, nofp_binary, static_binary):
    r = doctor("--no-system", "--binary", str(fp_binary), "--binary", str(nofp_binary),
               "--binary", str(static_binary), "--binary", LIBC, "--binary", PYTHON)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert verdict(r.stdout, fp_binary.name) == "yes"
    assert verdict(r.stdout, nofp_binary.name) == "no"
    # static: our functions have them, the static libc's do not; the share is objdump's
    ref_fp, ref_nofp = objdump_frame_pointers(static_binary)
    m = re.search(rf"{static_binary.name} frame pointers: \w+, (\d+)%", r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) == pytest.approx(100 * ref_fp / (ref_fp + ref_nofp), abs=1.5)
    assert 3 < int(m.group(1)) < 30
    assert verdict(r.stdout, "libc.so.6") == "no"  # Debian builds glibc without frame pointers
    assert verdict(r.stdout, os.path.basename(PYTHON)) == "no"  # and python3.11 too
    assert re.search(r"^OK\s+\S*libc.so.6 unwind tables: .eh_frame [\d,]+ bytes", r.stdout, re.M)
    # libc is stripped; libc6-dbg puts its symbols under /usr/lib/debug/.build-id
    assert re.search(r"libc.so.6 symbols: stripped; .* from /usr/lib/debug/.build-id/", r.stdout)
    assert re.search(r"^WARN\s+stacks: 4 of 5 modules lack frame pointers", r.stdout, re.M)
    for line in r.stdout.splitlines():
        assert LINE.match(line), line


def test_running_process_modules(nofp_binary):
    proc = subprocess.Popen([str(nofp_binary), "split", "20"])
    try:
        r = doctor("--no-system", "-p", str(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    assert r.returncode == 0, r.stderr
    assert verdict(r.stdout, nofp_binary.name) == "no"
    assert verdict(r.stdout, "libc.so.6") == "no"
    assert "ld-linux-x86-64.so.2 frame pointers" in r.stdout
    assert re.search(
        r"^WARN\s+stacks: 3 of 3 modules lack frame pointers .*--call-graph dwarf", r.stdout, re.M
    )


def test_machine_checks_as_root():
    r = doctor()
    assert r.returncode == 0, r.stdout + r.stderr  # root, BTF, libbpf, cpu-clock: all here
    lines = r.stdout.splitlines()
    for line in lines:
        assert LINE.match(line), line
    names = {line.split(":", 1)[0].split(None, 1)[1] for line in lines}
    for name in ("privileges", "BTF", "libbpf", "BPF program perf_event", "BPF map stack_trace",
                 "BPF map ringbuf", "cpu-clock event", "hardware PMU", "perf_event_paranoid",
                 "kptr_restrict", "kprobes", "uprobes", "tracepoints"):  # fmt: skip
        assert name in names, (name, names)
    assert re.search(r"^OK\s+privileges: running as root", r.stdout, re.M)
    # this machine: no PMU (a VM), no kprobes; the lines say what follows for bpfprof
    has_pmu = Path("/sys/bus/event_source/devices/cpu").exists()
    pmu = re.search(r"^(\w+)\s+hardware PMU: (.*)$", r.stdout, re.M)
    assert pmu
    assert pmu.group(1) == ("OK" if has_pmu else "WARN")
    kprobes = Path("/sys/bus/event_source/devices/kprobe").exists()
    assert re.search(rf"^{'OK' if kprobes else 'WARN'}\s+kprobes: ", r.stdout, re.M)
    kptr = int(Path("/proc/sys/kernel/kptr_restrict").read_text())
    assert re.search(rf"^\w+\s+kptr_restrict: {kptr}\b", r.stdout, re.M)


def test_machine_checks_as_an_unprivileged_user(tmp_path):
    # from a world-readable copy: nobody may not be able to enter the checkout (under /root, say)
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    r = run_with_privileges(
        ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"], "doctor",
        copy_to=tmp_path / "pkg", env=env,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^FAIL\s+privileges: uid 65534 without CAP_BPF and CAP_PERFMON", r.stdout, re.M)
    assert "Traceback" not in r.stderr
