"""The collector: prometheus-client metric families built from plain numbers when scraped.

:class:`Totals` sums what the workers counted (live ones read now, stopped ones folded in
when they stopped); :class:`Collector` turns one snapshot into families. Nothing here runs
on a job's path: all of it runs per scrape.

One walk over a snapshot (:func:`_emit`) feeds either of two writers: :class:`_Families`
builds prometheus-client's ``Metric`` and ``Sample`` objects (what ``generate_latest``,
the ASGI app and ``get_sample_value`` read), and :class:`_Lines` writes the text format
directly, for :func:`~pgqueue.metrics._text.render` (the loop server's scrape): about 80
samples' objects built and then formatted one label at a time are most of a scrape's
cost. A test checks that both give the same bytes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from pgqueue.worker.tally import BATCH_BUCKETS, FLUSH_BUCKETS, Histogram, JobTally, Tally

from ._text import PREWRITTEN, Prewritten, go_float

__all__ = ["Collector", "Snapshot", "Totals"]


class Totals:
    """Counts summed over workers: the stopped ones' (kept), or a snapshot of all."""

    def __init__(self, time_buckets: Sequence[float]) -> None:
        self.time_buckets = tuple(time_buckets)
        self.jobs: dict[tuple[str, str], JobTally] = {}
        self.claims = Histogram(BATCH_BUCKETS)
        self.flush_sizes = Histogram(BATCH_BUCKETS)
        self.flush_seconds = Histogram(FLUSH_BUCKETS)
        self.reconnects = 0
        self.claim_failures = 0
        self.flush_failures = 0
        self.reaped = 0

    def add(self, other: Totals) -> None:
        """Add another total."""
        self._add_jobs(other.jobs)
        self.claims.add(other.claims.copy())
        self.flush_sizes.add(other.flush_sizes.copy())
        self.flush_seconds.add(other.flush_seconds.copy())
        self.reconnects += other.reconnects
        self.claim_failures += other.claim_failures
        self.flush_failures += other.flush_failures
        self.reaped += other.reaped

    def add_worker(self, tally: Tally) -> None:
        """Add one worker's counts as they are now (its loop may still be writing them)."""
        self._add_jobs(tally.jobs)
        self.claims.add(tally.claims.copy())
        self.flush_sizes.add(tally.flush_sizes.copy())
        self.flush_seconds.add(tally.flush_seconds.copy())
        w = tally.worker
        self.reconnects += max(w.listener_connects - 1, 0)
        self.claim_failures += w.claim_failures
        self.flush_failures += w.flush_failures
        self.reaped += w.jobs_reaped

    def _add_jobs(self, jobs: dict[tuple[str, str], JobTally]) -> None:
        for key, tally in list(jobs.items()):  # a C-level copy: the writer may add keys meanwhile
            mine = self.jobs.get(key)
            if mine is None:
                mine = self.jobs[key] = JobTally(self.time_buckets)
            mine.add(tally)


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scrape reports."""

    totals: Totals
    scheduled: dict[tuple[str, str], int]
    running: int
    held: int
    results_buffered: int
    depth: dict[str, int] | None


class Collector:
    """A prometheus-client collector over a :class:`~pgqueue.metrics.Metrics`' numbers."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        """The families' names and types, without samples (registration reads them)."""
        families = _Families()
        _emit(None, families)
        return families.out

    def collect(self) -> Iterable[Metric]:
        """The families with their samples, from one snapshot (as text, for render())."""
        snap = self._snapshot()
        if PREWRITTEN.get():
            lines = _Lines()
            _emit(snap, lines)
            return [Prewritten("".join(lines.out))]
        families = _Families()
        _emit(snap, families)
        return families.out


Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name, as the text format orders them."""


class _Families:
    """Builds prometheus-client objects."""

    def __init__(self) -> None:
        self.out: list[Metric] = []

    def family(self, name: str, doc: str, kind: str) -> None:
        self.out.append(Metric(name, doc, kind))

    def sample(self, name: str, labels: Labels, value: float) -> None:
        self.out[-1].samples.append(Sample(name, dict(labels), value))

    def histogram(self, labels: Labels, h: Histogram) -> None:
        name = self.out[-1].name
        add = self.out[-1].samples.append
        base = dict(labels)
        total = 0
        for le, n in zip(_les(h.bounds), h.counts, strict=True):
            total += n
            add(Sample(f"{name}_bucket", {"le": le, **base}, total))
        add(Sample(f"{name}_count", base, total))
        add(Sample(f"{name}_sum", base, h.sum))


class _Lines:
    """Writes the text format (0.0.4) as ``generate_latest`` would write the same families."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._name = ""

    def family(self, name: str, doc: str, kind: str) -> None:
        self._name = name
        shown = f"{name}_total" if kind == "counter" else name
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        self.out.append(f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n")

    def sample(self, name: str, labels: Labels, value: float) -> None:
        text = _label_text(labels)
        self.out.append(f"{name}{{{text}}} {go_float(value)}\n" if text else f"{name} {go_float(value)}\n")

    def histogram(self, labels: Labels, h: Histogram) -> None:
        name, add = self._name, self.out.append
        text = _label_text(labels)
        rest = f",{text}}} " if text else "} "  # "le" sorts before "queue" and "type"
        total = 0
        for le, n in zip(_les(h.bounds), h.counts, strict=True):
            total += n
            add(f'{name}_bucket{{le="{le}"{rest}{go_float(total)}\n')
        braced = f"{{{text}}}" if text else ""
        add(f"{name}_count{braced} {go_float(total)}\n{name}_sum{braced} {go_float(h.sum)}\n")


def _label_text(labels: Labels) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels)


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class _Writer(Protocol):
    def family(self, name: str, doc: str, kind: str) -> None: ...
    def sample(self, name: str, labels: Labels, value: float) -> None: ...
    def histogram(self, labels: Labels, h: Histogram) -> None: ...


# Families without labels: (name, help, the Totals or Snapshot attribute that holds the value).
_HISTOGRAMS = (
    ("pgqueue_claim_batch_size", "Jobs per claim statement (0: it found none).", "claims"),
    ("pgqueue_flush_batch_size", "Runs written per flush.", "flush_sizes"),
    ("pgqueue_flush_duration_seconds", "Seconds one flush took to write.", "flush_seconds"),
)
_GAUGES = (
    ("pgqueue_jobs_running", "Jobs in their handlers now.", "running"),
    ("pgqueue_jobs_held", "Jobs claimed and not finished (running or waiting for a runner).", "held"),
    ("pgqueue_result_buffer_size", "Finished runs waiting for a flush.", "results_buffered"),
)
_COUNTERS = (
    ("pgqueue_listener_reconnects", "LISTEN connections re-established after a loss.", "reconnects"),
    ("pgqueue_claim_failures", "Claim statements that failed (retried with backoff).", "claim_failures"),
    ("pgqueue_flush_failures", "Flushes that failed (their results kept and retried).", "flush_failures"),
    ("pgqueue_jobs_reaped", "Runs of dead workers this process ended as crashed and put back.", "reaped"),
)


def _emit(snap: Snapshot | None, w: _Writer) -> None:
    """Every family, in a fixed order; with samples from ``snap`` (None: names only)."""
    _emit_jobs(snap, w)
    totals = None if snap is None else snap.totals
    for name, doc, attr in _HISTOGRAMS:
        w.family(name, doc, "histogram")
        if totals is not None:
            w.histogram((), getattr(totals, attr))
    for name, doc, attr in _GAUGES:
        w.family(name, doc, "gauge")
        if snap is not None:
            w.sample(name, (), getattr(snap, attr))
    for name, doc, attr in _COUNTERS:
        w.family(name, doc, "counter")
        if totals is not None:
            w.sample(f"{name}_total", (), getattr(totals, attr))
    w.family(
        "pgqueue_queue_depth", "Pending jobs (due, not claimed) per queue, from a cached query.", "gauge"
    )
    if snap is not None and snap.depth is not None:
        for queue, n in sorted(snap.depth.items()):
            w.sample("pgqueue_queue_depth", (("queue", queue),), n)


def _emit_jobs(snap: Snapshot | None, w: _Writer) -> None:
    """The families labelled by job type and queue."""
    w.family("pgqueue_jobs_scheduled", "Jobs this process scheduled (schedule, schedule_many).", "counter")
    if snap is not None:
        for (type_, queue), n in sorted(snap.scheduled.items()):
            w.sample("pgqueue_jobs_scheduled_total", (("queue", queue), ("type", type_)), n)
    jobs = [] if snap is None else sorted(snap.totals.jobs.items())
    w.family("pgqueue_jobs_finished", "Runs this process's workers finished and wrote.", "counter")
    for (type_, queue), tally in jobs:
        for outcome, n in sorted(tally.outcomes.items()):
            w.sample(
                "pgqueue_jobs_finished_total", (("outcome", outcome), ("queue", queue), ("type", type_)), n
            )
    w.family("pgqueue_job_run_duration_seconds", "Seconds from a run's start to its end.", "histogram")
    for (type_, queue), tally in jobs:
        w.histogram((("queue", queue), ("type", type_)), tally.run)
    w.family("pgqueue_job_queue_wait_seconds", "Seconds from when a run was due to its start.", "histogram")
    for (type_, queue), tally in jobs:
        w.histogram((("queue", queue), ("type", type_)), tally.wait)


@functools.cache
def _les(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The ``le`` labels of these bounds, as prometheus-client writes them, and +Inf."""
    return (*(go_float(b) for b in bounds), "+Inf")
