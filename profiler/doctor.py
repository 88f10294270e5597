"""`bpfprof doctor`: checks what will work on this machine, and how well a binary's stacks can unwind.

Each check is one line, ``OK``/``WARN``/``FAIL``, with the fact found and what it means for bpfprof.
Checks are measured where they can be (a perf event is opened, a BPF program type is probed by loading
a trivial program, kallsyms is read); the interpreting functions (``check_*``) are pure and take what
was read, so they are unit-tested without the machine. A FAIL is something ``bpfprof record`` needs.

Frame pointers are measured, not guessed from flags: the prologues of a binary's functions (symbols,
else ``.eh_frame_hdr`` starts) are classified as setting up rbp as a frame pointer (``push %rbp`` then
``mov %rsp,%rbp`` within its first bytes, after an optional ``endbr64``), as making a frame without
one (other pushes, ``sub $N,%rsp``, ``push %rbp`` used as a plain callee-saved register), or as making
no frame (leaf code; left out). The share is of the functions that make a frame.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TextIO

import numpy as np

from profiler.errors import UserError
from unwind.elf import SHF_EXECINSTR, ElfError, ElfFile

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

# linux/bpf.h enum bpf_prog_type / bpf_map_type: what profile.bpf.c uses.
# (libbpf cannot probe BPF_PROG_TYPE_TRACING without an attach target: the BTF check stands for it.)
BPF_PROG_TYPE_PERF_EVENT = 7
BPF_PROG_TYPES = {"perf_event": BPF_PROG_TYPE_PERF_EVENT}
BPF_MAP_TYPES = {"hash": 1, "percpu_array": 6, "stack_trace": 7, "ringbuf": 27}
# linux/bpf.h enum bpf_func_id: helpers a perf_event program of ours calls (dwarf mode: the last two).
BPF_HELPERS = {"get_stackid": 27, "get_current_task_btf": 158, "task_pt_regs": 175}

# Shares of frame-making functions with a frame pointer above/below which a verdict is clear.
FP_YES = 0.9
FP_NO = 0.1
MIN_FUNCTIONS = 5  # fewer classified functions than this: too few to tell
MAX_FUNCTIONS = 5000  # functions sampled (evenly) from a large binary
PROLOGUE_BYTES = 40
ENDBR64 = b"\xf3\x0f\x1e\xfa"
# push %rbp, then (up to 24 bytes of other instructions later, as GCC schedules it) mov %rsp,%rbp in
# either encoding (48 89 e5 / 48 8b ec).
_FP_PROLOGUE = re.compile(rb"\x55[\x00-\xff]{0,24}?(?:\x48\x89\xe5|\x48\x8b\xec)", re.DOTALL)
# A first instruction that makes a frame: push rbx/rbp/rsi/rdi, push r8-r15, sub $imm,%rsp.
_FRAME_START = re.compile(rb"(?:[\x53\x55\x56\x57]|\x41[\x50-\x57]|\x48\x83\xec|\x48\x81\xec)")


class Status(Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: ``STATUS  name: detail``; ``detail`` says what was found and what it means."""

    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status.value:<4}  {self.name}: {self.detail}"


# -- machine checks: pure interpretations -----------------------------------------------------------


def parse_cap_eff(status_text: str) -> int:
    """The effective capability mask from ``/proc/PID/status`` text (``CapEff:`` in hex); 0 if absent."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            try:
                return int(line.split()[1], 16)
            except (IndexError, ValueError):
                return 0
    return 0


def _has_cap(mask: int, cap: int) -> bool:
    return bool(mask >> cap & 1)


def check_privileges(euid: int, cap_eff: int) -> Check:
    if euid == 0:
        return Check(Status.OK, "privileges", "running as root: BPF programs and perf events can be opened")
    if (_has_cap(cap_eff, CAP_BPF) and _has_cap(cap_eff, CAP_PERFMON)) or _has_cap(cap_eff, CAP_SYS_ADMIN):
        return Check(
            Status.WARN,
            "privileges",
            f"uid {euid} with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): enough for the kernel, but "
            "bpfprof record still asks for root; run it with sudo",
        )
    return Check(
        Status.FAIL,
        "privileges",
        f"uid {euid} without CAP_BPF and CAP_PERFMON: bpfprof record cannot load its BPF program; "
        "run it with sudo",
    )


def check_btf(present: bool) -> Check:
    if present:
        return Check(Status.OK, "BTF", "/sys/kernel/btf/vmlinux is there: the CO-RE program can load")
    return Check(
        Status.FAIL,
        "BTF",
        "no /sys/kernel/btf/vmlinux: the BPF program cannot load; use a kernel built with "
        "CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2020)",
    )


def check_libbpf(version: tuple[int, int] | None) -> Check:
    if version is None:
        return Check(
            Status.FAIL, "libbpf", "libbpf.so.1 is not installed: apt-get install libbpf1 (Debian/Ubuntu)"
        )
    text = f"libbpf {version[0]}.{version[1]}"
    if version < (1, 0):
        return Check(Status.FAIL, "libbpf", f"{text} is older than 1.0: install libbpf1")
    return Check(Status.OK, "libbpf", f"{text} loaded")


def check_bpf_support(kind: str, name: str, result: int | None) -> Check:
    """``result`` is libbpf's probe answer: 1 supported, 0 not, negative -errno, None not probed."""
    what = f"BPF {kind} {name}"
    if result == 1:
        return Check(Status.OK, what, "available (probed)")
    if result is None:
        return Check(Status.WARN, what, "not probed (needs root and libbpf 1.0)")
    reason = "not supported by this kernel" if result == 0 else os.strerror(-result)
    return Check(Status.FAIL, what, f"{reason}: bpfprof record needs it")


def check_paranoid(value: int | None, privileged: bool) -> Check:
    name = "perf_event_paranoid"
    if value is None:
        return Check(Status.WARN, name, "cannot read /proc/sys/kernel/perf_event_paranoid")
    if privileged:
        return Check(Status.OK, name, f"{value}; does not apply to root or CAP_PERFMON")
    if value >= 2:
        return Check(
            Status.WARN,
            name,
            f"{value}: unprivileged users may not profile the kernel or other processes; run bpfprof as root",
        )
    return Check(Status.OK, name, f"{value}")


def check_kptr_restrict(value: int | None, privileged: bool, kallsyms_visible: bool | None) -> Check:
    """``kallsyms_visible``: whether /proc/kallsyms showed real addresses to this process (measured)."""
    name = "kptr_restrict"
    shown = "?" if value is None else str(value)
    if kallsyms_visible is False:
        fix = "set it to 1 and run as root" if value == 2 else "run as root (CAP_SYSLOG)"
        return Check(
            Status.WARN,
            name,
            f"{shown}: /proc/kallsyms shows zero addresses, so kernel frames will show as [kernel]; {fix}",
        )
    if value == 2:
        return Check(
            Status.WARN,
            name,
            "2: kernel frames will show as [kernel]; set it to 1 (sysctl kernel.kptr_restrict=1) "
            "and run as root",
        )
    if value == 1 and not privileged:
        return Check(
            Status.WARN, name, "1: kernel frames are named only for root (CAP_SYSLOG); run bpfprof as root"
        )
    return Check(Status.OK, name, f"{shown}: kernel frames are named from /proc/kallsyms")


def check_software_clock(err: int | None) -> Check:
    name = "cpu-clock event"
    if err is None:
        return Check(Status.OK, name, "opens (probed): timer sampling works")
    return Check(
        Status.FAIL, name, f"perf_event_open(cpu-clock) fails: {os.strerror(err)}; bpfprof record needs it"
    )


def check_hardware_pmu(err: int | None, core_pmu: bool) -> Check:
    name = "hardware PMU"
    if err is None:
        return Check(
            Status.OK, name, "cycles opens (probed): -e cycles, cache-misses and other counters work"
        )
    if err in (errno.ENOENT, errno.EOPNOTSUPP) and not core_pmu:
        return Check(
            Status.WARN,
            name,
            "none (a VM without a virtual PMU?): hardware events (cycles, cache-misses, ...) cannot be "
            "opened; cpu-clock and the other software events work",
        )
    return Check(
        Status.WARN, name, f"cycles does not open ({os.strerror(err)}): hardware events will not work here"
    )


def check_probe_pmus(devices: set[str], tracefs: bool) -> list[Check]:
    """kprobes, uprobes and tracepoints from the PMUs the kernel registered (``event_source/devices``)."""
    out = []
    if "kprobe" in devices:
        out.append(Check(Status.OK, "kprobes", "available (bpfprof does not need them)"))
    else:
        out.append(
            Check(
                Status.WARN,
                "kprobes",
                "not available (CONFIG_KPROBES off?): bpfprof does not need them, but tools that attach "
                "kprobes (bcc's, bpftrace kprobe:) fail here",
            )
        )
    if "uprobe" in devices:
        out.append(Check(Status.OK, "uprobes", "available (bpfprof does not need them)"))
    else:
        out.append(Check(Status.WARN, "uprobes", "not available: uprobe-based tools fail (bpfprof does not)"))
    if "tracepoint" not in devices:
        out.append(
            Check(Status.WARN, "tracepoints", "not available: children of -- COMMAND are found only by comm")
        )
    elif tracefs:
        out.append(Check(Status.OK, "tracepoints", "available; tracefs is mounted"))
    else:
        out.append(
            Check(
                Status.OK,
                "tracepoints",
                "available; tracefs is not mounted, which bpfprof does not need (its fork/exec "
                "tracepoints are BTF ones); classic ones need mount -t tracefs nodev /sys/kernel/tracing",
            )
        )
    return out


def check_bpf_object(path: Path) -> Check:
    if path.is_file():
        return Check(Status.OK, "BPF object", f"{path.name} is built")
    return Check(
        Status.FAIL, "BPF object", f"{path} is missing: build it with scripts/build_bpf.sh (needs clang)"
    )


# -- machine checks: probes (the syscall and libbpf edge) --------------------------------------------


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def kallsyms_visible(path: str = "/proc/kallsyms") -> bool | None:
    """Whether kallsyms shows this process real (non-zero) addresses; None when it cannot be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = [f.readline() for _ in range(64)]
    except OSError:
        return None
    addrs = [line.split(" ", 1)[0] for line in lines if line.strip()]
    if not addrs:
        return None
    return any(a.strip("0") for a in addrs)


def _libbpf_probes() -> tuple[tuple[int, int] | None, dict[str, int | None]]:
    """libbpf's version and its probe answers for the program and map types bpfprof uses."""
    from profiler.bpf.libbpf import Libbpf, LibbpfMissing

    try:
        lib = Libbpf.get().lib
    except LibbpfMissing:
        return None, {}
    version = (int(lib.libbpf_major_version()), int(lib.libbpf_minor_version()))
    answers: dict[str, int | None] = {}
    probes = (
        ("program", "libbpf_probe_bpf_prog_type", BPF_PROG_TYPES),
        ("map", "libbpf_probe_bpf_map_type", BPF_MAP_TYPES),
    )
    for kind, fn_name, table in probes:
        fn = getattr(lib, fn_name, None)
        for name, number in table.items():
            if fn is None:
                answers[f"{kind} {name}"] = None
                continue
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_int, ctypes.c_void_p]
            answers[f"{kind} {name}"] = int(fn(number, None))
    helper = getattr(lib, "libbpf_probe_bpf_helper", None)
    for name, number in BPF_HELPERS.items():
        if helper is None:
            answers[f"helper {name}"] = None
            continue
        helper.restype = ctypes.c_int
        helper.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        answers[f"helper {name}"] = int(helper(BPF_PROG_TYPE_PERF_EVENT, number, None))
    return version, answers


def system_checks() -> list[Check]:
    """Probe this machine and interpret what was found, one Check per line of the report."""
    from profiler.perf_event import CPU_CLOCK, PERF_TYPE_HARDWARE, EventSpec, has_core_pmu, probe_event

    euid = os.geteuid()
    try:
        cap_eff = parse_cap_eff(Path("/proc/self/status").read_text())
    except OSError:
        cap_eff = 0
    privileged = euid == 0 or (_has_cap(cap_eff, CAP_BPF) and _has_cap(cap_eff, CAP_PERFMON))
    checks = [check_privileges(euid, cap_eff), check_btf(Path("/sys/kernel/btf/vmlinux").exists())]
    version, answers = _libbpf_probes()
    checks.append(check_libbpf(version))
    if version is not None:
        for key, answer in answers.items():
            kind, _, name = key.partition(" ")
            # unprivileged, a load fails with EPERM, which libbpf's helper probe takes for support
            checks.append(check_bpf_support(kind, name, answer if privileged else None))
    obj = Path(__file__).resolve().parent / "bpf" / "profile.bpf.o"
    checks.append(check_bpf_object(obj))
    clock = probe_event(CPU_CLOCK)
    checks.append(check_software_clock(None if clock is None else clock.errno))
    cycles = probe_event(EventSpec("cycles", PERF_TYPE_HARDWARE, 0))
    checks.append(check_hardware_pmu(None if cycles is None else cycles.errno, has_core_pmu()))
    checks.append(check_paranoid(_read_int("/proc/sys/kernel/perf_event_paranoid"), privileged))
    checks.append(
        check_kptr_restrict(_read_int("/proc/sys/kernel/kptr_restrict"), privileged, kallsyms_visible())
    )
    try:
        devices = set(os.listdir("/sys/bus/event_source/devices"))
    except OSError:
        devices = set()
    tracefs = Path("/sys/kernel/tracing/events").is_dir() or Path("/sys/kernel/debug/tracing/events").is_dir()
    checks.extend(check_probe_pmus(devices, tracefs))
    return checks


# -- binaries: frame pointers, unwind tables, symbols, debug files -----------------------------------


class Prologue(Enum):
    FRAME_POINTER = "frame pointer"
    FRAME_NO_FP = "frame without frame pointer"
    NO_FRAME = "no frame"


def classify_prologue(code: bytes) -> Prologue:
    """What the first bytes of an x86-64 function do with the stack (see the module docstring)."""
    if code.startswith(ENDBR64):
        code = code[len(ENDBR64) :]
    code = code[:PROLOGUE_BYTES]
    if _FP_PROLOGUE.search(code):
        return Prologue.FRAME_POINTER
    if _FRAME_START.match(code):
        return Prologue.FRAME_NO_FP
    return Prologue.NO_FRAME


@dataclass(frozen=True, slots=True)
class FramePointerReport:
    """How many sampled functions set up a frame pointer, made a frame without one, or made none."""

    functions: int  # function starts known (symbols or .eh_frame_hdr)
    source: str  # "symbols", ".eh_frame_hdr" or "none"
    with_fp: int = 0
    without_fp: int = 0
    no_frame: int = 0

    @property
    def sampled(self) -> int:
        return self.with_fp + self.without_fp + self.no_frame

    @property
    def share(self) -> float | None:
        """Share of frame-making functions that keep a frame pointer; None when too few to tell."""
        framed = self.with_fp + self.without_fp
        return self.with_fp / framed if framed >= MIN_FUNCTIONS else None


def _function_starts(elf: ElfFile) -> tuple[np.ndarray, np.ndarray, str]:
    """Function start vaddrs (sorted) and sizes (0: unknown): the symbols, or the ``.eh_frame_hdr``
    table's starts when it knows more functions (a stripped binary whose .dynsym holds a few exports)."""
    table = elf.symbols()
    locs = np.zeros(0, np.uint64)
    hdr = elf.section(".eh_frame_hdr")
    if hdr is not None and hdr.has_data:
        from unwind.cfi import CfiError, parse_eh_frame_hdr

        try:
            locs = np.unique(parse_eh_frame_hdr(elf.section_data(hdr), hdr.addr)[1])
        except CfiError:
            pass
    if len(table) and len(table) * 2 >= len(locs):
        return table.addrs, table.sizes, "symbols"
    if len(locs):
        return locs, np.zeros(len(locs), np.uint64), ".eh_frame_hdr"
    return np.zeros(0, np.uint64), np.zeros(0, np.uint64), "none"


def measure_frame_pointers(elf: ElfFile, max_functions: int = MAX_FUNCTIONS) -> FramePointerReport:
    """Classify the prologues of up to ``max_functions`` functions of ``elf`` (evenly spread, in order)."""
    addrs, sizes, source = _function_starts(elf)
    code_sections = [s for s in elf.sections if s.flags & SHF_EXECINSTR and s.has_data and s.addr]
    counts = dict.fromkeys(Prologue, 0)
    picks: list[tuple[int, int, int]] = []  # (code section index, offset in it, bytes to read)
    for n, sec in enumerate(code_sections):
        lo = int(np.searchsorted(addrs, np.uint64(sec.addr), "left"))
        hi = int(np.searchsorted(addrs, np.uint64(sec.addr + sec.size), "left"))
        for i in range(lo, hi):
            size = int(sizes[i])
            if source == "symbols" and size == 0:
                continue  # crt labels (_init, frame_dummy): no body of their own to read
            picks.append((n, int(addrs[i]) - sec.addr, min(size or PROLOGUE_BYTES, PROLOGUE_BYTES) + 4))
    known = len(picks)
    if known > max_functions:
        step = known / max_functions
        picks = [picks[int(i * step)] for i in range(max_functions)]
    data: dict[int, bytes] = {}
    for n, off, size in picks:
        if n not in data:
            data[n] = elf.section_data(code_sections[n])
        counts[classify_prologue(data[n][off : off + size])] += 1
    return FramePointerReport(
        functions=known,
        source=source,
        with_fp=counts[Prologue.FRAME_POINTER],
        without_fp=counts[Prologue.FRAME_NO_FP],
        no_frame=counts[Prologue.NO_FRAME],
    )


@dataclass(slots=True)
class ModuleReport:
    """What doctor found in one binary or library."""

    path: str
    build_id: bytes | None
    frame_pointers: FramePointerReport
    eh_frame: int  # bytes of .eh_frame (0: none)
    debug_frame: int  # bytes of .debug_frame
    symtab: bool
    symbols: int
    debug_file: str | None = None  # separate debug file found (path), or ".gnu_debugdata"
    debug_source: str | None = None
    problems: list[str] = field(default_factory=list)


def inspect_module(path: str, display: str | None = None, debug_dirs: Sequence[str] = ()) -> ModuleReport:
    """Open the ELF file at ``path`` (``display`` is the name to show and to look debug files up by).

    Raises ElfError/OSError when it cannot be read as ELF.
    """
    from unwind.debuginfo import find_debug_file

    name = display or path
    with ElfFile.open(path) as elf:
        fp = measure_frame_pointers(elf)
        eh = elf.section(".eh_frame")
        dbg = elf.section(".debug_frame")
        report = ModuleReport(
            path=name,
            build_id=elf.build_id,
            frame_pointers=fp,
            eh_frame=eh.size if eh is not None and eh.has_data else 0,
            debug_frame=dbg.size if dbg is not None and dbg.has_data else 0,
            symtab=elf.has_symtab,
            symbols=len(elf.symbols()),
        )
        if not elf.has_symtab:
            debug = find_debug_file(elf, name, debug_dirs)
            if debug is not None:
                report.debug_file, report.debug_source = debug.path, debug.source.value
                if not report.debug_frame:
                    sec = debug.elf.section(".debug_frame")
                    report.debug_frame = sec.size if sec is not None and sec.has_data else 0
                debug.elf.close()
            elif (mini := elf.section(".gnu_debugdata")) is not None and mini.has_data:
                report.debug_file, report.debug_source = ".gnu_debugdata", "MiniDebugInfo"
    return report


def module_checks(report: ModuleReport) -> list[Check]:
    """The report lines of one module: frame pointers, unwind tables, symbols."""
    name = report.path
    fp = report.frame_pointers
    share = fp.share
    cfi = report.eh_frame or report.debug_frame
    measured = (
        f"{fp.with_fp} of {fp.with_fp + fp.without_fp} functions that make a frame, "
        f"{fp.sampled} sampled from {fp.source}"
    )
    dwarf_hint = (
        "use --call-graph dwarf for complete stacks"
        if cfi
        else "and no .eh_frame either: only frames up to it are found"
    )
    if share is None:
        fp_check = Check(
            Status.WARN,
            f"{name} frame pointers",
            f"too few functions to tell ({measured})",
        )
    elif share >= FP_YES:
        fp_check = Check(
            Status.OK,
            f"{name} frame pointers",
            f"yes, {100 * share:.0f}% ({measured}): --call-graph fp stacks through it are complete",
        )
    elif share <= FP_NO:
        fp_check = Check(
            Status.WARN,
            f"{name} frame pointers",
            f"no, {100 * share:.0f}% ({measured}): fp stacks through it lose frames; {dwarf_hint}",
        )
    else:
        fp_check = Check(
            Status.WARN,
            f"{name} frame pointers",
            f"partly, {100 * share:.0f}% ({measured}): fp stacks through the rest lose frames; {dwarf_hint}",
        )
    if report.eh_frame:
        cfi_check = Check(
            Status.OK,
            f"{name} unwind tables",
            f".eh_frame {report.eh_frame:,} bytes: --call-graph dwarf works",
        )
    elif report.debug_frame:
        cfi_check = Check(
            Status.OK, f"{name} unwind tables", f".debug_frame {report.debug_frame:,} bytes: dwarf mode works"
        )
    else:
        cfi_check = Check(
            Status.WARN,
            f"{name} unwind tables",
            "no .eh_frame or .debug_frame: --call-graph dwarf cannot unwind through it",
        )
    if report.symtab:
        sym_check = Check(Status.OK, f"{name} symbols", f".symtab, {report.symbols:,} functions")
    elif report.debug_file is not None:
        sym_check = Check(
            Status.OK,
            f"{name} symbols",
            f"stripped; {report.symbols:,} in .dynsym, the rest from {report.debug_file} "
            f"({report.debug_source})",
        )
    else:
        bid = f" (build-id {report.build_id.hex()})" if report.build_id else ""
        sym_check = Check(
            Status.WARN,
            f"{name} symbols",
            f"stripped, {report.symbols:,} functions in .dynsym and no debug file{bid}: others show as "
            f"{os.path.basename(name)}+0x...; install its -dbgsym/-dbg package or pass --debuginfo-dir",
        )
    return [fp_check, cfi_check, sym_check]


def process_modules(pid: int) -> list[tuple[str, str]]:
    """The executable file-backed mappings of ``pid``: (path to open, path to show), in address order."""
    from unwind.maps import load_maps, map_files_path

    try:
        maps = load_maps(pid)
    except FileNotFoundError:
        raise UserError(f"no process {pid}", 2) from None
    except PermissionError:
        raise UserError(f"cannot read the memory map of process {pid}: run as root", 1) from None
    seen: set[str] = set()
    out = []
    for m in maps:
        if not (m.is_exec and m.is_file) or m.path in seen:
            continue
        seen.add(m.path)
        via = map_files_path(pid, m)
        out.append((via if os.path.exists(via) else f"/proc/{pid}/root{m.path}", m.path))
    return out


# -- the command ----------------------------------------------------------------------------------


def write_report(checks: Sequence[Check], out: TextIO) -> None:
    for check in checks:
        out.write(check.line() + "\n")


def exit_status(checks: Sequence[Check]) -> int:
    """1 when something bpfprof needs is missing (any FAIL), else 0."""
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def binary_checks(targets: Sequence[tuple[str, str]], debug_dirs: Sequence[str]) -> list[Check]:
    checks: list[Check] = []
    without = []
    for path, display in targets:
        try:
            report = inspect_module(path, display, debug_dirs)
        except FileNotFoundError:
            raise UserError(f"{display}: no such file", 2) from None
        except IsADirectoryError:
            raise UserError(f"{display} is a directory, not a binary", 2) from None
        except OSError as exc:
            raise UserError(f"cannot read {display}: {exc.strerror or exc}", 2) from None
        except ElfError as exc:
            if len(targets) == 1:
                raise UserError(f"{display} is not an ELF64 binary bpfprof can read ({exc})", 2) from None
            checks.append(Check(Status.WARN, display, f"cannot be read as ELF ({exc})"))
            continue
        lines = module_checks(report)
        checks.extend(lines)
        share = report.frame_pointers.share
        if share is not None and share < FP_YES:
            without.append(os.path.basename(display))
    if len(targets) > 1:
        if without:
            checks.append(
                Check(
                    Status.WARN,
                    "stacks",
                    f"{len(without)} of {len(targets)} modules lack frame pointers ({', '.join(without[:6])}"
                    f"{', ...' if len(without) > 6 else ''}): record with --call-graph dwarf for complete "
                    "stacks",
                )
            )
        else:
            checks.append(
                Check(Status.OK, "stacks", "every module keeps frame pointers: --call-graph fp is enough")
            )
    return checks


def main(ns, command: list[str], out: TextIO | None = None) -> int:
    import sys

    out = out or sys.stdout
    if command:
        raise UserError("bpfprof doctor takes no command after --; use --binary PATH or -p PID", 2)
    for d in ns.debuginfo_dir:
        if not os.path.isdir(d):
            raise UserError(f"--debuginfo-dir {d}: no such directory", 2)
    targets: list[tuple[str, str]] = []
    if ns.binary:
        for b in ns.binary:
            if not os.path.exists(b):
                raise UserError(f"--binary {b}: no such file", 2)
            if os.path.isdir(b):
                raise UserError(f"{b} is a directory, not a binary", 2)
            targets.append((b, os.path.abspath(b)))
    if ns.pid is not None:
        targets.extend(process_modules(ns.pid))
        if not targets:
            raise UserError(f"process {ns.pid} maps no executable files (a kernel thread?)", 2)
    binary = binary_checks(targets, ns.debuginfo_dir) if targets else []  # bad input fails before output
    checks = ([] if ns.no_system else system_checks()) + binary
    write_report(checks, out)
    out.flush()
    return exit_status(checks)
