"""Saved recordings (``.bpfprof``): the raw stacks of a run with what names them, written by
``bpfprof record -o run.bpfprof`` and rendered later by ``bpfprof report``.

A file is a 12-byte header (``MAGIC``, then the format version as a little-endian u32) followed by a
gzip stream of one UTF-8 JSON document. The document's fields are described in
docs/recording-format.md; ``encode`` writes version ``VERSION`` and ``decode`` reads every version up to
it. A reader meeting a newer version stops with one sentence (``RecordingError.exit_code`` 2).
``decode`` checks every field it reads: damaged, truncated or hostile input raises RecordingError with
one sentence, never another exception.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import socket
import struct
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporters.model import ProfileMeta
from profiler import __version__
from profiler.raw import RawProfile, RawStack, StackStatus
from unwind.elf import PT_LOAD, Segment
from unwind.frame import Reason
from unwind.maps import Mapping
from unwind.saved import KernelSymbol, SavedFile, SavedProcess, kernel_subset, lookup_addresses, snapshot

if TYPE_CHECKING:
    from profiler.record import RecordOptions, RecordResult
    from unwind.symbolizer import Symbolizer

MAGIC = b"\x89BPFPROF"  # a high first byte, like PNG's: never taken for text (a folded file)
HEADER = struct.Struct("<8sI")  # magic, version
VERSION = 1
SUFFIX = ".bpfprof"
# Decompressed documents larger than this are refused (a gzip bomb); a 10 s system-wide run is ~1 MB.
MAX_DOCUMENT = 1 << 30
_MAX_TEXT = 1 << 16  # longest string field accepted (paths, names)
_U64 = 2**64 - 1
_HEX_DIGITS = frozenset("0123456789abcdef")
_REASONS = {r.name.lower(): r for r in Reason}


class RecordingError(Exception):
    """A recording that cannot be read: one sentence for the user, and the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(slots=True)
class RecordingMeta:
    """Where and how a recording was made. ``options`` are the record options (free-form JSON values,
    shown and kept, not interpreted beyond ``cpus``)."""

    profile: ProfileMeta = field(default_factory=ProfileMeta)
    bpfprof_version: str = __version__
    host: str = ""
    kernel_release: str = ""
    machine: str = ""
    boot_id: str = ""
    created_ns: int = 0
    stopped_by: str = ""
    attach_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Recording:
    """A decoded recording: raw stacks and loss counters, the captures that name them, and metadata."""

    meta: RecordingMeta
    raw: RawProfile
    processes: list[SavedProcess] = field(default_factory=list)
    files: list[SavedFile] = field(default_factory=list)
    kernel: list[KernelSymbol] = field(default_factory=list)
    kernel_restricted: bool = False
    version: int = VERSION


def is_recording(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts like a recording."""
    return head.startswith(MAGIC)


# -- making one -----------------------------------------------------------------------------------


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def from_run(
    result: RecordResult, symbolizer: Symbolizer, profile_meta: ProfileMeta, opts: RecordOptions
) -> Recording:
    """The recording of a finished run, with the captures of the images its stacks ran in.

    Call it after symbolization (the captures then hold every mapping learnt while naming frames).
    """
    raw = result.raw
    user_addrs: dict[tuple[int, int], set[int]] = defaultdict(set)
    kernel_addrs: set[int] = set()
    for stack in raw.stacks:
        if stack.user_ips:
            user_addrs[(stack.pid, stack.exec_gen)].update(lookup_addresses(stack.user_ips))
        if stack.kernel_ips:
            kernel_addrs.update(lookup_addresses(stack.kernel_ips))
    processes, files = snapshot(symbolizer, user_addrs)
    kernel: list[KernelSymbol] = []
    restricted = False
    if kernel_addrs:
        ksyms = symbolizer.kernel_symbols()
        restricted = ksyms.restricted
        kernel = kernel_subset(ksyms, kernel_addrs)
    uname = os.uname()
    options = {
        "pids": list(opts.pids),
        "cpus": list(opts.cpus),
        "call_graph": f"dwarf,{opts.dwarf_stack_size}" if opts.dwarf_stack_size else "fp",
        "user_stacks": opts.user_stacks,
        "kernel_stacks": opts.kernel_stacks,
        "include_idle": opts.include_idle,
        "stack_storage_size": opts.stack_storage_size,
        "counts_size": opts.counts_size,
    }
    meta = RecordingMeta(
        profile=profile_meta,
        host=socket.gethostname(),
        kernel_release=uname.release,
        machine=uname.machine,
        boot_id=_read_text("/proc/sys/kernel/random/boot_id"),
        created_ns=time.time_ns(),
        stopped_by=result.stopped_by,
        attach_s=result.attach_s,
        options=options,
    )
    return Recording(meta, raw, processes, files, kernel, restricted)


# -- encoding -------------------------------------------------------------------------------------


def _hex(n: int) -> str:
    return f"{n:x}"


def _document(rec: Recording) -> dict[str, Any]:
    pm = rec.meta.profile
    user_ids: dict[tuple[int, ...], int] = {}
    kernel_ids: dict[tuple[int, ...], int] = {}
    samples = []
    for s, (count, period) in rec.raw.stacks.items():
        u = user_ids.setdefault(s.user_ips, len(user_ids)) if s.user_ips else None
        k = kernel_ids.setdefault(s.kernel_ips, len(kernel_ids)) if s.kernel_ips else None
        samples.append(
            [
                s.pid,
                s.tid,
                s.comm,
                s.exec_gen,
                s.user_status.value,
                u,
                s.kernel_status.value,
                k,
                count,
                period,
            ]
        )
    return {
        "format": "bpfprof-recording",
        "meta": {
            "bpfprof_version": rec.meta.bpfprof_version,
            "host": rec.meta.host,
            "kernel_release": rec.meta.kernel_release,
            "machine": rec.meta.machine,
            "boot_id": rec.meta.boot_id,
            "created_ns": rec.meta.created_ns,
            "stopped_by": rec.meta.stopped_by,
            "attach_s": rec.meta.attach_s,
            "options": rec.meta.options,
            "event": pm.event,
            "period_unit": pm.period_unit,
            "frequency_hz": pm.frequency_hz,
            "period": pm.period,
            "duration_s": pm.duration_s,
            "start_time_ns": pm.start_time_ns,
            "command": pm.command,
            "process_names": {str(pid): name for pid, name in sorted(pm.process_names.items())},
            "parents": {str(pid): ppid for pid, ppid in sorted(pm.parents.items())},
            "build_ids": dict(sorted(pm.build_ids.items())),
        },
        "stats": dict(sorted(rec.raw.stats.items())),
        "duration_s": rec.raw.duration_s,
        "unwind_s": rec.raw.unwind_s,
        "user_stacks": [[_hex(a) for a in st] for st in user_ids],
        "kernel_stacks": [[_hex(a) for a in st] for st in kernel_ids],
        "samples": samples,
        "files": [_file_doc(f) for f in rec.files],
        "processes": [
            {
                "pid": p.pid,
                "exec_gen": p.gen,
                "maps": [
                    [
                        _hex(m.start),
                        _hex(m.end),
                        _hex(m.offset),
                        m.perms,
                        m.dev,
                        m.inode,
                        m.path,
                        m.deleted,
                        f,
                    ]
                    for m, f in zip(p.maps, p.files, strict=True)
                ],
                "jit": [[_hex(s), _hex(e), name] for s, e, name in p.jit],
            }
            for p in rec.processes
        ],
        "kernel": {
            "restricted": rec.kernel_restricted,
            "symbols": [[_hex(k.start), _hex(k.end), k.name, k.module] for k in rec.kernel],
        },
    }


def _file_doc(f: SavedFile) -> dict[str, Any]:
    return {
        "path": f.path,
        "build_id": f.build_id.hex() if f.build_id is not None else None,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "segments": [
            [_hex(s.offset), _hex(s.vaddr), _hex(s.filesz), _hex(s.memsz), s.flags] for s in f.segments
        ],
        "data": base64.b64encode(f.data).decode("ascii") if f.data is not None else None,
        "error": f.error.name.lower() if f.error is not None else None,
    }


def encode(rec: Recording) -> bytes:
    """The bytes of a recording file (version ``VERSION``)."""
    text = json.dumps(_document(rec), separators=(",", ":"), ensure_ascii=False)
    body = gzip.compress(text.encode("utf-8", errors="surrogateescape"), compresslevel=6, mtime=0)
    return HEADER.pack(MAGIC, VERSION) + body


def save(path: str, rec: Recording) -> None:
    """Write a recording file atomically (raises OSError, as exporters.output.write_atomic)."""
    from exporters.output import write_atomic_bytes

    write_atomic_bytes(path, encode(rec))


# -- decoding -------------------------------------------------------------------------------------


class _Bad(Exception):
    """A field that does not fit the format: ``where`` it is and what was expected."""

    def __init__(self, where: str, expected: str) -> None:
        super().__init__(f"{where}: expected {expected}")


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Bad(where, "an object")
    return v


def _list(v: Any, where: str, length: int | None = None) -> list[Any]:
    if not isinstance(v, list) or (length is not None and len(v) != length):
        raise _Bad(where, "a list" if length is None else f"a list of {length} items")
    return v


def _int(v: Any, where: str, lo: int = 0, hi: int = _U64) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _Bad(where, f"an integer from {lo} to {hi}")
    return v


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1e18:
        raise _Bad(where, "a non-negative number")
    return float(v)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or len(v) > _MAX_TEXT:
        raise _Bad(where, f"a string of at most {_MAX_TEXT} characters")
    return v


def _base64(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _Bad(where, "a base64 string")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _Bad(where, "true or false")
    return v


def _opt(v: Any, where: str, read: Callable[[Any, str], Any]) -> Any:
    return None if v is None else read(v, where)


def _addr(v: Any, where: str) -> int:
    # int(v, 16) alone would also take "0x12", " 12", "1_2"
    if not isinstance(v, str) or not 0 < len(v) <= 16 or not _HEX_DIGITS.issuperset(v):
        raise _Bad(where, "a 64-bit hex number (a string of 1 to 16 lowercase hex digits)")
    return int(v, 16)


def _field(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise _Bad(f"{where}.{key}", "a value (the field is missing)")
    return d[key]


def _status(v: Any, where: str) -> StackStatus:
    try:
        return StackStatus(v)
    except ValueError:
        raise _Bad(where, "a stack status (" + ", ".join(s.value for s in StackStatus) + ")") from None


def _stacks(v: Any, where: str) -> list[tuple[int, ...]]:
    return [
        tuple(_addr(a, f"{where}[{i}][{j}]") for j, a in enumerate(_list(st, f"{where}[{i}]")))
        for i, st in enumerate(_list(v, where))
    ]


def _pid_key(k: str, where: str) -> int:
    if not (k.isascii() and k.isdigit() and len(k) <= 10):
        raise _Bad(where, "process ids as keys")
    return int(k)


def _meta(d: dict[str, Any]) -> RecordingMeta:
    w = "meta"
    process_names = {
        _pid_key(k, f"{w}.process_names"): _str(v, f"{w}.process_names.{k}")
        for k, v in _obj(_field(d, "process_names", w), f"{w}.process_names").items()
    }
    parents = {
        _pid_key(k, f"{w}.parents"): _int(v, f"{w}.parents.{k}", 0, 2**32)
        for k, v in _obj(d.get("parents", {}), f"{w}.parents").items()
    }
    build_ids = {
        _str(k, f"{w}.build_ids"): _str(v, f"{w}.build_ids.{k}")
        for k, v in _obj(d.get("build_ids", {}), f"{w}.build_ids").items()
    }
    profile = ProfileMeta(
        event=_str(_field(d, "event", w), f"{w}.event"),
        period_unit=_str(_field(d, "period_unit", w), f"{w}.period_unit"),
        frequency_hz=_opt(_field(d, "frequency_hz", w), f"{w}.frequency_hz", _int),
        period=_opt(_field(d, "period", w), f"{w}.period", _int),
        duration_s=_num(_field(d, "duration_s", w), f"{w}.duration_s"),
        start_time_ns=_int(_field(d, "start_time_ns", w), f"{w}.start_time_ns"),
        command=[
            _str(c, f"{w}.command[{i}]") for i, c in enumerate(_list(_field(d, "command", w), f"{w}.command"))
        ],
        process_names=process_names,
        parents=parents,
        build_ids=build_ids,
    )
    options = _obj(_field(d, "options", w), f"{w}.options")
    cpus = options.get("cpus", [])
    for i, c in enumerate(_list(cpus, f"{w}.options.cpus")):
        _int(c, f"{w}.options.cpus[{i}]", 0, 1 << 20)
    return RecordingMeta(
        profile=profile,
        bpfprof_version=_str(_field(d, "bpfprof_version", w), f"{w}.bpfprof_version"),
        host=_str(_field(d, "host", w), f"{w}.host"),
        kernel_release=_str(_field(d, "kernel_release", w), f"{w}.kernel_release"),
        machine=_str(_field(d, "machine", w), f"{w}.machine"),
        boot_id=_str(_field(d, "boot_id", w), f"{w}.boot_id"),
        created_ns=_int(_field(d, "created_ns", w), f"{w}.created_ns"),
        stopped_by=_str(_field(d, "stopped_by", w), f"{w}.stopped_by"),
        attach_s=_num(_field(d, "attach_s", w), f"{w}.attach_s"),
        options=options,
    )


def _raw(doc: dict[str, Any]) -> RawProfile:
    stats = {
        _str(k, "stats"): _int(v, f"stats.{k}")
        for k, v in _obj(_field(doc, "stats", "document"), "stats").items()
    }
    raw = RawProfile(stats=stats)
    raw.duration_s = _num(_field(doc, "duration_s", "document"), "duration_s")
    raw.unwind_s = _opt(_field(doc, "unwind_s", "document"), "unwind_s", _num)
    user = _stacks(_field(doc, "user_stacks", "document"), "user_stacks")
    kernel = _stacks(_field(doc, "kernel_stacks", "document"), "kernel_stacks")
    for i, row in enumerate(_list(_field(doc, "samples", "document"), "samples")):
        w = f"samples[{i}]"
        pid, tid, comm, gen, u_status, u, k_status, k, count, period = _list(row, w, 10)
        u_ips = user[_int(u, f"{w}[5]", 0, len(user) - 1)] if u is not None else ()
        k_ips = kernel[_int(k, f"{w}[7]", 0, len(kernel) - 1)] if k is not None else ()
        stack = RawStack(
            _int(pid, f"{w}[0]", 0, 2**32),
            _int(tid, f"{w}[1]", 0, 2**32),
            _str(comm, f"{w}[2]"),
            u_ips,
            k_ips,
            _status(u_status, f"{w}[4]"),
            _status(k_status, f"{w}[6]"),
            _int(gen, f"{w}[3]", 0, 2**32),
        )
        raw.add(stack, _int(count, f"{w}[8]"), _int(period, f"{w}[9]"))
    return raw


def _file(v: Any, where: str) -> SavedFile:
    d = _obj(v, where)
    build_id = _opt(_field(d, "build_id", where), f"{where}.build_id", _str)
    data = _opt(_field(d, "data", where), f"{where}.data", _base64)
    error = _opt(_field(d, "error", where), f"{where}.error", _str)
    try:
        build_bytes = bytes.fromhex(build_id) if build_id is not None else None
        data_bytes = base64.b64decode(data, validate=True) if data is not None else None
    except (ValueError, binascii.Error):
        raise _Bad(where, "a hex build_id and base64 data") from None
    if error is not None and error not in _REASONS:
        raise _Bad(f"{where}.error", "null or one of " + ", ".join(_REASONS))
    segments = []
    for i, row in enumerate(_list(_field(d, "segments", where), f"{where}.segments")):
        sw = f"{where}.segments[{i}]"
        off, vaddr, filesz, memsz, flags = _list(row, sw, 5)
        segments.append(
            Segment(
                PT_LOAD,
                _int(flags, f"{sw}[4]", 0, 2**32 - 1),
                _addr(off, f"{sw}[0]"),
                _addr(vaddr, f"{sw}[1]"),
                _addr(filesz, f"{sw}[2]"),
                _addr(memsz, f"{sw}[3]"),
                0,
            )
        )
    return SavedFile(
        _str(_field(d, "path", where), f"{where}.path"),
        build_bytes,
        _opt(_field(d, "size", where), f"{where}.size", _int),
        _opt(_field(d, "mtime_ns", where), f"{where}.mtime_ns", _int),
        tuple(segments),
        data_bytes,
        _REASONS[error] if error is not None else None,
    )


def _process(v: Any, where: str, n_files: int) -> SavedProcess:
    d = _obj(v, where)
    maps, file_ids = [], []
    for i, row in enumerate(_list(_field(d, "maps", where), f"{where}.maps")):
        mw = f"{where}.maps[{i}]"
        start, end, offset, perms, dev, inode, path, deleted, f = _list(row, mw, 9)
        m = Mapping(
            _addr(start, f"{mw}[0]"),
            _addr(end, f"{mw}[1]"),
            _addr(offset, f"{mw}[2]"),
            _str(perms, f"{mw}[3]"),
            _str(dev, f"{mw}[4]"),
            _int(inode, f"{mw}[5]"),
            _str(path, f"{mw}[6]"),
            _bool(deleted, f"{mw}[7]"),
        )
        if m.start >= m.end or (maps and m.start < maps[-1].end):
            raise _Bad(mw, "a mapping after the one before it, with start below end")
        maps.append(m)
        file_ids.append(_opt(f, f"{mw}[8]", lambda x, w: _int(x, w, 0, n_files - 1)))
    jit = []
    for i, row in enumerate(_list(_field(d, "jit", where), f"{where}.jit")):
        jw = f"{where}.jit[{i}]"
        start, end, name = _list(row, jw, 3)
        jit.append((_addr(start, f"{jw}[0]"), _addr(end, f"{jw}[1]"), _str(name, f"{jw}[2]")))
    return SavedProcess(
        _int(_field(d, "pid", where), f"{where}.pid", 0, 2**32),
        _int(_field(d, "exec_gen", where), f"{where}.exec_gen", 0, 2**32),
        tuple(maps),
        tuple(file_ids),
        tuple(jit),
    )


def _kernel(v: Any) -> tuple[list[KernelSymbol], bool]:
    d = _obj(v, "kernel")
    symbols = []
    for i, row in enumerate(_list(_field(d, "symbols", "kernel"), "kernel.symbols")):
        w = f"kernel.symbols[{i}]"
        start, end, name, module = _list(row, w, 4)
        sym = KernelSymbol(
            _addr(start, f"{w}[0]"),
            _addr(end, f"{w}[1]"),
            _str(name, f"{w}[2]"),
            _opt(module, f"{w}[3]", _str),
        )
        if sym.start >= sym.end:
            raise _Bad(w, "a symbol whose start is below its end")
        symbols.append(sym)
    return symbols, _bool(_field(d, "restricted", "kernel"), "kernel.restricted")


def _inflate(body: bytes) -> bytes:
    """The gzip body, decompressed; more than MAX_DOCUMENT bytes are refused (a gzip bomb)."""
    inflater = zlib.decompressobj(wbits=31)  # gzip framing; its CRC-32 and length are checked at the end
    out = bytearray()
    pending = body
    while True:
        chunk = inflater.decompress(pending, MAX_DOCUMENT + 1 - len(out))
        out += chunk
        if len(out) > MAX_DOCUMENT:
            raise RecordingError(f"its data unpacks to more than {MAX_DOCUMENT} bytes, which is refused")
        pending = inflater.unconsumed_tail
        if inflater.eof or not (pending or chunk):
            break
    if not inflater.eof:
        raise RecordingError("it is truncated (its compressed data ends early)")
    if inflater.unused_data:
        raise RecordingError("it is damaged (bytes follow the end of its compressed data)")
    return bytes(out)


def decode(data: bytes) -> Recording:
    """A recording from the bytes of a file; RecordingError (one sentence) when they are not one."""
    if len(data) < HEADER.size or not is_recording(data):
        raise RecordingError("it is not a bpfprof recording (no bpfprof header)")
    _, version = HEADER.unpack_from(data)
    if version > VERSION or version == 0:
        raise RecordingError(
            f"it is a version {version} recording and this bpfprof ({__version__}) reads versions 1 to "
            f"{VERSION}: open it with a newer bpfprof"
        )
    try:
        text = _inflate(data[HEADER.size :]).decode("utf-8", errors="surrogateescape")
        doc = json.loads(text)
    except zlib.error:
        raise RecordingError("it is damaged (its compressed data is corrupt)") from None
    except (ValueError, RecursionError):
        raise RecordingError("it is damaged (the document inside is not valid JSON)") from None
    try:
        doc = _obj(doc, "document")
        if doc.get("format") != "bpfprof-recording":
            raise _Bad("format", '"bpfprof-recording"')
        meta = _meta(_obj(_field(doc, "meta", "document"), "meta"))
        raw = _raw(doc)
        files = [
            _file(f, f"files[{i}]") for i, f in enumerate(_list(_field(doc, "files", "document"), "files"))
        ]
        processes = [
            _process(p, f"processes[{i}]", len(files))
            for i, p in enumerate(_list(_field(doc, "processes", "document"), "processes"))
        ]
        kernel, restricted = _kernel(_field(doc, "kernel", "document"))
    except _Bad as exc:
        raise RecordingError(f"it is damaged ({exc})") from None
    except (ValueError, TypeError) as exc:  # e.g. unpacking a row of the wrong length
        raise RecordingError(f"it is damaged ({exc})") from None
    return Recording(meta, raw, processes, files, kernel, restricted, version)


def load(path: str) -> Recording:
    """Read and decode a recording file; RecordingError with a sentence naming ``path`` otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return decode(data)
    except RecordingError as exc:
        raise RecordingError(f"{path}: {exc}", exc.exit_code) from None
