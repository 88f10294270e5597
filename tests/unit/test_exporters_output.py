"""Output plumbing: format from file name, atomic writes that leave nothing partial, write_profile."""

from __future__ import annotations

import io
import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TextIO

import pytest

from exporters.folded import FoldedOptions, parse_folded, write_folded
from exporters.output import FORMATS, format_for_path, write_atomic, write_profile
from exporters.speedscope import write_speedscope
from exporters.svg import SvgOptions
from tests.unit.exporters_fixtures import sample_profile


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("out.folded", "folded"),
        ("out.txt", "folded"),
        ("dir.d/OUT.TXT", "folded"),
        ("out.speedscope.json", "speedscope"),
        ("out.json", "speedscope"),
        ("/tmp/x.Speedscope.JSON", "speedscope"),
        ("flame.svg", "svg"),
        (Path("a/b/flame.svg"), "svg"),
    ],
)
def test_format_from_extension(path: str | Path, fmt: str):
    assert format_for_path(path, None) == fmt


def test_explicit_format_wins_over_extension():
    assert format_for_path("out.svg", "folded") == "folded"
    assert format_for_path("no-extension", "speedscope") == "speedscope"


@pytest.mark.parametrize("path", ["out.pdf", "out", "out.svg.gz", "folded"])
def test_unknown_extension_says_what_is_known_and_about_f(path: str):
    with pytest.raises(ValueError, match="-f") as info:
        format_for_path(path, None)
    message = str(info.value)
    for ext in (".folded", ".txt", ".speedscope.json", ".json", ".svg"):
        assert ext in message
    assert repr(path) in message
    assert message.count(". ") == 0  # one sentence
    assert message.endswith(".")


def test_unknown_explicit_format_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown output format 'pdf': -f takes one of folded, speedscope, svg"
    ):
        format_for_path("out.svg", "pdf")


def test_formats_registry():
    assert set(FORMATS) == {"folded", "speedscope", "svg", "pprof"}
    assert FORMATS["speedscope"].extensions == (".speedscope.json", ".json")
    extensions, writer = FORMATS["folded"]
    assert extensions == (".folded", ".txt")
    out = io.StringIO()
    writer(sample_profile(), out, FoldedOptions(), SvgOptions())
    reference = io.StringIO()
    write_folded(sample_profile(), reference)
    assert out.getvalue() == reference.getvalue()


def test_write_atomic_writes_the_whole_file(tmp_path: Path):
    target = tmp_path / "out.folded"
    write_atomic(target, lambda s: s.write("a;b 1\n"))
    assert target.read_text() == "a;b 1\n"
    assert os.listdir(tmp_path) == ["out.folded"]


def test_new_file_mode_follows_the_umask(tmp_path: Path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "f.txt", lambda s: s.write("x 1\n"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640


def test_replacing_keeps_the_existing_mode(tmp_path: Path):
    target = tmp_path / "f.txt"
    target.write_text("old 1\n")
    target.chmod(0o604)
    write_atomic(target, lambda s: s.write("new 2\n"))
    assert target.read_text() == "new 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o604


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom("writer failed"), KeyboardInterrupt(), OSError(28, "No space left")])
def test_failure_midway_leaves_no_partial_file(tmp_path: Path, exc: BaseException):
    target = tmp_path / "out.svg"

    def half_then_fail(stream: TextIO) -> None:
        stream.write("<svg>" * 100_000)  # more than a buffer: some of it reaches the temp file
        raise exc

    with pytest.raises(type(exc)) as info:
        write_atomic(target, half_then_fail)
    assert info.value is exc  # propagated unchanged
    assert os.listdir(tmp_path) == []


def test_failure_midway_keeps_the_previous_file(tmp_path: Path):
    target = tmp_path / "out.folded"
    target.write_text("previous 1\n")

    def fail(stream: TextIO) -> None:
        stream.write("partial")
        raise Boom

    with pytest.raises(Boom):
        write_atomic(target, fail)
    assert target.read_text() == "previous 1\n"
    assert os.listdir(tmp_path) == ["out.folded"]


def test_missing_directory_raises_os_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError) as info:
        write_atomic(tmp_path / "no" / "such" / "out.svg", lambda s: s.write("x"))
    assert info.value.strerror  # the reason a CLI prints after "cannot write PATH: "


def test_path_under_a_file_raises_os_error(tmp_path: Path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        write_atomic(tmp_path / "file" / "out.svg", lambda s: s.write("x"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_raises_permission_error(tmp_path: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            write_atomic(ro / "out.svg", lambda s: s.write("x"))
    finally:
        ro.chmod(0o755)


def test_unwritable_target_raises_os_error_and_cleans_up(tmp_path: Path):
    target = tmp_path / "out.folded"
    target.mkdir()  # os.replace cannot put a file over a directory, even for root
    with pytest.raises(IsADirectoryError):
        write_atomic(target, lambda s: s.write("a 1\n"))
    assert os.listdir(tmp_path) == ["out.folded"]
    assert target.is_dir()


def test_unencodable_characters_do_not_fail_late(tmp_path: Path):
    target = tmp_path / "x.txt"
    write_atomic(target, lambda s: s.write("bad\udcffname 1\n"))
    assert target.read_text() == "bad?name 1\n"


def test_write_profile_in_every_format(tmp_path: Path):
    profile = sample_profile()
    write_profile(profile, tmp_path / "p.folded", "folded", folded_options=FoldedOptions(delimit=True))
    write_profile(profile, tmp_path / "p.json", "speedscope")
    write_profile(profile, tmp_path / "p.svg", "svg", svg_options=SvgOptions(title="bpfprof test"))

    with (tmp_path / "p.folded").open() as f:
        stacks = parse_folded(f)
    assert sum(stacks.values()) == profile.total_samples
    assert any("-" in stack for stack in stacks)

    reference = io.StringIO()
    write_speedscope(profile, reference)
    assert json.loads((tmp_path / "p.json").read_text()) == json.loads(reference.getvalue())

    root = ET.parse(tmp_path / "p.svg").getroot()
    titles = [
        "".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("id") == "title"
    ]
    assert titles == ["bpfprof test"]
    assert sorted(os.listdir(tmp_path)) == ["p.folded", "p.json", "p.svg"]


def test_write_profile_rejects_an_unknown_format(tmp_path: Path):
    with pytest.raises(ValueError, match="-f takes one of"):
        write_profile(sample_profile(), tmp_path / "p.pdf", "pdf")
    assert os.listdir(tmp_path) == []
