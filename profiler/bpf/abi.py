"""ctypes mirrors of profile.h (the one source of truth; tests/unit/test_abi.py holds them to it)."""

from __future__ import annotations

import ctypes
import struct
from enum import IntEnum

TASK_COMM_LEN = 16
MAX_STACK_DEPTH = 127
STACK_SKIPPED = -1000
EFAULT = 14
EEXIST = 17


class StackKey(ctypes.Structure):
    _fields_ = [
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("user_stack_id", ctypes.c_int32),
        ("kernel_stack_id", ctypes.c_int32),
        ("exec_gen", ctypes.c_uint32),
        ("comm", ctypes.c_char * TASK_COMM_LEN),
    ]


class StackValue(ctypes.Structure):
    _fields_ = [("samples", ctypes.c_uint64), ("period", ctypes.c_uint64)]


NOTICE_FIRST = 0
NOTICE_EXEC = 1
NOTICE_EXIT = 2


class ProcNotice(ctypes.Structure):
    _fields_ = [("tgid", ctypes.c_uint32), ("kind", ctypes.c_uint32), ("exec_gen", ctypes.c_uint32)]


class ProfileConfig(ctypes.Structure):
    _fields_ = [
        ("filter_tgids", ctypes.c_uint8),
        ("include_idle", ctypes.c_uint8),
        ("user_stacks", ctypes.c_uint8),
        ("kernel_stacks", ctypes.c_uint8),
        ("follow_forks", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("dwarf_stack_size", ctypes.c_uint32),
        ("samples_wakeup_bytes", ctypes.c_uint32),
    ]


class Stat(IntEnum):
    """Indices of the `stats` per-CPU array, as `enum stat_index` in profile.h."""

    SEEN = 0
    KEPT = 1
    COUNTS_FULL = 2
    USER_COLLISION = 3
    KERNEL_COLLISION = 4
    USER_MISSING = 5
    KERNEL_MISSING = 6
    USER_OTHER_ERROR = 7
    KERNEL_OTHER_ERROR = 8
    IDLE_SKIPPED = 9
    NEW_PROC_DROPPED = 10
    SAMPLES_DROPPED = 11
    KTHREAD_SKIPPED = 12
    EXIT_DROPPED = 13


STAT_MAX = len(Stat)

DWARF_STACK_MAX = 64 * 1024
DWARF_FLAG_STACK_CUT = 1
# struct dwarf_sample up to its stack bytes: tgid, tid, exec_gen, kernel_stack_id, period, ip, sp, bp,
# stack_len, flags, comm
DWARF_HEADER = struct.Struct("<IIIiQQQQII16s")
