"""Keep Python's cyclic garbage collector off the symbolizer's bulk work.

A big batch makes ~100k frames (tuples), none of them in a cycle. With the collector on, every ~700 new
objects start a collection of the young ones and, ever more often as they pile up, of the older
generations: on a 100k-address batch about a third of the time. Paused, the batch pays one young
collection when the collector is back on (it walks what the batch made, once). Frozen (``gc.freeze``),
it pays none: the objects move where the collector never looks again. Freezing is for objects that live
until the process exits, made once per run (``bpfprof record``'s and ``report``'s final profile): it
also freezes whatever else is tracked at that moment, cyclic garbage included, which then stays.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused(pause: bool = True, freeze: bool = False) -> Iterator[None]:
    """The collector off inside (when ``pause``; a no-op when it is off already, e.g. in an outer pause);
    with ``freeze``, everything tracked when the block ends is frozen before the collector is back on."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()  # also zeroes the young generation's count: no collection starts at enable()
        gc.enable()
