"""What a worker counts for :mod:`pgqueue.metrics`: plain ints, lists and dicts, no prometheus-client.

A worker built with ``metrics=`` gets one :class:`Tally`; the fetcher calls
:meth:`Tally.claimed` once per claim and the flusher :meth:`Tally.flushed` once per
written flush. Nothing here runs per job outside that per-flush loop, and a worker
without metrics never builds a Tally (its stages test ``is not None`` once per claim or
flush). The collector in :mod:`pgqueue.metrics` reads these numbers when scraped.

Why not prometheus-client's Counter and Histogram objects: ``labels(...).inc()`` and
``labels(...).observe()`` take a lock and look the labels up, about 1.7 µs each here, so
a job would pay some 5 µs (a counter and two histograms) of a no-op job's 15 to 25 µs of
CPU. Counts could be added once per flush (``inc(n)``), but a histogram has no call that
adds a batch of observations. So the collector in :mod:`pgqueue.metrics` reports these
plain numbers, and a flush folds its batch in one loop: per job two string comparisons
(is it the last job's type and queue?), two subtractions and appends, and one identity
test; then per (type, queue) a ``max`` (all in the first bucket: the usual case for short
jobs), or a sort and one ``bisect`` per bucket bound, in C. That costs about 0.22 µs per
job on its own, and about twice that inside a draining worker (thread CPU time around
the call, during the benchmark's drain), where a no-op job costs 11 to 18 µs of CPU.

Threads: one event loop writes a Tally; a scrape may read it from another thread (the
HTTP server's). Readers copy each list and dict (a C-level copy, atomic under the GIL), so
they see every count once; a bucket list and its sum may be a flush apart.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Protocol

from pgqueue._models import ROW_QUEUE, ROW_RUN_AT, ROW_TYPE, Outcome

from .results import RunResult

__all__ = [
    "BATCH_BUCKETS",
    "FLUSH_BUCKETS",
    "TIME_BUCKETS",
    "Histogram",
    "JobTally",
    "Key",
    "Tally",
    "WorkerView",
    "outcome_label",
]

TIME_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip
"""Seconds: run durations and queue waits, from a millisecond to an hour."""
BATCH_BUCKETS = (0.0, 1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0)
"""Jobs per claim or flush; 0 counts the claims that found nothing."""
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
"""Seconds one flush statement takes."""

Key = tuple[str, str]
"""(job type, queue): the labels of the per-job metrics."""
_Groups = dict[Key, tuple[list[float], list[float]]]  # one flush's run durations and waits per key
_SUCCEEDED = Outcome.SUCCEEDED
_RETRIED = frozenset({Outcome.FAILED, Outcome.TIMEOUT})  # a failure put back for a retry: "retried"


def outcome_label(outcome: Outcome, error: str | None, final: bool) -> str:  # noqa: FBT001 - mirrors RunInfo
    """The ``outcome`` label of a finished run.

    A run's stored outcome, except: a success with a note is a ``skip()`` ("skipped"), and
    a failed or timed-out run put back for another attempt is "retried" (the job is not
    over). Snoozed, suspended and interrupted runs keep their names: they are put back too,
    but not for an error.
    """
    if outcome is _SUCCEEDED:
        return "succeeded" if error is None else "skipped"
    if not final and outcome in _RETRIED:
        return "retried"
    return outcome.value


class Histogram:
    """Bucket counts (each bucket alone, not cumulative; the last is +Inf) and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value (per claim or flush; a flush's runs go through observe_many)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, values: list[float], shift: float = 0.0) -> None:
        """Count ``v + shift`` for each of ``values`` (which this may sort in place).

        When the largest is within the first bucket (a flush of no-op jobs: every run under
        a millisecond) so are all, and nothing is sorted; after a sort, the smallest and the
        largest in one bucket put all there.
        """
        if not values:
            return
        n = len(values)
        bounds = self.bounds
        if max(values) + shift <= bounds[0]:
            self.counts[0] += n
        else:
            values.sort()
            bucket = bisect_left(bounds, values[0] + shift)
            if bucket != bisect_left(bounds, values[-1] + shift):
                self.observe_sorted(values, shift)
                return
            self.counts[bucket] += n
        self.sum += sum(values) + shift * n

    def observe_sorted(self, values: list[float], shift: float = 0.0) -> None:
        """Count ``v + shift`` for each of ``values``, which must be sorted ascending.

        One ``bisect_right`` per bound instead of one per value: a bucket's count is where
        its bound (less the shift) falls in the sorted list.
        """
        n = len(values)
        if not n:
            return
        counts = self.counts
        below = 0
        for i, bound in enumerate(self.bounds):
            upto = bisect_right(values, bound - shift)
            if upto != below:
                counts[i] += upto - below
                below = upto
                if upto == n:
                    break
        if below != n:
            counts[-1] += n - below
        self.sum += sum(values) + shift * n

    def add(self, other: Histogram) -> None:
        """Add another histogram's counts (same bounds)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum

    def copy(self) -> Histogram:
        """A snapshot (safe to take from another thread)."""
        h = Histogram.__new__(Histogram)
        h.bounds, h.counts, h.sum = self.bounds, list(self.counts), self.sum
        return h


class JobTally:
    """One (type, queue): runs by outcome label, run durations, queue waits."""

    __slots__ = ("outcomes", "run", "wait")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.outcomes: dict[str, int] = {}
        self.run = Histogram(bounds)
        self.wait = Histogram(bounds)

    def add(self, other: JobTally) -> None:
        """Add another tally's counts (same bounds)."""
        for label, n in list(other.outcomes.items()):
            self.outcomes[label] = self.outcomes.get(label, 0) + n
        self.run.add(other.run.copy())
        self.wait.add(other.wait.copy())


class WorkerView(Protocol):
    """What the collector reads off a running worker when scraped (a :class:`~pgqueue.Worker`)."""

    @property
    def clock_offset(self) -> float:
        """Seconds from the worker's clock to the database's."""
        ...

    @property
    def running(self) -> int:
        """Jobs in their handlers now."""
        ...

    @property
    def held(self) -> int:
        """Jobs claimed and not finished (running or waiting for a runner)."""
        ...

    @property
    def results_buffered(self) -> int:
        """Finished runs waiting for a flush."""
        ...

    @property
    def listener_connects(self) -> int:
        """Successful LISTEN connects (1 plus reconnects)."""
        ...

    @property
    def claim_failures(self) -> int:
        """Claims that failed (and were retried)."""
        ...

    @property
    def flush_failures(self) -> int:
        """Flushes that failed (their results kept for the retry)."""
        ...

    @property
    def jobs_reaped(self) -> int:
        """Runs of dead workers this worker's reaper ended and freed."""
        ...


class Tally:
    """Counts of one worker run, written by its fetcher and flusher on the worker's loop."""

    def __init__(self, worker: WorkerView, time_buckets: Sequence[float] = TIME_BUCKETS) -> None:
        self.worker = worker
        self.time_buckets = tuple(time_buckets)
        self.jobs: dict[Key, JobTally] = {}
        """Per (type, queue) of the runs this worker flushed."""
        self.claims = Histogram(BATCH_BUCKETS)
        self.flush_sizes = Histogram(BATCH_BUCKETS)
        self.flush_seconds = Histogram(FLUSH_BUCKETS)

    def claimed(self, n: int) -> None:
        """One claim returned ``n`` jobs (the fetcher's call, once per claim)."""
        self.claims.observe(n)

    def flushed(self, items: Sequence[RunResult], seconds: float) -> None:
        """Fold one written flush into the counts (the flusher's call, once per flush).

        Per job: two string comparisons, two appends and one identity test; everything else
        happens per (type, queue). A run's queue wait is from when it was due (the claimed row's
        ``run_at``, on the database's clock) to when its runner started it (this worker's
        clock, moved onto the database's by the clock offset).
        """
        self.flush_sizes.observe(len(items))
        self.flush_seconds.observe(seconds)
        groups: _Groups = {}
        odd: list[tuple[Key, str]] = []
        type_i, queue_i, due_i, succeeded = ROW_TYPE, ROW_QUEUE, ROW_RUN_AT, _SUCCEEDED
        last_type = last_queue = None
        key: Key = ("", "")
        runs: list[float] = []
        waits: list[float] = []
        for job, outcome, started, finished, error, _result, retry, _inc, _lines in items:
            row = job._row  # noqa: SLF001 - the property call would be a third of this loop's cost
            type_, queue = row[type_i], row[queue_i]
            # A flush is mostly one type: compare strings with the last job's rather than
            # build a key tuple per job (an allocation the garbage collector counts).
            if type_ != last_type or queue != last_queue:
                last_type, last_queue, key = type_, queue, (type_, queue)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = ([], [])
                runs, waits = group
            runs.append(finished - started)
            waits.append(started - row[due_i])
            if outcome is not succeeded or error is not None:
                odd.append((key, outcome_label(outcome, error, retry is None)))
        self._fold(groups, odd)

    def _fold(self, groups: _Groups, odd: list[tuple[Key, str]]) -> None:
        others: dict[Key, dict[str, int]] = {}
        for key, label in odd:
            labels = others.setdefault(key, {})
            labels[label] = labels.get(label, 0) + 1
        offset = self.worker.clock_offset
        jobs = self.jobs
        for key, (runs, waits) in groups.items():
            tally = jobs.get(key)
            if tally is None:
                tally = jobs[key] = JobTally(self.time_buckets)
            tally.run.observe_many(runs)
            tally.wait.observe_many(waits, offset)
            # Every count only grows, also as seen from a scrape in the middle of this loop.
            outcomes = tally.outcomes
            unusual = others.get(key, {})
            ok = len(runs) - sum(unusual.values())
            if ok:
                outcomes["succeeded"] = outcomes.get("succeeded", 0) + ok
            for label, n in unusual.items():
                outcomes[label] = outcomes.get(label, 0) + n
