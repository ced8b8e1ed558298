"""schedule() and schedule_many(): ids, params, priority order, delays, bad input, typed params."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid
from collections.abc import Awaitable, Callable

import pydantic
import pytest

from pgqueue import (
    ConfigError,
    Job,
    JobId,
    JobState,
    ParamsEncodeError,
    ParamsValidationError,
    Scheduler,
    UnknownJobTypeError,
)
from tests._support import Counter, running, wait
from tests.contract._helpers import ended, nothing_stored, noting


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Email(pydantic.BaseModel):
    to: str
    subject: str = "hello"
    retries: int = 0


async def test_schedule_returns_new_ids_and_params_round_trip(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("noop", lambda job: None)
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    values: list[tuple[object, object]] = [
        ({"a": [1, 2.5, None, True], "b": {"c": "ü"}}, {"a": [1, 2.5, None, True], "b": {"c": "ü"}}),
        ([1, "x"], [1, "x"]),
        ("text", "text"),
        (7, 7),
        (1.5, 1.5),
        (None, None),
        (Point(1, 2), {"x": 1, "y": 2}),
        ({"id": uuid.UUID(int=1)}, {"id": "00000000-0000-0000-0000-000000000001"}),
        ({"when": when}, {"when": "2030-01-02T03:04:05+00:00"}),
    ]
    ids: list[JobId] = [await s.schedule("noop", value) for value, _ in values]
    assert all(isinstance(i, int) and i.inserted for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # newer jobs have higher ids: list_jobs' newest first rests on it
    for job_id, (_, expected) in zip(ids, values, strict=True):
        assert (await s.get_job(job_id)).params == expected


async def test_a_pending_job_s_record(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None, queue="q0")
    job_id = await s.schedule("t", {"a": [1, 2]}, priority=-3, queue="q1")
    plain = await s.schedule("t")
    record = await s.get_job(job_id)
    assert (record.id, record.type, record.queue, record.params, record.priority) == (
        job_id,
        "t",
        "q1",
        {"a": [1, 2]},
        -3,
    )
    assert record.state is JobState.PENDING
    assert (record.attempts, record.errors, record.last_error, record.runs) == (0, 0, None, ())
    assert (record.started_at, record.finished_at, record.result) == (None, None, None)
    assert (record.progress, record.progress_message, record.checkpoint) == (None, None, None)
    assert (record.depends_on, record.dependents, record.suspend_requested) == ((), (), False)
    assert record.inserted_at.tzinfo is not None
    assert record.run_at >= record.inserted_at
    other = await s.get_job(plain)
    assert (other.queue, other.priority, other.params) == ("q0", 0, None)  # the type's queue
    lowest, highest = await s.schedule("t", priority=-32768), await s.schedule("t", priority=32767)
    assert [(await s.get_job(i)).priority for i in (lowest, highest)] == [-32768, 32767]


async def test_options_after_a_call_with_the_defaults_are_still_checked_and_kept(
    backend_scheduler: Scheduler,
) -> None:
    # A call with every option at its default reuses what the first such call checked:
    # a later call's own options must not be lost to it.
    s = backend_scheduler
    s.register("t", lambda job: None, queue="q0")
    plain = await s.schedule("t")
    moved = await s.schedule("t", queue="q1", priority=5)
    with pytest.raises(ConfigError, match="priority"):
        await s.schedule("t", priority=False)
    with pytest.raises(ConfigError, match="timeout"):
        await s.schedule("t", timeout=-1.0)
    delayed = await s.schedule("t", run_at=dt.timedelta(hours=1))
    again = await s.schedule("t")
    records = {i: await s.get_job(i) for i in (plain, moved, delayed, again)}
    assert [(r.queue, r.priority, r.state) for r in records.values()] == [
        ("q0", 0, JobState.PENDING),
        ("q1", 5, JobState.PENDING),
        ("q0", 0, JobState.SCHEDULED),
        ("q0", 0, JobState.PENDING),
    ]


async def test_a_delayed_job_is_scheduled_until_its_time(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    later = await s.schedule("t", run_at=dt.timedelta(hours=1))
    record = await s.get_job(later)
    assert record.state is JobState.SCHEDULED
    assert not record.state.finished
    assert record.run_at - record.inserted_at == dt.timedelta(hours=1)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    absolute = await s.get_job(await s.schedule("t", run_at=at))
    assert (absolute.state, absolute.run_at) == (JobState.SCHEDULED, at)
    past = await s.schedule("t", run_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert (await s.get_job(past)).state is JobState.PENDING  # due already
    many = await s.schedule_many("t", [1, 2], run_at=dt.timedelta(minutes=5))
    assert [(await s.get_job(i)).state for i in many] == [JobState.SCHEDULED] * 2
    assert await s.queue_depth() == 1


async def test_schedule_many_returns_ids_in_input_order_across_chunks(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    ids = await s.schedule_many("t", [{"i": i} for i in range(25)], chunk_size=10, priority=2, queue="bulk")
    assert len(set(ids)) == 25
    assert ids == sorted(ids)
    records = [await s.get_job(i) for i in ids]
    assert [r.params for r in records] == [{"i": i} for i in range(25)]
    assert {(r.queue, r.priority, r.state) for r in records} == {("bulk", 2, JobState.PENDING)}
    assert await s.schedule_many("t", []) == []
    assert await s.queue_depth("bulk") == 25


async def test_jobs_are_claimed_in_priority_then_due_time_order(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    order = Counter(8)
    s.register("rec", noting(order))
    await s.schedule("rec", 1, priority=5)
    await s.schedule("rec", 2, priority=0)
    await s.schedule("rec", 3, priority=-1)
    await s.schedule("rec", 4, priority=0)
    await s.schedule("rec", 5, priority=-1, run_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    await s.schedule_many("rec", [6, 7], priority=-10)
    await s.schedule("rec", 8, priority=-10, run_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    async with running(s.worker(concurrency=1, prefetch=1, poll_interval=3600)):
        await wait(order.done)
    # -10 first (the one due a minute ago before the two due now), then -1 likewise, then 0, then 5.
    assert order.calls == [8, 6, 7, 5, 3, 2, 4, 1]


async def test_a_claimed_batch_runs_in_priority_order(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    order = Counter(10)
    s.register("rec", noting(order))
    await s.schedule_many("rec", range(5), priority=5)
    await s.schedule_many("rec", range(5, 10), priority=-5)
    async with running(s.worker(concurrency=1, prefetch=10, poll_interval=3600)):
        await wait(order.done)
    assert order.calls == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]


_BAD: list[tuple[Callable[[Scheduler], Awaitable[object]], type[Exception], str]] = [
    (lambda s: s.schedule("nope"), UnknownJobTypeError, "unknown job type 'nope'"),
    (lambda s: s.schedule_many("nope", [1]), UnknownJobTypeError, "unknown job type"),
    (lambda s: s.schedule("noop", object()), ParamsEncodeError, "cannot be encoded as JSON"),
    (lambda s: s.schedule("noop", {"x": math.nan}), ParamsEncodeError, r"nan at \['x'\]"),
    (lambda s: s.schedule("noop", [1, [math.inf]]), ParamsEncodeError, r"inf at \[1\]\[0\]"),
    (lambda s: s.schedule("noop", {1j: 2}), ParamsEncodeError, "cannot be encoded"),
    (lambda s: s.schedule_many("noop", [1, object(), 3]), ParamsEncodeError, r"params\[1\]"),
    (lambda s: s.schedule_many("noop", [{"a": 1}, {"b": -math.inf}]), ParamsEncodeError, r"params\[1\]"),
    (lambda s: s.schedule("noop", run_at=dt.datetime(2030, 1, 1)), ConfigError, "timezone-aware"),  # noqa: DTZ001
    (lambda s: s.schedule("noop", run_at="tomorrow"), ConfigError, "run_at"),  # type: ignore[arg-type]
    (lambda s: s.schedule_many("noop", [1], run_at=dt.datetime(2030, 1, 1)), ConfigError, "timezone"),  # noqa: DTZ001
    (lambda s: s.schedule("noop", priority=40000), ConfigError, "priority"),
    (lambda s: s.schedule("noop", priority=1.5), ConfigError, "priority"),  # type: ignore[arg-type]
    (lambda s: s.schedule_many("noop", [1], priority=-40000), ConfigError, "priority"),
    (lambda s: s.schedule("noop", queue=""), ConfigError, "queue"),
    (lambda s: s.schedule("noop", queue="a\x00b"), ConfigError, "queue"),
    (lambda s: s.schedule_many("noop", [1], queue=""), ConfigError, "queue"),
    (lambda s: s.schedule_many("noop", {"a": 1}), ConfigError, "iterable of params"),
    (lambda s: s.schedule_many("noop", [1], chunk_size=0), ConfigError, "chunk_size"),
    (lambda s: s.schedule("noop", unique_key=""), ConfigError, "unique_key"),
]


@pytest.mark.parametrize(("call", "error", "message"), _BAD, ids=[f"bad{i}" for i in range(len(_BAD))])
async def test_bad_input_raises_and_writes_nothing(
    backend_scheduler: Scheduler,
    call: Callable[[Scheduler], Awaitable[object]],
    error: type[Exception],
    message: str,
) -> None:
    s = backend_scheduler
    s.register("noop", lambda job: None, queue="q1")
    with pytest.raises(error, match=message):
        await call(s)
    assert await nothing_stored(s)


async def test_boundary_errors_are_the_builtin_kinds(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("noop", lambda job: None)
    with pytest.raises(ValueError, match="unknown job type"):
        await s.schedule("nope")
    with pytest.raises(TypeError):
        await s.schedule("noop", {"x": object()})
    with pytest.raises(ValueError, match="priority"):
        await s.schedule("noop", priority=10**6)
    assert await nothing_stored(s)


async def test_typed_params_are_validated_when_scheduled_and_the_handler_gets_the_model(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    got = Counter(2)

    @s.job("send", params=Email)
    async def send(job: Job) -> str:
        got.hit(job.params)
        assert isinstance(job.params, Email)
        return job.params.to

    first = await s.schedule("send", {"to": "ada@example.com", "retries": "2"})
    second = await s.schedule("send", Email(to="bob@example.com", subject="hi"))
    # The validated form is what is stored: defaults filled in, "2" made an int.
    assert (await s.get_job(first)).params == {"to": "ada@example.com", "subject": "hello", "retries": 2}
    assert (await s.get_job(second)).params == {"to": "bob@example.com", "subject": "hi", "retries": 0}
    async with running(s.worker(poll_interval=3600)):
        await wait(got.done)
        done = await ended(s, first, second)
    assert sorted(p.to for p in got.calls) == ["ada@example.com", "bob@example.com"]
    assert [r.result for r in done] == ["ada@example.com", "bob@example.com"]


async def test_typed_params_the_model_refuses_write_nothing(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("send", lambda job: None, params=Email)
    with pytest.raises(ParamsValidationError, match="to: Field required") as info:
        await s.schedule("send", {"subject": "no recipient"})
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, pydantic.ValidationError)
    with pytest.raises(ParamsValidationError, match="retries"):
        await s.schedule("send", {"to": "x", "retries": "many"})
    with pytest.raises(ParamsValidationError, match="params for job type 'send'"):
        await s.schedule_many("send", [{"to": "a"}, {"subject": "b"}])
    assert await nothing_stored(s)
    ok = await s.schedule_many("send", [{"to": "a"}, Email(to="b")])
    assert [(await s.get_job(i)).params["to"] for i in ok] == ["a", "b"]
