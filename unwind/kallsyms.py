"""Kernel symbols from ``/proc/kallsyms``, held as sorted numpy arrays and looked up in bulk."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    names: tuple[str | None, ...]
    modules: tuple[str | None, ...]
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


def parse_kallsyms(text: str) -> KernelSymbols:
    """Parse the text of ``/proc/kallsyms`` into sorted kernel symbols.

    Grammar, one symbol per line::

        line := ADDR WS TYPE WS NAME [WS "[" MODULE "]"]      ADDR := hex (absolute), TYPE := one letter

    Text symbols (t, T, w, W) become named entries; other types only bound the symbol before them.
    ``__pfx_NAME`` padding is attributed to ``NAME`` (it runs as part of calling NAME). At one address,
    the name with the fewest leading underscores wins (``srso_alias_untrain_ret`` over ``_stext``).
    All-zero addresses mean restricted (``kptr_restrict``): returns ``restricted=True``. Bad lines are
    skipped; this never raises.
    """
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


def _parse_hex(hexes: list[str]) -> np.ndarray:
    """Hex strings to uint64, in bulk when every one has 16 digits (the kallsyms format on 64-bit)."""
    if set(map(len, hexes)) == {16}:
        return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").astype(np.uint64)
    return np.array([int(h, 16) & (2**64 - 1) for h in hexes], dtype=np.uint64)


def load_kallsyms(path: str = "/proc/kallsyms") -> KernelSymbols:
    """Read and parse a kallsyms file; raises OSError when it cannot be read."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_kallsyms(f.read())
