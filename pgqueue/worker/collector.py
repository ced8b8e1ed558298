"""What a worker does about Python's cyclic garbage collector: freeze the start-up heap, once.

A worker allocates a few collector-tracked objects per job (the claimed row, the
:class:`~pgqueue.Job`, its decoded params, the run's result), and they live from the claim
to the flush, long enough to reach the oldest generation. Full (generation 2) collections
follow from that every few tens of thousands of jobs, and each one walks every tracked
object of the process: in an application's event loop that is a pause of ~10-20 ms for a
modest heap, longer for a big one, during which nothing else on the loop runs.

``gc.freeze()`` moves everything alive at that moment (modules, the application, its
caches) out of the collector's reach; later full collections walk only what was created
since, which keeps them at a few milliseconds. Objects frozen are still freed by reference
counting; only a reference cycle among them would never be collected, which is why the
heap is collected first and why this happens once per process, when the first worker
starts (after the application's own start-up). ``scheduler.worker(freeze_gc=False)``
(``pgqueue worker --no-freeze-gc``) leaves the collector alone.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["freeze_startup_heap"]

_lock = threading.Lock()
_frozen = False


def freeze_startup_heap() -> bool:
    """Collect, then freeze every tracked object, the first time in this process; True if it did."""
    global _frozen  # noqa: PLW0603 - once per process, by design
    with _lock:
        if _frozen:
            return False
        _frozen = True
    gc.collect()
    gc.freeze()
    return True
