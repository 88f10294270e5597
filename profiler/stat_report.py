"""`bpfprof stat` results as text: a perf-stat-like table, CSV, and the JSON document of docs/stat-json.md."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from profiler.stat import (
    By,
    GroupKey,
    Metric,
    Reading,
    Snapshot,
    StatEvent,
    StatResult,
    derive_metrics,
    rate_unit,
)

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class Row:
    """One event of one group, ready to print."""

    event: StatEvent
    reading: Reading | None
    metric: Metric | None

    @property
    def value(self) -> float | None:
        """The scaled count (ns for the clocks), or None when not supported / not counted."""
        return scaled_value(self.reading)


def scaled_value(reading: Reading | None) -> float | None:
    """None for an event not supported, or enabled but never on the PMU (perf's ``<not counted>``)."""
    if reading is None or not reading.counted:
        return None
    return reading.scaled


def rows(events: list[StatEvent], readings: list[Reading | None], elapsed_ns: int) -> list[Row]:
    metrics = derive_metrics(events, [scaled_value(r) for r in readings], elapsed_ns)
    return [Row(e, r, m) for e, r, m in zip(events, readings, metrics, strict=True)]


def sorted_groups(snap: Snapshot, by: By) -> list[tuple[GroupKey, list[Reading | None]]]:
    """Groups with anything counted: CPUs in order, tasks by their first event's count, largest first."""
    live = [(k, v) for k, v in snap.groups.items() if any(r is not None and r.value for r in v)]
    if by is By.CPU:
        return sorted(live, key=lambda kv: kv[0].cpu or 0)

    def weight(kv: tuple[GroupKey, list[Reading | None]]) -> tuple[float, str]:
        first = next((r.scaled for r in kv[1] if r is not None), 0.0)
        return (-first, kv[0].label)

    return sorted(live, key=weight)


# -- the table ---------------------------------------------------------------------------------


def _count_text(row: Row) -> str:
    if row.reading is None:
        return "<not supported>"
    if row.value is None:
        return "<not counted>"
    if row.event.unit == "msec":
        return f"{row.value / 1e6:,.2f}"
    return f"{int(row.value):,}"


def _metric_text(row: Row) -> str:
    m = row.metric
    if m is None:
        return ""
    if m.key == "per_second":
        value, unit = rate_unit(m.value)
        return f"# {value:8.3f} {unit}"
    if m.key in ("branch_miss_percent", "cache_miss_percent"):
        return f"# {m.value:7.2f}% {m.text}"
    if m.key == "insn_per_cycle":
        return f"# {m.value:7.2f}  {m.text}"
    return f"# {m.value:8.3f} {m.text}"


def _line(row: Row, prefix: str = "") -> str:
    text = f"{prefix}{_count_text(row):>18} {row.event.unit:<4} {row.event.name:<32} {_metric_text(row):<30}"
    r = row.reading
    if r is not None and r.multiplexed:
        text += f"  ({r.percent_running:.2f}%)"
    return text.rstrip()


def target_text(result: StatResult) -> str:
    opts = result.options
    if opts.command and not opts.system_wide:
        return f"'{' '.join(opts.command)}'"
    if opts.pids:
        return f"process id '{','.join(map(str, opts.pids))}'"
    if opts.command:
        return f"'system wide' while '{' '.join(opts.command)}' ran"
    return "'system wide'"


def _block(result: StatResult, snap: Snapshot, prefix_of=lambda g: "") -> list[str]:
    lines = []
    for key, readings in sorted_groups(snap, result.options.by):
        prefix = f"{prefix_of(key)}{key.label:>24} "
        table_rows = rows(result.events, readings, snap.elapsed_ns)
        # <not supported> is said once, in the total
        lines.extend(_line(row, prefix) for row in table_rows if row.reading is not None)
    return lines


def format_table(result: StatResult) -> str:
    """The final counts as perf stat prints them: per group (with --by), then the total."""
    by = result.options.by
    out = ["", f" Performance counter stats for {target_text(result)}"
           + ("" if by is By.NONE else f", by {by.value}") + ":", ""]  # fmt: skip
    snap = result.final
    if by is not By.NONE:
        out.extend(_block(result, snap))
        out.append("")
    out.extend(_line(row) for row in rows(result.events, snap.total, snap.elapsed_ns))
    out.append("")
    out.append(f"{snap.elapsed_ns / 1e9:18.9f} seconds time elapsed")
    out.extend(_health_lines(result))
    out.append("")
    return "\n".join(out) + "\n"


def _health_lines(result: StatResult) -> list[str]:
    h = result.health
    lines = []
    if h.get("tasks_full"):
        lines.append(
            f"  {h['tasks_full']:,} shares were charged to [other]: more tasks than --tasks-size; raise it"
        )
    if h.get("read_failed"):
        lines.append(f"  {h['read_failed']:,} counter reads failed in the kernel: those shares are missing")
    if h.get("targets_full"):
        lines.append(f"  {h['targets_full']:,} children of the targets were not followed: too many processes")
    return ["", *lines] if lines else []


def interval_header(result: StatResult) -> str:
    group = "" if result.options.by is By.NONE else f" {'group':>24}"
    return f"#{'time':>15}{group} {'counts':>18} {'unit':<4} events\n"


def format_interval(result: StatResult, time_s: float, snap: Snapshot) -> str:
    """One -I interval: each line starts with the seconds since counting began, as perf prints."""
    stamp = f"{time_s:16.9f} "
    lines = []
    if result.options.by is not By.NONE:
        lines.extend(_block(result, snap, lambda g: stamp))
    else:
        lines.extend(_line(row, stamp) for row in rows(result.events, snap.total, snap.elapsed_ns))
    return "\n".join(lines) + "\n" if lines else ""


# -- CSV ---------------------------------------------------------------------------------------

CSV_COLUMNS = [
    "time_s", "group", "pid", "tid", "comm", "cpu", "event", "count", "unit",
    "time_enabled_ns", "time_running_ns", "percent_running", "metric", "metric_value",
]  # fmt: skip


def _csv_rows(result: StatResult, time_s: float | None, snap: Snapshot) -> list[list[object]]:
    out: list[list[object]] = []
    groups = [] if result.options.by is By.NONE else sorted_groups(snap, result.options.by)
    for key, readings in [*groups, (None, snap.total)]:
        for row in rows(result.events, readings, snap.elapsed_ns):
            r = row.reading
            m = row.metric
            out.append([
                "" if time_s is None else f"{time_s:.9f}",
                "total" if key is None else key.label,
                "" if key is None or key.pid is None else key.pid,
                "" if key is None or key.tid is None else key.tid,
                "" if key is None or key.comm is None else key.comm,
                "" if key is None or key.cpu is None else key.cpu,
                row.event.name,
                _csv_count(row),
                "ns" if row.event.unit else "",
                "" if r is None else r.enabled,
                "" if r is None else r.running,
                "" if r is None or r.percent_running is None else f"{r.percent_running:.2f}",
                "" if m is None else m.key,
                "" if m is None else f"{m.value:.6g}",
            ])  # fmt: skip
    return out


def _csv_count(row: Row) -> str:
    if row.reading is None:
        return "<not supported>"
    if row.value is None:
        return "<not counted>"
    return str(int(row.value))


def format_csv(result: StatResult) -> str:
    """A header, then one line per (interval,) group and event; the group ``total`` sums them."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    if result.options.interval_ms:
        for time_s, snap in result.intervals:
            w.writerows(_csv_rows(result, time_s, snap))
    else:
        w.writerows(_csv_rows(result, None, result.final))
    return buf.getvalue()


def format_csv_interval(result: StatResult, time_s: float, snap: Snapshot, header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(CSV_COLUMNS)
    w.writerows(_csv_rows(result, time_s, snap))
    return buf.getvalue()


# -- JSON --------------------------------------------------------------------------------------


def _json_counts(result: StatResult, readings: list[Reading | None], elapsed_ns: int) -> list[dict]:
    out = []
    for row in rows(result.events, readings, elapsed_ns):
        r, m = row.reading, row.metric
        out.append({
            "event": row.event.name,
            "supported": r is not None,
            "counted": r is not None and row.value is not None,
            "value": None if row.value is None else int(row.value),
            "unit": "ns" if row.event.unit else "",
            "raw_value": None if r is None else r.value,
            "time_enabled_ns": None if r is None else r.enabled,
            "time_running_ns": None if r is None else r.running,
            "percent_running": None if r is None or r.percent_running is None
            else round(r.percent_running, 2),
            "metric": None if m is None else {"name": m.key, "value": m.value, "unit": m.text},
        })  # fmt: skip
    return out


def _json_snapshot(result: StatResult, snap: Snapshot) -> dict:
    groups = []
    if result.options.by is not By.NONE:
        for key, readings in sorted_groups(snap, result.options.by):
            groups.append({
                "label": key.label, "pid": key.pid, "tid": key.tid, "comm": key.comm, "cpu": key.cpu,
                "counts": _json_counts(result, readings, snap.elapsed_ns),
            })  # fmt: skip
    return {
        "elapsed_s": round(snap.elapsed_ns / 1e9, 9),
        "total": _json_counts(result, snap.total, snap.elapsed_ns),
        "groups": groups,
    }


def to_json(result: StatResult) -> dict:
    """The document of docs/stat-json.md (version 1)."""
    opts = result.options
    doc = {
        "version": JSON_VERSION,
        "tool": "bpfprof stat",
        "target": {
            "system_wide": opts.system_wide,
            "pids": list(opts.pids),
            "command": list(opts.command) or None,
        },
        "by": opts.by.value,
        "events": [
            {"name": ev.name, "type": ev.spec.type, "config": ev.spec.config, "supported": ev.supported}
            for ev in result.events
        ],
        "stopped_by": result.stopped_by,
        "command_exit_status": None if result.command is None else result.exit_code,
        **_json_snapshot(result, result.final),
        "intervals": [
            {"time_s": round(t, 9), **_json_snapshot(result, snap)} for t, snap in result.intervals
        ],
        "health": dict(result.health),
    }
    return doc


def format_json(result: StatResult) -> str:
    return json.dumps(to_json(result), indent=2) + "\n"
