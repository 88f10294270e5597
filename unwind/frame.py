"""The symbolized frame: one per input address, failures carried as data (a reason), never raised."""

from __future__ import annotations

import operator
import os
from enum import Enum
from typing import NamedTuple


class FrameKind(Enum):
    USER = "user"
    KERNEL = "kernel"
    MARKER = "marker"  # synthetic: [Missed User Stack], [truncated], process/thread roots

    # By identity, in C (members are singletons and compare by identity): Enum's own __hash__ is a
    # method in Python, and every Frame's hash includes its kind and reason.
    __hash__ = object.__hash__


class Reason(Enum):
    """Why a frame has no function name."""

    NO_MAPPING = "address is in no mapping of the process"
    NO_FILE = "the mapped file could not be opened"
    BAD_ELF = "the mapped file is not a readable ELF file"
    NO_SYMBOL = "no symbol covers the address (stripped, no debug info found)"
    ANON = "anonymous executable memory (JIT without a perf map?)"
    NOT_CODE = (
        "the address is in memory that is not executable: no return address (a frame-pointer walk into data)"
    )
    KALLSYMS_RESTRICTED = "kernel symbols are hidden (kptr_restrict)"
    NO_KERNEL_SYMBOL = "no kernel symbol covers the address"
    NO_PROCESS = "the process was never seen alive, so its maps were not captured"

    __hash__ = object.__hash__  # as FrameKind's


class Frame(NamedTuple):
    """One frame of a symbolized stack.

    ``module`` is the path of the mapped file (user) or the kernel module name (kernel, None for
    vmlinux). ``file_off`` is the file offset of the address in ``module`` (user frames), kept so an
    unnamed frame still says where it was (``libfoo.so+0x1a2b``).

    A named tuple, not a dataclass, for speed: a symbolizer makes one per address and a Profile hashes
    every frame of every Sample. A tuple is made in C (``tuple.__new__`` over a column of fields, see
    unwind/symbolizer.py), read in C (its fields are ``_tuplegetter``s) and hashed in C (FrameKind and
    Reason hash by identity, above). A frozen slotted dataclass took 2.6x as long to make (59 against
    23 ms per 100k, even with its slots set column by column), and its hash, a method in Python, was a
    third of the time of building a Profile. Immutable like the dataclass was; one difference: a Frame
    equals the plain tuple of its fields, which no code here makes.
    """

    name: str | None
    module: str | None = None
    kind: FrameKind = FrameKind.USER
    file: str | None = None
    line: int | None = None
    inlined: bool = False
    unknown: Reason | None = None
    file_off: int | None = None

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


# A Frame's fields by position, for bulk code (``map(MODULE_OF, frames)``): itemgetter reads a field of
# a tuple faster than attrgetter does.
NAME_OF = operator.itemgetter(Frame._fields.index("name"))
MODULE_OF = operator.itemgetter(Frame._fields.index("module"))
UNKNOWN_OF = operator.itemgetter(Frame._fields.index("unknown"))

MISSED_USER = Frame("[Missed User Stack]", kind=FrameKind.MARKER)
MISSED_KERNEL = Frame("[Missed Kernel Stack]", kind=FrameKind.MARKER)
# --call-graph dwarf: at the root side of a user stack whose unwinding stopped early
TRUNCATED = Frame("[truncated]", kind=FrameKind.MARKER)  # the stack copy ended first
UNWIND_FAILED = Frame("[unwind failed]", kind=FrameKind.MARKER)  # a bad address, or no CFI
