"""unwind.gcpause: the collector is off inside, back on after, and frozen only when asked."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from unwind.gcpause import paused


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
