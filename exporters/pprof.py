"""pprof (profile.proto, gzipped): for ``go tool pprof``, Pyroscope and Grafana. No protobuf dependency.

The message layout is github.com/google/pprof/proto/profile.proto (package perftools.profiles):

- ``sample_type`` is ``[samples/count, cpu/nanoseconds]`` for a timer event (cpu-clock, task-clock),
  as Go's own CPU profiles have it, and ``[samples/count, EVENT/count]`` for PMC sampling; each Sample
  carries both values (its sample count and its summed period). ``period_type`` is the second type and
  ``period`` the fixed period (``-c``), else ``1e9 / frequency`` for a timer, else the mean period.
- Stacks are the folded output's: the root is the comm (or the ``--threads``/``--processes`` root that
  replaced it, exporters/roots.py), then user frames, then kernel frames; ``location_id[0]`` is the leaf.
- One Location per (module, file offset) for user frames, in a Mapping of that module that carries its
  build-id (``ProfileMeta.build_ids``). Processes map a file at different addresses, so each file gets
  one page-aligned range of its own (from MAPPING_BASE) with ``file_offset`` 0: ``address - memory_start
  + file_offset`` is the file offset, as perf's ``map__map_ip``, and pprof can symbolize from it. An
  inlined chain (``--lines``) is several Lines of that one Location, the innermost first.
- Kernel frames are in a ``[kernel.kallsyms]`` Mapping (``[MODULE]`` for a kernel module), one Location
  per function; marker frames (the root, ``[Missed User Stack]``...) are Locations without a Mapping.
- Functions have the display name (``name``, ``libfoo.so+0x1a2b`` when unnamed), the source file and no
  ``system_name``. Samples have numeric ``pid`` and ``tid`` labels.

``decode_profile`` reads such a file back (tests, and ``stacks`` for comparisons with folded output).
"""

from __future__ import annotations

import gzip
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from exporters.model import Profile, Sample
from unwind.frame import Frame, FrameKind

KERNEL_MAPPING = "[kernel.kallsyms]"
UNKNOWN_COMM = "[unknown]"
PAGE = 4096
# A shared library's name (pprof's libRx): never taken as the main binary when an executable is there.
_LIBRARY = re.compile(r"\.so($|[._][0-9]+)")
MAPPING_BASE = 0x400000  # memory_start of the first user file (any page-aligned nonzero address)
TIMER_EVENTS = ("cpu-clock", "task-clock")

# profile.proto field numbers
_PROFILE_SAMPLE_TYPE = 1
_PROFILE_SAMPLE = 2
_PROFILE_MAPPING = 3
_PROFILE_LOCATION = 4
_PROFILE_FUNCTION = 5
_PROFILE_STRING_TABLE = 6
_PROFILE_TIME_NANOS = 9
_PROFILE_DURATION_NANOS = 10
_PROFILE_PERIOD_TYPE = 11
_PROFILE_PERIOD = 12
_PROFILE_COMMENT = 13
_PROFILE_DEFAULT_SAMPLE_TYPE = 14

_VARINT = 0
_LEN = 2
_U64 = 2**64


# -- wire format ------------------------------------------------------------------------------------


def _varint(value: int, out: bytearray) -> None:
    """Append ``value`` as a protobuf varint; negative int64 values as their 64-bit two's complement."""
    if value < 0:
        value += _U64
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class _Message:
    """One message being encoded. Scalars equal to 0/False are left out, as proto3 does."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def int(self, number: int, value: int) -> _Message:
        if value:
            _varint(number << 3 | _VARINT, self.buf)
            _varint(value, self.buf)
        return self

    def bytes(self, number: int, data: bytes | bytearray) -> _Message:
        """A length-delimited field, written even when empty (a repeated string or message)."""
        _varint(number << 3 | _LEN, self.buf)
        _varint(len(data), self.buf)
        self.buf += data
        return self

    def packed(self, number: int, values: Sequence[int]) -> _Message:
        if values:
            body = bytearray()
            for v in values:
                _varint(v, body)
            self.bytes(number, body)
        return self

    def message(self, number: int, msg: _Message) -> _Message:
        return self.bytes(number, msg.buf)


# -- encoding a Profile -----------------------------------------------------------------------------


@dataclass(slots=True)
class _MappingInfo:
    id: int
    name: str
    build_id: str
    size: int = 0  # page-rounded span of the file offsets of its locations (user files only)
    start: int = 0  # memory_start, given once all sizes are known
    main_weight: int = 0  # samples whose root-most user frame is in it: the main binary has the most
    has_functions: bool = False
    has_filenames: bool = False
    has_line_numbers: bool = False
    has_inline_frames: bool = False


@dataclass(slots=True)
class _LocationInfo:
    id: int
    mapping: _MappingInfo | None
    file_off: int | None  # user frames: address = mapping start + file offset
    lines: tuple[tuple[int, int], ...]  # (function id, line), innermost first

    @property
    def address(self) -> int:
        if self.mapping is None or self.file_off is None:
            return 0
        return self.mapping.start + self.file_off


_LocationKey = tuple[object, ...]


class _Builder:
    """Interns strings, functions, mappings and locations in order of first use (ids from 1)."""

    def __init__(self, build_ids: dict[str, str]) -> None:
        self.strings: dict[str, int] = {"": 0}  # string_table[0] must be ""
        self.functions: dict[tuple[str, str], int] = {}
        self.mappings: dict[str, _MappingInfo] = {}
        self.locations: dict[_LocationKey, _LocationInfo] = {}
        self.build_ids = build_ids
        # caches: equal frame groups and stacks recur in many samples (threads, pids)
        self.by_group: dict[tuple[int, ...], _LocationInfo] = {}
        self.by_stack: dict[tuple[int, ...], tuple[list[_LocationInfo], _MappingInfo | None]] = {}
        self.roots: dict[str, _LocationInfo] = {}

    def string(self, text: str) -> int:
        index = self.strings.get(text)
        if index is None:
            index = self.strings[text] = len(self.strings)
        return index

    def function(self, name: str, filename: str) -> int:
        key = (name, filename)
        fid = self.functions.get(key)
        if fid is None:
            self.string(name)
            self.string(filename)
            fid = self.functions[key] = len(self.functions) + 1
        return fid

    def mapping(self, name: str) -> _MappingInfo:
        info = self.mappings.get(name)
        if info is None:
            info = self.mappings[name] = _MappingInfo(
                len(self.mappings) + 1, name, self.build_ids.get(name, "")
            )
            self.string(name)
            self.string(info.build_id)
        return info

    def location(self, group: tuple[Frame, ...]) -> _LocationInfo:
        """The Location of ``group``: a frame, then the frames inlined into it (root first)."""
        key = tuple(map(id, group))  # Frames are shared objects, alive as long as the profile
        known = self.by_group.get(key)
        if known is None:
            known = self.by_group[key] = self._location(group)
        return known

    def stack(self, sample: Sample) -> tuple[list[_LocationInfo], _MappingInfo | None]:
        """A sample's Locations, root (its comm) first, and the file of its root-most user frame."""
        key = tuple(map(id, sample.frames))  # hashing ids is far cheaper than hashing Frames
        known = self.by_stack.get(key)
        if known is None:
            locations = [self.location(group) for group in location_groups(sample.frames)]
            main = next(
                (loc.mapping for loc in locations if loc.mapping and loc.mapping.name[:1] != "["), None
            )
            known = self.by_stack[key] = (locations, main)
        root = self.roots.get(sample.comm)
        if root is None:
            root = self.roots[sample.comm] = self._location((root_frame(sample),))
        return [root, *known[0]], known[1]

    def _location(self, group: tuple[Frame, ...]) -> _LocationInfo:
        head = group[0]
        mapping_name = _mapping_name(head)
        lines = tuple(
            (self.function(f.label(), f.file or ""), f.line or 0) for f in reversed(group)
        )  # innermost (leaf-most) first, as profile.proto's Location.line
        file_off = head.file_off if head.kind is FrameKind.USER else None
        key: _LocationKey = (mapping_name, file_off, lines)
        info = self.locations.get(key)
        if info is not None:
            return info
        m = None
        if mapping_name is not None:
            m = self.mapping(mapping_name)
            if file_off is not None:
                m.size = max(m.size, -(-(file_off + 1) // PAGE) * PAGE)
            m.has_functions |= any(f.name for f in group)
            m.has_filenames |= any(f.file for f in group)
            m.has_line_numbers |= any(f.line for f in group)
            m.has_inline_frames |= len(group) > 1
        info = self.locations[key] = _LocationInfo(len(self.locations) + 1, m, file_off, lines)
        return info

    def place_mappings(self) -> list[_MappingInfo]:
        """The mappings in file order, main binary first, user files laid out one after another.

        pprof takes ``mapping[0]`` as the main binary: a file not named like a shared library (as pprof's
        own heuristic), holding the root-most user frame of the most samples. Each user file gets its
        own page-aligned range from MAPPING_BASE with ``file_offset`` 0, so ``address - memory_start``
        is the file offset, which pprof's local symbolization (PIE or not) turns into an ELF address.
        """
        ordered = sorted(
            self.mappings.values(),
            key=lambda m: (m.name.startswith("["), bool(_LIBRARY.search(m.name)), -m.main_weight, m.id),
        )
        next_start = MAPPING_BASE
        for m in ordered:
            if m.size:
                m.start = next_start
                next_start += m.size + PAGE  # a page apart: distinct files never look adjacent
        return ordered


def _mapping_name(frame: Frame) -> str | None:
    """The Mapping a frame belongs to: its file (user), the kernel or a kernel module, or none (markers)."""
    if frame.kind is FrameKind.KERNEL:
        return f"[{frame.module}]" if frame.module else KERNEL_MAPPING
    if frame.kind is FrameKind.USER and frame.module:
        return frame.module
    return None


def location_groups(frames: Sequence[Frame]) -> Iterator[tuple[Frame, ...]]:
    """Root-first frames grouped by code address: a frame, then the inlined frames that follow it.

    A ``--lines`` stack holds, for one return address, the function holding the code and then the calls
    inlined into it (``inlined=True``), all with the same module and file offset.
    """
    group: list[Frame] = []
    for frame in frames:
        if (
            group
            and frame.inlined
            and frame.kind is FrameKind.USER
            and (frame.module, frame.file_off) == (group[0].module, group[0].file_off)
        ):
            group.append(frame)
            continue
        if group:
            yield tuple(group)
        group = [frame]
    if group:
        yield tuple(group)


def root_frame(sample: Sample) -> Frame:
    """The marker frame at the root of every stack: the comm, as in the folded output."""
    return Frame(sample.comm or UNKNOWN_COMM, kind=FrameKind.MARKER)


def _value_types(profile: Profile) -> tuple[tuple[str, str], tuple[str, str]]:
    meta = profile.meta
    if meta.period_unit == "nanoseconds" or meta.event in TIMER_EVENTS:
        return ("samples", "count"), ("cpu", "nanoseconds")
    return ("samples", "count"), (meta.event, "count")


def _period(profile: Profile) -> int:
    """The sampling period: fixed (-c), else one tick of a timer at -F, else the mean of the samples'."""
    meta = profile.meta
    if meta.period:
        return meta.period
    if meta.frequency_hz and (meta.period_unit == "nanoseconds" or meta.event in TIMER_EVENTS):
        return round(1e9 / meta.frequency_hz)
    samples = sum(w.samples for w in profile.samples.values())
    return round(sum(w.period for w in profile.samples.values()) / samples) if samples else 0


def _comments(profile: Profile, exporter: str) -> list[str]:
    meta = profile.meta
    rate = f"{meta.frequency_hz} Hz" if meta.frequency_hz else f"every {meta.period} {meta.period_unit}"
    out = [exporter, f"event {meta.event}, {rate}"]
    if meta.command:
        out.append("command: " + shlex.join(meta.command))
    return out


def encode_profile(profile: Profile, *, exporter: str | None = None) -> bytes:
    """The profile as an uncompressed serialized ``perftools.profiles.Profile`` message.

    Deterministic: samples are ordered by (pid, tid, comm), then as in the profile; ids follow first use.
    ``exporter`` (default ``bpfprof@VERSION``) is the first comment.
    """
    if exporter is None:
        from exporters.speedscope import exporter_name

        exporter = exporter_name()
    b = _Builder(profile.meta.build_ids)
    out = _Message()
    sample_types = _value_types(profile)
    for type_name, unit in sample_types:
        out.message(_PROFILE_SAMPLE_TYPE, _Message().int(1, b.string(type_name)).int(2, b.string(unit)))
    pid_key, tid_key = b.string("pid"), b.string("tid")

    def order(item: tuple[Sample, object]) -> tuple[int, int, str]:
        return item[0].pid, item[0].tid, item[0].comm

    for sample, weight in sorted(profile.samples.items(), key=order):  # stable: a thread's in given order
        if weight.samples <= 0 and weight.period <= 0:
            continue
        locations, main = b.stack(sample)
        if main is not None:
            main.main_weight += weight.samples
        msg = (
            _Message()
            .packed(1, [loc.id for loc in reversed(locations)])
            .packed(2, [weight.samples, weight.period])
        )
        msg.message(3, _Message().int(1, pid_key).int(3, sample.pid))
        msg.message(3, _Message().int(1, tid_key).int(3, sample.tid))
        out.message(_PROFILE_SAMPLE, msg)
    for m in b.place_mappings():
        out.message(
            _PROFILE_MAPPING,
            _Message()
            .int(1, m.id)
            .int(2, m.start)
            .int(3, m.start + m.size)
            .int(5, b.string(m.name))
            .int(6, b.string(m.build_id))
            .int(7, m.has_functions)
            .int(8, m.has_filenames)
            .int(9, m.has_line_numbers)
            .int(10, m.has_inline_frames),
        )
    for loc in b.locations.values():
        mapping_id = loc.mapping.id if loc.mapping is not None else 0
        msg = _Message().int(1, loc.id).int(2, mapping_id).int(3, loc.address)
        for function_id, line in loc.lines:
            msg.message(4, _Message().int(1, function_id).int(2, line))
        out.message(_PROFILE_LOCATION, msg)
    for (name, filename), fid in b.functions.items():
        out.message(
            _PROFILE_FUNCTION, _Message().int(1, fid).int(2, b.string(name)).int(4, b.string(filename))
        )
    meta = profile.meta
    period_type = _Message().int(1, b.string(sample_types[1][0])).int(2, b.string(sample_types[1][1]))
    comments = [b.string(c) for c in _comments(profile, exporter)]
    default_type = b.string(sample_types[1][0])
    for text in b.strings:  # complete now: every string above is interned
        out.bytes(_PROFILE_STRING_TABLE, text.encode("utf-8", "replace"))
    out.int(_PROFILE_TIME_NANOS, meta.start_time_ns)
    out.int(_PROFILE_DURATION_NANOS, round(meta.duration_s * 1e9))
    out.message(_PROFILE_PERIOD_TYPE, period_type)
    out.int(_PROFILE_PERIOD, _period(profile))
    out.packed(_PROFILE_COMMENT, comments)
    out.int(_PROFILE_DEFAULT_SAMPLE_TYPE, default_type)
    return bytes(out.buf)


def write_pprof(profile: Profile, stream: BinaryIO, *, exporter: str | None = None) -> None:
    """Write a profile as a gzipped profile.proto (``.pb.gz``); the gzip header has no time (mtime 0)."""
    stream.write(gzip.compress(encode_profile(profile, exporter=exporter), compresslevel=6, mtime=0))


# -- decoding (tests, comparisons) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PprofMapping:
    id: int
    memory_start: int
    memory_limit: int
    file_offset: int
    filename: str
    build_id: str
    has_functions: bool
    has_filenames: bool
    has_line_numbers: bool
    has_inline_frames: bool


@dataclass(frozen=True, slots=True)
class PprofLine:
    function_id: int
    line: int


@dataclass(frozen=True, slots=True)
class PprofLocation:
    id: int
    mapping_id: int
    address: int
    lines: tuple[PprofLine, ...]


@dataclass(frozen=True, slots=True)
class PprofFunction:
    id: int
    name: str
    system_name: str
    filename: str
    start_line: int


@dataclass(frozen=True, slots=True)
class PprofSample:
    location_ids: tuple[int, ...]  # leaf first
    values: tuple[int, ...]
    labels: tuple[tuple[str, str | int], ...]  # (key, str or num)


@dataclass(slots=True)
class PprofProfile:
    """A decoded profile.proto, string indexes resolved."""

    sample_types: list[tuple[str, str]] = field(default_factory=list)
    samples: list[PprofSample] = field(default_factory=list)
    mappings: dict[int, PprofMapping] = field(default_factory=dict)
    locations: dict[int, PprofLocation] = field(default_factory=dict)
    functions: dict[int, PprofFunction] = field(default_factory=dict)
    string_table: list[str] = field(default_factory=list)
    time_nanos: int = 0
    duration_nanos: int = 0
    period_type: tuple[str, str] = ("", "")
    period: int = 0
    comments: list[str] = field(default_factory=list)
    default_sample_type: str = ""

    def stacks(self) -> dict[tuple[str, ...], list[int]]:
        """Root-first stacks of function names (inlined calls as frames of their own) -> summed values."""
        out: dict[tuple[str, ...], list[int]] = {}
        for s in self.samples:
            names: list[str] = []
            for lid in s.location_ids:  # leaf first; each location's lines innermost first
                names.extend(self.functions[line.function_id].name for line in self.locations[lid].lines)
            key = tuple(reversed(names))
            acc = out.setdefault(key, [0] * len(s.values))
            for i, v in enumerate(s.values):
                acc[i] += v
        return out


Fields = dict[int, list[int | bytes]]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def parse_fields(data: bytes) -> Fields:
    """The fields of one message: number -> values in order (ints for varints, bytes for the others).

    Grammar: a sequence of (varint key, value) where key = number << 3 | wire type; wire type 0 is a
    varint, 1 eight bytes, 2 a varint length then that many bytes, 5 four bytes. Anything else, or a
    value running past the end, raises ValueError.
    """
    fields: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError(f"field {number}: {size} bytes run past the end of the message")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise ValueError(f"field {number}: truncated fixed-size value")
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise ValueError(f"field {number}: unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _ints(fields: Fields, number: int) -> list[int]:
    """A repeated integer field, packed (bytes) or not."""
    out: list[int] = []
    for v in fields.get(number, []):
        if isinstance(v, bytes):
            pos = 0
            while pos < len(v):
                item, pos = _read_varint(v, pos)
                out.append(item)
        else:
            out.append(v)
    return out


def _int(fields: Fields, number: int) -> int:
    values = _ints(fields, number)
    return values[-1] if values else 0  # unsigned: bpfprof writes no negative values


def _messages(fields: Fields, number: int) -> list[Fields]:
    out = []
    for v in fields.get(number, []):
        if not isinstance(v, bytes):
            raise ValueError(f"field {number}: expected a message")
        out.append(parse_fields(v))
    return out


def decode_profile(data: bytes) -> PprofProfile:
    """Decode a profile.proto message, gzipped or not; malformed input raises ValueError."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"bad gzip data: {exc}") from None
    top = parse_fields(data)
    strings = []
    for raw in top.get(_PROFILE_STRING_TABLE, []):
        if not isinstance(raw, bytes):
            raise ValueError("string_table entry is not a string")
        strings.append(raw.decode("utf-8"))
    if not strings or strings[0] != "":
        raise ValueError('string_table[0] must be ""')

    def s(index: int) -> str:
        if not 0 <= index < len(strings):
            raise ValueError(f"string index {index} outside the string table ({len(strings)})")
        return strings[index]

    out = PprofProfile(string_table=strings)
    out.sample_types = [(s(_int(m, 1)), s(_int(m, 2))) for m in _messages(top, _PROFILE_SAMPLE_TYPE)]
    for m in _messages(top, _PROFILE_SAMPLE):
        labels = [
            (s(_int(lab, 1)), s(_int(lab, 2)) if _int(lab, 2) else _int(lab, 3)) for lab in _messages(m, 3)
        ]
        out.samples.append(PprofSample(tuple(_ints(m, 1)), tuple(_ints(m, 2)), tuple(labels)))
    mappings, locations, functions = (
        _messages(top, n) for n in (_PROFILE_MAPPING, _PROFILE_LOCATION, _PROFILE_FUNCTION)
    )
    for m in mappings:
        mapping = PprofMapping(
            _int(m, 1), _int(m, 2), _int(m, 3), _int(m, 4), s(_int(m, 5)), s(_int(m, 6)),
            *(bool(_int(m, n)) for n in (7, 8, 9, 10)),
        )  # fmt: skip
        out.mappings[mapping.id] = mapping
    for m in locations:
        lines = tuple(PprofLine(_int(ln, 1), _int(ln, 2)) for ln in _messages(m, 4))
        loc = PprofLocation(_int(m, 1), _int(m, 2), _int(m, 3), lines)
        out.locations[loc.id] = loc
    for m in functions:
        fn = PprofFunction(_int(m, 1), s(_int(m, 2)), s(_int(m, 3)), s(_int(m, 4)), _int(m, 5))
        out.functions[fn.id] = fn
    out.time_nanos = _int(top, _PROFILE_TIME_NANOS)
    out.duration_nanos = _int(top, _PROFILE_DURATION_NANOS)
    period_types = _messages(top, _PROFILE_PERIOD_TYPE)
    if period_types:
        out.period_type = (s(_int(period_types[-1], 1)), s(_int(period_types[-1], 2)))
    out.period = _int(top, _PROFILE_PERIOD)
    out.comments = [s(i) for i in _ints(top, _PROFILE_COMMENT)]
    out.default_sample_type = s(_int(top, _PROFILE_DEFAULT_SAMPLE_TYPE))
    counts = (len(mappings), len(locations), len(functions))
    if counts != (len(out.mappings), len(out.locations), len(out.functions)):
        raise ValueError("two mappings, locations or functions share an id")
    _check_references(out)
    return out


def _check_references(p: PprofProfile) -> None:
    """profile.proto's rules: unique nonzero ids, and every referenced id defined (pprof's CheckValid)."""
    for sample in p.samples:
        if len(sample.values) != len(p.sample_types):
            raise ValueError(f"a sample has {len(sample.values)} values for {len(p.sample_types)} types")
        for lid in sample.location_ids:
            if lid not in p.locations:
                raise ValueError(f"a sample refers to location {lid}, which is not defined")
    for loc in p.locations.values():
        if loc.id == 0 or (loc.mapping_id and loc.mapping_id not in p.mappings):
            raise ValueError(f"location {loc.id}: bad id or undefined mapping {loc.mapping_id}")
        for line in loc.lines:
            if line.function_id not in p.functions:
                raise ValueError(f"location {loc.id} refers to undefined function {line.function_id}")
