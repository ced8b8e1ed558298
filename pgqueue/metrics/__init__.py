"""Prometheus metrics of workers and schedulers (``pip install 'pgqueue[metrics]'``).

::

    from pgqueue.metrics import Metrics

    metrics = Metrics()                         # registers in prometheus_client.REGISTRY
    scheduler = Scheduler(dsn, metrics=metrics) # counts scheduled jobs; its workers record too
    worker = scheduler.worker(metrics=metrics)  # or give it to one worker only
    server = await metrics.serve(9100)          # /metrics on this event loop; await server.close()

or ``pgqueue worker app:scheduler --metrics-port 9100 [--metrics-host 127.0.0.1]``, which
serves the same way. An ASGI application mounts ``metrics.asgi_app()`` instead
(``app.mount("/metrics", metrics.asgi_app())``), and ``metrics.start_http_server(9100)``
is prometheus-client's server thread, for a process with no loop to serve from (a thread
costs the worker more at high scrape rates: see ``_serve.py``). ``import pgqueue`` never
imports prometheus-client; only this module does.

Metrics (name, type, labels: meaning):

- ``pgqueue_jobs_scheduled_total``, counter, type and queue: jobs this process scheduled
  (``schedule()`` counts a job it inserted, not one a ``unique_key`` found;
  ``schedule_many()`` counts each chunk it wrote). Counted when the call returns, so a
  caller's transaction (``conn=``) that rolls back later is still counted.
- ``pgqueue_jobs_finished_total``, counter, type, queue and outcome: runs this process's
  workers finished and wrote. ``outcome`` is the run's stored outcome, except that a failed
  or timed-out run put back for another attempt is ``retried``, and a run that raised
  ``Skip`` is ``skipped``: ``succeeded``, ``skipped``, ``failed``, ``timeout``, ``retried``,
  ``cancelled`` (by ``cancel()`` or the handler), ``interrupted`` (a shutdown's grace ran
  out or the lease was lost; put back), ``snoozed``, ``suspended``. Runs are counted once
  their flush is written, so the counts lag the handlers by one flush (20 ms by default).
- ``pgqueue_job_run_duration_seconds``, histogram, type and queue: from the run's start
  to its end, as the worker measured them.
- ``pgqueue_job_queue_wait_seconds``, histogram, type and queue: from when the run was
  due (its ``run_at``; for a retry, when the retry was due) to its start, on the
  database's clock.
- ``pgqueue_jobs_running``, gauge: jobs in their handlers now.
- ``pgqueue_jobs_held``, gauge: jobs claimed and not finished (running, or claimed ahead
  and waiting for a runner).
- ``pgqueue_claim_batch_size``, histogram: jobs per claim statement (0: it found none).
- ``pgqueue_flush_batch_size``, histogram: runs written per flush.
- ``pgqueue_flush_duration_seconds``, histogram: seconds one flush took to write.
- ``pgqueue_result_buffer_size``, gauge: finished runs waiting for a flush (runners
  wait when it passes the worker's ``buffer_max``).
- ``pgqueue_listener_reconnects_total``, counter: LISTEN connections re-established
  after a loss.
- ``pgqueue_claim_failures_total``, ``pgqueue_flush_failures_total``, counters: claims and
  flushes that failed and were retried (an outage, usually).
- ``pgqueue_jobs_reaped_total``, counter: runs of dead workers that this process's
  workers ended (as ``crashed``, or ``timeout`` past their deadline) and put back. Not by
  type: the reaping statement returns a count.
- ``pgqueue_queue_depth``, gauge, queue: pending jobs (due now, not claimed) in every
  queue of the schema, from one query (the one behind ``Scheduler.stats()``) run at most
  once per ``depth_ttl`` seconds on a worker's loop. Absent while no worker runs or after
  a failed query: the scrape still answers. Every worker process reports the same
  schema-wide value: aggregate it with ``max``, not ``sum``.

Cost: nothing per job outside the flush. The fetcher reports each claim's size, the
flusher folds each written flush into plain counters in one loop (``pgqueue.worker.tally``),
and everything else (gauges, sums over workers, the depth query) is read when scraped.
No database read or write per job. A worker without metrics builds none of this. The
benchmark's ``metrics`` phase measures the drain with metrics off, on, and scraped 20
times a second (``pgqueue bench --phases metrics``).

Labels are the job type and the queue: both are registered names, so their number is
bounded by the application, and a type usually has one queue. Both histograms carry both
labels: run time depends on the type, queue wait on the queue and on the type's priority,
and the flush finds each run's (type, queue) once for the counter anyway, so the second
label costs nothing per job. What it costs is per scrape: each (type, queue) pair adds
some 40 samples.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from prometheus_client.registry import REGISTRY, CollectorRegistry

from pgqueue._errors import ConfigError
from pgqueue.worker.tally import TIME_BUCKETS, Tally, WorkerView

from ._collect import Collector, Snapshot, Totals
from ._depth import Depth, StatsSource
from ._serve import ASGIApp, LoopServer, MetricsServer, asgi_app

__all__ = ["TIME_BUCKETS", "ASGIApp", "LoopServer", "Metrics", "MetricsServer"]

DEPTH_TTL_S = 1.0  # a queue-depth value is reused this long: a 20/s scrape loop costs 1 query/s
DEPTH_TIMEOUT_S = 2.0  # a scrape waits this long for the depth query, then goes without it


class Metrics:
    """The metrics of this process's schedulers and workers, in one prometheus-client registry.

    Give it to ``Scheduler(metrics=)`` (scheduled jobs; the scheduler's workers get it
    too) and/or ``scheduler.worker(metrics=)``. Several workers may share it: counts are
    summed. ``registry``: where its collector is registered (default prometheus-client's
    global ``REGISTRY``, which ``start_http_server`` and ``make_asgi_app`` serve by
    default). ``time_buckets``: the upper bounds in seconds of the run-duration and
    queue-wait histograms. ``depth_ttl``: seconds a queue-depth reading is reused;
    ``depth_timeout``: seconds a scrape waits for a new one.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        time_buckets: Sequence[float] = TIME_BUCKETS,
        depth_ttl: float = DEPTH_TTL_S,
        depth_timeout: float = DEPTH_TIMEOUT_S,
    ) -> None:
        bounds = tuple(float(b) for b in time_buckets)
        if not bounds or any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise ConfigError(f"time_buckets must be finite, increasing numbers, got {time_buckets!r}")
        for name, value in (("depth_ttl", depth_ttl), ("depth_timeout", depth_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        self.registry = REGISTRY if registry is None else registry
        self.time_buckets = bounds
        self.depth = Depth(ttl=float(depth_ttl), timeout=float(depth_timeout))
        """The cached queue-depth reading (``depth.queries`` counts the queries sent)."""
        self._lock = threading.Lock()  # the scheduled counts, and the set of workers vs a scrape
        self._scheduled: dict[tuple[str, str], int] = {}
        self._live: list[Tally] = []
        self._stopped = Totals(bounds)
        self._collector = Collector(self.snapshot)
        self.registry.register(self._collector)

    # -- what schedulers and workers call ---------------------------------------------------

    def scheduled(self, type_: str, queue: str, n: int) -> None:
        """Count ``n`` jobs scheduled (the scheduler's call, once per schedule or chunk)."""
        key = (type_, queue)
        with self._lock:
            self._scheduled[key] = self._scheduled.get(key, 0) + n

    def attach(self, worker: WorkerView, store: object, queues: Sequence[str]) -> Tally:
        """Start recording a worker (its own call, on its event loop); returns what it writes to.

        The worker's store becomes the source of the queue-depth gauge, queried on this loop.
        """
        tally = Tally(worker, self.time_buckets)
        with self._lock:
            self._live.append(tally)
        if isinstance(store, StatsSource):
            self.depth.set_source(tally, store, queues)
        return tally

    def detach(self, tally: Tally) -> None:
        """The worker stopped: keep its counts, stop reading its gauges."""
        with self._lock:
            if tally in self._live:
                self._live.remove(tally)
                self._stopped.add_worker(tally)
        self.depth.clear_source(tally)

    # -- what a scrape calls ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Everything a scrape reports, summed over workers (the collector's call).

        May run on any thread; never blocks the worker's loop (see :class:`Depth`).
        """
        depth = self.depth.for_scrape()
        totals = Totals(self.time_buckets)
        with self._lock:  # a worker stopping now is counted either live or stopped, not both
            totals.add(self._stopped)
            live = list(self._live)
            for tally in live:
                totals.add_worker(tally)
            scheduled = dict(self._scheduled)
        w = [t.worker for t in live]
        return Snapshot(
            totals=totals,
            scheduled=scheduled,
            running=sum(v.running for v in w),
            held=sum(v.held for v in w),
            results_buffered=sum(v.results_buffered for v in w),
            depth=depth,
        )

    async def refresh(self) -> None:
        """Bring the queue-depth reading up to date (a no-op while it is fresh); never raises.

        Await it before rendering the registry from a coroutine (the ASGI app does); a
        synchronous scrape on the worker's own loop cannot wait for the query.
        """
        await self.depth.refresh()

    # -- serving ----------------------------------------------------------------------------

    def asgi_app(self) -> ASGIApp:
        """An ASGI app serving this registry, which refreshes the queue depth first.

        Mount it in the application's ASGI app (``app.mount("/metrics", metrics.asgi_app())``).
        """
        return asgi_app(self.registry, self.refresh)

    async def serve(self, port: int, host: str = "127.0.0.1") -> LoopServer:
        """Serve this registry over HTTP on the running event loop (port 0: any free port).

        Run it on the loop the worker runs on: each scrape refreshes the queue depth there
        first. ``await server.close()`` to stop. Binding errors (a port in use) raise
        ``OSError``.
        """
        server = LoopServer(self.registry, self.refresh)
        await server.start(port, host)
        return server

    def start_http_server(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve this registry over HTTP from prometheus-client's daemon thread (port 0: any).

        For a process whose event loop is not at hand; the thread hands the queue-depth
        query to the worker's loop and waits for it. ``close()`` the server to stop.
        Binding errors (a port in use) raise ``OSError``.
        """
        return MetricsServer(self.registry, port, host)

    def close(self) -> None:
        """Unregister from the registry (another Metrics may then register there)."""
        self.registry.unregister(self._collector)
