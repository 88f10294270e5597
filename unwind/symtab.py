"""An ELF function symbol table as sorted numpy arrays, looked up in bulk with searchsorted."""

from __future__ import annotations

import collections
import itertools
import mmap
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

_U64_MAX = np.uint64(2**64 - 1)


class StringSource:
    """A NUL-terminated string table inside a buffer (bytes or an mmap), decoded one name at a time.

    ``start``/``end`` bound the table in ``buf``; offsets passed to ``get`` are relative to ``start``.
    The buffer is referenced, not copied: names stay readable while the buffer is open.
    """

    __slots__ = ("buf", "end", "start")

    def __init__(self, buf: bytes | mmap.mmap, start: int, end: int) -> None:
        self.buf = buf
        self.start = start
        self.end = end

    def get(self, off: int) -> str | None:
        """The string at ``off`` (relative to the table start), or None if ``off`` is outside the table."""
        pos = self.start + off
        if not self.start <= pos < self.end:
            return None
        nul = self.buf.find(b"\0", pos, self.end)
        return self.buf[pos : self.end if nul < 0 else nul].decode("utf-8", "replace")


def scatter(out: list, positions: list[int], values: Iterable[object]) -> list:
    """``out[p] = v`` for each position and value, in a C loop; returns ``out``."""
    collections.deque(map(out.__setitem__, positions, values), maxlen=0)
    return out


def lookup_unique(
    keys: np.ndarray,
    lookup: Callable[[np.ndarray], np.ndarray],
    in_order: bool = True,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct results of ``lookup(keys)`` (an int array, one result per key) and, per key, which
    one: ``np.unique(lookup(keys), return_inverse=True)``.

    With ``in_order`` the keys are looked up in ascending order (``order``, their ``argsort``, if the
    caller has it): searches of sorted keys stay in cache (5x faster for 40k keys in libLLVM's 145k
    symbols), and the results of ascending addresses (symbol indices) come out sorted, so they are
    made unique without a second sort."""
    if in_order and order is None:
        order = np.argsort(keys)
    elif not in_order:
        order = None
    found = lookup(keys if order is None else keys[order])
    uniq, inverse = unique_inverse(found)
    if order is not None:
        inverse[order] = inverse.copy()  # back to the keys' order
    return uniq, inverse


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``; without a sort (O(n)) when ``values`` is sorted already."""
    n = len(values)
    if n < 2 or not bool(np.all(values[1:] >= values[:-1])):
        return np.unique(values, return_inverse=True)
    first = np.empty(n, bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    inverse = np.cumsum(first, dtype=np.intp)
    inverse -= 1
    return values[first], inverse


def decode_strings(buf: bytes | mmap.mmap, starts: list[int], end: int) -> list[str]:
    """The NUL-terminated string at each offset of ``buf`` (each ``< end``; one without a NUL before
    ``end`` stops there), decoded as UTF-8 with replacement.

    Every step is a ``map`` of a C method, no Python per string: finding the NULs, slicing, decoding.
    About 2x faster than a loop that does the same per string (20 against 40 ms for 30k libLLVM
    names), and names are decoded by the ten thousand in a big profile.
    """
    ends = list(map(buf.find, itertools.repeat(b"\0"), starts, itertools.repeat(end)))
    if -1 in ends:
        ends = [end if e < 0 else e for e in ends]
    return decode_ranges(buf, starts, ends)


def decode_ranges(
    buf: bytes | mmap.mmap, starts: list[int], ends: list[int], errors: str = "replace"
) -> list[str]:
    """``buf[start:end]`` decoded as UTF-8 (``errors`` as ``bytes.decode``'s) for each range, in C loops."""
    raw = map(buf.__getitem__, map(slice, starts, ends))
    return list(map(str, raw, itertools.repeat("utf-8"), itertools.repeat(errors)))


@dataclass(frozen=True, slots=True)
class RawSymbols:
    """Function symbols of one ELF symbol table before sorting: parallel arrays plus their string table.

    ``addrs``: ELF virtual addresses (uint64); ``sizes``: bytes (uint64); ``name_offs``: offsets into
    ``strings``; ``rank``: lower is a better name among aliases at one address (uint16).
    """

    addrs: np.ndarray
    sizes: np.ndarray
    name_offs: np.ndarray
    rank: np.ndarray
    strings: StringSource
    section_ends: np.ndarray  # ELF vaddr where each symbol's section ends; bounds a zero-size symbol


class SymbolTable:
    """Function symbols sorted by ELF virtual address, one name per address, looked up in bulk.

    ``addrs`` (uint64, sorted, unique ELF vaddrs), ``sizes`` (uint64 bytes, 0 = unknown), ``name_offs``
    (offsets into the string table of ``name_srcs``). A sized symbol covers ``[addr, addr+size)``; an
    address past its end is not that symbol. A zero-size symbol covers up to the next symbol (or the end of
    its section), and only where no sized symbol covers the address. Names are decoded lazily from the
    file's string tables, which must stay open (the owning ``ElfFile`` not closed).

    ``stored_as`` is set by the disk cache (unwind/symcache.py) once the table is in it: its key and the
    CRC of its entry, which names this exact table (e.g. for the demangled names kept beside it).
    """

    __slots__ = (
        "_names",
        "_sized_addrs",
        "_sized_ends",
        "_sized_idx",
        "_strings",
        "_zero_addrs",
        "_zero_ends",
        "_zero_idx",
        "addrs",
        "name_offs",
        "name_srcs",
        "sizes",
        "stored_as",
    )

    def __init__(self, parts: list[RawSymbols]) -> None:
        """Merge, sort and de-duplicate the given symbol arrays (best-ranked name wins at one address)."""
        self._strings = tuple(p.strings for p in parts)
        self._names: dict[int, str | None] = {}
        self.stored_as: tuple[str, int] | None = None
        if not parts or sum(len(p.addrs) for p in parts) == 0:
            empty = np.zeros(0, np.uint64)
            self.addrs = self.sizes = self.name_offs = empty
            self.name_srcs = np.zeros(0, np.uint8)
            self._sized_idx = self._zero_idx = np.zeros(0, np.int64)
            self._sized_addrs = self._sized_ends = self._zero_addrs = self._zero_ends = empty
            return
        addrs = np.concatenate([p.addrs for p in parts])
        sizes = np.concatenate([p.sizes for p in parts])
        rank = np.concatenate([p.rank for p in parts])
        # Sort by address, sized before unsized, then rank; the first entry at an address names it.
        order = _sort_order(addrs, (sizes == 0).astype(np.uint16) << 15 | rank)
        sorted_addrs = addrs[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_addrs[1:] != sorted_addrs[:-1]
        pick = order[first]
        self.addrs = sorted_addrs[first]
        self.sizes = sizes[pick]
        self.name_offs = np.concatenate([p.name_offs.astype(np.uint64) for p in parts])[pick]
        self.name_srcs = np.concatenate([np.full(len(p.addrs), i, np.uint8) for i, p in enumerate(parts)])[
            pick
        ]
        sec_end = np.concatenate([p.section_ends for p in parts])[pick]

        sized = self.sizes > 0
        self._sized_idx = np.flatnonzero(sized)
        self._sized_addrs = self.addrs[sized]
        self._sized_ends = self._sized_addrs + self.sizes[sized]
        self._zero_idx = np.flatnonzero(~sized)
        self._zero_addrs = self.addrs[~sized]
        # A zero-size symbol ends at the next symbol of any kind, and at the end of its section.
        nxt = np.empty_like(self.addrs)
        nxt[:-1] = self.addrs[1:]
        nxt[-1] = _U64_MAX
        bounded = np.where(sec_end > self.addrs, np.minimum(nxt, sec_end), nxt)
        self._zero_ends = bounded[~sized]

    def __len__(self) -> int:
        return len(self.addrs)

    def lookup_indices(self, elf_vaddrs: np.ndarray) -> np.ndarray:
        """Index into ``addrs`` of the symbol covering each ELF vaddr (int64 array), -1 where none does."""
        q = np.asarray(elf_vaddrs, dtype=np.uint64)
        out = np.full(q.shape, -1, dtype=np.int64)
        if len(q) == 0 or len(self.addrs) == 0:
            return out
        if len(self._sized_addrs):
            i = np.searchsorted(self._sized_addrs, q, side="right").astype(np.int64) - 1
            safe = np.maximum(i, 0)
            hit = (i >= 0) & (q < self._sized_ends[safe])
            out[hit] = self._sized_idx[safe[hit]]
        miss = out < 0
        if len(self._zero_addrs) and miss.any():
            qm = q[miss]
            j = np.searchsorted(self._zero_addrs, qm, side="right").astype(np.int64) - 1
            safe = np.maximum(j, 0)
            hit = (j >= 0) & (qm < self._zero_ends[safe])
            sub = np.full(len(qm), -1, dtype=np.int64)
            sub[hit] = self._zero_idx[safe[hit]]
            out[miss] = sub
        return out

    def name(self, index: int) -> str | None:
        """The name of the symbol at ``index`` into ``addrs``, decoded once and cached."""
        try:
            return self._names[index]
        except KeyError:
            pass
        # Raises ValueError when the mmap holding the string table was closed (ElfFile.close()).
        name = self._strings[int(self.name_srcs[index])].get(int(self.name_offs[index]))
        self._names[index] = name
        return name

    def names_of(self, indices: np.ndarray | list[int]) -> list[str | None]:
        """``name(i)`` for each index into ``addrs`` (-1: None), decoded in bulk and not cached."""
        idx = np.asarray(indices, dtype=np.int64)
        out: list[str | None] = [None] * len(idx)
        if len(self.addrs) == 0 or len(idx) == 0:
            return out
        at = np.flatnonzero(idx >= 0)
        good = idx[at]
        srcs = self.name_srcs[good] if len(self._strings) > 1 else None
        for k, src in enumerate(self._strings):
            mine, offs = (at, good) if srcs is None else (at[srcs == k], good[srcs == k])
            if not len(mine):
                continue
            starts = self.name_offs[offs] + np.uint64(src.start)
            inside = starts < np.uint64(src.end)  # an offset past its table names nothing
            if not inside.all():
                mine, starts = mine[inside], starts[inside]
            scatter(out, mine.tolist(), decode_strings(src.buf, starts.tolist(), src.end))
        return out

    def lookup(self, elf_vaddrs: np.ndarray) -> list[str | None]:
        """The function name covering each ELF virtual address, in order; None where no symbol does."""
        return [None if i < 0 else self.name(i) for i in self.lookup_indices(elf_vaddrs).tolist()]

    def to_arrays(self) -> SymbolArrays:
        """The table as flat arrays (views, no copy) for saving; ``from_arrays`` makes it back."""
        lengths = np.array([s.end - s.start for s in self._strings], np.uint64)
        bases = np.concatenate([np.zeros(1, np.uint64), np.cumsum(lengths, dtype=np.uint64)])
        name_offs = self.name_offs + bases[self.name_srcs] if len(self._strings) > 1 else self.name_offs
        return SymbolArrays(self.addrs, self.sizes, name_offs, self._zero_ends, self._strings)

    @classmethod
    def from_arrays(cls, arrays: SymbolArrays) -> SymbolTable:
        """A table from ``to_arrays`` output (e.g. read back from a cache file); nothing is re-sorted.

        Raises ValueError when the arrays are inconsistent (lengths, order, offsets past the strings).
        """
        a = arrays
        n = len(a.addrs)
        if not len(a.sizes) == len(a.name_offs) == n:
            raise ValueError(f"{n} addresses but {len(a.sizes)} sizes and {len(a.name_offs)} names")
        if n > 1 and not bool(np.all(a.addrs[1:] > a.addrs[:-1])):
            raise ValueError("symbol addresses are not sorted and unique")
        lengths = np.array([s.end - s.start for s in a.strings], np.uint64)
        bases = np.concatenate([np.zeros(1, np.uint64), np.cumsum(lengths, dtype=np.uint64)])
        if n and int(a.name_offs.max()) >= int(bases[-1]):
            raise ValueError("a symbol name starts past the end of the string tables")
        sized = a.sizes > 0
        unsized = n - int(np.count_nonzero(sized))
        if len(a.zero_ends) != unsized:
            raise ValueError(f"{len(a.zero_ends)} ends for {unsized} unsized symbols")
        table = cls.__new__(cls)
        table._strings = tuple(a.strings)
        table._names = {}
        table.stored_as = None
        table.addrs = a.addrs
        table.sizes = a.sizes
        if len(a.strings) > 1:
            srcs = np.searchsorted(bases[1:], a.name_offs, side="right")
            table.name_srcs = srcs.astype(np.uint8)
            table.name_offs = a.name_offs - bases[srcs]
        else:
            table.name_srcs = np.zeros(n, np.uint8)
            table.name_offs = a.name_offs
        table._sized_idx = np.flatnonzero(sized)
        table._sized_addrs = a.addrs[sized]
        table._sized_ends = table._sized_addrs + a.sizes[sized]
        table._zero_idx = np.flatnonzero(~sized)
        table._zero_addrs = a.addrs[~sized]
        table._zero_ends = a.zero_ends
        return table


@dataclass(frozen=True, slots=True)
class SymbolArrays:
    """A ``SymbolTable`` as flat arrays: what a cache stores.

    ``addrs`` (uint64, sorted unique ELF vaddrs), ``sizes`` (uint64), ``name_offs`` (uint64 offsets into
    the concatenation of the ``strings`` tables, in order), ``zero_ends`` (uint64: where each zero-size
    symbol, in address order, stops covering addresses).
    """

    addrs: np.ndarray
    sizes: np.ndarray
    name_offs: np.ndarray
    zero_ends: np.ndarray
    strings: tuple[StringSource, ...]


def _sort_order(addrs: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Permutation sorting by address, then by rank (uint16, best alias first)."""
    if len(addrs) and int(addrs.max()) < 2**48:
        # One packed uint64 key sorts several times faster than lexsort on two keys.
        key = (addrs << np.uint64(16)) | rank.astype(np.uint64)
        return np.argsort(key, kind="stable")
    return np.lexsort((rank, addrs))
