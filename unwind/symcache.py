"""An on-disk cache of parsed symbol tables, so a second run loads each binary's table in about 1 ms.

Tables live in ``{root}/symbols-v{FORMAT}/`` (``root``: ``$XDG_CACHE_HOME/bpfprof``, default
``~/.cache/bpfprof``), one file per binary (and debug source), named by build-id when there is one,
else by (path, device, inode, size, mtime). Each file is raw little-endian arrays behind a header and
is mapped, not read: loading is a header check, a CRC-32 of the arrays, and numpy views. A missing,
old-format, truncated or corrupt file is a miss (the table is parsed again and the file replaced);
writes go to a temporary file renamed into place; a cache that cannot be written only costs speed
(one warning, then it stops trying).

Kernel symbols (kallsyms) change at boot and when modules load, so their entry is keyed by
``/proc/sys/kernel/random/boot_id`` and a hash of ``/proc/modules``; BPF programs and ftrace/kprobe
trampolines come and go without either changing, which the caller handles (see ``VOLATILE_MODULES``).

File format ``FORMAT`` 1 (all little-endian; every array 8-byte aligned)::

    header   magic "BPFPSYM\\0" | u32 format | u32 crc32(header[16:] + arrays) | u64 kind | u64 n
             | u64 m | u64 blob_len                                                       (48 bytes)
    symbols  (kind 1)  u64 addrs[n] | u64 sizes[n] | u64 name_offs[n] | u64 zero_ends[m] | blob
    kernel   (kind 2)  u64 addrs[n] | i64 name_starts[n] | i64 name_ends[n] | i64 mod_starts[n]
                       | i64 mod_ends[n] | blob                       (m = 0; start -1 = no name)
    demangled (kind 3) u64 indices[n] | u64 starts[n] | u64 ends[n] | blob
                       (m = the CRC of the table entry the indices refer to; indices sorted, unique)
    lines     (kind 4) u64 vaddrs[n] | u64 row_ends[n] | i64 func_starts[m] | i64 func_ends[m]
                       | i64 file_starts[m] | i64 file_ends[m] | i64 lines[m] | u64 inlined[m] | blob
                       (vaddrs sorted, unique; address i has rows [row_ends[i-1], row_ends[i]); a start
                       of -1 is no string, a line of -1 no line)

Demangled names (``DemangledNames``, a ``{key}.dem`` file beside a table's ``{key}.sym``): demangling a
big C++ library's names costs far more than loading its table (libLLVM: ~100 ms for the 14k names
that 40k addresses hit, against ~2 ms), so each name is demangled once, at its first use, and kept.

Source lines (``LineResults``, a ``{key}.lin`` file per DWARF file, keyed by its binary's build-id): what
DWARF said of each address looked up with ``--lines`` (its inlined calls and lines, as
``DwarfInfo.lookup``), kept from run to run. Reading DWARF starts by decompressing its sections (28 ms
for libc's debug file) and parses a compile unit per new one hit; an address resolved in an earlier
run costs neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from unwind.dwarf import SourceFrame
from unwind.kallsyms import KernelSymbols, LazyNames, load_kallsyms
from unwind.symtab import StringSource, SymbolArrays, SymbolTable, decode_ranges, scatter

FORMAT = 1
MAGIC = b"BPFPSYM\0"
_HEADER = struct.Struct("<8sIIQQQQ")
_KIND_SYMBOLS = 1
_KIND_KERNEL = 2
_KIND_DEMANGLED = 3
_KIND_LINES = 4
# Per kind: u64 words of arrays per n, and per m.
_ARRAY_WORDS = {_KIND_SYMBOLS: (3, 1), _KIND_KERNEL: (5, 0), _KIND_DEMANGLED: (3, 0), _KIND_LINES: (2, 6)}
# Kernel "modules" whose symbols appear and vanish without a module load: BPF programs, trampolines.
VOLATILE_MODULES = frozenset(("bpf", "__builtin__ftrace", "__builtin__kprobes"))
_log = logging.getLogger(__name__)
_warned: set[str] = set()  # cache directories already warned about in this process


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/bpfprof``, or ``~/.cache/bpfprof`` when XDG_CACHE_HOME is unset or relative."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bpfprof")


def table_key(build_id: bytes | None, identity: str | None, sources: Sequence[str]) -> str | None:
    """The cache key of a binary's table: by ``build_id``, else by file ``identity``, else None.

    ``sources`` name what was merged into the table (e.g. ``("self",)``, ``("debug", identity)``).
    """
    if build_id:
        prefix = build_id.hex()[:40]
    elif identity:
        prefix = "f"
    else:
        return None
    text = "\0".join((str(FORMAT), build_id.hex() if build_id else identity or "", *sources))
    return f"{prefix}-{hashlib.sha256(text.encode(errors='surrogateescape')).hexdigest()[:32]}"


# What DwarfInfo answers: a change to what unwind/dwarf.py gives for an address must change this, so
# that results kept by an earlier version are not read as this one's.
LINES_VERSION = 1


def line_key(build_id: bytes | None, identity: str | None, source: str) -> str | None:
    """The cache key of the DWARF results of a binary (``table_key``'s rules): ``source`` says whose
    DWARF they are, the binary's own (``"self"``) or its separate debug file's (``"debug"``, by the
    build-id they share; a debug file found by name alone is not keyed: None)."""
    if source != "self" and not build_id:
        return None
    return table_key(build_id, identity, ("lines", str(LINES_VERSION), source))


class SymbolCache:
    """Symbol tables (and kallsyms) stored under ``root``; see the module docstring.

    ``error`` holds the first failure to write, after which nothing more is written (logged as a warning
    once per process and directory). Reading never fails: a bad entry is a miss.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, f"symbols-v{FORMAT}")
        self.error: str | None = None

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None) -> SymbolCache:
        return cls(default_cache_dir(environ))

    # -- symbol tables ------------------------------------------------------------------------

    def path(self, key: str) -> str:
        return os.path.join(self.dir, key + ".sym")

    def has(self, key: str) -> bool:
        """True when an entry named ``key`` exists (not checked: ``load`` may still miss)."""
        return os.path.exists(self.path(key))

    def load(self, key: str) -> SymbolTable | None:
        """The table stored under ``key``, or None (missing, old format, truncated, corrupt)."""
        found = self._map(key + ".sym", _KIND_SYMBOLS)
        if found is None:
            return None
        mm, n, m, arrays_at, blob_at, blob_len, crc = found
        addrs, sizes, name_offs = (
            np.frombuffer(mm, "<u8", n, arrays_at + i * 8 * n).astype(np.uint64, copy=False) for i in range(3)
        )
        zero_ends = np.frombuffer(mm, "<u8", m, arrays_at + 24 * n).astype(np.uint64, copy=False)
        strings = (StringSource(mm, blob_at, blob_at + blob_len),)
        try:
            table = SymbolTable.from_arrays(SymbolArrays(addrs, sizes, name_offs, zero_ends, strings))
        except ValueError:
            return None
        table.stored_as = (key, crc)
        return table

    def store(self, key: str, table: SymbolTable) -> None:
        """Save ``table`` under ``key`` (atomically); a failure is remembered in ``error``, never raised."""
        a = table.to_arrays()
        arrays = [_u64(a.addrs), _u64(a.sizes), _u64(a.name_offs), _u64(a.zero_ends)]
        blob = [memoryview(s.buf)[s.start : s.end] for s in a.strings]
        crc = self._write(key + ".sym", _KIND_SYMBOLS, len(a.addrs), len(a.zero_ends), arrays, blob)
        if crc is not None:
            table.stored_as = (key, crc)

    def demangled_names(self, table: SymbolTable) -> DemangledNames | None:
        """The demangled names kept for ``table`` (none at first), or None when the table is not in this
        cache (``stored_as`` unset: not cached, or the cache could not be written)."""
        if table.stored_as is None:
            return None
        key, crc = table.stored_as
        return DemangledNames(self, key, crc)

    def line_results(self, key: str) -> LineResults:
        """The DWARF results kept under ``key`` (``line_key``): none at first."""
        return LineResults(self, key)

    # -- kallsyms -----------------------------------------------------------------------------

    def kernel_key(self, proc: str = "/proc") -> str | None:
        """The key of this boot's kallsyms: boot_id plus a hash of /proc/modules; None without boot_id."""
        try:
            with open(os.path.join(proc, "sys", "kernel", "random", "boot_id"), "rb") as f:
                boot_id = f.read().strip()
        except OSError:
            return None
        if not boot_id:
            return None
        h = hashlib.sha256(str(FORMAT).encode() + b"\0" + os.path.abspath(proc).encode() + b"\0" + boot_id)
        try:
            with open(os.path.join(proc, "modules"), "rb") as f:
                h.update(b"\0" + f.read())
        except FileNotFoundError:  # a kernel without loadable modules
            pass
        except OSError:
            return None
        return "kallsyms-" + h.hexdigest()[:32]

    def load_kernel(self, key: str) -> KernelSymbols | None:
        """The kernel symbols stored under ``key`` (from ``kernel_key``), or None."""
        found = self._map(key + ".ksym", _KIND_KERNEL)
        if found is None:
            return None
        mm, n, _m, arrays_at, blob_at, blob_len, _crc = found
        addrs = np.frombuffer(mm, "<u8", n, arrays_at).astype(np.uint64, copy=False)
        cols = [np.frombuffer(mm, "<i8", n, arrays_at + (1 + i) * 8 * n) for i in range(4)]
        if n > 1 and not bool(np.all(addrs[1:] > addrs[:-1])):
            return None
        for starts, ends in ((cols[0], cols[1]), (cols[2], cols[3])):
            named = starts >= 0
            if np.any(named & ((ends < starts) | (ends > blob_len))):
                return None
        # LazyNames slices its blob and decodes the slice: an mmap slice is bytes, so offsets are shifted
        # to the blob's place in the file rather than copying the blob out.
        shifted = [np.where(c >= 0, c + blob_at, -1) for c in cols]
        names = LazyNames(mm, shifted[0], shifted[1])  # type: ignore[arg-type]
        return KernelSymbols(addrs, names, LazyNames(mm, shifted[2], shifted[3]))  # type: ignore[arg-type]

    def store_kernel(self, key: str, ksyms: KernelSymbols) -> None:
        """Save unrestricted kernel symbols under ``key``, replacing older kallsyms entries."""
        if ksyms.restricted or len(ksyms) == 0:
            return
        columns = _lazy_columns(ksyms) or _encoded_columns(ksyms)
        blob, cols = columns
        if (
            self._write(key + ".ksym", _KIND_KERNEL, len(ksyms), 0, [_u64(ksyms.addrs), *cols], [blob])
            is not None
        ):
            self._remove_others("kallsyms-", key + ".ksym")

    # -- files --------------------------------------------------------------------------------

    def _map(self, name: str, kind: int) -> tuple[mmap.mmap, int, int, int, int, int, int] | None:
        """The mapped entry ``name`` and its (n, m, arrays offset, blob offset, blob length, CRC), if
        valid."""
        try:
            fd = os.open(os.path.join(self.dir, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # empty or unmappable
            return None
        finally:
            os.close(fd)
        if len(mm) < _HEADER.size:
            return None
        magic, fmt, crc, got_kind, n, m, blob_len = _HEADER.unpack_from(mm, 0)
        per_n, per_m = _ARRAY_WORDS[kind]
        arrays_len = 8 * (per_n * n + per_m * m)
        if (magic, fmt, got_kind) != (MAGIC, FORMAT, kind) or len(mm) != _HEADER.size + arrays_len + blob_len:
            return None
        header_tail = 16  # the CRC covers what follows it
        if zlib.crc32(memoryview(mm)[header_tail : _HEADER.size + arrays_len]) != crc:
            return None
        return mm, n, m, _HEADER.size, _HEADER.size + arrays_len, blob_len, crc

    def _write(
        self, name: str, kind: int, n: int, m: int, arrays: Sequence[np.ndarray], blob: Iterable[object]
    ) -> int | None:
        """Write one entry atomically (temporary file, then rename): its CRC, or None (and ``error`` set)
        on failure."""
        if self.error is not None:
            return None
        blob_parts = [memoryview(b).cast("B") for b in blob]  # type: ignore[arg-type]
        blob_len = sum(len(b) for b in blob_parts)
        tail = struct.pack("<QQQQ", kind, n, m, blob_len)
        crc = zlib.crc32(tail)
        for a in arrays:
            crc = zlib.crc32(a.data, crc)
        header = _HEADER.pack(MAGIC, FORMAT, crc, kind, n, m, blob_len)
        tmp = None
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                for a in arrays:
                    f.write(a.data)
                for b in blob_parts:
                    f.write(b)
            os.replace(tmp, os.path.join(self.dir, name))
            tmp = None
            return crc
        except OSError as e:
            self.error = (
                f"cannot write the symbol cache in {self.dir} ({e.strerror or e}); symbols are not cached"
            )
            if self.dir not in _warned:
                _warned.add(self.dir)
                _log.warning("bpfprof: %s", self.error)
            return None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _remove_others(self, prefix: str, keep: str) -> None:
        with contextlib.suppress(OSError), os.scandir(self.dir) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.name != keep:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


class _KeptAnswers:
    """An entry of answers kept from run to run, by sorted u64 key: read at the first lookup (``_load``);
    answers found since are collected in ``_new``; ``save`` writes the old and new ones together
    (atomically, ``_write_merged``) when there are new ones, and the entry is read again at the next
    lookup. A damaged or inconsistent entry is a miss, as a missing one is."""

    def __init__(self, cache: SymbolCache, name: str) -> None:
        self._cache = cache
        self._name = name
        self._mm: mmap.mmap | None = None
        self._new: dict[int, object] = {}
        self._forget()

    def _forget(self) -> None:
        """Drop what was read (``_load`` reads it again)."""
        self._loaded = False
        self._mm = None

    def _load(self) -> None:
        raise NotImplementedError

    def _entry(self, kind: int) -> tuple[mmap.mmap, int, int, int, int, int, int] | None:
        """The entry, mapped and checked (``SymbolCache._map``), or None; it counts as read either way."""
        self._loaded = True
        return self._cache._map(self._name, kind)

    def _write_merged(self) -> None:
        raise NotImplementedError

    def _lookup_start(self, keys: list[int]) -> list:
        """The answers of ``keys`` found since the last save (None elsewhere), the entry read first."""
        if not self._loaded:
            self._load()
        return [self._new.get(k) for k in keys] if self._new else [None] * len(keys)

    @staticmethod
    def _found(stored: np.ndarray, keys: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Where ``keys`` are in the sorted ``stored`` keys: the positions in ``keys`` found, and their
        rows in ``stored``."""
        q = np.asarray(keys, np.uint64)
        safe = np.minimum(np.searchsorted(stored, q), len(stored) - 1)
        hit = np.flatnonzero(stored[safe] == q)
        return hit, safe[hit]

    def save(self) -> None:
        """Write the kept answers with the new ones, if there are new ones; failures only cost speed."""
        if not self._new:
            return
        if not self._loaded:
            self._load()
        self._write_merged()
        self._new.clear()
        self._forget()


class DemangledNames(_KeptAnswers):
    """The demangled names of one cached symbol table, by symbol index (``{key}.dem``, kind 3); see
    ``_KeptAnswers``. An entry whose ``m`` is not the CRC of the table entry it was made for (the table
    was written again) is a miss.
    """

    def __init__(self, cache: SymbolCache, key: str, table_crc: int) -> None:
        self._crc = table_crc
        super().__init__(cache, key + ".dem")

    def _forget(self) -> None:
        super()._forget()
        self._indices = np.zeros(0, np.uint64)
        self._starts = self._ends = self._indices
        self._blob_at = 0

    def _load(self) -> None:
        found = self._entry(_KIND_DEMANGLED)
        if found is None:
            return
        mm, n, m, arrays_at, blob_at, blob_len, _crc = found
        if m != self._crc:
            return
        cols = [np.frombuffer(mm, "<u8", n, arrays_at + i * 8 * n) for i in range(3)]
        indices, starts, ends = cols
        if n and (
            not bool(np.all(indices[1:] > indices[:-1]))
            or not bool(np.all(starts <= ends))
            or int(ends.max()) > blob_len
        ):
            return  # not what we write: a miss
        self._mm, self._indices, self._starts, self._ends, self._blob_at = mm, indices, starts, ends, blob_at

    def get(self, indices: list[int]) -> list[str | None]:
        """The kept name of each symbol index (None where none is kept)."""
        out: list[str | None] = self._lookup_start(indices)
        if self._mm is None or not len(self._indices) or not indices:
            return out
        hit, rows = self._found(self._indices, indices)
        base = np.uint64(self._blob_at)
        starts, ends = (self._starts[rows] + base).tolist(), (self._ends[rows] + base).tolist()
        return scatter(out, hit.tolist(), decode_ranges(self._mm, starts, ends, "surrogateescape"))

    def add(self, index: int, name: str) -> None:
        """Keep ``name`` as the demangled name of symbol ``index`` (written by ``save``)."""
        self._new[index] = name

    def _write_merged(self) -> None:
        new_idx = np.fromiter(self._new, np.uint64, len(self._new))
        raw = [name.encode(errors="surrogateescape") for name in self._new.values()]
        lens = np.fromiter(map(len, raw), np.uint64, len(raw))
        old_blob: memoryview | bytes = b""
        if self._mm is not None and len(self._indices):
            old_blob = memoryview(self._mm)[self._blob_at : self._blob_at + int(self._ends.max())]
        new_ends = np.cumsum(lens, dtype=np.uint64) + np.uint64(len(old_blob))
        indices = np.concatenate([self._indices, new_idx])
        starts = np.concatenate([self._starts, new_ends - lens])
        ends = np.concatenate([self._ends, new_ends])
        indices, first = np.unique(indices, return_index=True)  # (an index is kept once: the old one)
        arrays = [_u64(indices), _u64(starts[first]), _u64(ends[first])]
        blob = [old_blob, b"".join(raw)]  # two writes, not one per name (14k for a cold libLLVM)
        self._cache._write(self._name, _KIND_DEMANGLED, len(indices), self._crc, arrays, blob)


class LineResults(_KeptAnswers):
    """What DWARF said of addresses of one binary, by ELF vaddr (``{key}.lin``, kind 4): for each, the
    ``SourceFrame`` list of ``DwarfInfo.lookup`` (innermost first; empty when DWARF has nothing there);
    see ``_KeptAnswers``. Nothing here depends on demangling: names are DWARF's. At most
    ``MAX_ADDRESSES`` are kept.
    """

    MAX_ADDRESSES = 1 << 20  # ~60 MB of entry; no binary's profiles hit so many distinct addresses

    def __init__(self, cache: SymbolCache, key: str) -> None:
        super().__init__(cache, key + ".lin")

    def _forget(self) -> None:
        super()._forget()
        self._vaddrs = np.zeros(0, np.uint64)
        self._row_ends = self._vaddrs
        self._rows = np.zeros((6, 0), np.int64)  # func start, end, file start, end, line, inlined
        self._blob_at = self._blob_len = 0
        self._strings: dict[tuple[int, int], str] = {}  # decoded once per read: files and functions repeat

    def _load(self) -> None:
        found = self._entry(_KIND_LINES)
        if found is None:
            return
        mm, n, m, arrays_at, blob_at, blob_len, _crc = found
        vaddrs, row_ends = (np.frombuffer(mm, "<u8", n, arrays_at + i * 8 * n) for i in range(2))
        rows = np.frombuffer(mm, "<i8", 6 * m, arrays_at + 16 * n).reshape(6, m)
        starts, ends, lines, inlined = rows[0:4:2], rows[1:4:2], rows[4], rows[5]
        named = starts >= 0
        if (
            (n and (not bool(np.all(vaddrs[1:] > vaddrs[:-1])) or int(row_ends[-1]) != m))
            or (n == 0 and m != 0)
            or bool(np.any(row_ends[1:] < row_ends[:-1]))
            or bool(np.any(named & ((ends < starts) | (ends > blob_len))))
            or bool(np.any(lines < -1))
            or bool(np.any((inlined != 0) & (inlined != 1)))
        ):
            return  # not what we write: a miss
        self._mm, self._vaddrs, self._row_ends, self._rows = mm, vaddrs, row_ends, rows
        self._blob_at, self._blob_len = blob_at, blob_len

    def get(self, vaddrs: list[int]) -> list[list[SourceFrame] | None]:
        """What DWARF said of each vaddr in an earlier run or since (``add``); None where none is kept."""
        out: list[list[SourceFrame] | None] = self._lookup_start(vaddrs)
        if self._mm is None or not len(self._vaddrs) or not vaddrs:
            return out
        hit, at = self._found(self._vaddrs, vaddrs)
        ends = self._row_ends[at].astype(np.int64)
        firsts = np.where(at > 0, self._row_ends[np.maximum(at - 1, 0)].astype(np.int64), 0)
        counts = ends - firsts
        cols = self._rows[:, _ranges(firsts, counts)].T.tolist()  # every hit's rows, in one gather
        at_row = 0
        for pos, count in zip(hit.tolist(), counts.tolist(), strict=True):
            if out[pos] is None:
                out[pos] = [
                    SourceFrame(
                        self._string(fs, fe), self._string(ls, le), None if line < 0 else line, bool(inl)
                    )
                    for fs, fe, ls, le, line, inl in cols[at_row : at_row + count]
                ]
            at_row += count
        return out

    def _string(self, start: int, end: int) -> str | None:
        if start < 0:
            return None
        text = self._strings.get((start, end))
        if text is None:
            assert self._mm is not None
            at = self._blob_at
            text = self._strings[(start, end)] = self._mm[at + start : at + end].decode(
                "utf-8", "surrogateescape"
            )
        return text

    def _old_spans(self) -> dict[str, tuple[int, int]]:
        """Each string of the entry read (``_load``) and its span in the blob."""
        if self._mm is None:
            return {}
        pairs = self._rows[:4].reshape(2, 2, -1).transpose(0, 2, 1).reshape(-1, 2)  # (start, end) rows
        pairs = np.unique(pairs[pairs[:, 0] >= 0], axis=0).tolist()
        return {self._string(start, end) or "": (start, end) for start, end in pairs}

    def add(self, vaddr: int, frames: list[SourceFrame]) -> None:
        """Keep what DWARF said of ``vaddr`` (written by ``save``)."""
        if len(self._new) + len(self._vaddrs) >= self.MAX_ADDRESSES or not 0 <= vaddr < 2**64:
            return
        if all(f.line is None or 0 <= f.line < 2**63 for f in frames):  # (else: malformed, not kept)
            self._new[vaddr] = frames

    def _write_merged(self) -> None:
        old_blob = (
            memoryview(self._mm)[self._blob_at : self._blob_at + self._blob_len]
            if self._mm is not None
            else b""
        )
        fresh = self._new
        if len(self._vaddrs):  # an address kept before keeps its old result
            kept = set(
                self._vaddrs[np.isin(self._vaddrs, np.fromiter(fresh, np.uint64, len(fresh)))].tolist()
            )
            fresh = {v: f for v, f in fresh.items() if v not in kept}
            if not fresh:
                return
        blob = bytearray()
        spans = self._old_spans()  # a string kept before is not written again

        def span(text: str | None) -> tuple[int, int]:
            if text is None:
                return (-1, -1)
            found = spans.get(text)
            if found is None:
                raw = text.encode("utf-8", "surrogateescape")
                base = len(old_blob) + len(blob)
                found = spans[text] = (base, base + len(raw))
                blob.extend(raw)
            return found

        new_rows = [
            (*span(f.function), *span(f.file), -1 if f.line is None else f.line, int(f.inlined))
            for frames in fresh.values()
            for f in frames
        ]
        old_m = self._rows.shape[1]
        new_counts = np.fromiter(map(len, fresh.values()), np.int64, len(fresh))
        row_ends = np.concatenate([self._row_ends.astype(np.int64), old_m + np.cumsum(new_counts)])
        counts = np.diff(row_ends, prepend=0)
        rows = np.concatenate([self._rows, np.array(new_rows, np.int64).reshape(-1, 6).T], axis=1)
        vaddrs = np.concatenate([self._vaddrs, np.fromiter(fresh, np.uint64, len(fresh))])
        # Sorted by address, each address's rows moved along with it.
        order = np.argsort(vaddrs)
        counts, firsts = counts[order], (row_ends - counts)[order]
        gather = _ranges(firsts, counts)
        arrays = [
            _u64(vaddrs[order]),
            _u64(np.cumsum(counts)),
            *(np.ascontiguousarray(r, "<i8") for r in rows[:, gather]),
        ]
        self._cache._write(
            self._name, _KIND_LINES, len(order), rows.shape[1], arrays, [old_blob, bytes(blob)]
        )


def _ranges(firsts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices ``firsts[i] .. firsts[i] + counts[i] - 1`` of every i, one range after another."""
    ends = np.cumsum(counts)
    return (
        np.arange(int(ends[-1]) if len(ends) else 0)
        - np.repeat(ends - counts, counts)
        + np.repeat(firsts, counts)
    )


def _u64(a: np.ndarray) -> np.ndarray:
    """``a`` as a contiguous little-endian 8-byte array (no copy when it already is one)."""
    kind = "<i8" if a.dtype.kind == "i" else "<u8"
    return np.ascontiguousarray(a, dtype=kind)


def load_kernel_symbols(
    proc: str = "/proc", cache: SymbolCache | None = None, *, live: bool = False
) -> tuple[KernelSymbols, bool]:
    """Kernel symbols of this boot and whether they came from ``cache``.

    From the cache when this boot's entry is there (and not ``live``), else parsed from
    ``{proc}/kallsyms`` and stored. OSError when kallsyms cannot be read. Cached symbols can miss BPF
    programs and trampolines loaded since: check lookups with ``stale_kernel_results``.
    """
    key = cache.kernel_key(proc) if cache is not None else None
    if cache is not None and key is not None and not live:
        ksyms = cache.load_kernel(key)
        if ksyms is not None:
            return ksyms, True
    ksyms = load_kallsyms(os.path.join(proc, "kallsyms"))
    if cache is not None and key is not None:
        cache.store_kernel(key, ksyms)
    return ksyms, False


def stale_kernel_results(names: Iterable[str | None], modules: Iterable[str | None]) -> bool:
    """True when lookups in cached kernel symbols need the live kallsyms: some address has no symbol
    (a None name), or one of a BPF program or trampoline (those come and go without a reboot or a
    module load). Both tests run in C."""
    return None in names or not VOLATILE_MODULES.isdisjoint(modules)


def _lazy_columns(ksyms: KernelSymbols) -> tuple[bytes | bytearray, list[np.ndarray]] | None:
    """The blob and (start, end) columns of names and modules, as they are when both are ``LazyNames``
    over one text (what ``load_kallsyms`` returns): saved as is, nothing decoded. Else None."""
    names, modules = ksyms.names, ksyms.modules
    if not (isinstance(names, LazyNames) and isinstance(modules, LazyNames)):
        return None
    if names._blob is not modules._blob:
        return None
    cols = [names._starts, names._ends, modules._starts, modules._ends]
    return names._blob, [np.asarray(c, np.int64) for c in cols]


def _encoded_columns(ksyms: KernelSymbols) -> tuple[bytes | bytearray, list[np.ndarray]]:
    """The blob and (start, end) columns of names and modules, encoding each string (any Sequence)."""
    blob = bytearray()
    cols = [np.full(len(ksyms), -1, np.int64) for _ in range(4)]
    spans: dict[str, tuple[int, int]] = {}
    for col, values in ((0, ksyms.names), (2, ksyms.modules)):
        starts, ends = cols[col], cols[col + 1]
        for i, text in enumerate(values):
            if text is None:
                continue
            span = spans.get(text)
            if span is None:
                raw = text.encode(errors="surrogateescape")
                span = spans[text] = (len(blob), len(blob) + len(raw))
                blob += raw
            starts[i], ends[i] = span
    return blob, cols
