"""ctypes mirrors of stat.h (the one source of truth; tests/unit/test_stat_abi.py holds them to it)."""

from __future__ import annotations

import ctypes
from enum import IntEnum

STAT_COMM_LEN = 16
STAT_MAX_EVENTS = 16
STAT_TGID_OTHER = 0xFFFFFFFF


class StatKey(ctypes.Structure):
    _fields_ = [
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("comm", ctypes.c_char * STAT_COMM_LEN),
    ]


class StatValue(ctypes.Structure):
    _fields_ = [
        ("counter", ctypes.c_uint64 * STAT_MAX_EVENTS),
        ("enabled", ctypes.c_uint64 * STAT_MAX_EVENTS),
        ("running", ctypes.c_uint64 * STAT_MAX_EVENTS),
    ]


class StatCpuState(ctypes.Structure):
    _fields_ = [
        ("last", StatValue),
        ("pending", StatKey),
        ("has_pending", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class StatConfig(ctypes.Structure):
    _fields_ = [
        ("nr_events", ctypes.c_uint32),
        ("nr_cpus", ctypes.c_uint32),
        ("switch_out_mask", ctypes.c_uint32),
        ("value_only_mask", ctypes.c_uint32),
        ("direct_mask", ctypes.c_uint32),
        ("per_switch_mask", ctypes.c_uint32),
        ("by_tid", ctypes.c_uint8),
        ("filter_tgids", ctypes.c_uint8),
        ("follow_forks", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
    ]


class Health(IntEnum):
    """Indices of the `health` per-CPU array, as `enum stat_health_index` in stat.h."""

    SWITCHES = 0
    FLUSHES = 1
    READ_FAILED = 2
    TASKS_FULL = 3
    TARGETS_FULL = 4


HEALTH_MAX = len(Health)
