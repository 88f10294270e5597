"""Retirement's store of what it took while recording (profiler/retire.py): compact rows that come
back as the same samples, weights and build-ids in the final profile."""

from __future__ import annotations

from exporters.model import Profile, ProfileMeta, Sample
from profiler.raw import RawProfile
from profiler.retire import Retirer
from profiler.symbolize import LazySymbolizer
from unwind.frame import MISSED_USER, Frame, FrameKind


def _part(pid: int, stacks: list[tuple[Frame, ...]]) -> Profile:
    part = Profile(meta=ProfileMeta())
    for i, frames in enumerate(stacks):
        part.add(Sample(pid, pid + i % 2, f"worker-{pid % 3}", frames), 1 + i, 1_000_000 * (1 + i))
    return part


def test_retired_samples_come_back_whole_and_share_their_stacks() -> None:
    a = (Frame("main", "/bin/w", file_off=0x10), Frame("work", "/bin/w", file_off=0x20))
    b = (*a, Frame("schedule", kind=FrameKind.KERNEL))
    parts = [_part(pid, [a, b, (MISSED_USER,), b]) for pid in range(4000, 4100)]
    retirer = Retirer(LazySymbolizer())
    expected = Profile(meta=ProfileMeta())
    for part in parts:
        retirer._add(part)
        for sample, w in part.samples.items():
            expected.add(sample, w.samples, w.period)
    retirer.meta.build_ids["/bin/w"] = "ab12"
    got = list(retirer.retired_samples())
    assert len(got) == sum(len(p.samples) for p in parts)
    assert len({id(s.frames) for s, _, _ in got}) == 3  # one tuple per distinct stack
    assert len({id(s.comm) for s, _, _ in got}) == 3
    final = Profile(meta=ProfileMeta())
    final.add(Sample(1, 1, "alive", a), 7, 7)  # a sample of a process that lived to the end
    retirer.finish(RawProfile(), final)
    assert final.samples.pop(Sample(1, 1, "alive", a)).samples == 7
    assert {s: (w.samples, w.period) for s, w in final.samples.items()} == {
        s: (w.samples, w.period) for s, w in expected.samples.items()
    }
    assert final.meta.build_ids == {"/bin/w": "ab12"}
