"""The symbolized frame: one per input address, failures carried as data (a reason), never raised."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum


class FrameKind(Enum):
    USER = "user"
    KERNEL = "kernel"
    MARKER = "marker"  # synthetic: [Missed User Stack], [truncated], process/thread roots


class Reason(Enum):
    """Why a frame has no function name."""

    NO_MAPPING = "address is in no mapping of the process"
    NO_FILE = "the mapped file could not be opened"
    BAD_ELF = "the mapped file is not a readable ELF file"
    NO_SYMBOL = "no symbol covers the address (stripped, no debug info found)"
    ANON = "anonymous executable memory (JIT without a perf map?)"
    KALLSYMS_RESTRICTED = "kernel symbols are hidden (kptr_restrict)"
    NO_KERNEL_SYMBOL = "no kernel symbol covers the address"
    NO_PROCESS = "the process was never seen alive, so its maps were not captured"


class _HashSlot:
    """The slot where a Frame keeps its hash (a base class: a slotted dataclass has slots for its fields
    only)."""

    __slots__ = ("_hash",)
    _hash: int


_set_hash = _HashSlot.__dict__["_hash"].__set__  # the slot's setter, in C


@dataclass(frozen=True, slots=True)
class Frame(_HashSlot):
    """One frame of a symbolized stack.

    ``module`` is the path of the mapped file (user) or the kernel module name (kernel, None for
    vmlinux). ``file_off`` is the file offset of the address in ``module`` (user frames), kept so an
    unnamed frame still says where it was (``libfoo.so+0x1a2b``).

    The hash is computed at first use and kept: a Profile hashes every frame of every Sample, and the
    dataclass hash (a tuple of all fields, two of them Enums hashed in Python) was most of the time of
    building one. Not pickled (the fields are); equality compares every field, as the dataclass does.
    """

    name: str | None
    module: str | None = None
    kind: FrameKind = FrameKind.USER
    file: str | None = None
    line: int | None = None
    inlined: bool = False
    unknown: Reason | None = None
    file_off: int | None = None

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:  # not hashed yet (or unpickled: the slot is not part of the state)
            h = hash(
                (
                    self.name,
                    self.module,
                    self.kind,
                    self.file,
                    self.line,
                    self.inlined,
                    self.unknown,
                    self.file_off,
                )
            )
            _set_hash(self, h)
            return h

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.name == other.name
            and self.file_off == other.file_off
            and self.module == other.module
            and self.kind is other.kind
            and self.unknown is other.unknown
            and self.file == other.file
            and self.line == other.line
            and self.inlined == other.inlined
        )

    def label(self, lines: bool = False) -> str:
        """The display name: the function, else ``module+0xOFF``, else ``[unknown]``.

        With ``lines`` (``--lines``), a frame that has a line gets py-spy's `` (file.c:LINE)`` after it
        (the source file's basename). Off by default: speedscope/pprof carry file and line apart.
        """
        if lines and self.line is not None:
            return f"{self._name()} ({os.path.basename(self.file or '') or '??'}:{self.line})"
        return self._name()

    def _name(self) -> str:
        if self.name:
            return self.name
        if self.module and self.file_off is not None:
            return f"{os.path.basename(self.module)}+0x{self.file_off:x}"
        if self.unknown is Reason.KALLSYMS_RESTRICTED:
            return "[kernel]"
        return "[unknown]"


MISSED_USER = Frame("[Missed User Stack]", kind=FrameKind.MARKER)
MISSED_KERNEL = Frame("[Missed Kernel Stack]", kind=FrameKind.MARKER)
# --call-graph dwarf: at the root side of a user stack whose unwinding stopped early
TRUNCATED = Frame("[truncated]", kind=FrameKind.MARKER)  # the stack copy ended first
UNWIND_FAILED = Frame("[unwind failed]", kind=FrameKind.MARKER)  # a bad address, or no CFI
