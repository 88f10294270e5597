"""Retirement: symbolize and forget the processes that exit while a recording runs (issue #7).

Without it, a long system-wide run under a fork-heavy load keeps every short process's captured memory
map (and open files) until the end, and its user stacks fill the kernel's stack map, where they push
out the stacks of the processes still running (bucket collisions).

Every few seconds (sooner when many are waiting), for each process image (pid, exec generation) that
can take no more samples — its process exited (NOTICE_EXIT from the `on_exit` BPF program) or exec'd,
or a new process took its PID (a new generation; profile.bpf.c on_fork) — and has been so for
``GRACE_S``:

1. read `counts` whole; take exactly the keys of those images out (BPF_MAP_LOOKUP_AND_DELETE_ELEM:
   each value as removed, with any sample that landed after the read);
2. read the stacks they name; free from `stacks` the user stack ids that only they referenced
   (reference-counted over the `counts` entries read; kernel stacks are shared and stay);
3. read `counts` again: an entry made between 1 and 2 may name a freed id (a running process with the
   very same user stack, e.g. a non-PIE binary started again), whose bucket may take another stack
   later; its stack is pinned here, by key, and used when that entry is drained;
4. symbolize the taken stacks with the images' captures into a growing Profile (equal stacks merge),
   then drop the captures (maps, open files, per-process frame caches).

The images retired in the last ``RECENT_S`` stay sealed (never captured again from /proc, whose PID may
name another process now), and a later pass takes any straggler key of theirs.

DWARF mode counts stacks in user space (profiler/dwarf.py): its images are taken from the aggregator.
"""

from __future__ import annotations

import array
import ctypes
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from exporters.model import Profile, ProfileMeta, Sample
from profiler.bpf.abi import StackKey, StackValue
from profiler.raw import CountRecord, RawProfile

if TYPE_CHECKING:
    import numpy as np

    from profiler.dwarf import DwarfAggregator
    from profiler.symbolize import LazySymbolizer
    from unwind.frame import Frame
    from unwind.symbolizer import Symbolizer

GRACE_S = 1.0  # an image is taken this long after it stopped: the last threads' last samples are in
INTERVAL_S = 2.0  # passes run at most this often ...
BATCH = 256  # ... unless this many images are waiting (they hold memory and stack-map buckets)
RECENT_S = 60.0  # how long a retired image stays sealed and its straggler keys are looked for
_ROW = 6  # fields of a retired sample row (Retirer._rows)

Image = tuple[int, int]  # (pid, exec generation)
# a `counts` entry without its value: (pid, tid, comm, user stack id, kernel stack id, exec generation)
EntryKey = tuple[int, int, str, int, int, int]


class CountsMap(Protocol):
    """What retirement needs of the loaded sampler (profiler/bpf/loader.py Sampler)."""

    def read_counts_raw(self) -> tuple[bytes, bytes, int]: ...
    def take_count(self, key: bytes) -> bytes | None: ...
    def read_stacks(self, stack_ids: Iterable[int]) -> dict[int, tuple[int, ...]]: ...
    def delete_stacks(self, stack_ids: Iterable[int]) -> int: ...


def entry_key(r: CountRecord) -> EntryKey:
    return (r.pid, r.tid, r.comm, r.user_stack_id, r.kernel_stack_id, r.exec_gen)


def key_dtype() -> np.dtype:
    """`struct stack_key` (profile.h, through its ctypes mirror) as a numpy structured dtype."""
    import numpy as np

    fields = [("tgid", "<u4"), ("tid", "<u4"), ("user_stack_id", "<i4"), ("kernel_stack_id", "<i4")]
    fields += [("exec_gen", "<u4"), ("comm", f"S{StackKey.comm.size}")]
    return np.dtype(
        {
            "names": [n for n, _ in fields],
            "formats": [f for _, f in fields],
            "offsets": [getattr(StackKey, n).offset for n, _ in fields],
            "itemsize": ctypes.sizeof(StackKey),
        }
    )


class Retirer:
    """Tracks which process images stopped and retires them while recording; see the module docstring.

    ``on_image``/``on_exit`` are the ring buffer's notices (profile.h proc_notice); ``tick`` runs a pass
    when one is due; ``finish`` adds what was retired to the final profile and its counters. With
    ``enabled=False`` (a .bpfprof output needs every capture to the end) it only counts exits.
    """

    def __init__(
        self,
        symbolizers: LazySymbolizer,
        *,
        lines: bool = False,
        dwarf: DwarfAggregator | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._symbolizers = symbolizers
        self._lines = lines
        self._dwarf = dwarf
        self.enabled = enabled
        self._clock = clock
        self.meta = ProfileMeta()  # of what was retired: the build-ids of its files
        # What was retired, symbolized: a row of _ROW per sample (pid, tid, comm, frames, samples,
        # period), comm and frames as indices into the lists below; ~50 bytes a sample where a
        # Sample in a Profile takes ~200: a long system-wide run keeps every short process's samples.
        self._rows = array.array("Q")
        self._comms: dict[str, int] = {}
        self._frames: dict[tuple[Frame, ...], int] = {}  # one tuple per distinct stack
        self.pinned: dict[EntryKey, tuple[int, ...]] = {}  # see step 3 of the module docstring
        self.stats: Counter[str] = Counter()
        self._latest: dict[int, int] = {}  # pid -> its image announced last, while it runs
        self._stopped: dict[Image, float] = {}  # image -> when it stopped taking samples
        self._recent: dict[Image, float] = {}  # retired image -> when, for RECENT_S (sealed)
        self._last_pass = clock()
        self._key_dtype: np.dtype | None = None

    # -- notices (called from the sampler's poll) --------------------------------------------------

    def on_image(self, pid: int, gen: int) -> None:
        """A process image sampled for the first time (NOTICE_FIRST/EXEC): the PID's previous image, if
        any, exec'd away or exited (its PID now another process's), and takes no more samples."""
        prev = self._latest.get(pid)
        self._latest[pid] = gen
        if prev is not None and prev != gen:
            self._stop((pid, prev))

    def on_exit(self, pid: int, gen: int) -> None:
        """The last thread of a sampled process exited (NOTICE_EXIT); ``gen`` its last image."""
        self.stats["exits"] += 1
        prev = self._latest.get(pid)
        if prev is not None and prev <= gen:  # (a later image would be another process's: not this one)
            del self._latest[pid]
            self._stop((pid, prev))
        self._stop((pid, gen))

    def _stop(self, image: Image) -> None:
        if self.enabled and image not in self._recent:
            self._stopped.setdefault(image, self._clock())

    # -- passes --------------------------------------------------------------------------------------

    def tick(self, sampler: CountsMap) -> None:
        """Run a pass if one is due: images stopped for GRACE_S, and INTERVAL_S since the last pass or
        BATCH of them waiting. Skipped while the symbolizer is still warming up (in its thread)."""
        if not self._stopped:
            return
        now = self._clock()
        ripe = {image for image, t in self._stopped.items() if now - t >= GRACE_S}
        if not ripe or (now - self._last_pass < INTERVAL_S and len(ripe) < BATCH):
            return
        symbolizer = self._symbolizers.ready()
        if symbolizer is None:
            return
        self._last_pass = now
        self.retire(sampler, symbolizer, ripe)

    def retire(self, sampler: CountsMap, symbolizer: Symbolizer, images: set[Image]) -> None:
        """One pass over ``images`` (and the recently retired ones' stragglers): take, symbolize, forget."""
        from profiler.symbolize import symbolize_profile

        now = self._clock()
        for image, t in list(self._recent.items()):
            if now - t > RECENT_S:
                del self._recent[image]
                symbolizer.retire(*image)  # unsealed: no straggler can come this late
        wanted = images | self._recent.keys()
        for pid, gen in images:
            symbolizer.seal(pid, gen)  # never captured (gone first, notice lost): never read /proc now
        if self._dwarf is not None:
            raw = self._dwarf.take(wanted, sampler)  # type: ignore[arg-type]
        else:
            raw = self._take_counts(sampler, wanted)
        self.stats["stack_vanished"] += raw.stats.get("stack_vanished", 0)
        if raw.stacks:
            part = symbolize_profile(raw, symbolizer, self.meta, lines=self._lines)
            self._add(part)
        for image in images:
            self._stopped.pop(image, None)
            self.stats["images_retired"] += 1
            symbolizer.retire(*image)
            symbolizer.seal(*image)
            self._recent[image] = now
        self.stats["passes"] += 1

    def _take_counts(self, sampler: CountsMap, images: set[Image]) -> RawProfile:
        """Steps 1-3 of the module docstring: the images' `counts` entries, taken out, as a RawProfile."""
        import numpy as np

        from profiler.bpf.loader import decode_counts
        from profiler.record import add_records

        if self._key_dtype is None:
            self._key_dtype = key_dtype()
        ksz = self._key_dtype.itemsize
        keys, _, n = sampler.read_counts_raw()
        rows = np.frombuffer(keys, self._key_dtype, n)
        pids = np.fromiter({pid for pid, _ in images}, np.uint32)
        maybe = np.flatnonzero(np.isin(rows["tgid"], pids))
        gens = rows["exec_gen"][maybe].tolist()
        chosen = [i for i, pid, gen in zip(maybe.tolist(), rows["tgid"][maybe].tolist(), gens, strict=True)
                  if (pid, gen) in images]  # fmt: skip
        others = np.ones(n, bool)
        others[chosen] = False
        # ids still named by other entries: user and kernel ids share the map, so count both
        kept_ids = set(rows["user_stack_id"][others].tolist()) | set(rows["kernel_stack_id"][others].tolist())
        records: list[CountRecord] = []
        for i in chosen:
            key = keys[i * ksz : (i + 1) * ksz]
            value = sampler.take_count(key)
            if value is not None:  # (only we delete, so it is there)
                records.extend(decode_counts(key, value, 1))
        self.stats["entries_taken"] += len(records)
        user_ids = {r.user_stack_id for r in records if r.user_stack_id >= 0}
        kernel_ids = {r.kernel_stack_id for r in records if r.kernel_stack_id >= 0}
        stacks = sampler.read_stacks(user_ids | kernel_ids)
        orphans = {sid for sid in user_ids - kept_ids if sid in stacks}
        raw = RawProfile()
        raw.stats["stack_vanished"] = add_records(raw, records, stacks, self.pinned)
        if orphans:
            self.stats["stacks_freed"] += sampler.delete_stacks(orphans)
            keys, _, n = sampler.read_counts_raw()
            rows = np.frombuffer(keys, self._key_dtype, n)
            late = np.flatnonzero(np.isin(rows["user_stack_id"], np.fromiter(orphans, np.int32)))
            for i in late.tolist():
                (r,) = decode_counts(keys[i * ksz : (i + 1) * ksz], bytes(ctypes.sizeof(StackValue)), 1)
                self.pinned.setdefault(entry_key(r), stacks[r.user_stack_id])
                self.stats["stacks_pinned"] += 1
        return raw

    def _add(self, part: Profile) -> None:
        """Keep a retired part as rows; equal stacks share one frames tuple (and comm string)."""
        comms, frames_of, rows = self._comms, self._frames, self._rows
        for sample, weight in part.samples.items():
            comm = comms.setdefault(sample.comm, len(comms))
            frames = frames_of.setdefault(sample.frames, len(frames_of))
            rows.extend((sample.pid, sample.tid, comm, frames, weight.samples, weight.period))

    def retired_samples(self) -> Iterator[tuple[Sample, int, int]]:
        """The retired samples: (sample, samples, period), in the order they were retired."""
        comms, stacks, rows = list(self._comms), list(self._frames), self._rows
        for i in range(0, len(rows), _ROW):
            pid, tid, comm, frames, samples, period = rows[i : i + _ROW]
            yield Sample(pid, tid, comms[comm], stacks[frames]), samples, period

    # -- the end ---------------------------------------------------------------------------------------

    def finish(self, raw: RawProfile, profile: Profile) -> None:
        """Add the retired samples, build-ids and counters to the final ``profile`` and ``raw.stats``."""
        for sample, samples, period in self.retired_samples():
            profile.add(sample, samples, period)
        for path, build_id in self.meta.build_ids.items():
            profile.meta.build_ids.setdefault(path, build_id)
        raw.stats["stack_vanished"] = raw.stats.get("stack_vanished", 0) + self.stats["stack_vanished"]
        raw.stats["images_retired"] = self.stats["images_retired"]

    def note(self) -> str | None:
        """One line for the summary when retirement was off and processes exited, else None."""
        if self.enabled or not self.stats["exits"]:
            return None
        return (
            f"{self.stats['exits']} sampled processes exited while recording and were kept in memory to "
            "the end: a .bpfprof output needs their memory maps"
        )
