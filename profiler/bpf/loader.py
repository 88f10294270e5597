"""Loads profile.bpf.o through libbpf, attaches it, and drains its maps. Always cleans up.

The Sampler is a context manager: links (which own their perf fds), the ring buffer and the object
are destroyed on exit, also on exceptions and signals.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from profiler.bpf.abi import (
    MAX_STACK_DEPTH,
    NOTICE_EXIT,
    STAT_MAX,
    ProcNotice,
    ProfileConfig,
    StackKey,
    StackValue,
    Stat,
)
from profiler.bpf.libbpf import Libbpf, LibbpfError, make_ringbuf_callback
from profiler.raw import CountRecord

BPF_ANY = 0
POLL_BUDGET_MS = 200  # how long one poll() may spend in handlers after its wait (see poll)


def default_object_path() -> Path:
    return Path(str(resources.files("profiler.bpf") / "profile.bpf.o"))


@dataclass(frozen=True, slots=True)
class SamplerConfig:
    """Read-only BPF config and map sizes, fixed before load."""

    target_tgids: tuple[int, ...] = ()  # empty: every task
    include_idle: bool = False
    user_stacks: bool = True
    kernel_stacks: bool = True
    follow_forks: bool = True
    stack_storage_size: int = 16384
    counts_size: int = 40960
    dwarf_stack_size: int = 0  # > 0: --call-graph dwarf, copying this many bytes of user stack
    samples_ring_size: int = 16 << 20  # --call-graph dwarf: ring buffer bytes (a power of 2)

    @property
    def program(self) -> str:
        """The perf_event program this configuration samples with."""
        return "do_sample_dwarf" if self.dwarf_stack_size else "do_sample"


def decode_counts(keys: bytes, values: bytes, n: int) -> list[CountRecord]:
    """Decode n packed `struct stack_key` / `struct stack_value` records (profile.h) from batch buffers."""
    ksz, vsz = ctypes.sizeof(StackKey), ctypes.sizeof(StackValue)
    out = []
    for i in range(n):
        k = StackKey.from_buffer_copy(keys, i * ksz)
        v = StackValue.from_buffer_copy(values, i * vsz)
        out.append(
            CountRecord(
                pid=k.tgid,
                tid=k.tid,
                comm=k.comm.decode(errors="replace"),
                user_stack_id=k.user_stack_id,
                kernel_stack_id=k.kernel_stack_id,
                samples=v.samples,
                period=v.period,
                exec_gen=k.exec_gen,
            )
        )
    return out


def decode_stack(raw: bytes) -> tuple[int, ...]:
    """The ips of a stack-map value, leaf first, up to the first zero."""
    ips = []
    for (ip,) in struct.iter_unpack("<Q", raw):
        if ip == 0:
            break
        ips.append(ip)
    return tuple(ips)


class Sampler:
    """profile.bpf.o loaded, configured and attached; see the module docstring."""

    def __init__(self, config: SamplerConfig, obj_path: Path | None = None) -> None:
        self.config = config
        self.obj_path = obj_path or default_object_path()
        self.bpf = Libbpf.get()
        self.obj = 0
        self.links: list[int] = []
        self.ringbuf = 0
        self._ringbuf_cbs: list[object] = []  # kept alive while libbpf may call them
        self._poll_until = 0.0  # time.monotonic() when the current poll stops handling records

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Sampler:
        try:
            self._open_and_load()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_and_load(self) -> None:
        b = self.bpf
        if not self.obj_path.exists():
            raise LibbpfError(
                f"BPF object {self.obj_path} is missing (run scripts/build_bpf.sh)", errno.ENOENT
            )
        self.obj = b.check_ptr(
            b.lib.bpf_object__open_file(str(self.obj_path).encode(), None), "open BPF object"
        )
        c = self.config
        self._size_map("stacks", c.stack_storage_size)
        self._size_map("counts", c.counts_size)
        other = "do_sample" if c.dwarf_stack_size else "do_sample_dwarf"
        b.check_int(b.lib.bpf_program__set_autoload(self._prog(other), False), f"skip {other}")
        if c.dwarf_stack_size:  # else the scratch and the ring stay at their one-entry minimum
            self._size_map("scratch", b.lib.libbpf_num_possible_cpus())
            self._size_map("samples", c.samples_ring_size)
        self._set_rodata()
        b.check_int(b.lib.bpf_object__load(self.obj), "load BPF programs")

    def _size_map(self, name: str, entries: int) -> None:
        self.bpf.check_int(self.bpf.lib.bpf_map__set_max_entries(self._map(name), entries), f"size {name}")

    def _set_rodata(self) -> None:
        size = ctypes.c_size_t()
        ptr = self.bpf.check_ptr(
            self.bpf.lib.bpf_map__initial_value(self._map(".rodata"), ctypes.byref(size)), "read .rodata"
        )
        if size.value != ctypes.sizeof(ProfileConfig):
            raise LibbpfError(
                f".rodata is {size.value} bytes, expected {ctypes.sizeof(ProfileConfig)} "
                "(the BPF object is out of date: run scripts/build_bpf.sh)",
                errno.EINVAL,
            )
        c = self.config
        cfg = ProfileConfig.from_address(ptr)
        cfg.filter_tgids = 1 if c.target_tgids else 0
        cfg.include_idle = int(c.include_idle)
        cfg.user_stacks = int(c.user_stacks)
        cfg.kernel_stacks = int(c.kernel_stacks)
        cfg.follow_forks = int(c.follow_forks and bool(c.target_tgids))
        cfg.dwarf_stack_size = c.dwarf_stack_size
        cfg.samples_wakeup_bytes = c.samples_ring_size // 4

    def close(self) -> None:
        """Destroy links (closing their perf fds), the ring buffer, then the object. Idempotent."""
        self.detach()
        if self.ringbuf:
            self.bpf.lib.ring_buffer__free(self.ringbuf)
            self.ringbuf = 0
        if self.obj:
            self.bpf.lib.bpf_object__close(self.obj)
            self.obj = 0

    def detach(self) -> None:
        """Stop sampling: destroy every link (each owns and closes its perf fd)."""
        while self.links:
            self.bpf.lib.bpf_link__destroy(self.links.pop())

    # -- lookups ---------------------------------------------------------------------------------

    def _map(self, name: str) -> int:
        return self.bpf.check_ptr(
            self.bpf.lib.bpf_object__find_map_by_name(self.obj, name.encode()), f"map {name}"
        )

    def _map_fd(self, name: str) -> int:
        return self.bpf.check_int(self.bpf.lib.bpf_map__fd(self._map(name)), f"fd of map {name}")

    def _prog(self, name: str) -> int:
        return self.bpf.check_ptr(
            self.bpf.lib.bpf_object__find_program_by_name(self.obj, name.encode()), f"program {name}"
        )

    # -- attach ----------------------------------------------------------------------------------

    def add_targets(self, tgids: Iterable[int]) -> None:
        fd = self._map_fd("targets")
        one = ctypes.c_uint8(1)
        for tgid in tgids:
            key = ctypes.c_uint32(tgid)
            self.bpf.check_int(
                self.bpf.lib.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(one), BPF_ANY),
                f"add target {tgid}",
            )

    def attach_perf_events(self, fds: list[int]) -> None:
        """Attach the sampler to each perf fd; a link takes ownership of its fd (closed on destroy)."""
        prog = self._prog(self.config.program)
        pending = list(fds)
        try:
            while pending:
                fd = pending[0]
                link = self.bpf.check_ptr(
                    self.bpf.lib.bpf_program__attach_perf_event(prog, fd), "attach to perf event"
                )
                pending.pop(0)
                self.links.append(link)
        finally:
            for fd in pending:
                os.close(fd)

    def attach_tracepoint(self, prog: str) -> None:
        """Attach a tp_btf program (on_fork, on_exec); BTF tracepoints need no tracefs."""
        link = self.bpf.check_ptr(self.bpf.lib.bpf_program__attach(self._prog(prog)), f"attach {prog}")
        self.links.append(link)

    def open_new_process_feed(
        self, handler: Callable[[int, int], None], on_exit: Callable[[int, int], None] | None = None
    ) -> None:
        """Call ``handler(tgid, exec_gen)`` from poll() for each process sampled for the first time, and
        again on its first sample after each exec (the new generation); and ``on_exit(tgid, exec_gen)``
        when the last thread of a sampled process exits (its last generation; without ``on_exit``
        those notices are dropped here)."""

        def on_record(data: bytes) -> None:
            notice = ProcNotice.from_buffer_copy(data)
            if notice.kind == NOTICE_EXIT:
                if on_exit is not None:
                    on_exit(notice.tgid, notice.exec_gen)
            else:
                handler(notice.tgid, notice.exec_gen)

        self._add_ringbuf("new_procs", on_record)

    def open_samples_feed(self, handler: Callable[[bytes], None]) -> None:
        """--call-graph dwarf: call ``handler(record)`` from poll() with each `struct dwarf_sample`
        (header and the stack bytes copied)."""
        self._add_ringbuf("samples", handler)

    def _add_ringbuf(self, map_name: str, handler: Callable[[bytes], None]) -> None:
        cb = make_ringbuf_callback(handler, self._poll_spent)
        self._ringbuf_cbs.append(cb)
        fd = self._map_fd(map_name)
        if not self.ringbuf:
            self.ringbuf = self.bpf.check_ptr(
                self.bpf.lib.ring_buffer__new(fd, cb, None, None), "ring buffer"
            )
        else:
            self.bpf.check_int(
                self.bpf.lib.ring_buffer__add(self.ringbuf, fd, cb, None), f"ring buffer {map_name}"
            )

    def poll(self, timeout_ms: int, budget_ms: int = POLL_BUDGET_MS) -> int:
        """Hand ring-buffer records to their handlers; waits up to ``timeout_ms`` for the first. Returns
        how many (at least 1 when the budget ran out with records left).

        Handling stops ``budget_ms`` after the wait: a handler slower than the kernel's producer (the
        DWARF unwinder under a high rate) would otherwise keep libbpf in one poll for as long as samples
        arrive, and the caller would see neither its deadline nor a Ctrl-C. What is not taken in time
        waits in the ring (or is dropped by the kernel when it fills, and counted)."""
        if not self.ringbuf:
            return 0
        self._poll_until = time.monotonic() + (timeout_ms + budget_ms) / 1000
        ret = self.bpf.lib.ring_buffer__poll(self.ringbuf, timeout_ms)
        if ret == -errno.EAGAIN:
            return 1
        if ret == -errno.EINTR:
            return 0
        got = self.bpf.check_int(ret, "poll ring buffer")
        if self.config.dwarf_stack_size:  # samples come without wakeups: take what is queued
            ret = self.bpf.lib.ring_buffer__consume(self.ringbuf)
            if ret == -errno.EAGAIN:
                return got + 1
            got += self.bpf.check_int(ret, "drain samples")
        return got

    def _poll_spent(self) -> bool:
        return time.monotonic() > self._poll_until

    # -- drain -----------------------------------------------------------------------------------

    def read_counts(self) -> list[CountRecord]:
        """Every entry of `counts`, decoded."""
        keys, values, n = self.read_counts_raw()
        return decode_counts(keys, values, n)

    def read_counts_raw(self) -> tuple[bytes, bytes, int]:
        """Every entry of `counts` as packed `struct stack_key`s and `struct stack_value`s and their
        number, in batches (bpf_map_lookup_batch gives ENOENT on the last one)."""
        fd = self._map_fd("counts")
        ksz, vsz = ctypes.sizeof(StackKey), ctypes.sizeof(StackValue)
        batch = 4096
        keys = ctypes.create_string_buffer(ksz * batch)
        vals = ctypes.create_string_buffer(vsz * batch)
        token_in = ctypes.c_uint32()
        token_out = ctypes.c_uint32()
        out_keys: list[bytes] = []
        out_vals: list[bytes] = []
        total = 0
        first = True
        while True:
            count = ctypes.c_uint32(batch)
            ret = self.bpf.lib.bpf_map_lookup_batch(
                fd,
                None if first else ctypes.byref(token_in),
                ctypes.byref(token_out),
                keys,
                vals,
                ctypes.byref(count),
                None,
            )
            err = ctypes.get_errno() if ret < 0 else 0
            if ret < 0 and err not in (errno.ENOENT,):
                if first and err in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    return self._read_counts_by_key()
                self.bpf.check_int(ret, "read counts")
            out_keys.append(keys.raw[: count.value * ksz])
            out_vals.append(vals.raw[: count.value * vsz])
            total += count.value
            if ret < 0:  # ENOENT: that was the last batch
                return b"".join(out_keys), b"".join(out_vals), total
            token_in.value = token_out.value
            first = False

    def _read_counts_by_key(self) -> tuple[bytes, bytes, int]:
        fd = self._map_fd("counts")
        key, nxt, val = StackKey(), StackKey(), StackValue()
        out_keys: list[bytes] = []
        out_vals: list[bytes] = []
        prev = None
        while self.bpf.lib.bpf_map_get_next_key(fd, prev, ctypes.byref(nxt)) == 0:
            ctypes.memmove(ctypes.byref(key), ctypes.byref(nxt), ctypes.sizeof(key))
            prev = ctypes.byref(key)
            if self.bpf.lib.bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(val)) == 0:
                out_keys.append(bytes(key))
                out_vals.append(bytes(val))
        return b"".join(out_keys), b"".join(out_vals), len(out_keys)

    def take_count(self, key: bytes) -> bytes | None:
        """Remove one `counts` entry (a packed `struct stack_key`) and return its value as removed (a
        packed `struct stack_value`: samples that landed since it was read are in it), or None when
        there is no such entry. One syscall (BPF_MAP_LOOKUP_AND_DELETE_ELEM, hash maps since 5.14)."""
        fd = self._map_fd("counts")
        kbuf = ctypes.create_string_buffer(key, len(key))
        val = StackValue()
        ret = self.bpf.lib.bpf_map_lookup_and_delete_elem(fd, kbuf, ctypes.byref(val))
        if ret == 0:
            return bytes(val)
        err = -ret if ret < -1 else ctypes.get_errno()
        if err == errno.ENOENT:
            return None
        if err not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            self.bpf.check_int(ret, "take a counts entry")
        # an older kernel: look up, then delete (a sample landing in between is lost, not miscounted)
        if self.bpf.lib.bpf_map_lookup_elem(fd, kbuf, ctypes.byref(val)) != 0:
            return None
        self.bpf.lib.bpf_map_delete_elem(fd, kbuf)
        return bytes(val)

    def delete_stacks(self, stack_ids: Iterable[int]) -> int:
        """Free these ids of the `stacks` map (their buckets take new stacks); returns how many were
        there."""
        fd = self._map_fd("stacks")
        freed = 0
        for sid in stack_ids:
            key = ctypes.c_uint32(sid)
            if self.bpf.lib.bpf_map_delete_elem(fd, ctypes.byref(key)) == 0:
                freed += 1
        return freed

    def read_stacks(self, stack_ids: Iterable[int]) -> dict[int, tuple[int, ...]]:
        """ips (leaf first) of each stack id; ids no longer in the map are left out."""
        fd = self._map_fd("stacks")
        buf = ctypes.create_string_buffer(8 * MAX_STACK_DEPTH)
        out = {}
        for sid in stack_ids:
            key = ctypes.c_uint32(sid)
            if self.bpf.lib.bpf_map_lookup_elem(fd, ctypes.byref(key), buf) == 0:
                out[sid] = decode_stack(buf.raw)
        return out

    def read_stats(self) -> dict[Stat, int]:
        """The per-CPU `stats` array summed over CPUs."""
        fd = self._map_fd("stats")
        ncpu = self.bpf.lib.libbpf_num_possible_cpus()
        vals = (ctypes.c_uint64 * ncpu)()
        out = {}
        for idx in range(STAT_MAX):
            key = ctypes.c_uint32(idx)
            if self.bpf.lib.bpf_map_lookup_elem(fd, ctypes.byref(key), vals) == 0:
                out[Stat(idx)] = sum(vals)
        return out
