"""OpenTelemetry spans for scheduling and running jobs (the ``pgqueue[otel]`` extra).

::

    from pgqueue.otel import OpenTelemetry

    scheduler = Scheduler(dsn, tracing=OpenTelemetry())   # before registering job types

- ``schedule()`` and ``schedule_many()`` open a PRODUCER span, ``pgqueue schedule <type>``,
  around their insert. Its W3C ``traceparent`` is stored with each job (the
  ``trace_context`` column: one short text per job, NULL when the scheduler does not
  trace), and the span gets the ids as ``pgqueue.job.id`` (or ``pgqueue.job.count``).
- Each run of a type registered on that scheduler runs inside a CONSUMER span,
  ``pgqueue run <type>``, whose parent is the scheduling span: one trace from the request
  that scheduled the job to the handler that ran it, however long the job waited and
  whichever process ran it. A job scheduled without tracing starts a trace of its own.
  Attributes: ``messaging.system`` (``pgqueue``), ``messaging.destination.name`` (the
  queue), ``pgqueue.job.type``, ``pgqueue.job.id`` and ``pgqueue.job.attempt``.
- A handler's exception sets the span's status to ERROR and is recorded as an event.
  ``Cancel``, ``Skip``, ``Snooze`` and ``Suspended`` are decisions, not errors: the span
  keeps an unset status and says which in ``pgqueue.verdict``. A timeout or a cancel
  that interrupts the handler records the interruption the same way as an error.

Only ``opentelemetry-api`` is needed here; the application sets up the SDK (a
``TracerProvider`` with its exporters), or passes ``tracer_provider=``. Without an SDK the
spans are non-recording and cost a few microseconds per call.

Wrapping happens at registration: a type registered before ``tracing=`` was given (there
is no such order with the constructor argument) would run untraced. A job put back and
run again keeps the context it was scheduled with; ``retry()`` rebuilds a job from its run
log, which does not keep it, so a retried job starts a new trace.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import cast

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._models import Job, JobHandler
from ._tracing import ScheduleSpan
from ._verdicts import Verdict

__all__ = ["OpenTelemetry"]

_PROPAGATOR = TraceContextTextMapPropagator()
SYSTEM = "pgqueue"


class _Scheduling:
    """One schedule call's span, as the Scheduler sees it."""

    __slots__ = ("_span", "traceparent")

    def __init__(self, span: Span, traceparent: str | None) -> None:
        self._span = span
        self.traceparent = traceparent

    def scheduled(self, job_ids: Sequence[int]) -> None:
        if len(job_ids) == 1:
            self._span.set_attribute("pgqueue.job.id", int(job_ids[0]))
        else:
            self._span.set_attribute("pgqueue.job.count", len(job_ids))


class OpenTelemetry:
    """The :class:`~pgqueue._tracing.Tracing` of a Scheduler, on OpenTelemetry's API."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer: Tracer = trace.get_tracer("pgqueue", tracer_provider=tracer_provider)

    def scheduling(self, type_: str, queue: str) -> AbstractContextManager[ScheduleSpan]:
        """The PRODUCER span around one schedule call; its traceparent goes with the jobs."""
        return self._scheduling(type_, queue)

    @contextmanager
    def _scheduling(self, type_: str, queue: str) -> Iterator[ScheduleSpan]:
        with self._tracer.start_as_current_span(
            f"pgqueue schedule {type_}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": queue,
                "pgqueue.job.type": type_,
            },
        ) as span:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            yield _Scheduling(span, carrier.get("traceparent"))

    def wrap(self, type_: str, handler: JobHandler) -> JobHandler:
        """The handler inside a CONSUMER span that continues the job's scheduling trace."""
        if inspect.iscoroutinefunction(handler):
            run_async = cast("Callable[[Job], Awaitable[object]]", handler)

            @functools.wraps(handler)
            async def traced_async(job: Job) -> object:
                with self._running(type_, job) as span:
                    try:
                        return await run_async(job)
                    except BaseException as exc:
                        _record(span, exc)
                        raise

            return traced_async

        @functools.wraps(handler)
        def traced(job: Job) -> object:
            with self._running(type_, job) as span:
                try:
                    return handler(job)
                except BaseException as exc:
                    _record(span, exc)
                    raise

        return traced

    def _running(self, type_: str, job: Job) -> AbstractContextManager[Span]:
        parent = job.trace_context
        context = None if parent is None else _PROPAGATOR.extract({"traceparent": parent})
        return self._tracer.start_as_current_span(
            f"pgqueue run {type_}",
            context=context,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": job.queue,
                "pgqueue.job.type": type_,
                "pgqueue.job.id": job.id,
                "pgqueue.job.attempt": job.attempt,
            },
            record_exception=False,  # _record() decides: a verdict is not an error
            set_status_on_exception=False,
        )


def _record(span: Span, exc: BaseException) -> None:
    """A verdict names itself; anything else (an error, an interruption) marks the span failed."""
    if isinstance(exc, Verdict):
        span.set_attribute("pgqueue.verdict", type(exc).__name__)
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
