"""Folded stacks: bcc ``profile -f`` lines, options, name sanitising, and parsing them back."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporters.folded import (
    FoldedOptions,
    fold_profile,
    fold_sample,
    parse_folded,
    sanitize_name,
    write_folded,
    write_folded_stacks,
)
from exporters.model import Profile, Sample
from tests.unit.exporters_fixtures import SYSCALL, kernel, sample_profile, user
from unwind.frame import MISSED_KERNEL, MISSED_USER, FrameKind


def folded(profile: Profile, options: FoldedOptions | None = None) -> str:
    out = io.StringIO()
    write_folded(profile, out, options)
    return out.getvalue()


def test_folded_lines_follow_bcc_profile_f():
    assert folded(sample_profile()).splitlines() == [
        "[unknown];bad name x;asm_exc_page_fault 1",
        "app;_start;main;compute 10",  # pid 100 tids 100+101 and pid 300 merged: 5 + 3 + 2
        "app;_start;main;libfoo.so+0x1a2b;[Missed Kernel Stack] 2",
        "bash;[Missed User Stack];entry_SYSCALL_64;do_syscall_64;ksys_write 1",
        "swapper/0;secondary_startup_64;cpu_startup_entry;do_idle 7",
        'worker;start_thread;parse:header_12;std::vector<int>::push_back(int&&) "x";'
        "entry_SYSCALL_64;do_syscall_64;ksys_read 4",
    ]


def test_folded_golden(golden):
    golden("sample.folded", folded(sample_profile()))


def test_folded_delimited_annotated_golden(golden):
    text = folded(sample_profile(), FoldedOptions(delimit=True, annotate_kernel=True))
    golden("sample-delimited-annotated.folded", text)


def test_delimiter_only_between_real_user_and_kernel_stacks():
    lines = folded(sample_profile(), FoldedOptions(delimit=True)).splitlines()
    assert "[unknown];bad name x;-;asm_exc_page_fault 1" in lines
    assert any(line.startswith("worker;start_thread;") and ";-;entry_SYSCALL_64;" in line for line in lines)
    # bcc adds no '-' next to a [Missed ... Stack] marker, nor to a kernel-only (idle) stack.
    assert "app;_start;main;libfoo.so+0x1a2b;[Missed Kernel Stack] 2" in lines
    assert "bash;[Missed User Stack];entry_SYSCALL_64;do_syscall_64;ksys_write 1" in lines
    assert "swapper/0;secondary_startup_64;cpu_startup_entry;do_idle 7" in lines
    assert sum(line.count(";-;") for line in lines) == 2


def test_annotate_kernel_marks_kernel_frames_only():
    lines = folded(sample_profile(), FoldedOptions(annotate_kernel=True)).splitlines()
    assert "bash;[Missed User Stack];entry_SYSCALL_64_[k];do_syscall_64_[k];ksys_write_[k] 1" in lines
    assert "app;_start;main;libfoo.so+0x1a2b;[Missed Kernel Stack] 2" in lines
    assert "app;_start;main;compute 10" in lines
    assert not any(";-;" in line for line in lines)


def test_fold_sample_reports_kinds_with_comm_and_delimiter_as_markers():
    sample = Sample(1, 1, "app", (user("main"), *SYSCALL))
    names, kinds = fold_sample(sample, FoldedOptions(delimit=True, annotate_kernel=True))
    assert names == ("app", "main", "-", "entry_SYSCALL_64_[k]", "do_syscall_64_[k]")
    assert kinds == (FrameKind.MARKER, FrameKind.USER, FrameKind.MARKER, FrameKind.KERNEL, FrameKind.KERNEL)


def test_missed_markers_keep_their_place():
    both = Sample(1, 1, "app", (MISSED_USER, MISSED_KERNEL))
    names, _ = fold_sample(both, FoldedOptions(delimit=True, annotate_kernel=True))
    assert names == ("app", "[Missed User Stack]", "[Missed Kernel Stack]")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("a;b", "a:b"),
        ("foo 12", "foo_12"),
        ("foo 1.5", "foo_1.5"),
        ("foo 12 bar", "foo 12 bar"),
        ("operator() const", "operator() const"),
        ("two\nlines", "two lines"),
        ("tab\t\t and  spaces ", "tab and spaces"),
        ("bell\x07", "bell?"),
        ("", "[unknown]"),
        ("  \n ", "[unknown]"),
        ("x ;7", "x :7"),
        ("x\n7", "x_7"),
    ],
)
def test_sanitize_name(raw: str, clean: str):
    assert sanitize_name(raw) == clean


def test_same_comm_and_stack_from_different_pids_merge_and_zero_counts_vanish():
    profile = Profile()
    profile.add(Sample(1, 1, "app", (user("f"),)), 2, 20)
    profile.add(Sample(2, 5, "app", (user("f"),)), 3, 30)
    profile.add(Sample(3, 3, "app", (user("g"),)), 0, 0)
    assert folded(profile) == "app;f 5\n"


def test_empty_stack_is_the_comm_alone():
    profile = Profile()
    profile.add(Sample(1, 1, "idle", ()), 4, 40)
    assert folded(profile) == "idle 4\n"
    assert parse_folded(io.StringIO(folded(profile))) == {("idle",): 4}


def test_round_trip_keeps_stacks_and_counts():
    profile = sample_profile()
    for options in (FoldedOptions(), FoldedOptions(delimit=True, annotate_kernel=True)):
        parsed = parse_folded(io.StringIO(folded(profile, options)))
        assert parsed == fold_profile(profile, options)
    assert sum(parsed.values()) == profile.total_samples


def test_parse_folded_tolerates_flamegraph_pl_input():
    text = "\n  a;b c;d 3\r\n\na;b c;d\t4\nx 10  \n\n"
    assert parse_folded(io.StringIO(text)) == {("a", "b c", "d"): 7, ("x",): 10}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a;b 1\nno count here\n", 2),
        ("a;b 1.5\n", 1),
        ("\n\na;b -3\n", 3),
        ("a;b 1\n 7\n", 2),
        ("12\n", 1),
    ],
)
def test_parse_folded_rejects_bad_lines_with_their_number(text: str, line: int):
    with pytest.raises(ValueError, match=rf"^line {line}: "):
        parse_folded(io.StringIO(text))


def test_write_folded_stacks_sorts_and_sums_lines():
    out = io.StringIO()
    write_folded_stacks({("b", "x"): 1, ("a",): 2, ("b", "w"): 0, ("a", "z"): 5}, out)
    assert out.getvalue() == "a 2\na;z 5\nb;x 1\n"


names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)


@given(st.lists(st.tuples(st.lists(names, min_size=1, max_size=5), st.integers(1, 10**12)), max_size=8))
def test_any_sanitised_names_round_trip(raw: list[tuple[list[str], int]]) -> None:
    stacks: dict[tuple[str, ...], int] = {}
    for frames, count in raw:
        stack = tuple(sanitize_name(f) for f in frames)
        stacks[stack] = stacks.get(stack, 0) + count
    out = io.StringIO()
    write_folded_stacks(stacks, out)
    assert parse_folded(io.StringIO(out.getvalue())) == stacks


def test_kernel_frame_named_like_a_number_stays_a_frame():
    profile = Profile()
    profile.add(Sample(1, 1, "app", (user("main"), kernel("irq 42"))), 9, 90)
    assert folded(profile, FoldedOptions(annotate_kernel=True)) == "app;main;irq_42_[k] 9\n"
    assert parse_folded(io.StringIO(folded(profile))) == {("app", "main", "irq_42"): 9}


def test_lines_option_renders_py_spy_frames() -> None:
    from exporters.folded import FoldedOptions, fold_sample
    from exporters.model import Sample
    from unwind.frame import Frame, FrameKind

    inlined = Frame("step", "/bin/app", FrameKind.USER, file="src/step.h", line=7, inlined=True)
    outer = Frame("run", "/bin/app", FrameKind.USER, file="/src/run.c", line=42)
    sample = Sample(1, 1, "app", (outer, inlined))
    assert fold_sample(sample, FoldedOptions(lines=True))[0] == ("app", "run (run.c:42)", "step (step.h:7)")
    assert fold_sample(sample, FoldedOptions())[0] == ("app", "run", "step")
