"""Keep Python's cyclic garbage collector off the symbolizer's bulk work.

A big batch makes ~100k frames (tuples), none of them in a cycle. With the collector on, every ~700 new
objects start a collection of the young ones and, ever more often as they pile up, of the older
generations: on a 100k-address batch about a third of the time. Paused, the batch would still pay one
young collection when the collector is back on (it walks what the batch made, once: 7-16 ms for 100k
frames here). Instead, what the batch made is promoted to the oldest generation unwalked
(``gc.freeze()`` then ``gc.unfreeze()``: two list splices, ~20 us), where only a full collection looks,
and full collections are rare (CPython runs one when the objects that survived younger collections
since the last one reach a quarter of the oldest generation; promoted objects do not count toward it).
Nothing leaks: cyclic garbage that was young at that moment is freed by the next full collection, as it
would have been had it survived a young one. Only a big batch is promoted (``PROMOTE_MIN`` young
objects or more: a small one costs its young collection little, and then lets the collector free what
is young as usual), and only while nothing is frozen (``gc.unfreeze`` would give that back to the
collector too).

Frozen (``freeze=True``), the batch's objects move where the collector never looks again. Freezing is
for objects that live until the process exits, made once per run (``bpfprof record``'s and ``report``'s
final profile): it also freezes whatever else is tracked at that moment, cyclic garbage included, which
then stays.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Young objects (gc.get_count()[0]) from which a pause ends by promoting them rather than collecting.
PROMOTE_MIN = 10_000


@contextlib.contextmanager
def paused(pause: bool = True, freeze: bool = False) -> Iterator[None]:
    """The collector off inside (when ``pause``; a no-op when it is off already, e.g. in an outer pause).

    When the block ends, what is tracked is frozen (``freeze``), else promoted to the oldest generation
    when the young ones are many and nothing is frozen (see the module's docstring), before the
    collector is back on."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()  # also zeroes the young generation's count: no collection starts at enable()
        elif gc.get_count()[0] >= PROMOTE_MIN and gc.get_freeze_count() == 0:
            promote()
        gc.enable()


def promote() -> None:
    """Move every tracked object to the oldest generation without a collection (and zero the young
    generations' counts). Only while nothing is frozen: ``gc.unfreeze`` releases all that is."""
    gc.freeze()
    gc.unfreeze()
