"""`bpfprof doctor`'s interpretations: each check's status and sentence from what was read, prologue
classification on x86-64 byte sequences, the exit status, and bad input as one sentence."""

from __future__ import annotations

import errno

import pytest

from profiler.cli import main
from profiler.doctor import (
    CAP_BPF,
    CAP_PERFMON,
    Check,
    FramePointerReport,
    ModuleReport,
    Prologue,
    Status,
    check_bpf_support,
    check_btf,
    check_hardware_pmu,
    check_kptr_restrict,
    check_libbpf,
    check_paranoid,
    check_privileges,
    check_probe_pmus,
    check_software_clock,
    classify_prologue,
    exit_status,
    kallsyms_visible,
    module_checks,
    parse_cap_eff,
)
from tests.conftest import FIXTURES_DIR

ENDBR = bytes.fromhex("f30f1efa")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("554889e5415741564155", Prologue.FRAME_POINTER),  # push rbp; mov rsp,rbp; push r15...
        ("5531d2488b0dc62b000048befdb0b087e62ebb274889e5", Prologue.FRAME_POINTER),  # scheduled
        ("55488bec", Prologue.FRAME_POINTER),  # mov rsp,rbp in its other encoding
        ("4157415641554154", Prologue.FRAME_NO_FP),  # push r15; push r14...: callee-saved only
        ("4883ec18", Prologue.FRAME_NO_FP),  # sub $0x18,%rsp
        ("534889fb", Prologue.FRAME_NO_FP),  # push rbx
        ("55534883ec08", Prologue.FRAME_NO_FP),  # push rbp as a plain callee-saved register
        ("488b05e92b0000", Prologue.NO_FRAME),  # leaf: mov sink(%rip),%rax
        ("31ed4989d15e", Prologue.NO_FRAME),  # _start
        ("", Prologue.NO_FRAME),
    ],
)
def test_prologues(code, expected):
    raw = bytes.fromhex(code)
    assert classify_prologue(raw) is expected
    assert classify_prologue(ENDBR + raw) is expected  # CET builds start with endbr64


def test_mov_rsp_rbp_far_into_the_body_is_not_a_prologue():
    code = bytes.fromhex("4157") + bytes(40) + bytes.fromhex("554889e5")
    assert classify_prologue(code) is Prologue.FRAME_NO_FP


def test_frame_pointer_share_needs_enough_functions():
    assert FramePointerReport(10, "symbols", with_fp=9, without_fp=1, no_frame=5).share == 0.9
    assert FramePointerReport(4, "symbols", with_fp=4).share is None
    assert FramePointerReport(0, "none").share is None


def report(with_fp: int, without_fp: int, **kw) -> ModuleReport:
    fields = {"eh_frame": 100, "debug_frame": 0, "symtab": True, "symbols": 50, **kw}
    return ModuleReport(
        path="/bin/app",
        build_id=bytes.fromhex("abcd"),
        frame_pointers=FramePointerReport(with_fp + without_fp, "symbols", with_fp, without_fp, 3),
        **fields,
    )


def test_module_verdicts():
    fp, cfi, sym = module_checks(report(20, 0))
    assert fp.status is Status.OK
    assert "yes, 100% (20 of 20 functions that make a frame, 23 sampled from symbols)" in fp.detail
    assert (cfi.status, sym.status) == (Status.OK, Status.OK)
    fp, cfi, sym = module_checks(report(1, 30, eh_frame=0, symtab=False, symbols=7))
    assert fp.status is Status.WARN
    assert fp.detail.startswith("no, 3%")
    assert "no .eh_frame either" in fp.detail
    assert cfi.status is Status.WARN
    assert sym.status is Status.WARN
    assert "build-id abcd" in sym.detail
    assert "app+0x" in sym.detail
    fp, _, sym = module_checks(
        report(10, 10, symtab=False, debug_file="/usr/lib/debug/x.debug", debug_source="d")
    )
    assert fp.detail.startswith("partly, 50%")
    assert "--call-graph dwarf" in fp.detail
    assert sym.status is Status.OK
    assert "/usr/lib/debug/x.debug" in sym.detail


def test_privileges():
    assert check_privileges(0, 0).status is Status.OK
    caps = 1 << CAP_BPF | 1 << CAP_PERFMON
    assert check_privileges(1000, caps).status is Status.WARN
    fail = check_privileges(1000, 1 << CAP_BPF)
    assert fail.status is Status.FAIL
    assert "sudo" in fail.detail


def test_cap_eff_parse():
    text = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000000c000000000\n"
    assert parse_cap_eff(text) == 1 << 38 | 1 << 39
    assert parse_cap_eff("Name: x\n") == 0
    assert parse_cap_eff("CapEff:\tzz\n") == 0


def test_kernel_side_checks():
    assert check_btf(True).status is Status.OK
    assert check_btf(False).status is Status.FAIL
    assert check_libbpf(None).status is Status.FAIL
    assert check_libbpf((0, 8)).status is Status.FAIL
    assert check_libbpf((1, 1)).detail == "libbpf 1.1 loaded"
    assert check_bpf_support("map", "ringbuf", 1).status is Status.OK
    assert check_bpf_support("map", "ringbuf", 0).status is Status.FAIL
    assert "Operation not permitted" in check_bpf_support("map", "ringbuf", -errno.EPERM).detail
    assert check_bpf_support("map", "ringbuf", None).status is Status.WARN
    assert check_software_clock(None).status is Status.OK
    assert check_software_clock(errno.EACCES).status is Status.FAIL


def test_hardware_pmu():
    assert check_hardware_pmu(None, True).status is Status.OK
    none = check_hardware_pmu(errno.ENOENT, False)
    assert none.status is Status.WARN
    assert "cpu-clock" in none.detail
    assert "none" in none.detail
    other = check_hardware_pmu(errno.EACCES, True)
    assert other.status is Status.WARN
    assert "Permission denied" in other.detail


def test_paranoid_and_kptr_restrict():
    assert check_paranoid(3, privileged=True).status is Status.OK
    assert check_paranoid(2, privileged=False).status is Status.WARN
    assert check_paranoid(1, privileged=False).status is Status.OK
    assert check_paranoid(None, privileged=True).status is Status.WARN
    two = check_kptr_restrict(2, privileged=True, kallsyms_visible=None)
    assert two.status is Status.WARN
    assert "kernel frames will show as [kernel]; set it to 1" in two.detail
    assert check_kptr_restrict(1, privileged=True, kallsyms_visible=True).status is Status.OK
    assert check_kptr_restrict(1, privileged=False, kallsyms_visible=None).status is Status.WARN
    hidden = check_kptr_restrict(0, privileged=True, kallsyms_visible=False)  # measured beats the value
    assert hidden.status is Status.WARN
    assert "zero addresses" in hidden.detail
    assert check_kptr_restrict(0, privileged=True, kallsyms_visible=True).status is Status.OK


def test_kallsyms_visibility_is_read_from_the_file(tmp_path):
    assert kallsyms_visible(str(FIXTURES_DIR / "kallsyms" / "sample.txt")) is True
    assert kallsyms_visible(str(FIXTURES_DIR / "kallsyms" / "restricted.txt")) is False
    assert kallsyms_visible(str(tmp_path / "missing")) is None


def test_probe_pmus():
    lines = {c.name: c for c in check_probe_pmus({"software", "tracepoint", "uprobe"}, tracefs=False)}
    assert lines["kprobes"].status is Status.WARN
    assert "does not need them" in lines["kprobes"].detail
    assert lines["uprobes"].status is Status.OK
    assert lines["tracepoints"].status is Status.OK
    assert "mount -t tracefs" in lines["tracepoints"].detail
    lines = {c.name: c for c in check_probe_pmus({"kprobe", "uprobe", "tracepoint"}, tracefs=True)}
    assert all(c.status is Status.OK for c in lines.values())


def test_exit_status_and_lines():
    ok = Check(Status.OK, "a", "fine")
    warn = Check(Status.WARN, "b", "hmm")
    fail = Check(Status.FAIL, "c", "missing")
    assert exit_status([ok, warn]) == 0
    assert exit_status([ok, fail]) == 1
    assert fail.line() == "FAIL  c: missing"
    assert ok.line() == "OK    a: fine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--binary", "/nonexistent/app"], "bpfprof: --binary /nonexistent/app: no such file"),
        (["--binary", "/etc/hostname"], "bpfprof: /etc/hostname is not an ELF64 binary bpfprof can read"),
        (["--binary", "/"], "bpfprof: / is a directory, not a binary"),
        (["-p", "0"], "bpfprof: argument -p/--pid: '0': the PID must be positive"),
        (["-p", "4194305"], "bpfprof: no process 4194305"),
        (["--debuginfo-dir", "/nonexistent"], "bpfprof: --debuginfo-dir /nonexistent: no such directory"),
    ],
)
def test_bad_input_is_one_sentence(capsys, args, message):
    assert main(["doctor", "--no-system", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message), captured.err
    assert captured.err.count("\n") == 1
    assert captured.out == ""  # nothing printed before the error
