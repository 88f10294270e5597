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


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a symbolized stack.

    ``module`` is the path of the mapped file (user) or the kernel module name (kernel, None for
    vmlinux). ``file_off`` is the file offset of the address in ``module`` (user frames), kept so an
    unnamed frame still says where it was (``libfoo.so+0x1a2b``).
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


MISSED_USER = Frame("[Missed User Stack]", kind=FrameKind.MARKER)
MISSED_KERNEL = Frame("[Missed Kernel Stack]", kind=FrameKind.MARKER)
# --call-graph dwarf: at the root side of a user stack whose unwinding stopped early
TRUNCATED = Frame("[truncated]", kind=FrameKind.MARKER)  # the stack copy ended first
UNWIND_FAILED = Frame("[unwind failed]", kind=FrameKind.MARKER)  # a bad address, or no CFI
