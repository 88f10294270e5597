"""py-spy's process and thread roots (``--processes``, ``--threads``) in the folded, SVG and pprof output."""

from __future__ import annotations

import io

from exporters.folded import FoldedOptions, fold_profile, write_folded
from exporters.model import Profile, ProfileMeta, Sample
from exporters.pprof import decode_profile, encode_profile
from exporters.roots import process_chain, process_label, root_labels, thread_label, with_roots
from exporters.svg import SvgOptions, write_svg
from tests.unit.exporters_fixtures import COMPUTE, MAIN, START, TICK_NS, sample_profile
from unwind.frame import FrameKind


def folded(profile: Profile) -> list[str]:
    out = io.StringIO()
    write_folded(profile, out, FoldedOptions())
    return out.getvalue().splitlines()


def named(profile: Profile) -> Profile:
    """sample_profile with the command lines and parents a recording captures."""
    profile.meta.process_names = {100: "/usr/bin/app --fast", 200: "bash -c make", 300: "app --child"}
    profile.meta.parents = {100: 1, 200: 1, 300: 100, 400: 300}
    return profile


def test_labels_are_py_spys() -> None:
    # py-spy src/main.rs: format!("thread ({}): {}", threadid, thread_name) / format!("thread ({})", ..)
    assert thread_label(42, "MainThread") == "thread (42): MainThread"
    assert thread_label(42, "") == "thread (42)"
    # py-spy src/stack_trace.rs ProcessInfo::to_frame: format!("process {}:\"{}\"", pid, command_line)
    assert process_label(41, "python3 app.py --x") == 'process 41:"python3 app.py --x"'


def test_threads_root_replaces_the_comm() -> None:
    lines = folded(with_roots(named(sample_profile()), threads=True))
    assert "thread (100): app;_start;main;compute 5" in lines
    assert "thread (101): app;_start;main;compute 3" in lines
    assert "thread (102): worker;start_thread;parse:header_12;" in "\n".join(lines)
    assert "thread (400);bad name x;asm_exc_page_fault 1" in lines  # no comm: no name
    assert not any(line.startswith(("app;", "worker;")) for line in lines)


def test_processes_roots_outermost_first() -> None:
    lines = folded(with_roots(named(sample_profile()), processes=True))
    # pid 300's parent 100 was captured: it comes first, as py-spy's --subprocesses shows it
    assert 'process 100:"/usr/bin/app --fast";process 300:"app --child";_start;main;compute 2' in lines
    assert 'process 100:"/usr/bin/app --fast";_start;main;compute 8' in lines  # both threads
    # pid 400 (child of 300) has no captured command line: its comm (empty) stands in
    assert 'process 100:"/usr/bin/app --fast";process 300:"app --child";process 400:"";bad name x;' in (
        "\n".join(lines)
    )
    # pid 0 (idle) and 200 have no captured parent: a single root
    assert 'process 0:"swapper/0";secondary_startup_64;cpu_startup_entry;do_idle 7' in lines
    assert any(line.startswith('process 200:"bash -c make";[Missed User Stack];') for line in lines)


def test_processes_then_thread() -> None:
    lines = folded(with_roots(named(sample_profile()), threads=True, processes=True))
    assert 'process 100:"/usr/bin/app --fast";thread (101): app;_start;main;compute 3' in lines
    assert (
        'process 100:"/usr/bin/app --fast";process 300:"app --child";thread (300): app;_start;main;compute 2'
        in lines
    )


def test_roots_keep_every_sample_and_weight() -> None:
    profile = named(sample_profile())
    for threads, processes in ((True, False), (False, True), (True, True)):
        rooted = with_roots(profile, threads=threads, processes=processes)
        assert rooted.total_samples == profile.total_samples
        assert sum(w.period for w in rooted.samples.values()) == sum(
            w.period for w in profile.samples.values()
        )
        assert rooted.meta.process_names == profile.meta.process_names
        for sample in rooted.samples:
            extra = [f for f in sample.frames if f.kind is FrameKind.MARKER and f.name.startswith("process ")]
            assert all(f.file is None and f.module is None for f in extra)


def test_without_options_the_profile_is_unchanged() -> None:
    profile = sample_profile()
    assert with_roots(profile) is profile


def test_samples_that_render_alike_merge() -> None:
    profile = Profile(meta=ProfileMeta(process_names={7: "prog"}))
    profile.add(Sample(7, 7, "prog", (START, MAIN, COMPUTE)), 2, 2 * TICK_NS)
    profile.add(Sample(7, 8, "prog", (START, MAIN, COMPUTE)), 3, 3 * TICK_NS)
    rooted = with_roots(profile, processes=True)
    assert fold_profile(rooted, FoldedOptions()) == {('process 7:"prog"', "_start", "main", "compute"): 5}
    assert len(rooted.samples) == 2  # distinct threads stay distinct samples (pprof labels tid)


def test_parent_cycles_and_uncaptured_parents_end_the_chain() -> None:
    meta = ProfileMeta(process_names={1: "a", 2: "b"}, parents={1: 2, 2: 1, 3: 9})
    assert process_chain(1, meta) == [2, 1]
    assert process_chain(3, meta) == [3]
    sample = Sample(3, 4, "c", ())
    assert root_labels(sample, meta, threads=True, processes=True) == ['process 3:"c"', "thread (4): c"]


def test_awkward_command_lines_stay_one_folded_frame() -> None:
    profile = Profile(meta=ProfileMeta(process_names={5: 'sh -c "a; b"\nx 12'}))
    profile.add(Sample(5, 5, "sh", (MAIN,)), 1, TICK_NS)
    assert folded(with_roots(profile, processes=True)) == ['process 5:"sh -c "a: b" x 12";main 1']


def test_roots_reach_svg_and_pprof() -> None:
    rooted = with_roots(named(sample_profile()), threads=True, processes=True)
    out = io.StringIO()
    write_svg(rooted, out, SvgOptions())
    assert "thread (102): worker" in out.getvalue()
    assert "process 100:&quot;/usr/bin/app --fast&quot;" in out.getvalue()
    stacks = decode_profile(encode_profile(rooted)).stacks()
    assert ('process 100:"/usr/bin/app --fast"', "thread (101): app", "_start", "main", "compute") in stacks
