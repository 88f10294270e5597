"""What outputs say about processes and images besides stacks: command lines, parents, build-ids."""

from __future__ import annotations

import os
import struct

NT_GNU_BUILD_ID = 3
_NHDR = struct.Struct("<III")  # namesz, descsz, type (elf(5): Elf64_Nhdr has 4-byte fields)


def parse_cmdline(data: bytes) -> str:
    """``/proc/PID/cmdline`` (NUL-terminated arguments) as one line: arguments joined by single spaces.

    That is how py-spy shows it. A process that rewrote its arguments as one space-separated string
    (no NULs) is returned as it is; undecodable bytes become U+FFFD.
    """
    return " ".join(data.rstrip(b"\0").decode("utf-8", "replace").split("\0"))


def parse_ppid(stat: bytes) -> int:
    """The parent pid from ``/proc/PID/stat``: the fourth field, counted after the ``)`` that ends comm
    (proc(5); comm may itself hold spaces and parentheses). ValueError when it is not there."""
    fields = stat[stat.rindex(b")") + 1 :].split()
    return int(fields[1])


def read_process(pid: int, proc: str = "/proc") -> tuple[str, int | None] | None:
    """The command line and parent pid of a live process, or None when it is gone or unreadable.

    A kernel thread has an empty command line.
    """
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            cmdline = parse_cmdline(f.read())
    except OSError:
        return None
    try:
        with open(os.path.join(proc, str(pid), "stat"), "rb") as f:
            ppid: int | None = parse_ppid(f.read())
    except (OSError, ValueError, IndexError):
        ppid = None
    return cmdline, ppid


def parse_build_id_note(data: bytes) -> bytes | None:
    """The NT_GNU_BUILD_ID descriptor in a sequence of ELF notes (4-byte aligned, as in
    ``/sys/kernel/notes`` and ``/sys/module/NAME/notes/.note.gnu.build-id``), or None."""
    pos = 0
    while pos + _NHDR.size <= len(data):
        namesz, descsz, n_type = _NHDR.unpack_from(data, pos)
        name_at = pos + _NHDR.size
        desc_at = name_at + (namesz + 3) // 4 * 4
        if desc_at + descsz > len(data):
            return None
        if n_type == NT_GNU_BUILD_ID and data[name_at : name_at + namesz] == b"GNU\0":
            return data[desc_at : desc_at + descsz]
        pos = desc_at + (descsz + 3) // 4 * 4
    return None


def kernel_build_id(notes: str = "/sys/kernel/notes") -> str | None:
    """The running kernel's build-id (hex) from its notes, or None when unreadable or absent."""
    try:
        with open(notes, "rb") as f:
            found = parse_build_id_note(f.read())
    except OSError:
        return None
    return found.hex() if found else None
