"""unwind.gcpause: the collector is off inside, back on after, frozen only when asked, else what was made
is promoted (no young collection) without leaking cyclic garbage."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from unwind.gcpause import PROMOTE_MIN, paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.unfreeze()  # what a test froze goes back to the collector
    gc.enable()


def test_paused_turns_the_collector_off_inside_only() -> None:
    with paused():
        assert not gc.isenabled()
        with paused():  # an inner pause leaves the outer one in charge
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_paused_is_back_on_after_an_error() -> None:
    with pytest.raises(KeyError), paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_pause_false_leaves_the_collector_alone() -> None:
    with paused(pause=False):
        assert gc.isenabled()


def test_freeze_moves_what_was_made_out_of_the_collectors_sight() -> None:
    frozen = gc.get_freeze_count()
    with paused(freeze=True):
        made = [(i, str(i)) for i in range(10_000)]  # tracked tuples, as frames are
    assert gc.get_freeze_count() >= frozen + len(made)
    assert gc.get_count()[0] < 100  # no young collection pending for them
    assert gc.isenabled()


def test_without_freeze_nothing_is_frozen() -> None:
    frozen = gc.get_freeze_count()
    with paused():
        made = [(i, str(i)) for i in range(10_000)]
    assert gc.get_freeze_count() == frozen
    assert len(made) == 10_000


class _Node:
    """A tracked object that can be put in a cycle."""

    other: object = None


def batch(n: int) -> tuple[list[tuple[int, str]], list[_Node]]:
    """``n`` new tuples of atoms (as frames are, nearly) and ``n`` instances: at least ``n`` new young
    objects (tuples may come from their free list, which the collector does not count)."""
    return [(i, str(i)) for i in range(n)], [_Node() for _ in range(n)]


def collections() -> int:
    """Collections so far, of any generation (a young one may be due as a collection of gen 1 or 2)."""
    return sum(int(g["collections"]) for g in gc.get_stats())


def test_a_pause_promotes_what_it_made_instead_of_collecting_it() -> None:
    with paused():
        made, _nodes = batch(PROMOTE_MIN)
        before = collections()
    _ = [_Node() for _ in range(100)]  # fewer new objects than the young threshold (700)
    assert collections() == before  # no collection was due: the batch's objects are not young
    assert gc.get_freeze_count() == 0  # promoted, not frozen
    assert gc.is_tracked(made[0])  # never walked (a young collection untracks a tuple of atoms)


def test_a_small_pause_leaves_its_objects_to_a_young_collection() -> None:
    with paused():
        made, _nodes = batch(PROMOTE_MIN // 10)  # more than the young threshold
        before = collections()
    _ = [_Node() for _ in range(100)]  # (instances: no free list, each one counts)
    assert collections() > before
    assert not gc.is_tracked(made[0])


def test_promoted_cyclic_garbage_is_freed_by_a_full_collection() -> None:
    with paused():
        node = _Node()
        node.other = node  # a cycle, young when the pause ends
        alive = weakref.ref(node)
        del node
        made = batch(PROMOTE_MIN)  # a big batch: promoted
    gc.collect(0)
    gc.collect(1)
    assert alive() is not None  # promoted past the young generations
    gc.collect()
    assert alive() is None  # not leaked
    assert made


def test_a_pause_leaves_frozen_objects_frozen() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with paused():
        made = batch(PROMOTE_MIN)
    assert gc.get_freeze_count() == frozen  # nothing unfrozen (nor the batch frozen)
    assert made
