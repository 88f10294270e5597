"""bpfprof stat's report formats (table, CSV, JSON) and its flags, on results built by hand."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from profiler.cli import build_parser, split_command
from profiler.cmd_stat import build_options
from profiler.errors import UserError
from profiler.events import parse_event_list
from profiler.stat import OTHER, By, GroupKey, Reading, Snapshot, StatEvent, StatOptions, StatResult
from profiler.stat_report import (
    CSV_COLUMNS,
    JSON_VERSION,
    format_csv,
    format_interval,
    format_json,
    format_table,
    to_json,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "stat-json.md"


def _result(by: By = By.PID, intervals: bool = False) -> StatResult:
    specs = parse_event_list("task-clock,page-faults,cycles")
    events = [StatEvent(specs[0]), StatEvent(specs[1]), StatEvent(specs[2], supported=False)]
    a, b = GroupKey(pid=100, comm="app"), GroupKey(pid=200, comm="db")
    groups = {
        a: [Reading(300_000_000, 300_000_000, 300_000_000), Reading(1500, 300_000_000, 300_000_000), None],
        b: [Reading(700_000_000, 700_000_000, 700_000_000), Reading(20, 700_000_000, 700_000_000), None],
        OTHER: [Reading(0, 0, 0), Reading(0, 0, 0), None],  # nothing counted: left out
    }
    total = [Reading(1_000_000_000, 10**9, 10**9), Reading(1520, 10**9, 10**9), None]
    final = Snapshot(500_000_000, total, groups)
    opts = StatOptions(
        specs, [True, True, False], system_wide=True, by=by, interval_ms=250 if intervals else None
    )
    ivals = [(0.25, final), (0.5, final)] if intervals else []
    return StatResult(events, opts, final, ivals, None, "duration", {"switches": 9, "tasks_full": 0}, 0.01)


def test_table_lists_groups_largest_first_then_the_total() -> None:
    text = format_table(_result())
    lines = text.splitlines()
    assert lines[1] == " Performance counter stats for 'system wide', by pid:"
    body = [ln for ln in lines if re.search(r"(task-clock|page-faults|cycles)", ln)]
    assert body[0].split()[:4] == ["db-200", "700.00", "msec", "task-clock"]
    assert "#    1.400 CPUs utilized" in body[0]
    assert body[2].split()[:3] == ["app-100", "300.00", "msec"]
    assert "5.000 K/sec" in body[3]  # 1500 faults in 0.3 s of task-clock
    assert not any("[other]" in ln for ln in lines)
    assert body[-1].split() == ["<not", "supported>", "cycles"]
    assert len(body) == 2 + 2 + 3  # no <not supported> line per group
    assert lines[-2].strip() == "0.500000000 seconds time elapsed"


def test_interval_lines_start_with_the_time() -> None:
    result = _result(By.NONE, intervals=True)
    text = format_interval(result, 0.25, result.final)
    assert all(ln.startswith("     0.250000000 ") for ln in text.splitlines())
    assert len(text.splitlines()) == 3


def test_csv_has_a_header_and_one_row_per_group_and_event() -> None:
    text = format_csv(_result())
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == CSV_COLUMNS
    by_group = {(r[1], r[6]): r for r in table[1:]}
    assert len(table) == 1 + 3 * 3  # app, db, total
    row = dict(zip(CSV_COLUMNS, by_group[("app-100", "page-faults")], strict=True))
    assert row["count"] == "1500"
    assert row["pid"] == "100"
    assert row["comm"] == "app"
    assert row["metric"] == "per_second"
    assert float(row["metric_value"]) == pytest.approx(5000)
    assert by_group[("total", "cycles")][7] == "<not supported>"
    interval = list(csv.reader(io.StringIO(format_csv(_result(intervals=True)))))
    assert {r[0] for r in interval[1:]} == {"0.250000000", "0.500000000"}


def test_json_document_has_the_documented_fields() -> None:
    doc = json.loads(format_json(_result(intervals=True)))
    assert doc["version"] == JSON_VERSION == 1
    assert doc["by"] == "pid"
    assert doc["target"] == {"system_wide": True, "pids": [], "command": None}
    assert [e["supported"] for e in doc["events"]] == [True, True, False]
    assert [g["label"] for g in doc["groups"]] == ["db-200", "app-100"]
    faults = doc["groups"][1]["counts"][1]
    assert faults == {
        "event": "page-faults", "supported": True, "counted": True, "value": 1500, "unit": "",
        "raw_value": 1500, "time_enabled_ns": 300_000_000, "time_running_ns": 300_000_000,
        "percent_running": 100.0,
        "metric": {"name": "per_second", "value": pytest.approx(5000), "unit": "/sec"},
    }  # fmt: skip
    assert doc["total"][2]["supported"] is False
    assert doc["total"][2]["value"] is None
    assert [i["time_s"] for i in doc["intervals"]] == [0.25, 0.5]
    assert doc["health"]["switches"] == 9


def test_json_schema_doc_names_every_field() -> None:
    """docs/stat-json.md documents each key the document has (the doc is the contract)."""
    text = DOC.read_text()
    doc = to_json(_result(intervals=True))
    keys = set(doc) | set(doc["groups"][0]) | set(doc["total"][0]) | set(doc["intervals"][0])
    keys |= set(doc["target"]) | set(doc["events"][0]) | set(doc["total"][1]["metric"])
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/stat-json.md does not describe {missing}"


# -- flags -----------------------------------------------------------------------------------------


def _opts(*argv: str) -> StatOptions:
    head, command = split_command(["stat", *argv])
    return build_options(build_parser().parse_args(head), command)


def test_defaults_are_perf_stats_list_system_wide() -> None:
    opts = _opts()
    names = [s.name for s in opts.events]
    assert names == ["task-clock", "context-switches", "cpu-migrations", "page-faults",
                     "cycles", "instructions", "branches", "branch-misses"]  # fmt: skip
    assert opts.required == [True] * 4 + [False] * 4
    assert opts.system_wide
    assert opts.by is By.NONE
    assert not opts.per_task


def test_targets_and_breakdowns() -> None:
    assert _opts("-p", "1,2").pids == [1, 2]
    assert _opts("-p", "1").per_task
    cmd = _opts("-e", "page-faults", "--", "sleep", "1")
    assert cmd.command == ["sleep", "1"]
    assert not cmd.system_wide
    assert cmd.required == [True]
    both = _opts("-a", "--by", "tid", "--", "sleep", "1")
    assert both.system_wide
    assert both.by is By.TID
    assert both.per_task
    assert _opts("-a", "--by", "cpu").by is By.CPU


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-p", "1", "--", "true"], "either -p PID or -- COMMAND"),
        (["-a", "-p", "1"], "drop it to count -p PID"),
        (["--by", "cpu", "-p", "1"], "--by cpu"),
        (["-I", "5"], "at least 10 ms"),
        (["-e", "no-such-event"], "unknown event"),
        (["--by", "process"], "invalid choice"),
        (["-p", "x"], "bad PID"),
        (["-d", "0"], "positive"),
    ],
)
def test_bad_flags_are_one_sentence_and_exit_2(argv: list[str], message: str) -> None:
    with pytest.raises(UserError) as info:
        _opts(*argv)
    assert info.value.exit_code == 2
    assert message in str(info.value)
    assert "\n" not in str(info.value)
