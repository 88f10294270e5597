"""The recording parser, fuzzed with a fixed budget (issue #7): truncated, corrupted or hostile files
get one sentence (RecordingError) and `bpfprof report` a nonzero exit, never a traceback; whatever
the decoder accepts also renders without an exception."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiler.cli import main
from profiler.saved import HEADER, MAGIC, VERSION, Recording, RecordingError, decode
from profiler.symbolize import symbolize_profile
from tests.conftest import FIXTURES_DIR
from unwind.saved import build_symbolizer

FIXTURE = (FIXTURES_DIR / "recording-v1.bpfprof").read_bytes()
DOCUMENT = json.loads(gzip.decompress(FIXTURE[HEADER.size :]))
BUDGET = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["ffffffff", "0", "ok", "missing", "[vdso]", "", "no_file"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def render(rec: Recording) -> None:
    """Name and fold an accepted recording as report does (no exception may escape)."""
    symbolizer, _ = build_symbolizer(
        rec.processes, rec.files, rec.kernel, kernel_restricted=rec.kernel_restricted, cache=False
    )
    with symbolizer:
        symbolize_profile(rec.raw, symbolizer, rec.meta.profile)


def decode_or_refuse(data: bytes) -> None:
    try:
        rec = decode(data)
    except RecordingError as exc:
        refused: RecordingError | None = exc
    else:
        refused = None
        render(rec)
    if refused is not None:
        assert "\n" not in str(refused)
        assert refused.exit_code == 2


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += paths(v, (*prefix, i))
    return out


ALL_PATHS = paths(DOCUMENT)[1:]


def repack(doc: Any) -> bytes:
    return HEADER.pack(MAGIC, VERSION) + gzip.compress(json.dumps(doc).encode())


@BUDGET
@given(st.integers(min_value=0, max_value=len(FIXTURE) - 1))
def test_every_truncation_is_refused(cut: int) -> None:
    with pytest.raises(RecordingError):
        decode(FIXTURE[:cut])


@BUDGET
@given(st.lists(st.tuples(st.integers(0, len(FIXTURE) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_bytes_are_refused_or_render(flips: list[tuple[int, int]]) -> None:
    data = bytearray(FIXTURE)
    for pos, value in flips:
        data[pos] = value
    decode_or_refuse(bytes(data))


@BUDGET
@given(st.sampled_from(ALL_PATHS), json_values)
def test_any_field_replaced_is_refused_or_renders(path: tuple, value: Any) -> None:
    doc = json.loads(json.dumps(DOCUMENT))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    decode_or_refuse(repack(doc))


@BUDGET
@given(json_values)
def test_any_document_is_refused_or_renders(doc: Any) -> None:
    decode_or_refuse(repack(doc))


@BUDGET
@given(st.binary(max_size=200))
def test_any_bytes_after_the_header_are_refused(body: bytes) -> None:
    with pytest.raises(RecordingError):
        decode(HEADER.pack(MAGIC, VERSION) + body)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=len(FIXTURE) - 1), st.integers(0, 255))
def test_report_command_never_shows_a_traceback(tmp_path_factory, pos: int, value: int) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    damaged = bytearray(FIXTURE)
    damaged[pos] = value
    for i, data in enumerate((bytes(damaged), FIXTURE[:pos])):
        path = Path(tmp) / f"in{i}.bpfprof"
        path.write_bytes(data)
        code = run_report(path, Path(tmp) / f"out{i}.folded")
        assert code in (0, 2)


def run_report(path: Path, out: Path) -> int:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["report", str(path), "-o", str(out), "-q"])
    text = err.getvalue()
    assert "Traceback" not in text
    assert "internal error" not in text
    if code:
        assert text.count("\n") == 1
        assert text.startswith("bpfprof: ")
    return code
