"""A small ctypes binding of libbpf.so.1: just the calls bpfprof makes, with errors raised clearly.

libbpf 1.x conventions (measured with 1.1.2): pointer-returning calls give NULL and set errno;
int-returning calls give -errno. Its log goes to a buffer we keep, shown when a load fails.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable

c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_char_p = ctypes.c_char_p
c_size_t = ctypes.c_size_t

PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
RINGBUF_SAMPLE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2


class LibbpfError(RuntimeError):
    """A libbpf call failed; ``errno`` is the positive error number."""

    def __init__(self, what: str, err: int, log: str = "") -> None:
        self.errno = err
        self.log = log
        super().__init__(f"{what}: {os.strerror(err)} (errno {err})")


class LibbpfMissing(RuntimeError):
    pass


_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, ctypes.c_uint32]),
    "bpf_map__initial_value": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_program__attach_perf_event": (c_void_p, [c_void_p, c_int]),
    "bpf_program__attach": (c_void_p, [c_void_p]),
    "bpf_program__set_autoload": (c_int, [c_void_p, ctypes.c_bool]),
    "bpf_link__destroy": (c_int, [c_void_p]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_lookup_and_delete_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_lookup_batch": (
        c_int,
        [c_int, c_void_p, c_void_p, c_void_p, c_void_p, ctypes.POINTER(ctypes.c_uint32), c_void_p],
    ),
    "ring_buffer__new": (c_void_p, [c_int, RINGBUF_SAMPLE_FN, c_void_p, c_void_p]),
    "ring_buffer__poll": (c_int, [c_void_p, c_int]),
    "ring_buffer__add": (c_int, [c_void_p, c_int, RINGBUF_SAMPLE_FN, c_void_p]),
    "ring_buffer__consume": (c_int, [c_void_p]),
    "bpf_map__set_value_size": (c_int, [c_void_p, ctypes.c_uint32]),
    "ring_buffer__free": (None, [c_void_p]),
    "libbpf_num_possible_cpus": (c_int, []),
    "bpf_prog_test_run_opts": (c_int, [c_int, c_void_p]),
    "libbpf_set_print": (c_void_p, [PRINT_FN]),
    "libbpf_major_version": (ctypes.c_uint32, []),
    "libbpf_minor_version": (ctypes.c_uint32, []),
}


class BpfTestRunOpts(ctypes.Structure):
    """``struct bpf_test_run_opts`` (libbpf bpf.h, 1.0+): BPF_PROG_TEST_RUN's arguments."""

    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


BPF_F_TEST_RUN_ON_CPU = 1 << 0  # include/uapi/linux/bpf.h: run a raw_tp program on opts.cpu


class Libbpf:
    """libbpf.so.1 loaded once per process; its log captured into ``log_lines``."""

    _instance: Libbpf | None = None
    _lock = threading.Lock()

    def __init__(self, path: str | None = None) -> None:
        try:
            self.lib = ctypes.CDLL(path or "libbpf.so.1", use_errno=True)
        except OSError as exc:
            raise LibbpfMissing(
                "libbpf.so.1 is not installed; install it (Debian/Ubuntu: apt-get install libbpf1)"
            ) from exc
        for fn, (restype, argtypes) in _SIGNATURES.items():
            f = getattr(self.lib, fn)
            f.restype = restype
            f.argtypes = argtypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        self._libc.vsnprintf.restype = c_int
        self.log_lines: list[str] = []
        self._print_buf = ctypes.create_string_buffer(1 << 20)
        self._print_cb = PRINT_FN(self._on_print)  # kept alive for as long as libbpf may call it
        self.lib.libbpf_set_print(self._print_cb)

    @classmethod
    def get(cls) -> Libbpf:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_print(self, level: int, fmt: bytes, args: int) -> int:
        if level == LIBBPF_DEBUG:
            return 0
        # x86_64 and arm64 pass va_list to a callee as a pointer, so vsnprintf can take it as is; it
        # can be read once only, so the buffer is large enough for a verifier log's tail.
        self._libc.vsnprintf(self._print_buf, len(self._print_buf), fmt, args)
        self.log_lines.extend(self._print_buf.value.decode(errors="replace").rstrip().splitlines())
        del self.log_lines[:-400]
        return 0

    def take_log(self) -> str:
        text = "\n".join(self.log_lines)
        self.log_lines.clear()
        return text

    @property
    def version(self) -> str:
        return f"{self.lib.libbpf_major_version()}.{self.lib.libbpf_minor_version()}"

    # -- helpers that turn libbpf's two error conventions into exceptions --------------------

    def check_ptr(self, ptr: int | None, what: str) -> int:
        if not ptr:
            raise LibbpfError(what, ctypes.get_errno() or errno.EINVAL, self.take_log())
        return ptr

    def check_int(self, ret: int, what: str) -> int:
        if ret < 0:
            err = -ret if ret < -1 else (ctypes.get_errno() or errno.EINVAL)
            raise LibbpfError(what, err, self.take_log())
        return ret

    def call(self, fn: str, *args: object) -> int:
        return getattr(self.lib, fn)(*args)


def make_ringbuf_callback(handler: Callable[[bytes], None], stop: Callable[[], bool] | None = None) -> object:
    """Wrap ``handler(record_bytes)`` as a libbpf ring_buffer_sample_fn (keep the result alive).

    When ``stop()`` is true after a record, the callback returns -EAGAIN: libbpf then marks that record
    consumed and returns -EAGAIN from ring_buffer__poll/__consume (ringbuf.c, ringbuf_process_ring),
    which otherwise keep going as long as new records arrive, without bound when the handler is slower
    than the producer."""

    def _cb(_ctx: int, data: int, size: int) -> int:
        try:
            handler(ctypes.string_at(data, size))
        except Exception:  # an exception may not cross into C; the record is dropped
            return 0
        return -errno.EAGAIN if stop is not None and stop() else 0

    return RINGBUF_SAMPLE_FN(_cb)
