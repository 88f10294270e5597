"""Addresses to frames: one object owns every cache and open file and returns one Frame per address.

Processes are captured (maps snapshot, backing files kept reachable) when first seen, so they can exit
before symbolization. Failures come back as frames with a ``Reason``, never as exceptions.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
import operator
import os
import stat
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from unwind.cfi import UnwindTable, build_unwind_table
from unwind.debuginfo import (
    DEFAULT_DEBUG_DIRS,
    DebuginfodClient,
    SymbolSources,
    file_identity,
    find_debug_file,
    load_symbols,
)
from unwind.demangle import MANGLED_PREFIXES, Demangler
from unwind.dwarf import DwarfInfo, SourceFrame
from unwind.elf import ElfError, ElfFile, Segment
from unwind.frame import MODULE_OF, NAME_OF, UNKNOWN_OF, Frame, FrameKind, Reason
from unwind.gcpause import paused as gc_paused
from unwind.kallsyms import KernelSymbols, names_at
from unwind.maps import READ_FLAGS, VDSO, EarlyCapture, Mapping, load_maps, map_files_path, read_vdso
from unwind.perfmap import PerfMap, open_perf_map, parse_perf_map, read_perf_map
from unwind.symcache import (
    DemangledNames,
    LineResults,
    SymbolCache,
    line_key,
    load_kernel_symbols,
    stale_kernel_results,
)
from unwind.symtab import SymbolTable, lookup_unique, scatter

JIT_MODULE = "[jit]"  # the module of frames named from a perf map
# A process's maps are re-read (to find mappings made after capture) at most this often, in seconds.
REFRESH_INTERVAL = 1.0
_U64_MASK = 2**64 - 1
# Errors that a damaged, vanished or replaced file can raise while it is parsed; all become a Reason.
_FILE_ERRORS = (ElfError, OSError, ValueError)
# A batch's addresses in one mapping: positions, file offsets, and those as uint64 (bulk path) or None.
_Group = tuple[list[int], list[int], np.ndarray | None]
# Frames that DWARF may add lines to: named ones, and unnamed ones in a readable ELF (DWARF may name them).
_LINE_REASONS = (None, Reason.NO_SYMBOL)


@dataclass(eq=False, slots=True)
class _Module:
    """One distinct executable image (a file by (st_dev, st_ino, size, mtime), or a vDSO by contents).

    ``image`` keeps the file reachable (a read-only mmap taken at capture, or the vDSO bytes); the ELF is
    parsed at first lookup. ``frames`` caches results by mapping path, then file offset, once a second
    image (process, exec) resolves addresses through the module: the first one's own frames cache
    (``_Process.frames``) serves it alone, so a module that one process maps costs no second cache.
    """

    name: str
    image: mmap.mmap | bytes | None
    elf: ElfFile | None = None
    debug: ElfFile | None = None
    table: SymbolTable | None = None
    error: Reason | None = None
    loaded: bool = False
    frames: dict[str, dict[int, Frame]] = field(default_factory=dict)  # by mapping path, then file offset
    owner: tuple[int, int] | None = None  # (pid, gen) of the first image that resolved through it
    shared: bool = False  # another image has: ``frames`` is kept from then on
    names: dict[int, str | None] = field(default_factory=dict)  # (demangled) name by symbol index, -1: None
    identity: str | None = None  # file_identity() of the mapped file: its cache key without a build-id
    dwarf: DwarfInfo | None = None  # with Symbolizer(lines=True): its own or its debug file's DWARF
    dwarf_tried: bool = False
    lines: dict[tuple[int, str], tuple[Frame, ...]] = field(default_factory=dict)  # as ``frames``
    line_results: LineResults | None = None  # DWARF's answers of earlier runs and this one (disk cache)
    unwind: UnwindTable | None = None  # CFI rows (unwind/cfi.py), built at the first unwind through it
    unwind_tried: bool = False
    demangled: DemangledNames | None = None  # names demangled in earlier runs, from the disk cache

    def close(self) -> None:
        if self.demangled is not None:
            self.demangled.save()  # what this run demangled, for the next one
            self.demangled = None
        if self.line_results is not None:
            self.line_results.save()  # what this run read from DWARF, for the next one
            self.line_results = None
        if self.dwarf is not None:
            self.dwarf.close()
        self.dwarf = None
        self.lines.clear()
        for f in (self.elf, self.debug):
            if f is not None:
                f.close()
        if isinstance(self.image, mmap.mmap):
            try:
                self.image.close()  # idempotent; already closed when the ElfFile owned it
            except BufferError:  # a numpy view is still alive; the mapping goes when it does
                pass
        self.elf = self.debug = self.table = self.image = None
        self.frames.clear()
        self.names.clear()


@dataclass(eq=False, slots=True)
class _Process:
    """A captured process: its maps (sorted), their starts, and the module or failure behind each start."""

    pid: int
    maps: list[Mapping]
    starts: list[int]
    handles: dict[int, _Module | Reason]
    refreshed: float  # time.monotonic() of the last re-read of the maps
    perf_map_fd: int | None = None  # /tmp/perf-NSPID.map in its root, opened at capture (JIT symbols)
    perf_map: PerfMap | None = None  # read at first need, through the fd
    perf_map_tried: float = 0.0  # time.monotonic() of the last attempt to open it
    frames: dict[int, Frame] = field(default_factory=dict)  # by looked-up address (after ip - 1)
    captured: float = 0.0  # time.monotonic() of the capture
    bounds: tuple[np.ndarray, np.ndarray] | None = None  # uint64 starts and ends of ``maps``, made at need
    gen: int = 0  # the exec generation of the image

    def close(self) -> None:
        if self.perf_map_fd is not None:
            os.close(self.perf_map_fd)
            self.perf_map_fd = None


@dataclass(frozen=True, slots=True)
class CapturedImage:
    """What a saved recording keeps of a readable image behind a mapping (``Symbolizer.captured_image``).

    ``size``/``mtime_ns`` are the file's when it was opened (None for the vDSO); ``segments`` its PT_LOAD
    program headers (file offset -> ELF vaddr); ``data`` the vDSO's bytes (None for files).
    """

    build_id: bytes | None
    size: int | None
    mtime_ns: int | None
    segments: tuple[Segment, ...]
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class InstalledImage:
    """The image to read for a mapping of a process installed from a saved recording.

    ``path`` is the file to read (the binary, or a debug file found by its build-id), or ``data`` its
    bytes (the vDSO); ``name`` is the path it was mapped from. ``segments`` (the binary's PT_LOADs)
    replace the file's own: a separate debug file keeps the vaddrs but not the binary's file offsets.
    """

    name: str
    path: str | None = None
    data: bytes | None = None
    segments: tuple[Segment, ...] | None = None


class Symbolizer:
    """Symbolizes user and kernel stacks; a context manager owning all caches and opened files.

    User addresses are absolute addresses of a captured process; kernel addresses are absolute kernel
    addresses. Every call returns exactly one ``Frame`` per input address, in input order.

    Separate debug info of stripped binaries is searched in ``debug_dirs`` (the user's) before
    ``default_debug_dirs``, then asked of ``debuginfod`` (True: from ``$DEBUGINFOD_URLS``, none when
    unset). Parsed tables go to ``cache`` (True: ``$XDG_CACHE_HOME/bpfprof``; False: no disk cache).
    See unwind/debuginfo.py and unwind/symcache.py.

    User (ELF) symbol names are demangled (C++, Rust; unwind/demangle.py); ``demangle=False`` leaves
    them exactly as in the symbol table. Kernel and perf-map names are never demangled.

    With ``lines=True``, ``symbolize_user_lines`` adds source lines and inlined calls from DWARF
    (unwind/dwarf.py), read lazily per compile unit.
    """

    # Batches of at least this many new addresses are placed in their mappings with numpy; smaller
    # ones address by address (numpy's fixed cost per call is larger than bisect's below it).
    bulk_min = 64

    def __init__(
        self,
        *,
        proc: str = "/proc",
        kallsyms: KernelSymbols | None = None,
        debug_dirs: Sequence[str] = (),
        default_debug_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
        debuginfod: DebuginfodClient | bool = True,
        cache: SymbolCache | bool = True,
        demangle: bool = True,
        lines: bool = False,
    ) -> None:
        self._lines = lines  # symbolize_user_lines reads DWARF line tables and inlined calls
        self._proc = proc
        self._kallsyms = kallsyms
        self._kallsyms_cached = False  # from the disk cache: may lack BPF programs loaded since
        self._sources = SymbolSources(
            tuple(debug_dirs),
            tuple(default_debug_dirs),
            DebuginfodClient.from_env() if debuginfod is True else debuginfod or None,
            SymbolCache.default() if cache is True else cache or None,
        )
        self._procs: dict[tuple[int, int], _Process] = {}  # by (pid, exec generation)
        self._gone: set[tuple[int, int]] = set()
        self._recent: dict[int, _Process] = {}  # pid -> its latest image, while revisit() still looks
        self._modules: dict[tuple[object, ...], _Module] = {}
        self._kernel_frames: dict[int, Frame] = {}  # by looked-up address
        # frames by symbol index, for the KernelSymbols they index
        self._kernel_by_index: tuple[KernelSymbols | None, dict[int, Frame]] = (None, {})
        self._unknown: Counter[str] = Counter()
        self._demangler = Demangler() if demangle else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release every mapped file and cache. The symbolizer may be used again (it re-opens lazily)."""
        for module in self._modules.values():
            module.close()
        self._modules.clear()
        for proc in self._procs.values():
            proc.close()
        self._procs.clear()
        self._recent.clear()
        self._gone.clear()
        self._kernel_frames.clear()
        self._kernel_by_index = (None, {})
        if self._demangler is not None:
            self._demangler.clear()
        if self._sources.debuginfod is not None:
            self._sources.debuginfod.close()

    # -- capture ------------------------------------------------------------------------------

    def capture(self, pid: int, gen: int = 0, early: EarlyCapture | None = None) -> bool:
        """Snapshot ``/proc/PID/maps`` and keep each executable file reachable; cheap, no ELF parsing.

        With ``early`` (unwind.maps.capture_early, taken at exec before this Symbolizer existed), its maps
        and open files stand for the snapshot: the process may be gone now. The caller closes it.

        ``gen`` counts the execs of the process seen while recording: each image is captured (and later
        symbolized) apart, so samples taken before an exec are named from the image they ran.
        Returns True when captured now; False when (pid, gen) was already captured (nothing is done) or
        the process is gone or unreadable.
        """
        key = (pid, gen)
        if key in self._procs or key in self._gone:
            return False
        try:
            maps = early.maps if early is not None else load_maps(pid, self._proc)
        except OSError:
            self._gone.add(key)
            return False
        proc = _Process(pid, [], [], {}, refreshed=-REFRESH_INTERVAL, gen=gen)  # may refresh at once
        proc.perf_map_fd = open_perf_map(pid, self._proc)
        proc.captured = proc.perf_map_tried = early.captured if early is not None else time.monotonic()
        self._add_mappings(proc, maps, early)
        self._procs[key] = proc
        recent = self._recent.get(pid)
        if recent is None or recent.gen <= gen:  # a later exec generation replaces the old image here;
            self._recent[pid] = proc  # an earlier one captured late (early captures, retirement) does not
        return True

    def seal(self, pid: int, gen: int = 0) -> None:
        """Never read ``/proc`` for image ``gen`` of ``pid`` from now on: the process is gone (its PID may
        name another process already). Uncaptured, its frames get ``Reason.NO_PROCESS``."""
        if (pid, gen) not in self._procs:
            self._gone.add((pid, gen))

    def retire(self, pid: int, gen: int = 0) -> bool:
        """Forget image ``gen`` of process ``pid`` once its samples are symbolized (the process exited or
        exec'd): its captured maps, open perf-map fd and per-process frames go; the modules (mapped files,
        symbol tables) stay, shared with other processes. True when a capture was dropped.

        The image must not be asked for again: a later call would capture the PID afresh from /proc.
        """
        key = (pid, gen)
        self._gone.discard(key)
        proc = self._procs.pop(key, None)
        if proc is None:
            return False
        proc.close()
        if self._recent.get(pid) is proc:
            del self._recent[pid]
        return True

    def _add_mappings(self, proc: _Process, maps: list[Mapping], early: EarlyCapture | None = None) -> None:
        """Add ``maps`` to ``proc`` (skipping any that overlap a known mapping) and keep their files (those
        ``early`` holds open first)."""
        old, old_starts = proc.maps, proc.starts
        added = []
        for m in maps:
            i = bisect.bisect_left(old_starts, m.end) - 1
            if i >= 0 and old[i].end > m.start:
                continue  # overlaps what was captured first: keep the older view (samples predate it)
            added.append(m)
        by_file: dict[tuple[str, int, str], _Module | Reason] = {}
        for m in added:
            if m.path == VDSO:
                data = early.vdso if early is not None else None
                proc.handles[m.start] = self._vdso_module(proc.pid, m, data)
            elif m.is_exec and m.is_file:
                key = (m.dev, m.inode, m.path)
                if key not in by_file:
                    fd = early.fds.get(m.start) if early is not None else None
                    by_file[key] = self._file_module(proc.pid, m, fd)
                proc.handles[m.start] = by_file[key]
        proc.maps = sorted(old + added, key=lambda m: m.start)
        proc.starts = [m.start for m in proc.maps]
        proc.bounds = None

    def revisit(self, max_age: float = 30.0, young: float = 2.0, every: float = 0.2) -> None:
        """While recording: look again at what a process maps after its capture, while it lives.

        Processes captured in the last ``young`` seconds get their maps re-read every ``every``
        seconds: a process first sampled while the dynamic loader still runs has not mapped its
        libraries yet, and a short one is gone before symbolization. Processes captured in the last
        ``max_age`` seconds without a JIT perf map are looked at again once a second (a runtime
        writes it after start). Only the current image (the latest exec generation) of a pid.
        """
        now = time.monotonic()
        for pid, proc in list(self._recent.items()):  # only recent captures: cheap on a long run
            age = now - proc.captured
            if age > max_age:
                del self._recent[pid]
                continue
            if age <= young:
                self._refresh(proc, every)
            if proc.perf_map_fd is None and now - proc.perf_map_tried >= 1.0:
                proc.perf_map_tried = now
                proc.perf_map_fd = open_perf_map(proc.pid, self._proc)

    def _refresh(self, proc: _Process, interval: float = REFRESH_INTERVAL) -> bool:
        """Re-read the maps of a live process to learn mappings made since capture (dlopen, late loads).

        At most once per ``interval`` seconds per process; True when mappings were added.
        """
        now = time.monotonic()
        if now - proc.refreshed < interval:
            return False
        proc.refreshed = now
        try:
            maps = load_maps(proc.pid, self._proc)
        except OSError:
            return False
        before = len(proc.maps)
        self._add_mappings(proc, maps)
        return len(proc.maps) > before

    def _file_module(self, pid: int, m: Mapping, early_fd: int | None = None) -> _Module | Reason:
        """Open the file behind mapping ``m``, reusing the cached module when the same file was seen.
        ``early_fd``, the file opened through map_files at an early capture, comes first (not closed)."""
        candidates: list[str | int] = [] if early_fd is None else [early_fd]
        candidates.append(map_files_path(pid, m, self._proc))
        exact = len(candidates)  # the mapped file itself; by path, it may have been replaced since
        if not m.deleted:  # a deleted file's path now names another file, or none
            candidates += [os.path.join(self._proc, str(pid), "root", m.path.lstrip("/")), m.path]
        for i, path in enumerate(candidates):
            try:
                fd = os.dup(path) if isinstance(path, int) else os.open(path, READ_FLAGS)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or (i >= exact and m.inode and st.st_ino != m.inode):
                    continue
                key = ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                module = self._modules.get(key)
                if module is None:
                    module = self._map_module(fd, st.st_size, m.path)
                    module.identity = file_identity(m.path, st)
                    self._modules[key] = module
                return module
            finally:
                os.close(fd)
        return Reason.NO_FILE

    @staticmethod
    def _map_module(fd: int, size: int, name: str) -> _Module:
        if size == 0:
            return _Module(name, None, error=Reason.BAD_ELF, loaded=True)
        try:
            image = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return _Module(name, None, error=Reason.NO_FILE, loaded=True)
        return _Module(name, image)

    def _vdso_module(self, pid: int, m: Mapping, data: bytes | None = None) -> _Module | Reason:
        """The vDSO image read from ``/proc/PID/mem`` (shared by every process with the same bytes), or
        ``data`` read so at an early capture."""
        if data is None:
            try:
                data = read_vdso(pid, m, self._proc)
            except OSError:
                return Reason.NO_FILE
        key = ("vdso", zlib.crc32(data), len(data))
        module = self._modules.get(key)
        if module is None:
            module = self._modules[key] = _Module(VDSO, data)
        return module

    # -- user ---------------------------------------------------------------------------------

    def symbolize_user(self, pid: int, ips: Sequence[int], gen: int = 0) -> list[Frame]:
        """One USER frame per absolute address of process ``pid`` in its image ``gen``; ``ips`` leaf first.

        ``ips[0]`` is looked up as is and every other ip at ``ip - 1`` (a return address points past its
        call). ``file_off`` of a frame is the file offset of the looked-up address. A (pid, gen) never
        captured is captured now; if that fails every frame has ``Reason.NO_PROCESS``.
        """
        return self.symbolize_user_addrs(pid, _lookup_addrs(ips), gen)

    def symbolize_user_addrs(self, pid: int, addrs: Sequence[int], gen: int = 0) -> list[Frame]:
        """One USER frame per absolute address of process ``pid`` (image ``gen``), each looked up as given.

        The batch form of ``symbolize_user`` (which applies ``ip - 1`` to return addresses first): give
        every distinct address of many stacks of one process in one call. Addresses are grouped by
        mapping and module and looked up with numpy. A frame is made once per address and process (and
        shared by processes mapping the same file at the same path): named frames keep the address's
        ``module`` and ``file_off``, so the same object comes back for the same address.
        """
        proc = self._procs.get((pid, gen))
        if proc is None and self.capture(pid, gen):
            proc = self._procs[(pid, gen)]
        if proc is None:
            return self._count([Frame(None, kind=FrameKind.USER, unknown=Reason.NO_PROCESS) for _ in addrs])
        known = proc.frames
        frames: list[Frame | None] = list(map(known.get, addrs)) if known else [None] * len(addrs)
        todo = _unfilled(frames) if known else list(range(len(addrs)))
        if not todo:
            return self._count(frames)  # type: ignore[arg-type]
        with gc_paused(len(todo) >= self.bulk_min):
            missed = self._place(proc, todo, addrs, frames)
            if missed and self._refresh(proc):
                missed = self._place(proc, missed, addrs, frames)
        if missed:  # a missed address is not remembered: a refresh may map it later
            missed_set = set(missed)
            todo = [pos for pos in todo if pos not in missed_set]
        if len(todo) == len(addrs):  # all of them (todo is every position, in order)
            known.update(zip(addrs, frames, strict=True))  # type: ignore[arg-type]  # every slot is filled
        else:
            new = zip(map(addrs.__getitem__, todo), map(frames.__getitem__, todo), strict=True)
            known.update(new)  # type: ignore[arg-type]  # every slot of todo is filled
        for pos in missed:
            frames[pos] = self._jit_frame(proc, addrs[pos]) or Frame(
                None, kind=FrameKind.USER, unknown=Reason.NO_MAPPING
            )
        return self._count(frames)  # type: ignore[arg-type]  # every slot is filled above

    def _place(
        self, proc: _Process, positions: list[int], addrs: Sequence[int], frames: list[Frame | None]
    ) -> list[int]:
        """Fill ``frames`` at ``positions`` from the mapping and module of each address.

        Returns the positions whose address is in no known mapping. Large batches are placed with numpy
        (``_group_bulk``), small ones address by address (``_group_each``): both give the same groups.
        """
        group = self._group_bulk if len(positions) >= self.bulk_min else self._group_each
        groups, missed = group(proc, positions, addrs)
        for i, (group_positions, offs, offs_array) in groups.items():
            self._place_in_mapping(proc, proc.maps[i], group_positions, offs, frames, offs_array)
        return missed

    @staticmethod
    def _group_each(
        proc: _Process, positions: list[int], addrs: Sequence[int]
    ) -> tuple[dict[int, _Group], list[int]]:
        """Per address (bisect): ({mapping index: (positions, file offsets, None)}, positions in none)."""
        groups: dict[int, _Group] = {}
        missed = []
        starts, maps = proc.starts, proc.maps
        for pos in positions:
            addr = addrs[pos]
            i = bisect.bisect_right(starts, addr) - 1
            if i < 0 or addr >= maps[i].end:
                missed.append(pos)
                continue
            group = groups.get(i)
            if group is None:
                group = groups[i] = ([], [], None)
            group[0].append(pos)
            group[1].append(maps[i].to_file_offset(addr))
        return groups, missed

    @staticmethod
    def _group_bulk(
        proc: _Process, positions: list[int], addrs: Sequence[int]
    ) -> tuple[dict[int, _Group], list[int]]:
        """``_group_each`` with numpy: one searchsorted over the mapping starts, one sort by mapping. Each
        group also has its file offsets as a uint64 array."""
        every = len(positions) == len(addrs)  # positions is then range(len(addrs)): see symbolize_user_addrs
        if every:
            looked_up = addrs if isinstance(addrs, list) else list(addrs)
        else:
            looked_up = [addrs[pos] for pos in positions]
        q, valid = _u64_array(looked_up)
        starts, ends = _bounds(proc)
        i = np.searchsorted(starts, q, side="right").astype(np.int64) - 1
        safe = np.maximum(i, 0)
        inside = valid & (i >= 0) & (q < ends[safe])
        pos_arr = np.arange(len(addrs)) if every else np.asarray(positions, dtype=np.int64)
        missed = pos_arr[~inside].tolist()
        hit = np.flatnonzero(inside)
        groups: dict[int, _Group] = {}
        if len(hit):
            # Input order kept within a mapping; a stable sort of small ints is a radix sort (linear).
            keys = i[hit].astype(np.int16 if len(proc.maps) < 2**15 else np.int64)
            order = hit[np.argsort(keys, kind="stable")]
            in_map = i[order]
            offs = q[order] - starts[in_map]  # Mapping.to_file_offset, in bulk: + offset below
            cuts = [0, *(np.flatnonzero(in_map[1:] != in_map[:-1]) + 1).tolist(), len(order)]
            for lo, hi in itertools.pairwise(cuts):
                k = int(in_map[lo])
                group_offs = offs[lo:hi] + np.uint64(proc.maps[k].offset)
                groups[k] = (pos_arr[order[lo:hi]].tolist(), group_offs.tolist(), group_offs)
        return groups, missed

    def _place_in_mapping(
        self,
        proc: _Process,
        m: Mapping,
        positions: list[int],
        offs: list[int],
        frames: list[Frame | None],
        offs_array: np.ndarray | None = None,
    ) -> None:
        """Frames for the addresses at ``positions`` (file offsets ``offs``, also as a uint64 array if
        given), all inside mapping ``m``.

        An unnamed address in a mapping that is not executable gets ``Reason.NOT_CODE``, whatever else
        failed: no code runs there, so it is no return address (a frame-pointer walk through code built
        without frame pointers read a pointer to data: the heap, a stack, a locale file). The lookups
        are still made (a JIT's perf map, the file's symbols): permissions may have changed since the
        maps were read."""
        handle = proc.handles.get(m.start)
        not_code = None if m.is_exec else Reason.NOT_CODE
        if handle is None:
            if not m.is_file:
                made: dict[int, Frame] = {}  # one frame per address, also when the batch repeats it
                reason = not_code or Reason.ANON
                for pos, off in zip(positions, offs, strict=True):
                    if off not in made:
                        made[off] = self._jit_frame(proc, off - m.offset + m.start) or Frame(
                            None, m.path or None, FrameKind.USER, unknown=reason
                        )
                    frames[pos] = made[off]
                return
            # An address in a non-executable file mapping: open it now, if the process still lives.
            handle = proc.handles[m.start] = self._file_module(proc.pid, m)
        if isinstance(handle, Reason):
            failed: dict[int, Frame] = {}
            for pos, off in zip(positions, offs, strict=True):
                if off not in failed:
                    failed[off] = Frame(
                        None, m.path, FrameKind.USER, unknown=not_code or handle, file_off=off
                    )
                frames[pos] = failed[off]
            return
        image = (proc.pid, proc.gen)
        if handle.owner is None:
            handle.owner = image
        elif handle.owner != image:
            handle.shared = True
        self._resolve(handle, m.path, positions, offs, frames, not_code, offs_array)

    def _resolve(
        self,
        module: _Module,
        path: str,
        positions: list[int],
        offs: list[int],
        frames: list[Frame | None],
        unnamed: Reason | None = None,
        offs_array: np.ndarray | None = None,
    ) -> None:
        """Frames for file offsets ``offs`` (``offs_array``: the same as uint64, if the caller has it) of
        ``module`` mapped from ``path``: from the module's frames (kept once it is shared), else looked
        up with one vectorised call (names found and demangled once per symbol). ``unnamed``, if given,
        is the reason of every unnamed frame made here."""
        cache = module.frames.get(path)
        if cache is None:
            cache = {}
            if module.shared:
                module.frames[path] = cache
        got: list[Frame | None] = list(map(cache.get, offs)) if cache else [None] * len(offs)
        todo = [j for j, f in enumerate(got) if f is None] if cache else list(range(len(offs)))
        if len(todo) < len(got):
            scatter(frames, positions, got)  # todo's are set below
        if not todo:
            return
        if len(todo) < len(got):
            positions = [positions[j] for j in todo]
            offs = [offs[j] for j in todo]
            offs_array = None
        unique, keys, order = self._distinct(offs, offs_array)
        reason = self._load(module)
        if reason is None:
            try:
                names, reasons = self._names_at(module, keys, order)
            except _FILE_ERRORS:
                reason = Reason.BAD_ELF
        if reason is not None:
            names, reasons = _NONES, itertools.repeat(unnamed or reason)  # type: ignore[assignment]
        elif unnamed is not None:  # (a finite map here: _names_at's)
            reasons = [None if r is None else unnamed for r in reasons]
        new = _make_frames(len(unique), names, itertools.repeat(path), FrameKind.USER, reasons, unique)
        if module.shared or len(unique) < len(offs):
            cache.update(zip(unique, new, strict=True))
        if len(unique) < len(offs):
            new = list(map(cache.__getitem__, offs))
        scatter(frames, positions, new)

    def _distinct(
        self, offs: list[int], offs_array: np.ndarray | None
    ) -> tuple[list[int], np.ndarray, np.ndarray | None]:
        """The distinct file offsets of ``offs`` in first-seen order (a batch may repeat an address: one
        frame for it), as a list and as uint64 keys, and for a big batch the keys' ascending order (for
        ``_names_at``; None for a small one). A big batch is checked in that order: adjacent equal keys
        (rarely any) are the only repeats, and a batch without them is used as it is."""
        if len(offs) >= self.bulk_min:
            keys = np.array(offs, np.uint64) if offs_array is None else offs_array
            order = np.argsort(keys)
            ordered = keys[order]
            if not bool(np.any(ordered[1:] == ordered[:-1])):
                return offs, keys, order
        unique = list(dict.fromkeys(offs))
        return unique, np.array(unique, np.uint64), None

    def _names_at(
        self, module: _Module, offs: np.ndarray, order: np.ndarray | None = None
    ) -> tuple[Iterable[str | None], Iterable[Reason | None]]:
        """The (demangled) function name at each file offset of a loaded module (None where none is),
        and the reason of each unnamed one, as iterables (consumed once, by ``_make_frames``).

        A big batch is looked up in address order (``lookup_unique``; ``order``: the offsets' ascending
        order if the caller has it). The frames are still made in the order given: the frames of a
        batch are read in that order again, and objects made in the order they are read stay in cache.
        """
        elf, table = module.elf, module.table
        assert elf is not None
        assert table is not None

        def symbol_indices(offs: np.ndarray) -> np.ndarray:
            vaddrs, found = elf.file_offsets_to_vaddrs(offs)
            idx = table.lookup_indices(vaddrs)
            idx[~found] = -1
            return idx

        in_order = order is not None or len(offs) >= self.bulk_min
        uniq, inverse = lookup_unique(offs, symbol_indices, in_order=in_order, order=order)
        named = module.names
        keys = uniq.tolist()
        new = list(itertools.filterfalse(named.__contains__, keys)) if named else keys
        if new:
            self._name_symbols(module, new)
        names = list(map(named.__getitem__, keys))
        reasons: list[Reason | None] = [None] * len(names)
        for k in itertools.compress(range(len(names)), map(operator.not_, names)):
            reasons[k] = Reason.NO_SYMBOL
        at = inverse.tolist()
        return map(names.__getitem__, at), map(reasons.__getitem__, at)

    def _name_symbols(self, module: _Module, indices: list[int]) -> None:
        """Put the (demangled) name of each symbol index (-1: None) in ``module.names``: the one place user
        (ELF) names are produced. Names demangled in an earlier run come from the disk cache, and only
        the others are read from the string table (a cached C++ library's mangled names are not decoded
        at all); only names that demangling can change go through the demangler."""
        assert module.table is not None
        named = module.names
        demangle = self._demangler
        kept = module.demangled if demangle is not None else None
        rest = indices
        if kept is not None:
            real = indices[1:] if indices[0] < 0 else indices  # -1 (no symbol) is first when present
            before = kept.get(real)
            missing = list(map(operator.is_, before, itertools.repeat(None)))
            if not all(missing):
                hit = list(map(operator.not_, missing))
                named.update(zip(itertools.compress(real, hit), itertools.compress(before, hit), strict=True))
                rest = list(itertools.compress(real, missing))
                if real is not indices:
                    rest.insert(0, indices[0])
        if not rest:
            return
        found = module.table.names_of(rest)
        named.update(zip(rest, found, strict=True))
        if demangle is None:
            return
        for i, name in zip(rest, found, strict=True):
            if name and (name.startswith(MANGLED_PREFIXES) or "@" in name):  # else it is kept as is
                named[i] = out = demangle(name)
                # Kept also when left as it is (libLLVM 22 has 656 names libstdc++ cannot demangle):
                # trying them again in every run cost 2.5 ms of 70.
                if kept is not None:
                    kept.add(i, out)

    def _jit_frame(self, proc: _Process, addr: int) -> Frame | None:
        """A frame named from the process's JIT perf map, or None (no map, or not covered)."""
        if proc.perf_map is None:
            if proc.perf_map_fd is None:  # not there at capture: the JIT may have started since
                proc.perf_map_fd = open_perf_map(proc.pid, self._proc)
            if proc.perf_map_fd is None:
                return None
            try:
                proc.perf_map = read_perf_map(proc.perf_map_fd)
            except OSError:
                return None
        (name,) = proc.perf_map.lookup([addr])
        return Frame(name, JIT_MODULE, FrameKind.USER) if name else None

    def _load(self, module: _Module) -> Reason | None:
        """Parse the module's ELF and symbol table once (with separate debug info when stripped)."""
        if not module.loaded:
            module.loaded = True
            try:
                if isinstance(module.image, mmap.mmap):
                    module.elf = ElfFile.from_mmap(module.image)
                elif module.image is not None:
                    module.elf = ElfFile.from_bytes(module.image)
                else:
                    module.error = Reason.NO_FILE
                    return module.error
                # debug file, MiniDebugInfo or debuginfod when stripped; the disk cache when it has it
                loaded = load_symbols(module.elf, module.name, module.identity, self._sources)
                module.debug = loaded.debug.elf if loaded.debug is not None else None
                module.table = loaded.table
                if self._demangler is not None and self._sources.cache is not None:
                    module.demangled = self._sources.cache.demangled_names(loaded.table)
            except _FILE_ERRORS:
                module.error = Reason.BAD_ELF
        return module.error

    # -- unwinding (DWARF mode) ---------------------------------------------------------------

    def unwind_resolver(
        self, pid: int, gen: int = 0
    ) -> Callable[[int], tuple[UnwindTable | None, int] | None]:
        """The ``resolve`` of ``unwind.unwinder.unwind`` for process ``pid`` (image ``gen``), captured now
        if it never was: absolute pc -> (CFI table of its module, bias) with ``elf_vaddr = abs_pc - bias``.

        ``(None, 0)`` for executable memory without CFI (anonymous JIT code, an unreadable file: the
        unwinder uses frame pointers there); None for a pc in no executable mapping. A module's table is
        built at its first pc (with its separate debug file's ``.debug_frame``), cached on disk by build-id.
        """
        if (pid, gen) not in self._procs:
            self.capture(pid, gen)
        proc = self._procs.get((pid, gen))
        by_start: dict[int, tuple[UnwindTable | None, int] | None] = {}  # per mapping: one segment each

        def resolve(abs_pc: int) -> tuple[UnwindTable | None, int] | None:
            if proc is None:
                return None
            i = bisect.bisect_right(proc.starts, abs_pc) - 1
            if (i < 0 or abs_pc >= proc.maps[i].end) and self._refresh(proc):
                i = bisect.bisect_right(proc.starts, abs_pc) - 1
            if i < 0 or abs_pc >= proc.maps[i].end:
                return None
            m = proc.maps[i]
            if m.start not in by_start:
                by_start[m.start] = self._unwind_entry(proc, m, abs_pc)
            return by_start[m.start]

        return resolve

    def _unwind_entry(self, proc: _Process, m: Mapping, abs_pc: int) -> tuple[UnwindTable | None, int] | None:
        """The table and bias of mapping ``m`` (its bias taken at ``abs_pc``); see ``unwind_resolver``."""
        if not m.is_exec:
            return None
        handle = proc.handles.get(m.start)
        if not isinstance(handle, _Module) or self._load(handle) is not None or handle.elf is None:
            return None, 0
        vaddr = handle.elf.file_offset_to_vaddr(m.to_file_offset(abs_pc))
        if vaddr is None:
            return None, 0
        if not handle.unwind_tried:
            handle.unwind_tried = True
            cache = self._sources.cache
            try:
                table = build_unwind_table(
                    handle.elf,
                    handle.debug,
                    cache_dir=cache.root if cache is not None else None,
                    use_cache=cache is not None,
                )
            except _FILE_ERRORS:
                table = None
            handle.unwind = table if table is not None and len(table) else None  # no CFI: frame pointers
        return handle.unwind, abs_pc - vaddr

    # -- source lines (DWARF) -----------------------------------------------------------------

    def symbolize_user_lines(self, pid: int, ips: Sequence[int], gen: int = 0) -> list[list[Frame]]:
        """``symbolize_user`` with source lines and inlined calls: one list of frames per address.

        Each list runs innermost first: inlined calls (``inlined=True``), then the function holding the
        code, each with ``file`` and ``line`` from DWARF (the binary's own or its separate debug file's),
        as ``addr2line -f -i`` prints them. Where DWARF says nothing, or the symbolizer was made without
        ``lines=True``, the list is ``[the symbolize_user frame]``. The outermost frame keeps the ELF
        symbol's name when DWARF's names the same function (an alias, a clone, or mangling apart).
        """
        return self.symbolize_user_lines_addrs(pid, _lookup_addrs(ips), gen)

    def symbolize_user_lines_addrs(self, pid: int, addrs: Sequence[int], gen: int = 0) -> list[list[Frame]]:
        """``symbolize_user_lines`` of addresses looked up as given: the batch form, as
        ``symbolize_user_addrs`` is ``symbolize_user``'s (give every distinct address of many stacks of one
        process in one call)."""
        frames = self.symbolize_user_addrs(pid, addrs, gen)
        out = [[f] for f in frames]
        proc = self._procs.get((pid, gen))
        if not self._lines or proc is None:
            return out
        pending: dict[int, tuple[_Module, list[int]]] = {}
        for pos, frame in enumerate(frames):
            if frame.file_off is None or frame.module is None or frame.unknown not in _LINE_REASONS:
                continue
            module = self._module_at(proc, addrs[pos])
            if module is None:
                continue
            cached = module.lines.get((frame.file_off, frame.module))
            if cached is not None:
                out[pos] = list(cached)
            else:
                pending.setdefault(id(module), (module, []))[1].append(pos)
        for module, positions in pending.values():
            dwarf = self._dwarf(module)
            if dwarf is None or module.elf is None:
                continue
            bases = [frames[pos] for pos in positions]
            vaddrs = [module.elf.file_offset_to_vaddr(f.file_off or 0) for f in bases]
            results = iter(self._dwarf_answers(module, dwarf, [v for v in vaddrs if v is not None]))
            for pos, base, vaddr in zip(positions, bases, vaddrs, strict=True):
                expanded = self._line_frames(base, next(results) if vaddr is not None else [])
                module.lines[(base.file_off or 0, base.module or "")] = expanded  # both set: see above
                out[pos] = list(expanded)
        return out

    @staticmethod
    def _dwarf_answers(module: _Module, dwarf: DwarfInfo, vaddrs: list[int]) -> list[list[SourceFrame]]:
        """``dwarf.lookup_many(vaddrs)``, the answers of earlier runs taken from the disk cache (DWARF is
        not read for them) and the others kept for the next run."""
        kept = module.line_results
        if kept is None:
            return dwarf.lookup_many(vaddrs)
        out = kept.get(vaddrs)
        missing = [pos for pos, found in enumerate(out) if found is None]
        if missing:
            looked_up = [vaddrs[pos] for pos in missing]
            answers = dwarf.lookup_many(looked_up)
            keep = not dwarf.unreadable  # a damaged file's empty answers are not the build-id's
            for pos, vaddr, found in zip(missing, looked_up, answers, strict=True):
                out[pos] = found
                if keep:
                    kept.add(vaddr, found)
        return out  # type: ignore[return-value]  # every slot is filled

    def _module_at(self, proc: _Process, addr: int) -> _Module | None:
        i = bisect.bisect_right(proc.starts, addr) - 1
        if i < 0 or addr >= proc.maps[i].end:
            return None
        handle = proc.handles.get(proc.maps[i].start)
        return handle if isinstance(handle, _Module) else None

    def _dwarf(self, module: _Module) -> DwarfInfo | None:
        """The module's DWARF: its own ``.debug_info``, else its separate debug file's; looked for once."""
        if not module.dwarf_tried:
            module.dwarf_tried = True
            if self._load(module) is not None or module.elf is None:
                return None
            if module.debug is None and not DwarfInfo(module.elf).has_debug_info:
                # load_symbols looks for a debug file only when the binary lacks .symtab
                found = find_debug_file(
                    module.elf, module.name, self._sources.debug_dirs, default_dirs=self._sources.default_dirs
                )
                module.debug = found.elf if found is not None else None
            for elf, source in ((module.elf, "self"), (module.debug, "debug")):
                if elf is not None and DwarfInfo(elf).has_debug_info:
                    module.dwarf = DwarfInfo(elf)
                    module.line_results = self._line_results(module, source)
                    break
        return module.dwarf

    def _line_results(self, module: _Module, source: str) -> LineResults | None:
        """The disk cache's DWARF answers of the module (``source``: whose DWARF), or None."""
        cache = self._sources.cache
        if cache is None or module.elf is None:
            return None
        try:
            build_id = module.elf.build_id
        except _FILE_ERRORS:  # a damaged note: keyed as a file without one
            build_id = None
        key = line_key(build_id, module.identity, source)
        return cache.line_results(key) if key is not None else None

    def _line_frames(self, base: Frame, source: list[SourceFrame]) -> tuple[Frame, ...]:
        """Frames for the DWARF answer ``source`` (innermost first) of the address of frame ``base``."""
        if not source:
            return (base,)
        out = []
        for i, s in enumerate(source):
            name = s.function
            if name and self._demangler is not None:
                name = self._demangler(name)
            if i == len(source) - 1 and base.name and (not name or _same_function(base.name, name)):
                name = base.name
            out.append(
                Frame(
                    name,
                    base.module,
                    FrameKind.USER,
                    file=s.file,
                    line=s.line,
                    inlined=s.inlined,
                    unknown=None if name else base.unknown or Reason.NO_SYMBOL,
                    file_off=base.file_off,
                )
            )
        return tuple(out)

    # -- kernel -------------------------------------------------------------------------------

    def symbolize_kernel(self, ips: Sequence[int]) -> list[Frame]:
        """One KERNEL frame per absolute kernel address, leaf first (index > 0 looked up at ``ip - 1``).

        ``module`` is the kernel module name, None for vmlinux. Restricted kallsyms give frames with
        ``Reason.KALLSYMS_RESTRICTED`` (label ``[kernel]``).
        """
        addrs = _lookup_addrs(ips)
        if addrs and (min(addrs) < 0 or max(addrs) > _U64_MASK):  # 0 - 1 wraps, as in the kernel
            addrs = [a & _U64_MASK for a in addrs]
        return self.symbolize_kernel_addrs(addrs)

    def symbolize_kernel_addrs(self, addrs: Sequence[int]) -> list[Frame]:
        """One KERNEL frame per absolute kernel address (0 <= addr < 2**64), each looked up as given.

        The batch form of ``symbolize_kernel`` (which applies ``ip - 1`` to return addresses first).
        Kernel frames carry no address, so every address in one function gets the same Frame object.
        """
        known = self._kernel_frames
        frames: list[Frame | None] = list(map(known.get, addrs))
        todo = _unfilled(frames)
        if todo:
            q = np.fromiter(map(addrs.__getitem__, todo), np.uint64, len(todo))
            ksyms = self._kernel_symbols()
            uniq, inverse = lookup_unique(q, ksyms.lookup_indices)
            with gc_paused(len(todo) >= self.bulk_min):
                by_symbol = self._kernel_symbol_frames(ksyms, uniq.tolist())
            if self._kallsyms_cached and stale_kernel_results(
                map(NAME_OF, by_symbol), map(MODULE_OF, by_symbol)
            ):
                ksyms = self._kernel_symbols(live=True)  # once: a BPF program may be newer than the cache
                uniq, inverse = lookup_unique(q, ksyms.lookup_indices)
                by_symbol = self._kernel_symbol_frames(ksyms, uniq.tolist())
            made = list(map(by_symbol.__getitem__, inverse.tolist()))
            scatter(frames, todo, made)
            known.update(zip(map(addrs.__getitem__, todo), made, strict=True))
        return self._count(frames)  # type: ignore[arg-type]  # every slot is filled above

    def _kernel_symbol_frames(self, ksyms: KernelSymbols, indices: list[int]) -> list[Frame]:
        """The frame of each kernel symbol index of ``ksyms`` (-1: none), made once per symbol."""
        if self._kernel_by_index[0] is not ksyms:  # (re)loaded: indices name other symbols now
            self._kernel_by_index = (ksyms, {})
        by_index = self._kernel_by_index[1]
        new = list(itertools.filterfalse(by_index.__contains__, indices)) if by_index else indices
        if new:
            names = names_at(ksyms.names, new)
            every = all(names)  # all named: no per-symbol loops below
            named = new if every else [i if name else -1 for i, name in zip(new, names, strict=True)]
            if ksyms.restricted:
                reasons: list[Reason | None] = [Reason.KALLSYMS_RESTRICTED] * len(new)
            elif every:
                reasons = [None] * len(new)
            else:
                reasons = [None if name else Reason.NO_KERNEL_SYMBOL for name in names]
            modules = names_at(ksyms.modules, named)
            made = _make_frames(len(new), names, modules, FrameKind.KERNEL, reasons, _NONES)
            by_index.update(zip(new, made, strict=True))
        return list(map(by_index.__getitem__, indices))

    def preload_kernel(self) -> None:
        """Load kernel symbols now (e.g. from a thread while recording) rather than at first lookup."""
        self._kernel_symbols()

    def kernel_loaded(self) -> bool:
        """Whether kernel symbols are loaded (or were given): a kernel lookup reads nothing first."""
        return self._kallsyms is not None

    def _kernel_symbols(self, live: bool = False) -> KernelSymbols:
        """kallsyms: this boot's cache entry if any (unless ``live``), else /proc/kallsyms (then cached)."""
        if self._kallsyms is None or live:
            try:
                self._kallsyms, self._kallsyms_cached = load_kernel_symbols(
                    self._proc, self._sources.cache, live=live
                )
            except OSError:  # unreadable: keep the cached symbols, if any, and stop asking
                if self._kallsyms is None:
                    self._kallsyms = KernelSymbols(np.zeros(0, np.uint64), (), ())
                self._kallsyms_cached = False
        return self._kallsyms

    # -- saved recordings (unwind/saved.py) ---------------------------------------------------

    def captured_maps(self, pid: int, gen: int = 0) -> list[Mapping] | None:
        """The maps of a captured image (and any learnt since), sorted; None if it was never captured."""
        proc = self._procs.get((pid, gen))
        return list(proc.maps) if proc is not None else None

    def captured_image(self, pid: int, gen: int, start: int) -> CapturedImage | Reason | None:
        """What is known of the image behind the mapping at ``start`` of a captured process image: the
        ``Reason`` it cannot be read, or its build-id, size, mtime and segments. None for a mapping no
        file (or vDSO) backs, or an image never captured."""
        proc = self._procs.get((pid, gen))
        if proc is None:
            return None
        handle = proc.handles.get(start)
        if handle is None:
            i = bisect.bisect_left(proc.starts, start)
            if i == len(proc.maps) or proc.maps[i].start != start or not proc.maps[i].is_file:
                return None
            handle = proc.handles[start] = self._file_module(pid, proc.maps[i])
        if isinstance(handle, Reason):
            return handle
        reason = self._load(handle)
        if reason is not None:
            return reason
        assert handle.elf is not None
        size = mtime_ns = None
        if handle.identity is not None:  # file_identity(): path, dev, inode, size, mtime_ns
            size_text, mtime_text = handle.identity.rsplit("\0", 2)[1:]
            size, mtime_ns = int(size_text), int(mtime_text)
        try:
            build_id = handle.elf.build_id
            segments = handle.elf.load_segments
        except _FILE_ERRORS:
            return Reason.BAD_ELF
        data = handle.image if isinstance(handle.image, bytes) else None
        return CapturedImage(build_id, size, mtime_ns, segments, data)

    def perf_map(self, pid: int, gen: int = 0) -> PerfMap | None:
        """The JIT perf map of a captured image, as symbolization reads it; None when it has none."""
        proc = self._procs.get((pid, gen))
        if proc is None:
            return None
        if proc.perf_map is None and proc.perf_map_fd is not None:
            try:
                proc.perf_map = read_perf_map(proc.perf_map_fd)
            except OSError:
                return None
        return proc.perf_map

    def kernel_symbols(self) -> KernelSymbols:
        """The kernel symbols this symbolizer names kernel addresses with (loaded now if not yet)."""
        return self._kernel_symbols()

    def install_process(
        self,
        pid: int,
        gen: int,
        maps: Sequence[Mapping] | None,
        images: dict[int, InstalledImage | Reason],
        perf_map: PerfMap | None = None,
    ) -> None:
        """Add a process image captured elsewhere (a saved recording): never read from ``/proc``.

        ``images`` gives, by mapping start, the image to read or the reason there is none; ``perf_map``
        its JIT symbols. ``maps=None``: the image was never captured, its frames get NO_PROCESS.
        """
        key = (pid, gen)
        if maps is None:
            self._gone.add(key)
            return
        ordered = sorted(maps, key=lambda m: m.start)
        # refreshed at +inf: never re-read; an empty perf map: never looked for
        proc = _Process(pid, ordered, [m.start for m in ordered], {}, refreshed=float("inf"))
        proc.perf_map = perf_map if perf_map is not None else parse_perf_map(b"")
        for start, image in images.items():
            proc.handles[start] = image if isinstance(image, Reason) else self._installed_module(image)
        self._procs[key] = proc

    def _installed_module(self, image: InstalledImage) -> _Module | Reason:
        if image.data is not None:
            key: tuple[object, ...] = ("vdso", zlib.crc32(image.data), len(image.data))
            if key not in self._modules:
                self._modules[key] = _Module(image.name, image.data)
            return self._modules[key]
        if image.path is None:
            return Reason.NO_FILE
        try:
            fd = os.open(image.path, READ_FLAGS)
        except OSError:
            return Reason.NO_FILE
        try:
            st = os.fstat(fd)
            key = ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, image.segments)
            module = self._modules.get(key)
            if module is None:
                module = self._modules[key] = self._map_module(fd, st.st_size, image.name)
                module.identity = file_identity(image.path, st)
        finally:
            os.close(fd)
        if image.segments is not None and self._load(module) is None and module.elf is not None:
            module.elf.segments = image.segments  # the binary's, for file offset -> vaddr
        return module

    # -- summary ------------------------------------------------------------------------------

    def _count(self, frames: list[Frame]) -> list[Frame]:
        """Count the unresolved frames returned, by ``_summary_key``: by module in C (Counter over a
        map), and only the few without a module one by one."""
        # compress() keeps the frames with a Reason (a truthy Enum member): a C loop over the list
        unknown = list(itertools.compress(frames, map(UNKNOWN_OF, frames)))
        if unknown:
            by_module = Counter(map(MODULE_OF, unknown))
            moduleless = by_module.pop(None, 0) + by_module.pop("", 0)  # type: ignore[call-overload]
            self._unknown.update(by_module)
            if moduleless:
                for f in unknown:
                    if not f.module:
                        self._unknown[_summary_key(f)] += 1
        return frames

    def unknown_by_module(self) -> dict[str, int]:
        """How many unresolved frames were returned, per module path (or ``[kernel]``/``[unknown]``)."""
        return dict(self._unknown)

    def warnings(self) -> list[str]:
        """Problems that cost symbols or speed (debuginfod failures, an unwritable cache), one line each."""
        found = list(self._sources.debuginfod.errors) if self._sources.debuginfod is not None else []
        if self._sources.cache is not None and self._sources.cache.error is not None:
            found.append(self._sources.cache.error)
        return found


def _summary_key(frame: Frame) -> str:
    if frame.module:
        return frame.module
    if frame.kind is FrameKind.KERNEL:
        return "[kernel]"
    return "[anon]" if frame.unknown is Reason.ANON else "[unknown]"


def _same_function(symbol: str, dwarf: str) -> bool:
    """True when an ELF symbol name and a DWARF function name (both demangled or both not) name one
    function: equal up to a gcc clone suffix (``foo.isra.0``, ``foo.cold``), the DWARF name qualified or
    with parameters in the symbol's (``ns::foo(int)``), or an alias adding a prefix (``__GI_foo``,
    ``__libc_foo``)."""
    sym, dw = _unclone(symbol), _unclone(dwarf)
    if sym == dw or sym.startswith((dw + "(", dw + "<")) or f"::{dw}(" in sym or sym.endswith("::" + dw):
        return True
    short, long = sorted((sym, dw), key=len)
    return long.endswith(short) and long[: len(long) - len(short)].endswith("_")


def _unclone(name: str) -> str:
    """A function name without gcc's clone suffix: ``foo.isra.0`` -> ``foo``, and demangled
    ``f(int) [clone .isra.0]`` -> ``f(int)``."""
    name = name.split(" [clone ", 1)[0]
    return name if "(" in name else name.split(".", 1)[0] or name


def _make_frames(
    n: int,
    names: Iterable[str | None],
    modules: Iterable[str | None],
    kind: FrameKind,
    unknowns: Iterable[Reason | None],
    file_offs: Iterable[int | None],
) -> list[Frame]:
    """``n`` frames without file, line or inlining, one from each item of the columns (``repeat`` a value
    for all): each equal to ``Frame(name, module, kind, unknown=unknown, file_off=file_off)``.

    ``tuple.__new__`` over the zipped columns: a C loop, where calling Frame (its ``__new__`` is Python)
    costs about twice as much. One frame per address is the largest cost of a big batch.
    """
    rows = zip(names, modules, itertools.repeat(kind), _NONES, _NONES, _FALSES, unknowns, file_offs)
    return list(map(_TUPLE_NEW, itertools.repeat(Frame, n), rows))


_TUPLE_NEW = tuple.__new__
_NONES = itertools.repeat(None)
_FALSES = itertools.repeat(False)


_MINUS_ONE = (-1).__add__


def _lookup_addrs(ips: Sequence[int]) -> list[int]:
    """The addresses to look up for a leaf-first stack: the leaf as is, return addresses at ip - 1 (they
    point past their call). ``map`` of an int method: a C loop, ~3x a list comprehension's speed."""
    if not ips:
        return []
    return [ips[0], *map(_MINUS_ONE, itertools.islice(ips, 1, None))]


def _unfilled(frames: list[Frame | None]) -> list[int]:
    """The positions of ``frames`` that are None, in a C loop."""
    return list(itertools.compress(range(len(frames)), map(operator.is_, frames, itertools.repeat(None))))


def _bounds(proc: _Process) -> tuple[np.ndarray, np.ndarray]:
    """The starts and ends of a process's (sorted) maps as uint64 arrays, made once per change."""
    if proc.bounds is None or len(proc.bounds[0]) != len(proc.maps):
        proc.bounds = (
            np.fromiter((m.start for m in proc.maps), np.uint64, len(proc.maps)),
            np.fromiter((m.end for m in proc.maps), np.uint64, len(proc.maps)),
        )
    return proc.bounds


def _u64_array(addrs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``addrs`` as uint64 and a mask of those that are 64-bit addresses at all (others become 0)."""
    if not addrs or (min(addrs) >= 0 and max(addrs) <= _U64_MASK):
        return np.fromiter(addrs, np.uint64, len(addrs)), np.ones(len(addrs), bool)
    valid = [0 <= a <= _U64_MASK for a in addrs]  # a negative (0 - 1) or too wide one is in no mapping
    q = np.fromiter((a if ok else 0 for a, ok in zip(addrs, valid, strict=True)), np.uint64, len(addrs))
    return q, np.array(valid, bool)
