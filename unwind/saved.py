"""Saved recordings, the symbol side: what to keep of a run's captures so that its addresses can be
named later, on this machine after the processes are gone or rebooted, or on another that has the
binaries or their debug files.

Kept per process image (pid, exec generation): the mappings that hold a sampled address and, for each
file behind one, its path, build-id, size, mtime and PT_LOAD segments (the vDSO: its bytes); the JIT
perf-map entries that cover a sampled address. For the kernel: the symbols that name the sampled
kernel addresses, each with its end (kallsyms after a reboot, or elsewhere, says nothing about them).

Later (``build_symbolizer``) a file is read at its path while it is still the one recorded (the same
build-id; without one, the same size and mtime); else the debug file with its build-id is read instead
(``DIR/.build-id/xx/rest.debug`` in the debug directories, then debuginfod), with the binary's saved
segments translating file offsets. Where neither is found its frames stay ``module+0xOFF``
(``Reason.NO_FILE``) and a note says why. Addresses here are absolute (``abs_addr``); all lists are
leaf first, as the kernel gives them.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from unwind.debuginfo import DEFAULT_DEBUG_DIRS, DebuginfodClient
from unwind.elf import ElfError, ElfFile, Segment
from unwind.frame import Reason
from unwind.kallsyms import MAX_KERNEL_SYMBOL_SIZE, KernelSymbols
from unwind.maps import VDSO
from unwind.maps import Mapping as MapEntry
from unwind.perfmap import PerfMap
from unwind.symbolizer import InstalledImage, Symbolizer

_U64_MASK = 2**64 - 1
# A path that is never a /proc: a symbolizer of saved data must not read live processes' maps or files.
NO_PROC = "/dev/null"


@dataclass(frozen=True, slots=True)
class SavedFile:
    """The image behind one or more saved mappings.

    ``path`` as mapped (``[vdso]`` for the vDSO). ``error`` is set when it could not be read while
    recording (then nothing else is known). ``size``/``mtime_ns`` identify a file without a build-id;
    ``segments`` are its PT_LOAD headers; ``data`` holds the vDSO's bytes.
    """

    path: str
    build_id: bytes | None = None
    size: int | None = None
    mtime_ns: int | None = None
    segments: tuple[Segment, ...] = ()
    data: bytes | None = None
    error: Reason | None = None


@dataclass(frozen=True, slots=True)
class SavedProcess:
    """One captured process image: the mappings kept (sorted by start), the index in the file list of
    the image behind each (None: anonymous memory), and the JIT entries ``(start, end, name)`` kept."""

    pid: int
    gen: int
    maps: tuple[MapEntry, ...]
    files: tuple[int | None, ...]
    jit: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class KernelSymbol:
    """A kernel function ``[start, end)`` (absolute kernel addresses); ``module`` None for vmlinux."""

    start: int
    end: int
    name: str
    module: str | None = None


def lookup_addresses(ips: Sequence[int]) -> list[int]:
    """The addresses a stack's ips are looked up at: the leaf as is, return addresses at ``ip - 1``."""
    return [ip if pos == 0 else ip - 1 for pos, ip in enumerate(ips)]


# -- while recording: what to keep ------------------------------------------------------------------


def snapshot(
    symbolizer: Symbolizer, addrs_by_image: Mapping[tuple[int, int], Iterable[int]]
) -> tuple[list[SavedProcess], list[SavedFile]]:
    """What to keep of each captured image (pid, gen) to name its looked-up addresses later.

    Images never captured are left out (their frames are NO_PROCESS, then as now). Files are shared
    between processes in the returned list.
    """
    files: list[SavedFile] = []
    index: dict[SavedFile, int] = {}
    processes = []
    for (pid, gen), addrs in sorted(addrs_by_image.items()):
        maps = symbolizer.captured_maps(pid, gen)
        if maps is None:
            continue
        starts = [m.start for m in maps]
        used: set[int] = set()
        outside: list[int] = []  # addresses no file backs: a JIT perf map may name them
        for a in set(addrs):
            i = bisect.bisect_right(starts, a) - 1
            if i >= 0 and a < maps[i].end:
                used.add(i)
                if not (maps[i].is_file or maps[i].path == VDSO):
                    outside.append(a)
            else:
                outside.append(a)
        kept, file_ids = [], []
        for i in sorted(used):
            m = maps[i]
            kept.append(m)
            saved = _saved_file(symbolizer, pid, gen, m) if m.is_file or m.path == VDSO else None
            if saved is None:
                file_ids.append(None)
                continue
            if saved not in index:
                index[saved] = len(files)
                files.append(saved)
            file_ids.append(index[saved])
        jit = _jit_entries(symbolizer.perf_map(pid, gen), outside)
        processes.append(SavedProcess(pid, gen, tuple(kept), tuple(file_ids), jit))
    return processes, files


def _saved_file(symbolizer: Symbolizer, pid: int, gen: int, m: MapEntry) -> SavedFile | None:
    image = symbolizer.captured_image(pid, gen, m.start)
    if image is None:
        return None
    if isinstance(image, Reason):
        return SavedFile(m.path, error=image)
    return SavedFile(m.path, image.build_id, image.size, image.mtime_ns, image.segments, image.data)


def _jit_entries(perf_map: PerfMap | None, addrs: list[int]) -> tuple[tuple[int, int, str], ...]:
    if perf_map is None or not len(perf_map) or not addrs:
        return ()
    q = np.array([a for a in addrs if 0 <= a <= _U64_MASK], dtype=np.uint64)
    idx = np.searchsorted(perf_map.starts, q, side="right").astype(np.int64) - 1
    ok = (idx >= 0) & (q < perf_map.ends[np.maximum(idx, 0)])
    hit = sorted(set(idx[ok].tolist()))
    return tuple((int(perf_map.starts[i]), int(perf_map.ends[i]), perf_map.names[i]) for i in hit)


def kernel_subset(ksyms: KernelSymbols, addrs: Iterable[int]) -> list[KernelSymbol]:
    """The symbols of ``ksyms`` that name the (looked-up) kernel addresses ``addrs``, each with the end
    ``KernelSymbols.lookup`` gives it (the next symbol, at most ``MAX_KERNEL_SYMBOL_SIZE`` on)."""
    if ksyms.restricted or not len(ksyms.addrs):
        return []
    q = np.array(sorted({a & _U64_MASK for a in addrs}), dtype=np.uint64)
    if not len(q):
        return []
    table = ksyms.addrs
    idx = np.searchsorted(table, q, side="right").astype(np.int64) - 1
    out = []
    for i in sorted(set(idx[idx >= 0].tolist())):
        name = ksyms.names[i]
        if name is None:
            continue
        start = int(table[i])
        end = int(table[i + 1]) if i + 1 < len(table) else _U64_MASK
        end = min(end, start + MAX_KERNEL_SYMBOL_SIZE)
        out.append(KernelSymbol(start, end, name, ksyms.modules[i]))
    return out


# -- later: a symbolizer from what was kept ---------------------------------------------------------


def kernel_from_saved(symbols: Iterable[KernelSymbol], restricted: bool = False) -> KernelSymbols:
    """KernelSymbols that name every address a saved subset covers, and nothing else."""
    if restricted:
        return KernelSymbols(np.zeros(0, np.uint64), (), (), restricted=True)
    at: dict[int, tuple[str | None, str | None]] = {}
    ordered = sorted(symbols, key=lambda s: s.start)
    for s in ordered:
        at.setdefault(s.end, (None, None))  # a boundary: past the end is in no function
    for s in ordered:
        at[s.start] = (s.name, s.module)
    addrs = sorted(at)
    return KernelSymbols(
        np.array(addrs, dtype=np.uint64), tuple(at[a][0] for a in addrs), tuple(at[a][1] for a in addrs)
    )


def perf_map_from_saved(entries: Iterable[tuple[int, int, str]]) -> PerfMap:
    """A PerfMap of saved JIT entries (sorted by start; the later of two at one start wins)."""
    latest = {start: (end, name) for start, end, name in entries}
    starts = sorted(latest)
    return PerfMap(
        np.array(starts, dtype=np.uint64),
        np.array([latest[s][0] for s in starts], dtype=np.uint64),
        tuple(latest[s][1] for s in starts),
    )


@dataclass(slots=True)
class Located:
    """Where each saved file's image was found (``image``), or why not (a Reason), with one note per
    file not found at its path (``notes``: ``(path, why)``)."""

    images: list[InstalledImage | Reason] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)


def build_id_candidates(build_id: bytes, dirs: Sequence[str]) -> list[str]:
    """``D/.build-id/xx/rest.debug`` then ``D/.build-id/xx/rest`` (the binary, as some distributions
    lay it out) for each directory, in order."""
    if len(build_id) < 2:
        return []
    hexid = build_id.hex()
    out = []
    for d in dirs:
        base = os.path.join(d, ".build-id", hexid[:2], hexid[2:])
        out += [base + ".debug", base]
    return out


def _elf_build_id(path: str) -> bytes | None:
    """The build-id of the ELF file at ``path``; raises OSError/ElfError/ValueError when unreadable."""
    with ElfFile.open(path) as elf:
        return elf.build_id


def _same_file(saved: SavedFile) -> tuple[bool, str]:
    """Whether the file at the saved path is still the one recorded, and if not, why (a clause)."""
    path = saved.path
    try:
        if saved.build_id is not None:
            found = _elf_build_id(path)
            if found == saved.build_id:
                return True, ""
            return False, "the file at its path has another build-id (rebuilt or upgraded since)"
        st = os.stat(path)
        if saved.size is not None and (st.st_size, st.st_mtime_ns) == (saved.size, saved.mtime_ns):
            return True, ""
        return False, "it changed since (size or mtime) and has no build-id to find it by"
    except FileNotFoundError:
        return False, "it is no longer at its path"
    except OSError as exc:
        return False, f"it cannot be read ({exc.strerror or exc})"
    except (ElfError, ValueError):
        return False, "the file at its path is no longer an ELF file"


def locate(
    files: Sequence[SavedFile],
    debug_dirs: Sequence[str] = (),
    default_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
    debuginfod: DebuginfodClient | None = None,
) -> Located:
    """Find the image to read for each saved file (see the module docstring for the order)."""
    out = Located()
    for saved in files:
        if saved.error is not None:
            out.images.append(saved.error)
            out.notes.append((saved.path, f"it could not be read while recording ({saved.error.value})"))
            continue
        if saved.data is not None:
            out.images.append(InstalledImage(saved.path, data=saved.data))
            continue
        same, why = _same_file(saved)
        if same:
            out.images.append(InstalledImage(saved.path, path=saved.path))
            continue
        found = _by_build_id(saved.build_id, [*debug_dirs, *default_dirs], debuginfod)
        if found is not None:
            out.images.append(InstalledImage(saved.path, path=found, segments=saved.segments))
            continue
        out.images.append(Reason.NO_FILE)
        if saved.build_id is not None:
            where = ", ".join([*debug_dirs, *default_dirs]) or "no debug directory"
            where += " or debuginfod" if debuginfod is not None else " (DEBUGINFOD_URLS is unset)"
            why += (
                f", and no debug file with its build-id {saved.build_id.hex()} is in {where}: pass "
                "--debuginfo-dir DIR holding DIR/.build-id/xx/rest.debug"
            )
        out.notes.append((saved.path, why))
    return out


def _by_build_id(
    build_id: bytes | None, dirs: Sequence[str], debuginfod: DebuginfodClient | None
) -> str | None:
    if not build_id:
        return None
    candidates = build_id_candidates(build_id, dirs)
    for path in candidates:
        try:
            if _elf_build_id(path) == build_id:
                return path
        except (OSError, ElfError, ValueError):
            continue
    if debuginfod is not None:
        fetched = debuginfod.fetch(build_id)
        try:
            if fetched is not None and _elf_build_id(fetched) == build_id:
                return fetched
        except (OSError, ElfError, ValueError):
            pass
    return None


def build_symbolizer(
    processes: Iterable[SavedProcess],
    files: Sequence[SavedFile],
    kernel: Iterable[KernelSymbol],
    *,
    kernel_restricted: bool = False,
    debug_dirs: Sequence[str] = (),
    default_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
    debuginfod: DebuginfodClient | None = None,
    demangle: bool = True,
    lines: bool = False,
    cache: bool = True,
) -> tuple[Symbolizer, Located]:
    """A Symbolizer that names the saved addresses from saved data only (no /proc, no live kallsyms).

    Images of ``processes`` are installed; any other (pid, gen) gives NO_PROCESS frames. The caller
    closes the symbolizer (which closes ``debuginfod``).
    """
    located = locate(files, debug_dirs, default_dirs, debuginfod)
    symbolizer = Symbolizer(
        proc=NO_PROC,
        kallsyms=kernel_from_saved(kernel, kernel_restricted),
        debug_dirs=debug_dirs,
        default_debug_dirs=default_dirs,
        debuginfod=debuginfod or False,
        cache=cache,
        demangle=demangle,
        lines=lines,
    )
    for p in processes:
        images = {m.start: located.images[f] for m, f in zip(p.maps, p.files, strict=True) if f is not None}
        symbolizer.install_process(p.pid, p.gen, p.maps, images, perf_map_from_saved(p.jit))
    return symbolizer, located
