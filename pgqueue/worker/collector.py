"""What a worker does about Python's cyclic garbage collector, once per process.

A worker allocates a few collector-tracked objects per job (the claimed row, the
:class:`~pgqueue.Job`, its decoded params, the run's result), and they live from the claim
to the flush: a few milliseconds to tens of milliseconds, thousands of objects at a time.

- **Full collections.** Those objects live long enough to reach the oldest generation,
  and full (generation 2) collections follow every few tens of thousands of jobs, each
  walking every tracked object of the process: in an application's event loop a pause of
  ~10-20 ms for a modest heap, longer for a big one. ``gc.freeze()`` moves everything
  alive at that moment (modules, the application, its caches) out of the collector's
  reach; later full collections walk only what was created since, which keeps them at a
  few milliseconds. Frozen objects are still freed by reference counting; only a
  reference cycle among them would never be collected, which is why the heap is
  collected first, once per process, when the first worker starts (after the
  application's own start-up).
- **Young collections.** CPython collects the youngest generation once its tracked
  allocations exceed its deallocations by the threshold (700 by default). The jobs in
  flight are more than that, so they are found alive by collection after collection and
  promoted, and their later deaths do not count against the threshold: a draining worker
  triggers a young collection every ~250 jobs, each 0.2-1 ms of a stopped loop, 1-5 µs
  per job in all. With the threshold at ``YOUNG_THRESHOLD`` the jobs in flight die before
  one comes: in the benchmark's 40,000-job drains, 165-187 young collections (43-195 ms
  in all) at 700, and 0-1 (under 2.1 ms) at 10,000. The threshold is only raised, never
  lowered, and not while the collector is disabled.

``scheduler.worker(freeze_gc=False)`` (``pgqueue worker --no-freeze-gc``) leaves the
collector alone.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["YOUNG_THRESHOLD", "tune_collector"]

YOUNG_THRESHOLD = 10_000  # net tracked allocations between young collections

_lock = threading.Lock()
_tuned = False


def tune_collector() -> bool:
    """Collect, freeze and raise the young threshold, the first time in this process; True if it did."""
    global _tuned  # noqa: PLW0603 - once per process, by design
    with _lock:
        if _tuned:
            return False
        _tuned = True
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    if gc.isenabled() and 0 < young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, *older)
    return True
