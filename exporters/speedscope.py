"""speedscope JSON (https://www.speedscope.app/file-format-schema.json): one sampled profile per process.

Frames are shared by all profiles (``{name, file?, line?}``, file and line only when known). Each
process (pid) is a ``"type": "sampled"`` profile named ``comm (pid)`` whose samples are lists of frame
indexes, root first (user frames, then kernel frames; no comm or thread root: the profile names the
process). Weights are integers: the summed sample period, in nanoseconds for a timer event
(``unit: "nanoseconds"``) and in events otherwise (``unit: "none"``), so PMC profiles weigh by events.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TextIO

from exporters.model import Profile, Sample
from unwind.frame import Frame

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
# speedscope's ValueUnit enum (file-format-schema.json).
UNITS = ("none", "nanoseconds", "microseconds", "milliseconds", "seconds", "bytes")

Stack = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _FrameInfo:
    """One entry of ``shared.frames``; equal frames share one index."""

    name: str
    file: str | None
    line: int | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.file is not None:
            out["file"] = self.file
        if self.line is not None:
            out["line"] = self.line
        return out


def exporter_name() -> str:
    """``bpfprof@VERSION`` of the installed distribution (``bpfprof@unknown`` when not installed)."""
    try:
        return f"bpfprof@{metadata.version('bpfprof')}"
    except metadata.PackageNotFoundError:
        return "bpfprof@unknown"


def _frame_info(frame: Frame) -> _FrameInfo:
    return _FrameInfo(frame.label(), frame.file, frame.line)


def _process_comm(samples: Iterable[Sample]) -> str:
    """The name of a process: its main thread's comm (tid == pid), else the comm of its lowest tid."""
    by_tid = sorted(samples, key=lambda s: (s.tid != s.pid, s.tid, s.comm))
    comm = by_tid[0].comm if by_tid else ""
    return comm or "[unknown]"


def _unit(period_unit: str) -> str:
    return "nanoseconds" if period_unit == "nanoseconds" else "none"


def speedscope_document(
    profile: Profile, *, exporter: str | None = None, weight: str = "period"
) -> dict[str, Any]:
    """The speedscope file of a profile as a JSON-ready dict (see the module docstring for its shape).

    ``weight="samples"`` weighs stacks by sample counts instead of periods (``unit: "none"``).
    """
    by_pid: dict[int, dict[Sample, int]] = {}
    for sample, w in profile.samples.items():
        value = w.by(weight)
        if value <= 0:
            continue  # weighs nothing: speedscope would draw nothing for it
        by_pid.setdefault(sample.pid, {})[sample] = value

    frame_index: dict[_FrameInfo, int] = {}
    profiles: list[dict[str, Any]] = []
    unit = _unit(profile.meta.period_unit) if weight == "period" else "none"
    for pid in sorted(by_pid):
        weights_by_stack: dict[tuple[_FrameInfo, ...], int] = {}
        for sample, period in by_pid[pid].items():
            stack = tuple(_frame_info(f) for f in sample.frames)
            weights_by_stack[stack] = weights_by_stack.get(stack, 0) + period
        samples: list[list[int]] = []
        weights: list[int] = []
        # Sorted by frame names so the output does not depend on the order samples were drained in.
        for stack in sorted(
            weights_by_stack, key=lambda st: [(f.name, f.file or "", f.line or 0) for f in st]
        ):
            samples.append([frame_index.setdefault(f, len(frame_index)) for f in stack])
            weights.append(int(weights_by_stack[stack]))
        profiles.append(
            {
                "type": "sampled",
                "name": f"{_process_comm(by_pid[pid])} ({pid})",
                "unit": unit,
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        )

    meta = profile.meta
    name = f"bpfprof {meta.event}"
    if meta.command:
        name += f": {shlex.join(meta.command)}"
    # speedscope opens the heaviest process first (for system-wide profiles, the one that matters).
    heaviest = max(range(len(profiles)), key=lambda i: profiles[i]["endValue"], default=0)
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": [f.to_json() for f in frame_index]},
        "profiles": profiles,
        "name": name,
        "activeProfileIndex": heaviest,
        "exporter": exporter if exporter is not None else exporter_name(),
    }


def write_speedscope(
    profile: Profile, stream: TextIO, *, exporter: str | None = None, weight: str = "period"
) -> None:
    """Write a profile as a speedscope JSON file; ``exporter`` defaults to ``bpfprof@VERSION``.

    The JSON is laid out one frame and one sample per line: compact, yet readable and diffable.
    ``weight`` is ``period`` (summed sample periods, the default) or ``samples``.
    """
    doc = speedscope_document(profile, exporter=exporter, weight=weight)

    def dumps(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    w = stream.write
    w("{\n")
    for key in ("$schema", "name", "exporter", "activeProfileIndex"):
        w(f" {dumps(key)}: {dumps(doc[key])},\n")
    w(' "shared": {"frames": [')
    w(",".join(f"\n  {dumps(frame)}" for frame in doc["shared"]["frames"]))
    w("\n ]},\n")
    w(' "profiles": [')
    for i, prof in enumerate(doc["profiles"]):
        head = ", ".join(
            f"{dumps(k)}: {dumps(prof[k])}" for k in ("type", "name", "unit", "startValue", "endValue")
        )
        w(f"{',' if i else ''}\n  {{{head},\n")
        w('   "samples": [')
        w(",".join(f"\n    {dumps(s)}" for s in prof["samples"]))
        w(f'\n   ],\n   "weights": {dumps(prof["weights"])}}}')
    w("\n ]\n}\n")


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"not a speedscope sampled-profile file: {what}")


def read_speedscope(stream: TextIO) -> dict[str, dict[Stack, int]]:
    """Read the sampled profiles of a speedscope file: profile name -> stack of frame names -> weight.

    Stacks are root first, as stored; equal stacks add up. Only ``"type": "sampled"`` profiles are
    read (evented ones are skipped). A structural error (missing key, index out of range, samples and
    weights of different lengths, a non-integer weight) raises ValueError.
    """
    try:
        doc = json.load(stream)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a speedscope file: {exc}") from exc
    _require(isinstance(doc, dict), "the top level is not an object")
    shared = doc.get("shared")
    frames = shared.get("frames") if isinstance(shared, dict) else None
    _require(isinstance(frames, list), "no shared.frames list")
    assert isinstance(frames, list)  # for the type checker
    names: list[str] = []
    for frame in frames:
        _require(isinstance(frame, dict) and isinstance(frame.get("name"), str), "a frame without a name")
        names.append(frame["name"])
    profiles = doc.get("profiles")
    _require(isinstance(profiles, list), "no profiles list")
    out: dict[str, dict[Stack, int]] = {}
    for prof in profiles:
        _require(isinstance(prof, Mapping), "a profile is not an object")
        if prof.get("type") != "sampled":
            continue
        samples, weights = prof.get("samples"), prof.get("weights")
        _require(isinstance(samples, list) and isinstance(weights, list), "a profile without samples/weights")
        _require(len(samples) == len(weights), "samples and weights differ in length")
        stacks = out.setdefault(str(prof.get("name", "")), {})
        for indexes, weight in zip(samples, weights, strict=True):
            _require(isinstance(weight, int) and not isinstance(weight, bool), "a weight is not an integer")
            _require(
                isinstance(indexes, list)
                and all(isinstance(i, int) and 0 <= i < len(names) for i in indexes),
                "a sample refers to a frame index out of range",
            )
            stack = tuple(names[i] for i in indexes)
            stacks[stack] = stacks.get(stack, 0) + weight
    return out
