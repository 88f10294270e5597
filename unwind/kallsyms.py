"""Kernel symbols from ``/proc/kallsyms``, held as sorted numpy arrays and looked up in bulk."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from unwind.symtab import decode_ranges, scatter

# Function symbols: text (t/T) and weak (w/W). Everything else is kept only as a boundary, so an
# address in data or past the end of a text region does not resolve to the function before it.
TEXT_TYPES = frozenset("tTwW")
PFX = "__pfx_"  # 16-byte padding before a function (CONFIG_FUNCTION_PADDING_CFI / call thunks)
# No kernel function is near this large (the largest in a 6.x vmlinux is ~20 KiB); it bounds the last
# symbol of a region (a module's last function, a BPF program) where kallsyms gives no end.
MAX_KERNEL_SYMBOL_SIZE = 128 * 1024
# Markers that end a text region (and any "__*text_end"): addresses at or past them are in no function.
END_MARKERS = frozenset(("_etext", "_einittext"))
_LINE = re.compile(r"^([0-9a-fA-F]+)[ \t]+(\S)[ \t]+(\S+)(?:[ \t]+\[([^\]\s]+)\])?[ \t]*$", re.MULTILINE)


class LazyNames(Sequence[str | None]):
    """Names held as (start, end) byte ranges of one blob, decoded on first access; -1 start = None."""

    def __init__(self, blob: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self._blob = blob
        self._starts = starts
        self._ends = ends
        self._cache: dict[int, str | None] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> str | None:  # type: ignore[override]
        try:
            return self._cache[i]
        except KeyError:
            start = int(self._starts[i])
            name = None if start < 0 else self._blob[start : int(self._ends[i])].decode(errors="replace")
            self._cache[i] = name
            return name

    def __iter__(self) -> Iterator[str | None]:
        return (self[i] for i in range(len(self)))

    def get_many(self, indices: np.ndarray | list[int]) -> list[str | None]:
        """``self[i]`` for each index (all in range), decoded in bulk (C loops) and not cached."""
        idx = np.asarray(indices, dtype=np.int64)
        starts = self._starts[idx]
        named = np.flatnonzero(starts >= 0)
        if len(named) == len(idx):
            return decode_ranges(self._blob, starts.tolist(), self._ends[idx].tolist())
        found = decode_ranges(self._blob, starts[named].tolist(), self._ends[idx[named]].tolist())
        return scatter([None] * len(idx), named.tolist(), found)


def names_at(names: Sequence[str | None], indices: list[int]) -> list[str | None]:
    """``names[i]`` for each index (-1: None); in bulk when ``names`` is ``LazyNames``."""
    if not isinstance(names, LazyNames):
        return [names[i] if i >= 0 else None for i in indices]
    idx = np.asarray(indices, dtype=np.int64)
    at = np.flatnonzero(idx >= 0)
    if len(at) == len(idx):
        return names.get_many(idx)
    return scatter([None] * len(idx), at.tolist(), names.get_many(idx[at]))


@dataclass(frozen=True, slots=True, eq=False)
class KernelSymbols:
    """Kernel symbols sorted by absolute address (one name per address).

    ``addrs`` is a sorted, unique uint64 array of absolute kernel addresses; ``names[i]`` is the function
    starting at ``addrs[i]``, or None for a boundary that is no function (a data symbol, an end-of-text
    marker); ``modules[i]`` is the module name without brackets (``ext4``; ``bpf`` for BPF programs) or
    None for vmlinux. ``restricted`` is True when every address read as zero (``kptr_restrict``), in which
    case the arrays are empty.
    """

    addrs: np.ndarray
    names: Sequence[str | None]
    modules: Sequence[str | None]
    restricted: bool = False

    def __len__(self) -> int:
        return len(self.names)

    def lookup_indices(self, abs_addrs: Sequence[int] | np.ndarray) -> np.ndarray:
        """Index into ``addrs`` of the symbol holding each absolute kernel address (int64), -1 where none.

        An address belongs to the symbol at or below it, up to the next symbol and at most
        ``MAX_KERNEL_SYMBOL_SIZE`` bytes past its start. The symbol found may be a boundary (its name is
        None: no function). Restricted symbols hold nothing.
        """
        q = np.asarray(abs_addrs, dtype=np.uint64)
        if self.restricted or len(self.addrs) == 0 or len(q) == 0:
            return np.full(q.shape, -1, np.int64)
        idx = np.searchsorted(self.addrs, q, side="right").astype(np.int64) - 1
        safe = np.maximum(idx, 0)
        nxt = np.minimum(safe + 1, len(self.addrs) - 1)
        end = np.where(safe + 1 < len(self.addrs), self.addrs[nxt], np.uint64(2**64 - 1))
        start = self.addrs[safe]
        cap = start + np.minimum(np.uint64(MAX_KERNEL_SYMBOL_SIZE), np.uint64(2**64 - 1) - start)
        ok = (idx >= 0) & (q < np.minimum(end, cap))
        return np.where(ok, idx, -1)

    def lookup(self, abs_addrs: Sequence[int] | np.ndarray) -> list[tuple[str | None, str | None]]:
        """``(function, module)`` for each absolute kernel address, in order; ``(None, None)`` when unknown.

        See ``lookup_indices`` for which symbol holds an address; restricted symbols resolve nothing.
        """
        n = len(abs_addrs)
        if n == 0:
            return []
        if self.restricted or len(self.addrs) == 0:
            return [(None, None)] * n
        names, modules = self.names, self.modules
        out: list[tuple[str | None, str | None]] = []
        for i in self.lookup_indices(abs_addrs).tolist():
            name = names[i] if i >= 0 else None  # one (lazy, decoding) name read per address
            out.append((name, modules[i]) if name is not None else (None, None))
        return out


def _name_rank(name: str | None) -> tuple[int, int, int]:
    """Sort key among names at one address: functions before boundaries, padding last, then the
    fewest leading underscores; ``__pi_`` copies (position-independent aliases) after the original."""
    if name is None:
        return (2, 0, 0)
    if name.startswith(PFX):
        return (1, 0, 0)
    return (0, int(name.startswith("__pi_")), len(name) - len(name.lstrip("_")))


def parse_kallsyms(text: str | bytes) -> KernelSymbols:
    """Parse the text of ``/proc/kallsyms`` into sorted kernel symbols.

    Grammar, one symbol per line::

        line := ADDR WS TYPE WS NAME [WS "[" MODULE "]"]      ADDR := hex (absolute), TYPE := one letter

    Text symbols (t, T, w, W) become named entries; other types only bound the symbol before them.
    ``__pfx_NAME`` padding is attributed to ``NAME`` (it runs as part of calling NAME). At one address,
    the name with the fewest leading underscores wins (``srso_alias_untrain_ret`` over ``_stext``).
    All-zero addresses mean restricted (``kptr_restrict``): returns ``restricted=True``. Bad lines are
    skipped; this never raises. The common 64-bit layout is parsed in bulk with numpy (names decoded
    only when looked up); anything else goes through a line-by-line regex.
    """
    data = text.encode(errors="replace") if isinstance(text, str) else text
    fast = _parse_fixed_layout(data)
    if fast is not None:
        return fast
    return _parse_lines(text.decode(errors="replace") if isinstance(text, bytes) else text)


def _parse_lines(text: str) -> KernelSymbols:
    """The general path of parse_kallsyms: any address width and spacing, one regex match a line."""
    rows = _LINE.findall(text)
    if not rows:
        return KernelSymbols(np.zeros(0, np.uint64), (), (), restricted=False)
    hexes = [r[0] for r in rows]
    addrs = _parse_hex(hexes)
    if not addrs.any():
        return KernelSymbols(np.zeros(0, np.uint64), (), (), restricted=True)
    names: list[str | None] = [
        name if kind in TEXT_TYPES and not name.endswith("text_end") and name not in END_MARKERS else None
        for _, kind, name, _ in rows
    ]
    modules = [r[3] or None for r in rows]
    # Sort by address (stable: file order among equals), then pick the best name at each address.
    order = np.argsort(addrs, kind="stable")
    sorted_addrs = addrs[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = sorted_addrs[1:] != sorted_addrs[:-1]
    picked = order[keep]
    # Runs of equal addresses (aliases such as _stext/_text): choose by _name_rank, a short Python loop.
    dup_starts = np.flatnonzero(keep[:-1] & ~keep[1:])
    if len(dup_starts):
        run_ends = np.append(np.flatnonzero(keep)[1:], len(order))  # end of each address's run
        group = np.cumsum(keep) - 1
        for start in dup_starts.tolist():
            g = int(group[start])
            members = order[start : run_ends[g]].tolist()
            picked[g] = min(members, key=lambda i: _name_rank(names[i]))
    picked_list = picked.tolist()
    pretty = [names[i] for i in picked_list]
    pretty = [n[len(PFX) :] if n is not None and n.startswith(PFX) else n for n in pretty]
    return KernelSymbols(
        addrs=sorted_addrs[keep],
        names=tuple(pretty),
        modules=tuple(modules[i] for i in picked_list),
        restricted=False,
    )


_HEX_LUT = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _i
_TEXT_TYPE_CODES = np.array([ord(c) for c in sorted(TEXT_TYPES)], np.uint8)


_CHUNK = 1 << 19  # bytes of kallsyms text per numpy pass: bounds the temporaries (~10x a chunk)


@dataclass(frozen=True, slots=True)
class _Lines:
    """Per-line columns of a run of kallsyms lines; offsets index the padded text."""

    addrs: np.ndarray  # uint64
    name_starts: np.ndarray  # int64; -1 where the line is no function
    name_ends: np.ndarray
    mod_starts: np.ndarray  # -1 where the line has no [module]
    mod_ends: np.ndarray
    is_pfx: np.ndarray  # bool: __pfx_ padding (name_starts already skip the prefix)


def _parse_fixed_layout(data: bytes) -> KernelSymbols | None:
    """Bulk parse of ``%016x %c NAME[\t[MODULE]]`` lines, or None when any line has another layout.

    The text is taken in chunks of about ``_CHUNK`` bytes, so peak memory stays near the text's size.
    """
    if not data:
        return None
    padded = bytearray(data)
    return _parse_padded(_pad(padded))


def _pad(buf: bytearray) -> bytearray:
    """End the text with a newline, then 16 zero bytes so fixed-width reads stay inside (in place)."""
    if buf and not buf.endswith(b"\n"):
        buf += b"\n"
    buf += bytes(16)
    return buf


def _parse_padded(padded: bytearray) -> KernelSymbols | None:
    """_parse_fixed_layout on text already padded by _pad (kept, not copied: names are sliced from it)."""
    text_len = len(padded) - 16
    if text_len <= 0 or text_len >= 2**31:
        return None
    arr = np.frombuffer(padded, np.uint8)
    windows = np.lib.stride_tricks.as_strided(arr, shape=(text_len, 16), strides=(1, 1), writeable=False)
    parts: list[_Lines] = []
    pos = 0
    while pos < text_len:
        end = padded.find(b"\n", min(pos + _CHUNK, text_len - 1)) + 1
        part = _parse_chunk(arr, windows, pos, end)
        if part is None:
            return None
        parts.append(part)
        pos = end
    cols = _Lines(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Lines.__dataclass_fields__))
    if not cols.addrs.any():
        return KernelSymbols(np.zeros(0, np.uint64), (), (), restricted=True)
    order = np.argsort(cols.addrs, kind="stable")
    sorted_addrs = cols.addrs[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = sorted_addrs[1:] != sorted_addrs[:-1]
    picked = order[keep]
    dup_starts = np.flatnonzero(keep[:-1] & ~keep[1:])
    if len(dup_starts):
        run_ends = np.append(np.flatnonzero(keep)[1:], len(order))
        group = np.cumsum(keep) - 1

        def rank(i: int) -> tuple[int, int, int]:
            if cols.name_starts[i] < 0:
                return _name_rank(None)
            name = padded[cols.name_starts[i] : cols.name_ends[i]].decode(errors="replace")
            return _name_rank(PFX + name if cols.is_pfx[i] else name)

        for start in dup_starts.tolist():
            g = int(group[start])
            picked[g] = min(order[start : run_ends[g]].tolist(), key=rank)
    return KernelSymbols(
        addrs=sorted_addrs[keep],
        names=LazyNames(padded, cols.name_starts[picked], cols.name_ends[picked]),
        modules=LazyNames(padded, cols.mod_starts[picked], cols.mod_ends[picked]),
        restricted=False,
    )


def _parse_chunk(arr: np.ndarray, windows: np.ndarray, pos: int, end: int) -> _Lines | None:
    """The lines in ``arr[pos:end]`` (whole lines), or None when one is not in the fixed layout."""
    ends = (np.flatnonzero(arr[pos:end] == 10) + pos).astype(np.int32)  # offsets < 2 GiB (checked)
    starts = np.empty_like(ends)
    starts[0] = pos
    starts[1:] = ends[:-1] + 1
    if np.any(ends - starts < 20):  # address, type, one-byte name at least
        return None
    if np.any(arr[starts + 16] != 32) or np.any(arr[starts + 18] != 32):
        return None
    hex_digits = windows[starts]  # (lines, 16) bytes, without an index array per byte
    if np.any(_HEX_LUT[hex_digits] == 255):
        return None
    addrs = np.frombuffer(bytes.fromhex(hex_digits.tobytes().decode("ascii")), ">u8").astype(np.uint64)
    kinds = arr[starts + 17]
    name_starts = starts + 19
    tabs = (np.flatnonzero(arr[pos:end] == 9) + pos).astype(np.int32)
    if len(tabs):
        ti = np.minimum(np.searchsorted(tabs, starts), len(tabs) - 1)
        has_mod = (tabs[ti] >= starts) & (tabs[ti] < ends)
        name_ends = np.where(has_mod, tabs[ti], ends)
    else:
        has_mod = np.zeros(len(starts), bool)
        name_ends = ends
    if np.any(name_ends <= name_starts):
        return None
    is_func = np.isin(kinds, _TEXT_TYPE_CODES)
    # names that are no function: *text_end and the end-of-text markers
    lengths = name_ends - name_starts
    long8 = lengths >= 8
    tail = windows[np.where(long8, name_ends - 8, name_starts), :8]
    is_func &= ~(long8 & np.all(tail == np.frombuffer(b"text_end", np.uint8), axis=1))
    for marker in END_MARKERS:
        m = np.frombuffer(marker.encode(), np.uint8)
        cand = np.flatnonzero(lengths == len(m))
        is_func[cand[np.all(windows[name_starts[cand], : len(m)] == m, axis=1)]] = False
    # __pfx_NAME is attributed to NAME
    is_pfx = (lengths > len(PFX)) & np.all(
        windows[name_starts, : len(PFX)] == np.frombuffer(PFX.encode(), np.uint8), axis=1
    )
    return _Lines(
        addrs=addrs,
        name_starts=np.where(is_func, name_starts + np.where(is_pfx, len(PFX), 0), -1),
        name_ends=name_ends,
        # modules: "\t[name]" (BPF programs show as [bpf])
        mod_starts=np.where(has_mod, name_ends + 2, -1),
        mod_ends=np.where(has_mod, ends - 1, -1),
        is_pfx=is_pfx,
    )


def _parse_hex(hexes: list[str]) -> np.ndarray:
    """Hex strings to uint64, in bulk when every one has 16 digits (the kallsyms format on 64-bit)."""
    if set(map(len, hexes)) == {16}:
        return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").astype(np.uint64)
    return np.array([int(h, 16) & (2**64 - 1) for h in hexes], dtype=np.uint64)


def load_kallsyms(path: str = "/proc/kallsyms") -> KernelSymbols:
    """Read and parse a kallsyms file; raises OSError when it cannot be read."""
    buf = bytearray()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):  # grown in place: no second copy of a ~10 MB text
            buf += chunk
    if not buf:
        return KernelSymbols(np.zeros(0, np.uint64), (), (), restricted=False)
    fast = _parse_padded(_pad(buf))
    if fast is not None:
        return fast
    return _parse_lines(bytes(buf[:-16]).decode(errors="replace"))
