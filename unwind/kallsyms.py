"""Kernel symbols from ``/proc/kallsyms``, held as sorted numpy arrays and looked up in bulk."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

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

    def lookup(self, abs_addrs: Sequence[int] | np.ndarray) -> list[tuple[str | None, str | None]]:
        """``(function, module)`` for each absolute kernel address, in order; ``(None, None)`` when unknown.

        An address belongs to the symbol at or below it, up to the next symbol and at most
        ``MAX_KERNEL_SYMBOL_SIZE`` bytes past its start. Restricted symbols resolve nothing.
        """
        n = len(abs_addrs)
        if n == 0:
            return []
        if self.restricted or len(self.addrs) == 0:
            return [(None, None)] * n
        q = np.asarray(abs_addrs, dtype=np.uint64)
        idx = np.searchsorted(self.addrs, q, side="right").astype(np.int64) - 1
        safe = np.maximum(idx, 0)
        nxt = np.minimum(safe + 1, len(self.addrs) - 1)
        end = np.where(safe + 1 < len(self.addrs), self.addrs[nxt], np.uint64(2**64 - 1))
        start = self.addrs[safe]
        cap = start + np.minimum(np.uint64(MAX_KERNEL_SYMBOL_SIZE), np.uint64(2**64 - 1) - start)
        ok = (idx >= 0) & (q < np.minimum(end, cap))
        names, modules = self.names, self.modules
        return [
            (names[i], modules[i]) if good and names[i] is not None else (None, None)
            for i, good in zip(safe.tolist(), ok.tolist(), strict=True)
        ]


def _name_rank(name: str | None) -> tuple[int, int]:
    """Sort key among names at one address: functions before boundaries, padding last, few underscores."""
    if name is None:
        return (2, 0)
    if name.startswith(PFX):
        return (1, 0)
    return (0, len(name) - len(name.lstrip("_")))


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


def _parse_fixed_layout(data: bytes) -> KernelSymbols | None:
    """Bulk parse of ``%016x %c NAME[\t[MODULE]]`` lines, or None when any line has another layout."""
    if not data:
        return None
    if not data.endswith(b"\n"):
        data += b"\n"
    arr = np.frombuffer(data + bytes(16), np.uint8)  # padded: fixed-width gathers never run off the end
    ends = np.flatnonzero(arr == 10)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    if np.any(ends - starts < 20):  # address, type, one-byte name at least
        return None
    if np.any(arr[starts + 16] != 32) or np.any(arr[starts + 18] != 32):
        return None
    digits = _HEX_LUT[arr[starts[:, None] + np.arange(16)]]
    if np.any(digits == 255):
        return None
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    addrs = np.bitwise_or.reduce(digits.astype(np.uint64) << shifts, axis=1)
    if not addrs.any():
        return KernelSymbols(np.zeros(0, np.uint64), (), (), restricted=True)
    kinds = arr[starts + 17]
    name_starts = starts + 19
    tabs = np.flatnonzero(arr == 9)
    ti = np.minimum(np.searchsorted(tabs, starts), max(len(tabs) - 1, 0))
    has_mod = (tabs[ti] < ends) if len(tabs) else np.zeros(len(starts), bool)
    name_ends = np.where(has_mod, tabs[ti] if len(tabs) else ends, ends)
    if np.any(name_ends <= name_starts):
        return None
    # modules: "\t[name]" (BPF programs show as [bpf])
    mod_starts = np.where(has_mod, name_ends + 2, -1)
    mod_ends = np.where(has_mod, ends - 1, -1)
    is_func = np.isin(kinds, _TEXT_TYPE_CODES)
    # names that are no function: *text_end and the end-of-text markers
    lengths = name_ends - name_starts
    long8 = lengths >= 8
    tail = arr[np.where(long8, name_ends - 8, name_starts)[:, None] + np.arange(8)]
    is_func &= ~(long8 & np.all(tail == np.frombuffer(b"text_end", np.uint8), axis=1))
    for marker in END_MARKERS:
        m = marker.encode()
        cand = np.flatnonzero(lengths == len(m))
        hit = cand[
            np.all(arr[name_starts[cand][:, None] + np.arange(len(m))] == np.frombuffer(m, np.uint8), axis=1)
        ]
        is_func[hit] = False
    # __pfx_NAME is attributed to NAME
    long6 = lengths > 6
    head = arr[name_starts[:, None] + np.arange(6)] if len(name_starts) else np.zeros((0, 6), np.uint8)
    is_pfx = long6 & np.all(head == np.frombuffer(PFX.encode(), np.uint8), axis=1)
    order = np.argsort(addrs, kind="stable")
    sorted_addrs = addrs[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = sorted_addrs[1:] != sorted_addrs[:-1]
    picked = order[keep]
    dup_starts = np.flatnonzero(keep[:-1] & ~keep[1:])
    if len(dup_starts):
        run_ends = np.append(np.flatnonzero(keep)[1:], len(order))
        group = np.cumsum(keep) - 1

        def rank(i: int) -> tuple[int, int]:
            if not is_func[i]:
                return (2, 0)
            if is_pfx[i]:
                return (1, 0)
            name = data[name_starts[i] : name_ends[i]]
            return (0, len(name) - len(name.lstrip(b"_")))

        for start in dup_starts.tolist():
            g = int(group[start])
            picked[g] = min(order[start : run_ends[g]].tolist(), key=rank)
    ns = np.where(is_func, name_starts + np.where(is_pfx, len(PFX), 0), -1)[picked]
    return KernelSymbols(
        addrs=sorted_addrs[keep],
        names=LazyNames(data, ns, name_ends[picked]),
        modules=LazyNames(data, mod_starts[picked], mod_ends[picked]),
        restricted=False,
    )


def _parse_hex(hexes: list[str]) -> np.ndarray:
    """Hex strings to uint64, in bulk when every one has 16 digits (the kallsyms format on 64-bit)."""
    if set(map(len, hexes)) == {16}:
        return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").astype(np.uint64)
    return np.array([int(h, 16) & (2**64 - 1) for h in hexes], dtype=np.uint64)


def load_kallsyms(path: str = "/proc/kallsyms") -> KernelSymbols:
    """Read and parse a kallsyms file; raises OSError when it cannot be read."""
    with open(path, "rb") as f:
        return parse_kallsyms(f.read())
