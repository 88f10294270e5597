"""LEB128 numbers (DWARF 5 section 7.6), as .eh_frame, .debug_frame and .debug_info store them."""

from __future__ import annotations


def read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned LEB128 number at ``pos`` and the position after it; IndexError past the end."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def read_sleb(data: bytes, pos: int) -> tuple[int, int]:
    """The signed LEB128 number at ``pos`` and the position after it; IndexError past the end."""
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos
