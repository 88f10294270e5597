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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from unwind.elf import ElfError, ElfFile
from unwind.frame import Frame, FrameKind, Reason
from unwind.kallsyms import KernelSymbols, load_kallsyms
from unwind.maps import Mapping, load_maps
from unwind.perfmap import PerfMap, open_perf_map, read_perf_map
from unwind.symtab import SymbolTable

VDSO = "[vdso]"
JIT_MODULE = "[jit]"  # the module of frames named from a perf map
# A process's maps are re-read (to find mappings made after capture) at most this often, in seconds.
REFRESH_INTERVAL = 1.0
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_U64_MASK = 2**64 - 1
# Errors that a damaged, vanished or replaced file can raise while it is parsed; all become a Reason.
_FILE_ERRORS = (ElfError, OSError, ValueError)


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

    def close(self) -> None:
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
    captured: float = 0.0  # time.monotonic() of the capture

    def close(self) -> None:
        if self.perf_map_fd is not None:
            os.close(self.perf_map_fd)
            self.perf_map_fd = None


class Symbolizer:
    """Symbolizes user and kernel stacks; a context manager owning all caches and opened files.

    User addresses are absolute addresses of a captured process; kernel addresses are absolute kernel
    addresses. Every call returns exactly one ``Frame`` per input address, in input order.
    """

    def __init__(
        self,
        *,
        proc: str = "/proc",
        kallsyms: KernelSymbols | None = None,
        debug_dirs: Sequence[str] = ("/usr/lib/debug",),
    ) -> None:
        self._proc = proc
        self._kallsyms = kallsyms
        self._debug_dirs = tuple(debug_dirs)
        self._procs: dict[tuple[int, int], _Process] = {}  # by (pid, exec generation)
        self._gone: set[tuple[int, int]] = set()
        self._modules: dict[tuple[object, ...], _Module] = {}
        self._kernel_frames: dict[int, Frame] = {}
        self._unknown: Counter[str] = Counter()

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
        self._gone.clear()
        self._kernel_frames.clear()

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

    def revisit(self, max_age: float = 30.0) -> None:
        """While recording: look again for the JIT perf map of processes captured in the last ``max_age``
        seconds that had none (a runtime writes it after start, and it may be gone with the process
        before symbolization). At most once a second per process."""
        now = time.monotonic()
        for proc in self._procs.values():
            if (
                proc.perf_map_fd is None
                and now - proc.perf_map_tried >= 1.0
                and now - proc.captured <= max_age
            ):
                proc.perf_map_tried = now
                proc.perf_map_fd = open_perf_map(proc.pid, self._proc)

    def _refresh(self, proc: _Process) -> bool:
        """Re-read the maps of a live process to learn mappings made since capture (dlopen, late loads).

        At most once per ``REFRESH_INTERVAL`` seconds per process; True when mappings were added.
        """
        now = time.monotonic()
        if now - proc.refreshed < REFRESH_INTERVAL:
            return False
        proc.refreshed = now
        try:
            maps = load_maps(proc.pid, self._proc)
        except OSError:
            return False
        before = len(proc.maps)
        self._add_mappings(proc, maps)
        return len(proc.maps) > before

    def forget(self, pid: int) -> None:
        """Drop every snapshot of ``pid`` so the next ``capture`` takes a new one."""
        for key in [k for k in (*self._procs, *self._gone) if k[0] == pid]:
            proc = self._procs.pop(key, None)
            if proc is not None:
                proc.close()
            self._gone.discard(key)

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
        frames: list[Frame | None] = [None] * len(ips)
        pending: dict[int, tuple[_Module, list[tuple[int, int, str]]]] = {}
        missed = self._place(proc, range(len(addrs)), addrs, frames, pending)
        if missed and self._refresh(proc):
            missed = self._place(proc, missed, addrs, frames, pending)
        for pos in missed:
            frames[pos] = self._jit_frame(proc, addrs[pos]) or Frame(
                None, kind=FrameKind.USER, unknown=Reason.NO_MAPPING
            )
        for module, items in pending.values():
            self._resolve(module, items, frames)
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
                parts = module.elf.symbol_parts()
                if not module.elf.has_symtab:
                    module.debug = self._find_debug_file(module.elf, module.name)
                    if module.debug is not None:
                        parts = module.debug.symbol_parts() + parts
                module.table = SymbolTable(parts)
            except _FILE_ERRORS:
                module.error = Reason.BAD_ELF
        return module.error

    def _find_debug_file(self, elf: ElfFile, path: str) -> ElfFile | None:
        """A separate debug file with a ``.symtab``: by build-id under each debug dir, else by debuglink."""
        build_id = elf.build_id
        if build_id is not None and len(build_id) >= 2:
            hexid = build_id.hex()
            for d in self._debug_dirs:
                candidate = os.path.join(d, ".build-id", hexid[:2], hexid[2:] + ".debug")
                debug = _open_elf(candidate)
                if debug is not None and debug.build_id == build_id and debug.has_symtab:
                    return debug
                if debug is not None:
                    debug.close()
        link = elf.debuglink
        if link is None or os.path.isabs(link.name):
            return None
        here = os.path.dirname(path)
        candidates = [os.path.join(here, link.name), os.path.join(here, ".debug", link.name)]
        candidates += [os.path.join(d, here.lstrip("/"), link.name) for d in self._debug_dirs]
        for candidate in candidates:
            debug = _open_elf(candidate)
            if debug is None:
                continue
            if debug.has_symtab and _file_crc32(candidate) == link.crc:
                return debug
            debug.close()
        return None

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

    def _kernel_symbols(self) -> KernelSymbols:
        if self._kallsyms is None:
            try:
                self._kallsyms = load_kallsyms(os.path.join(self._proc, "kallsyms"))
            except OSError:
                self._kallsyms = KernelSymbols(np.zeros(0, np.uint64), (), ())
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


def _summary_key(frame: Frame) -> str:
    if frame.module:
        return frame.module
    if frame.kind is FrameKind.KERNEL:
        return "[kernel]"
    return "[anon]" if frame.unknown is Reason.ANON else "[unknown]"


def _open_elf(path: str) -> ElfFile | None:
    try:
        return ElfFile.open(path)
    except _FILE_ERRORS:
        return None


def _file_crc32(path: str) -> int | None:
    """CRC-32 (zlib, as ``.gnu_debuglink`` uses) of a whole file, or None when it cannot be read."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return zlib.crc32(mm)
    except (OSError, ValueError):
        return None
