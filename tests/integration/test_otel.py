"""OpenTelemetry spans (pgqueue.otel): one trace from the scheduling call to the run.

The SDK's in-memory exporter collects the finished spans; the jobs run on a real worker
against the test server, so the trace context crosses the database as it does in use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pgqueue import Job, JobState, Scheduler, Skip
from pgqueue.otel import OpenTelemetry
from tests._support import drop_schema
from tests.contract._helpers import run_until_ended

pytestmark = pytest.mark.pg


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


@pytest.fixture
async def traced(dsn: str, schema_name: str, provider: TracerProvider) -> AsyncIterator[Scheduler]:
    s = Scheduler(dsn, schema=schema_name, tracing=OpenTelemetry(tracer_provider=provider))
    await s.migrate()

    async def ok(job: Job) -> str:
        return "done"

    def in_a_thread(job: Job) -> str:
        return "plain"

    async def boom(job: Job) -> None:
        raise ValueError("<no>")

    async def skip(job: Job) -> None:
        raise Skip("not today")

    s.register("ok", ok)
    s.register("plain", in_a_thread)
    s.register("boom", boom)
    s.register("skip", skip)
    async with s:
        yield s
    await drop_schema(dsn, schema_name)


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def test_the_run_continues_the_trace_of_the_call_that_scheduled_it(
    traced: Scheduler, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("POST /orders") as request:
        ok_id = await traced.schedule("ok", {"n": 1}, queue="q")
        plain_id = await traced.schedule("plain", None, queue="q")
    records = await run_until_ended(traced, ok_id, plain_id, queues=["q"])
    assert [r.state for r in records] == [JobState.SUCCEEDED] * 2

    spans = list(exporter.get_finished_spans())
    trace_id = request.get_span_context().trace_id
    for type_, job_id in (("ok", ok_id), ("plain", plain_id)):
        scheduled = _one(spans, f"pgqueue schedule {type_}")
        ran = _one(spans, f"pgqueue run {type_}")
        assert scheduled.kind is SpanKind.PRODUCER
        assert scheduled.parent is not None
        assert scheduled.parent.span_id == request.get_span_context().span_id
        assert scheduled.attributes is not None
        assert scheduled.attributes["pgqueue.job.id"] == job_id
        assert scheduled.attributes["messaging.destination.name"] == "q"
        assert ran.kind is SpanKind.CONSUMER
        assert ran.context is not None
        assert ran.context.trace_id == trace_id  # one trace, across the database
        assert ran.parent is not None
        assert scheduled.context is not None
        assert ran.parent.span_id == scheduled.context.span_id
        assert ran.attributes is not None
        assert (ran.attributes["pgqueue.job.id"], ran.attributes["pgqueue.job.attempt"]) == (job_id, 1)
        assert ran.status.status_code is StatusCode.UNSET


async def test_an_error_fails_the_span_and_a_verdict_does_not(
    traced: Scheduler, exporter: InMemorySpanExporter
) -> None:
    boom = await traced.schedule("boom", None)
    skip = await traced.schedule("skip", None)
    await run_until_ended(traced, boom, skip, queues=["default"])
    spans = list(exporter.get_finished_spans())
    failed = _one(spans, "pgqueue run boom")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: <no>"
    assert [e.name for e in failed.events] == ["exception"]
    skipped = _one(spans, "pgqueue run skip")
    assert skipped.status.status_code is StatusCode.UNSET
    assert skipped.attributes is not None
    assert skipped.attributes["pgqueue.verdict"] == "Skip"
    assert skipped.events == ()


async def test_schedule_many_is_one_span_that_every_run_continues(
    traced: Scheduler, exporter: InMemorySpanExporter
) -> None:
    ids = await traced.schedule_many("ok", [1, 2, 3])
    await run_until_ended(traced, *ids, queues=["default"])
    spans = list(exporter.get_finished_spans())
    scheduled = _one(spans, "pgqueue schedule ok")
    assert scheduled.attributes is not None
    assert scheduled.attributes["pgqueue.job.count"] == 3
    runs = [s for s in spans if s.name == "pgqueue run ok"]
    assert len(runs) == 3
    assert scheduled.context is not None
    assert {r.parent.span_id for r in runs if r.parent is not None} == {scheduled.context.span_id}


async def test_a_refused_schedule_fails_its_span_and_writes_nothing(
    traced: Scheduler, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(Exception, match="dependency 999"):
        await traced.schedule("ok", None, depends_on=[999])
    span = _one(list(exporter.get_finished_spans()), "pgqueue schedule ok")
    assert span.status.status_code is StatusCode.ERROR
    assert (await traced.list_jobs()).items == ()


async def test_without_tracing_nothing_is_stored(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    seen: list[str | None] = []

    async def note(job: Job) -> None:
        seen.append(job.trace_context)

    scheduler.register("note", note)
    job_id = await scheduler.schedule("note", None)
    stored = await db.fetchval(
        f'SELECT trace_context FROM "{scheduler.schema}".jobs WHERE id = $1',
        job_id,
    )
    assert stored is None
    await run_until_ended(scheduler, job_id, queues=["default"])
    assert seen == [None]


async def test_the_memory_backend_carries_the_context_too(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from pgqueue import testing

    s = Scheduler.in_memory(tracing=OpenTelemetry(tracer_provider=provider))

    async def ok(job: Job) -> None:
        return None

    s.register("ok", ok)
    await s.schedule("ok", None)
    await testing.drain(s)
    spans = list(exporter.get_finished_spans())
    scheduled = _one(spans, "pgqueue schedule ok")
    ran = _one(spans, "pgqueue run ok")
    assert scheduled.context is not None
    assert ran.parent is not None
    assert ran.parent.span_id == scheduled.context.span_id
