"""Workload (m): the drain of a queue with a concurrency limit of 50 against the unlimited one.

Both drains are (b)'s: ``n`` pre-queued no-op jobs, one worker at C=50 in this process,
the clock stopped when the database shows every job finished. In the limited one the
queue has ``concurrency=50`` (set after the preload, untimed, as ``set_queue_limit`` would
leave it), so the worker leases the queue's slots (``lease_slots``, sql/011) and claims
it with the plain claim, prefetching as the plain drain does; its runners take a job of
the queue only within the slots leased. What the limit costs is the lease calls (per
claim cycle and give-back, not per job) and the gate in front of the runners.

The machine is noisy, so the two drains alternate (``BENCH_LIMITS_REPEATS`` rounds, the
order swapped each round) and the ratio is the median of each round's ratio. The issue asks
for at least 0.8.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from ._harness import STDERR, Params, alternate
from ._report import JsonObject, get_num

__all__ = ["CONCURRENCY", "MODES", "bench_limits", "limits_rows"]

CONCURRENCY = 50  # the worker's concurrency and the queue's limit
MODES = ("plain", "limited")  # SHAPES in _drain: "limited" sets the limit on the queue
DEFAULT_REPEATS = 3

Drain = Callable[..., Awaitable[JsonObject]]
"""``bench_drain`` (passed in, as the metrics phase takes it)."""


async def bench_limits(target: str, params: Params, bench_drain: Drain) -> JsonObject:
    """Unlimited and limited drains at C=50, alternating; medians and the paired ratio."""
    repeats = int(os.environ.get("BENCH_LIMITS_REPEATS", DEFAULT_REPEATS))

    async def drain(mode: str, round_: int) -> JsonObject:
        STDERR.log(f"limits {mode}: drain {params.n:,} at C={CONCURRENCY}, round {round_ + 1}")
        return await bench_drain(target, params, n=params.n, concurrency=CONCURRENCY, shape=mode)

    paired = await alternate(MODES, repeats, drain)
    runs = paired.runs
    return {
        "n": params.n,
        "concurrency": CONCURRENCY,
        "limit": CONCURRENCY,
        "repeats": repeats,
        "plain_jps": paired.median("plain"),
        "limited_jps": paired.median("limited"),
        "limited_vs_plain": paired.ratio("limited", "plain"),
        "jps": {m: [round(x) for x in paired.jps(m)] for m in MODES},
        "claims": {m: [r.get("claims") for r in rs] for m, rs in runs.items()},
        "cpu_us_per_job": {m: [get_num(r, "cpu_us_per_job") for r in rs] for m, rs in runs.items()},
    }


def limits_rows(line: JsonObject) -> list[tuple[str, str, str]]:
    """The table's row for the limits phase."""
    phase = line.get("limits")
    if not isinstance(phase, dict):
        return []
    details = (
        f"plain {get_num(phase, 'plain_jps') or 0:,.0f}, limited {get_num(phase, 'limited_jps') or 0:,.0f} "
        f"jobs/s (medians of {phase.get('repeats')} rounds of {phase.get('n')} jobs at C={CONCURRENCY}, "
        f"limit {CONCURRENCY}); claims {phase.get('claims')}"
    )
    return [("drain (concurrency limit)", f"{get_num(phase, 'limited_vs_plain')}× plain", details)]
