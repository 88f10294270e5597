"""Saved recordings (profiler/saved.py, unwind/saved.py): the file round-trips, versions are checked,
captures made by the real Symbolizer name the same frames later from files, debug files or nothing."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from exporters.model import ProfileMeta
from profiler.cli import main
from profiler.raw import RawProfile, RawStack, StackStatus
from profiler.saved import (
    HEADER,
    MAGIC,
    VERSION,
    Recording,
    RecordingError,
    RecordingMeta,
    decode,
    encode,
)
from tests.conftest import FIXTURES_DIR
from tests.unit.conftest import nm_addr
from tests.unit.symbolize_helpers import BASE, build_id_path, fake_process
from unwind.elf import PT_LOAD, ElfFile, Segment
from unwind.frame import Reason
from unwind.kallsyms import parse_kallsyms
from unwind.maps import Mapping
from unwind.saved import (
    KernelSymbol,
    SavedFile,
    SavedProcess,
    build_symbolizer,
    kernel_from_saved,
    kernel_subset,
    locate,
    snapshot,
)
from unwind.symbolizer import Symbolizer


def sample_recording() -> Recording:
    raw = RawProfile(stats={"seen": 12, "kept": 11, "user_collision": 1}, duration_s=1.5, unwind_s=0.25)
    raw.add(
        RawStack(10, 11, "app", (0x5500_0000_1234, 0x5500_0000_2000), (0xFFFF_FFFF_8100_0095,),
                 StackStatus.OK, StackStatus.OK, 1),
        7, 7_000_000,
    )  # fmt: skip
    raw.add(RawStack(10, 12, "app ;odd\n", (), (), StackStatus.COLLISION, StackStatus.SKIPPED), 4, 40)
    meta = RecordingMeta(
        profile=ProfileMeta(
            frequency_hz=None,
            period=1000,
            duration_s=1.5,
            start_time_ns=123,
            command=["./app", "x"],
            process_names={10: "./app x"},
            parents={10: 1},
            build_ids={"/app": "ab01"},
        ),
        host="h",
        kernel_release="6.18",
        machine="x86_64",
        boot_id="b",
        created_ns=5,
        stopped_by="signal",
        attach_s=0.1,
        options={"cpus": [0, 1], "call_graph": "fp"},
    )
    segs = (Segment(PT_LOAD, 5, 0x1000, 0x1000, 0x2000, 0x2000, 0),)
    files = [
        SavedFile("/app", bytes.fromhex("ab01"), 100, 200, segs),
        SavedFile("[vdso]", data=b"\x7fELF-ish"),
        SavedFile("/gone", error=Reason.NO_FILE),
    ]
    maps = (
        Mapping(0x5500_0000_0000, 0x5500_0000_3000, 0x1000, "r-xp", "fe:01", 42, "/app"),
        Mapping(0x7FFF_0000_0000, 0x7FFF_0000_2000, 0, "r-xp", "00:00", 0, "[vdso]"),
        Mapping(0x7FFF_1000_0000, 0x7FFF_1000_1000, 0, "rwxp", "00:00", 0, "", False),
    )
    processes = [SavedProcess(10, 1, maps, (0, 1, None), ((0x7FFF_1000_0000, 0x7FFF_1000_0010, "jit fn"),))]
    kernel = [KernelSymbol(0xFFFF_FFFF_8100_0090, 0xFFFF_FFFF_8100_0300, "do_one_initcall", None)]
    return Recording(meta, raw, processes, files, kernel, False)


def test_encode_decode_round_trip() -> None:
    rec = sample_recording()
    data = encode(rec)
    assert data[:8] == MAGIC
    assert HEADER.unpack_from(data)[1] == VERSION
    back = decode(data)
    assert back.raw.stacks == rec.raw.stacks
    assert back.raw.stats == rec.raw.stats
    assert (back.raw.duration_s, back.raw.unwind_s) == (1.5, 0.25)
    assert back.meta == rec.meta
    assert back.processes == rec.processes
    assert back.files == rec.files
    assert back.kernel == rec.kernel
    assert encode(back) == data  # deterministic: gzip without a timestamp, sorted maps


def test_addresses_are_hex_strings() -> None:
    doc = json.loads(gzip.decompress(encode(sample_recording())[HEADER.size :]))
    assert doc["kernel_stacks"] == [["ffffffff81000095"]]
    assert doc["samples"][0][:4] == [10, 11, "app", 1]


@pytest.mark.parametrize("version", [VERSION + 1, 0, 2**32 - 1])
def test_unknown_versions_are_refused_in_one_sentence(version: int) -> None:
    data = bytearray(encode(sample_recording()))
    HEADER.pack_into(data, 0, MAGIC, version)
    with pytest.raises(RecordingError) as err:
        decode(bytes(data))
    assert err.value.exit_code == 2
    assert f"version {version} recording" in str(err.value)
    assert "newer bpfprof" in str(err.value)


@pytest.mark.parametrize("cut", [0, 5, 12, 20, -30, -1])
def test_truncated_files_are_refused(cut: int) -> None:
    data = encode(sample_recording())
    with pytest.raises(RecordingError, match=r"bpfprof header|truncated|damaged"):
        decode(data[:cut])


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("samples", 0, 5), 99, r"samples\[0\]\[5\]"),
        (("samples", 0, 4), "fine", r"samples\[0\]\[4\]: expected a stack status"),
        (("samples", 0), [1, 2], r"samples\[0\]: expected a list of 10 items"),
        (("user_stacks", 0, 0), "0x12", r"user_stacks\[0\]\[0\]: expected a 64-bit hex"),
        (("user_stacks", 0, 0), "1" * 17, r"user_stacks\[0\]\[0\]"),
        (("processes", 0, "maps", 0, 1), "1", r"start below end"),
        (("processes", 0, "maps", 0, 8), 7, r"maps\[0\]\[8\]"),
        (("files", 0, "error"), "gone", r"files\[0\]\.error"),
        (("meta", "process_names"), {"x": "y"}, r"process ids as keys"),
        (("stats", "seen"), -1, r"stats\.seen"),
        (("format",), "other", r"format"),
    ],
)
def test_bad_fields_name_themselves(path: tuple, value: object, message: str) -> None:
    doc = json.loads(gzip.decompress(encode(sample_recording())[HEADER.size :]))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    data = HEADER.pack(MAGIC, VERSION) + gzip.compress(json.dumps(doc).encode())
    with pytest.raises(RecordingError, match=message):
        decode(data)


def test_missing_field_and_gzip_bomb_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(gzip.decompress(encode(sample_recording())[HEADER.size :]))
    del doc["samples"]
    with pytest.raises(RecordingError, match="samples: expected a value"):
        decode(HEADER.pack(MAGIC, VERSION) + gzip.compress(json.dumps(doc).encode()))
    monkeypatch.setattr("profiler.saved.MAX_DOCUMENT", 100)
    with pytest.raises(RecordingError, match="more than"):
        decode(encode(sample_recording()))


def test_kernel_subset_names_hit_addresses_as_the_full_table_does() -> None:
    full = parse_kallsyms((FIXTURES_DIR / "kallsyms" / "sample.txt").read_text())
    hits = [
        0xFFFFFFFF81000095,
        0xFFFFFFFF81100110,
        0xFFFFFFFFC0200011,
        0xFFFFFFFF81100290,
        0xFFFFFFFF83783500,
    ]
    subset = kernel_subset(full, hits)
    assert {s.name for s in subset} >= {"do_one_initcall", "schedule", "ext4_file_read_iter", "start_kernel"}
    assert len(subset) < len(full)
    again = kernel_from_saved(subset)
    assert again.lookup(hits) == full.lookup(hits)
    # a symbol's range ends where the next boundary was, even if that symbol was not saved
    assert again.lookup([0xFFFFFFFF81000300])[0] == (None, None)
    assert kernel_from_saved([], restricted=True).restricted


def test_kernel_subset_of_restricted_kallsyms_is_empty() -> None:
    restricted = parse_kallsyms((FIXTURES_DIR / "kallsyms" / "restricted.txt").read_text())
    assert kernel_subset(restricted, [0xFFFFFFFF81000095]) == []


# -- captures by the real Symbolizer, named again later -------------------------------------------


def capture(exe: Path, root: Path) -> tuple[list[SavedProcess], list[SavedFile], int, int]:
    """Capture ``exe`` mapped in a fake process with the real Symbolizer; (processes, files, pid, addr)
    where addr is the absolute address of ``leaf_work`` in it."""
    proc, pid = fake_process(exe, root)
    addr = BASE + nm_addr(exe, "leaf_work") + 3
    with Symbolizer(proc=proc, cache=False, debuginfod=False) as sym:
        assert sym.capture(pid)
        assert sym.symbolize_user(pid, [addr])[0].name == "leaf_work"
        processes, files = snapshot(sym, {(pid, 0): [addr, 0x10]})
    return processes, files, pid, addr


def names_later(processes, files, pid, addr, **options) -> tuple[list[str], list[tuple[str, str]]]:
    symbolizer, located = build_symbolizer(processes, files, [], cache=False, **options)
    with symbolizer:
        frames = symbolizer.symbolize_user(pid, [addr, addr + 1])
        return [f.label() for f in frames], located.notes


def test_snapshot_keeps_only_the_mappings_hit(fx: Path, tmp_path: Path) -> None:
    exe = shutil.copy(fx / "prog", tmp_path / "prog")
    processes, files, pid, _ = capture(Path(exe), tmp_path)
    (p,) = processes
    assert (p.pid, p.gen, len(p.maps), p.files) == (pid, 0, 1, (0,))
    (f,) = files
    with ElfFile.open(exe) as elf:
        assert (f.path, f.build_id, f.segments) == (str(exe), elf.build_id, elf.load_segments)
    assert f.size == os.stat(exe).st_size


def test_file_at_its_path_names_frames(fx: Path, tmp_path: Path) -> None:
    exe = Path(shutil.copy(fx / "prog", tmp_path / "prog"))
    names, notes = names_later(*capture(exe, tmp_path), default_dirs=())
    assert names[0] == "leaf_work"
    assert notes == []


def test_deleted_binary_is_found_by_build_id_as_its_debug_file(fx: Path, tmp_path: Path) -> None:
    """The debug file's own program headers lack the file offsets: the saved segments translate."""
    exe = Path(shutil.copy(fx / "prog", tmp_path / "prog"))
    saved = capture(exe, tmp_path)
    debug_dir = tmp_path / "debug"
    target = build_id_path(debug_dir, exe)
    target.parent.mkdir(parents=True)
    shutil.copy(fx / "prog.debug", target)
    exe.unlink()
    names, notes = names_later(*saved, debug_dirs=[str(debug_dir)], default_dirs=())
    assert names[0] == "leaf_work"
    assert notes == []
    names, notes = names_later(*saved, default_dirs=())
    assert names[0].startswith("prog+0x")
    ((path, why),) = notes
    assert path == str(exe)
    assert "no longer at its path" in why
    assert "--debuginfo-dir" in why


def test_rebuilt_binary_is_not_trusted(fx: Path, tmp_path: Path) -> None:
    exe = Path(shutil.copy(fx / "prog", tmp_path / "prog"))
    saved = capture(exe, tmp_path)
    shutil.copy(fx / "libfix.so", exe)  # another ELF (another build-id) at the path now
    names, notes = names_later(*saved, default_dirs=())
    assert names[0].startswith("prog+0x")
    assert "another build-id" in notes[0][1]


def test_locate_reports_files_unreadable_when_recorded() -> None:
    located = locate([SavedFile("/x", error=Reason.BAD_ELF), SavedFile("[vdso]", data=b"v")], default_dirs=())
    assert located.images[0] is Reason.BAD_ELF
    assert located.images[1].data == b"v"
    assert located.notes == [("/x", f"it could not be read while recording ({Reason.BAD_ELF.value})")]


def test_never_captured_images_are_no_process_and_live_proc_is_never_read() -> None:
    # pid 1 exists here: a symbolizer of saved data must not read it
    symbolizer, _ = build_symbolizer([], [], [], cache=False, default_dirs=())
    with symbolizer:
        (frame,) = symbolizer.symbolize_user(1, [0x1000])
    assert frame.unknown is Reason.NO_PROCESS


def test_jit_entries_name_anonymous_code() -> None:
    anon = Mapping(0x7000_0000, 0x7000_1000, 0, "rwxp", "00:00", 0, "")
    proc = SavedProcess(3, 0, (anon,), (None,), ((0x7000_0100, 0x7000_0200, "js:hot"),))
    symbolizer, _ = build_symbolizer([proc], [], [], cache=False, default_dirs=())
    with symbolizer:
        frames = symbolizer.symbolize_user(3, [0x7000_0150, 0x7000_0900, 0x9000_0000])
    assert [f.name for f in frames] == ["js:hot", None, None]
    assert [f.unknown for f in frames] == [None, Reason.ANON, Reason.NO_MAPPING]


# -- the command ----------------------------------------------------------------------------------


def test_report_of_folded_stacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folded = tmp_path / "in.folded"
    folded.write_text("app;main;work 3\napp;main;work;schedule_[k] 2\nother;x 1\n")
    out = tmp_path / "out.folded"
    svg = tmp_path / "out.svg"
    ss = tmp_path / "out.speedscope.json"
    assert main(["report", str(folded), "-o", str(out), "-o", str(svg), "-o", str(ss)]) == 0
    assert out.read_text() == folded.read_text()
    assert "<svg" in svg.read_text()
    doc = json.loads(ss.read_text())
    assert sorted(p["name"] for p in doc["profiles"]) == ["app (1)", "other (2)"]
    assert "6 samples in 3 stacks" in capsys.readouterr().err


def test_report_default_output_is_the_input_name_with_svg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.bpfprof").write_bytes(encode(sample_recording()))
    assert main(["report", "run.bpfprof", "-q"]) == 0
    assert "<svg" in (tmp_path / "run.svg").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds no stacks"),
        (b"\x00\x01garbage\xff", "neither a bpfprof recording nor folded stacks"),
        (b"a;b notanumber\n", "neither a bpfprof recording nor folded stacks"),
        (MAGIC + b"\x01", "not a bpfprof recording"),
        (HEADER.pack(MAGIC, 7) + b"x", "version 7 recording"),
        (HEADER.pack(MAGIC, 1) + b"not gzip", "damaged"),
    ],
)
def test_report_bad_input_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    path = tmp_path / "in.bpfprof"
    path.write_bytes(content)
    assert main(["report", str(path), "-o", str(tmp_path / "x.folded")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("bpfprof: ")
    assert message in err
    assert not (tmp_path / "x.folded").exists()


def test_report_refuses_missing_input_and_recording_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "none.bpfprof")]) == 2
    assert "No such file" in capsys.readouterr().err
    path = tmp_path / "in.folded"
    path.write_text("a;b 1\n")
    assert main(["report", str(path), "-o", str(tmp_path / "y.bpfprof")]) == 2
    assert "does not write recordings" in capsys.readouterr().err
    assert main(["report", str(path), "-o", str(path), "-f", "folded"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert path.read_text() == "a;b 1\n"


def test_record_outputs_ending_in_bpfprof_are_recordings(tmp_path: Path) -> None:
    from profiler.cli import resolve_outputs

    targets = resolve_outputs([str(tmp_path / "a.BPFPROF"), str(tmp_path / "a.svg")], None, "x")
    assert [t.fmt for t in targets] == ["bpfprof", "svg"]


def test_folded_input_has_no_thread_roots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.folded"
    path.write_text("a;b 1\n")
    assert main(["report", str(path), "--threads", "-o", str(tmp_path / "o.folded")]) == 2
    assert "need a recording" in capsys.readouterr().err
