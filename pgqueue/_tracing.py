"""What the Scheduler asks of a tracer: a span around scheduling, a wrapper around runs.

A Protocol, so the Scheduler never imports OpenTelemetry: :mod:`pgqueue.otel` is the
implementation (the ``pgqueue[otel]`` extra), and a Scheduler without ``tracing=`` pays
one ``is None`` test per schedule() call and nothing per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from ._models import JobHandler

__all__ = ["ScheduleSpan", "Tracing"]


class ScheduleSpan(Protocol):
    """The span of one schedule() or schedule_many() call, open around its insert."""

    @property
    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` stored with the jobs; None: nothing to carry."""
        ...

    def scheduled(self, job_ids: Sequence[int]) -> None:
        """Note the ids the insert returned."""
        ...


class Tracing(Protocol):
    """Spans for a Scheduler's schedule calls and for the runs of its job types."""

    def scheduling(self, type_: str, queue: str) -> AbstractContextManager[ScheduleSpan]:
        """Open the span of one call; an exception leaving it marks the span failed."""
        ...

    def wrap(self, type_: str, handler: JobHandler) -> JobHandler:
        """The handler run inside a span that continues ``job.trace_context``.

        Async stays async and a plain function stays plain (the worker runs it in a thread).
        """
        ...
