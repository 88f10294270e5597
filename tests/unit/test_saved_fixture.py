"""Old recordings keep opening: each committed tests/fixtures/recording-vN.bpfprof renders the same
folded output as when it was made (golden files).

recording-v1.bpfprof was made by the real recorder (bpfprof 0.1.0, kernel 6.18) from two static
workloads copied to a temporary directory that was removed afterwards:

    bpfprof record -F 199 -o recording-v1.bpfprof -- DIR/cpu_split exec 0.8 DIR/tiny_jit 0.8

so it holds two exec generations of one pid, a JIT perf-map entry (jitted_spin_for_bpfprof), kernel
frames named from its saved symbols, and a binary that no longer exists anywhere (its frames stay
``cpu_split+0xOFF``): nothing in it depends on the machine that renders it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from profiler.cli import main
from profiler.saved import load
from tests.conftest import FIXTURES_DIR

FIXTURES = sorted(FIXTURES_DIR.glob("recording-v*.bpfprof"))


def test_there_is_a_fixture_of_every_version() -> None:
    from profiler.saved import VERSION

    assert [p.name for p in FIXTURES] == [f"recording-v{v}.bpfprof" for v in range(1, VERSION + 1)]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_fixture_renders_its_golden_folded_output(
    fixture: Path, tmp_path: Path, golden, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.folded"
    assert main(["report", str(fixture), "-o", str(out), "--debuginfo-dir", str(tmp_path)]) == 0
    golden(fixture.stem + ".folded", out.read_text())
    err = capsys.readouterr().err
    assert "binaries not found now" in err  # the workload binary was deleted after recording
    assert "jitted_spin_for_bpfprof" in err  # named from the saved perf-map entry


def test_v1_fixture_content() -> None:
    rec = load(str(FIXTURES_DIR / "recording-v1.bpfprof"))
    assert rec.version == 1
    assert len({p.pid for p in rec.processes}) == 1
    assert len({p.gen for p in rec.processes}) == 3  # the held child, cpu_split, tiny_jit (execs)
    assert any(p.jit for p in rec.processes)
    assert rec.kernel
    assert not rec.kernel_restricted
    assert rec.meta.profile.frequency_hz == 199
    assert rec.raw.stats["kept"] == sum(c for c, _ in rec.raw.stacks.values())


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_fixture_renders_svg_and_speedscope(fixture: Path, tmp_path: Path) -> None:
    svg, ss = tmp_path / "a.svg", tmp_path / "a.speedscope.json"
    assert main(["report", str(fixture), "-q", "-o", str(svg), "-o", str(ss), "--delimit", "--lines"]) == 0
    assert "jitted_spin_for_bpfprof" in svg.read_text()
    assert "jitted_spin_for_bpfprof" in ss.read_text()


def test_fixture_keeps_process_roots(tmp_path: Path) -> None:
    out = tmp_path / "roots.folded"
    assert (
        main(["report", str(FIXTURES_DIR / "recording-v1.bpfprof"), "-q", "--processes", "-o", str(out)]) == 0
    )
    lines = out.read_text().splitlines()
    assert lines
    assert all(line.startswith("process ") for line in lines)
    assert any("tiny_jit 0.8" in line for line in lines)  # the command line captured while recording
