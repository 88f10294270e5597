"""Addresses to frames: one object owns every cache and open file and returns one Frame per address.

Processes are captured (maps snapshot, backing files kept reachable) when first seen, so they can exit
before symbolization. Failures come back as frames with a ``Reason``, never as exceptions.
"""

from __future__ import annotations

import bisect
import mmap
import os
import stat
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
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
from unwind.demangle import Demangler
from unwind.dwarf import DwarfInfo, SourceFrame
from unwind.elf import ElfError, ElfFile
from unwind.frame import Frame, FrameKind, Reason
from unwind.kallsyms import KernelSymbols
from unwind.maps import Mapping, load_maps
from unwind.perfmap import PerfMap, open_perf_map, read_perf_map
from unwind.symcache import SymbolCache, load_kernel_symbols, stale_kernel_results
from unwind.symtab import SymbolTable

VDSO = "[vdso]"
JIT_MODULE = "[jit]"  # the module of frames named from a perf map
# A process's maps are re-read (to find mappings made after capture) at most this often, in seconds.
REFRESH_INTERVAL = 1.0
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_U64_MASK = 2**64 - 1
# Errors that a damaged, vanished or replaced file can raise while it is parsed; all become a Reason.
_FILE_ERRORS = (ElfError, OSError, ValueError)
# Frames that DWARF may add lines to: named ones, and unnamed ones in a readable ELF (DWARF may name them).
_LINE_REASONS = (None, Reason.NO_SYMBOL)


@dataclass(eq=False, slots=True)
class _Module:
    """One distinct executable image (a file by (st_dev, st_ino, size, mtime), or a vDSO by contents).

    ``image`` keeps the file reachable (a read-only mmap taken at capture, or the vDSO bytes); the ELF is
    parsed at first lookup. ``frames`` caches results by (file offset, mapping path).
    """

    name: str
    image: mmap.mmap | bytes | None
    elf: ElfFile | None = None
    debug: ElfFile | None = None
    table: SymbolTable | None = None
    error: Reason | None = None
    loaded: bool = False
    frames: dict[tuple[int, str], Frame] = field(default_factory=dict)
    identity: str | None = None  # file_identity() of the mapped file: its cache key without a build-id
    dwarf: DwarfInfo | None = None  # with Symbolizer(lines=True): its own or its debug file's DWARF
    dwarf_tried: bool = False
    lines: dict[tuple[int, str], tuple[Frame, ...]] = field(default_factory=dict)  # as ``frames``
    unwind: UnwindTable | None = None  # CFI rows (unwind/cfi.py), built at the first unwind through it
    unwind_tried: bool = False

    def close(self) -> None:
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

    def close(self) -> None:
        if self.perf_map_fd is not None:
            os.close(self.perf_map_fd)
            self.perf_map_fd = None


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
        self._kernel_frames: dict[int, Frame] = {}
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
        if self._demangler is not None:
            self._demangler.clear()
        if self._sources.debuginfod is not None:
            self._sources.debuginfod.close()

    # -- capture ------------------------------------------------------------------------------

    def capture(self, pid: int, gen: int = 0) -> bool:
        """Snapshot ``/proc/PID/maps`` and keep each executable file reachable; cheap, no ELF parsing.

        ``gen`` counts the execs of the process seen while recording: each image is captured (and later
        symbolized) apart, so samples taken before an exec are named from the image they ran.
        Returns True when captured now; False when (pid, gen) was already captured (nothing is done) or
        the process is gone or unreadable.
        """
        key = (pid, gen)
        if key in self._procs or key in self._gone:
            return False
        try:
            maps = load_maps(pid, self._proc)
        except OSError:
            self._gone.add(key)
            return False
        proc = _Process(pid, [], [], {}, refreshed=-REFRESH_INTERVAL)  # the first refresh may come at once
        proc.perf_map_fd = open_perf_map(pid, self._proc)
        proc.captured = proc.perf_map_tried = time.monotonic()
        self._add_mappings(proc, maps)
        self._procs[key] = proc
        self._recent[pid] = proc  # a new exec generation replaces the old image here
        return True

    def _add_mappings(self, proc: _Process, maps: list[Mapping]) -> None:
        """Add ``maps`` to ``proc`` (skipping any that overlap a known mapping) and keep their files."""
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
                proc.handles[m.start] = self._vdso_module(proc.pid, m)
            elif m.is_exec and m.is_file:
                key = (m.dev, m.inode, m.path)
                if key not in by_file:
                    by_file[key] = self._file_module(proc.pid, m)
                proc.handles[m.start] = by_file[key]
        proc.maps = sorted(old + added, key=lambda m: m.start)
        proc.starts = [m.start for m in proc.maps]

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

    def _file_module(self, pid: int, m: Mapping) -> _Module | Reason:
        """Open the file behind mapping ``m``, reusing the cached module when the same file was seen."""
        candidates = [os.path.join(self._proc, str(pid), "map_files", f"{m.start:x}-{m.end:x}")]
        if not m.deleted:  # a deleted file's path now names another file, or none
            candidates += [os.path.join(self._proc, str(pid), "root", m.path.lstrip("/")), m.path]
        for i, path in enumerate(candidates):
            try:
                fd = os.open(path, _READ_FLAGS)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                # By path (not map_files) the file may have been replaced since it was mapped.
                if not stat.S_ISREG(st.st_mode) or (i > 0 and m.inode and st.st_ino != m.inode):
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

    def _vdso_module(self, pid: int, m: Mapping) -> _Module | Reason:
        """The vDSO image read from ``/proc/PID/mem`` (shared by every process with the same bytes)."""
        try:
            fd = os.open(os.path.join(self._proc, str(pid), "mem"), _READ_FLAGS)
            try:
                data = os.pread(fd, m.end - m.start, m.start)
            finally:
                os.close(fd)
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
        proc = self._procs.get((pid, gen))
        if proc is None and self.capture(pid, gen):
            proc = self._procs[(pid, gen)]
        if proc is None:
            return self._count([Frame(None, kind=FrameKind.USER, unknown=Reason.NO_PROCESS) for _ in ips])
        addrs = [ip if pos == 0 else ip - 1 for pos, ip in enumerate(ips)]
        known = proc.frames
        frames: list[Frame | None] = [known.get(a) for a in addrs]
        todo = [pos for pos, f in enumerate(frames) if f is None]
        if not todo:
            return self._count(frames)  # type: ignore[arg-type]
        pending: dict[int, tuple[_Module, list[tuple[int, int, str]]]] = {}
        missed = self._place(proc, todo, addrs, frames, pending)
        if missed and self._refresh(proc):
            missed = self._place(proc, missed, addrs, frames, pending)
        for module, items in pending.values():
            self._resolve(module, items, frames)
        for pos in todo:
            frame = frames[pos]
            if frame is not None:  # a missed address is not remembered: a refresh may map it later
                known[addrs[pos]] = frame
        for pos in missed:
            frames[pos] = self._jit_frame(proc, addrs[pos]) or Frame(
                None, kind=FrameKind.USER, unknown=Reason.NO_MAPPING
            )
        return self._count(frames)  # type: ignore[arg-type]  # every slot is filled above

    def _place(
        self,
        proc: _Process,
        positions: Sequence[int],
        addrs: list[int],
        frames: list[Frame | None],
        pending: dict[int, tuple[_Module, list[tuple[int, int, str]]]],
    ) -> list[int]:
        """Find the mapping of each address: fill ``frames`` or queue it per module in ``pending``.

        Returns the positions whose address is in no known mapping.
        """
        missed = []
        for pos in positions:
            addr = addrs[pos]
            i = bisect.bisect_right(proc.starts, addr) - 1
            if i < 0 or addr >= proc.maps[i].end:
                missed.append(pos)
                continue
            m = proc.maps[i]
            handle = proc.handles.get(m.start)
            if handle is None:
                if not m.is_file:
                    frames[pos] = self._jit_frame(proc, addr) or Frame(
                        None, m.path or None, FrameKind.USER, unknown=Reason.ANON
                    )
                    continue
                # An address in a non-executable file mapping: open it now, if the process still lives.
                handle = proc.handles[m.start] = self._file_module(proc.pid, m)
            file_off = m.to_file_offset(addr)
            if isinstance(handle, Reason):
                frames[pos] = Frame(None, m.path, FrameKind.USER, unknown=handle, file_off=file_off)
                continue
            cached = handle.frames.get((file_off, m.path))
            if cached is not None:
                frames[pos] = cached
            else:
                pending.setdefault(id(handle), (handle, []))[1].append((pos, file_off, m.path))
        return missed

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

    def _resolve(
        self, module: _Module, items: list[tuple[int, int, str]], frames: list[Frame | None]
    ) -> None:
        """Look up the file offsets of one module with one vectorised call and fill ``frames``."""
        offs = np.fromiter((max(off, 0) for _, off, _ in items), dtype=np.uint64, count=len(items))
        names: list[str | None] = [None] * len(items)
        reason = self._load(module)
        if reason is None:
            assert module.elf is not None
            assert module.table is not None
            try:
                vaddrs, found = module.elf.file_offsets_to_vaddrs(offs)
                idx = module.table.lookup_indices(vaddrs)
                idx[~found] = -1
                names = [None if i < 0 else module.table.name(i) for i in idx.tolist()]
                if self._demangler is not None:  # the one place user (ELF) names are produced
                    names = [n and self._demangler(n) for n in names]
            except _FILE_ERRORS:
                reason = Reason.BAD_ELF
        for (pos, off, path), name in zip(items, names, strict=True):
            frame = Frame(
                name,
                path,
                FrameKind.USER,
                unknown=reason or (None if name else Reason.NO_SYMBOL),
                file_off=off,
            )
            module.frames[(off, path)] = frame
            frames[pos] = frame

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
        frames = self.symbolize_user(pid, ips, gen)
        out = [[f] for f in frames]
        proc = self._procs.get((pid, gen))
        if not self._lines or proc is None:
            return out
        pending: dict[int, tuple[_Module, list[int]]] = {}
        for pos, frame in enumerate(frames):
            if frame.file_off is None or frame.module is None or frame.unknown not in _LINE_REASONS:
                continue
            module = self._module_at(proc, ips[pos] if pos == 0 else ips[pos] - 1)
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
            found = dwarf.lookup_many([v for v in vaddrs if v is not None])
            results = iter(found)
            for pos, base, vaddr in zip(positions, bases, vaddrs, strict=True):
                expanded = self._line_frames(base, next(results) if vaddr is not None else [])
                module.lines[(base.file_off or 0, base.module or "")] = expanded  # both set: see above
                out[pos] = list(expanded)
        return out

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
            for elf in (module.elf, module.debug):
                if elf is not None and DwarfInfo(elf).has_debug_info:
                    module.dwarf = DwarfInfo(elf)
                    break
        return module.dwarf

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
        ksyms = self._kernel_symbols()
        addrs = [(ip if pos == 0 else ip - 1) & _U64_MASK for pos, ip in enumerate(ips)]  # 0 - 1 wraps
        frames: list[Frame | None] = [self._kernel_frames.get(a) for a in addrs]
        todo = [pos for pos, f in enumerate(frames) if f is None]
        if todo:
            results = ksyms.lookup([addrs[pos] for pos in todo])
            if self._kallsyms_cached and stale_kernel_results(results):
                ksyms = self._kernel_symbols(live=True)  # once: a BPF program may be newer than the cache
                results = ksyms.lookup([addrs[pos] for pos in todo])
            for pos, (name, module) in zip(todo, results, strict=True):
                if ksyms.restricted:
                    reason: Reason | None = Reason.KALLSYMS_RESTRICTED
                else:
                    reason = None if name else Reason.NO_KERNEL_SYMBOL
                frame = Frame(name, module, FrameKind.KERNEL, unknown=reason)
                self._kernel_frames[addrs[pos]] = frame
                frames[pos] = frame
        return self._count(frames)  # type: ignore[arg-type]  # every slot is filled above

    def preload_kernel(self) -> None:
        """Load kernel symbols now (e.g. from a thread while recording) rather than at first lookup."""
        self._kernel_symbols()

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

    # -- summary ------------------------------------------------------------------------------

    def _count(self, frames: list[Frame]) -> list[Frame]:
        for f in frames:
            if f.unknown is not None:
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
