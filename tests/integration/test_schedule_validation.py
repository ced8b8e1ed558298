"""Bad input at the scheduling boundary: a clear error, and nothing written."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import asyncpg
import pydantic
import pytest

from pgqueue import ConfigError, ParamsEncodeError, Scheduler, UnknownJobTypeError
from tests._support import hot_count

pytestmark = pytest.mark.pg


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Email(pydantic.BaseModel):
    to: str
    when: dt.datetime


@pytest.fixture
def sched(scheduler: Scheduler) -> Scheduler:
    scheduler.register("noop", lambda job: None, queue="q1")
    return scheduler


async def test_accepted_params_round_trip(sched: Scheduler, db: asyncpg.Connection) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    values = [{"a": [1, 2.5, None, True]}, [1, "x"], "text", 7, 1.5, None, Point(1, 2),
              Email(to="a@b.c", when=when), {"id": uuid.UUID(int=1)}]  # fmt: skip
    for v in values:
        await sched.schedule("noop", v)
    stored = [r[0] for r in await db.fetch(f'SELECT params::text FROM "{sched.schema}".jobs ORDER BY id')]
    assert stored[0] == '{"a":[1,2.5,null,true]}'
    assert stored[5] is None or stored[5] == "null"
    assert stored[6] == '{"x":1,"y":2}'
    assert stored[7] == '{"to":"a@b.c","when":"2030-01-02T03:04:05Z"}'
    assert stored[8] == '{"id":"00000000-0000-0000-0000-000000000001"}'


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.schedule("nope"), UnknownJobTypeError, "unknown job type 'nope'"),
        (lambda s: s.schedule("noop", object()), ParamsEncodeError, "cannot be encoded as JSON"),
        (lambda s: s.schedule("noop", {1j: 2}), ParamsEncodeError, "cannot be encoded"),
        (lambda s: s.schedule("noop", run_at=dt.datetime(2030, 1, 1)), ConfigError, "timezone-aware"),  # noqa: DTZ001
        (lambda s: s.schedule("noop", run_at="tomorrow"), ConfigError, "run_at"),
        (lambda s: s.schedule("noop", priority=40000), ConfigError, "priority"),
        (lambda s: s.schedule("noop", priority=1.5), ConfigError, "priority"),
        (lambda s: s.schedule("noop", queue=""), ConfigError, "queue"),
        (lambda s: s.schedule("noop", queue="a\x00b"), ConfigError, "queue"),
        (lambda s: s.schedule_many("noop", [1, object(), 3]), ParamsEncodeError, r"params\[1\]"),
        (lambda s: s.schedule_many("noop", {"a": 1}), ConfigError, "iterable of params"),
        (lambda s: s.schedule_many("noop", [1], chunk_size=0), ConfigError, "chunk_size"),
        (lambda s: s.schedule_many("nope", [1]), UnknownJobTypeError, "unknown job type"),
    ],
)
async def test_bad_input_raises_and_writes_nothing(
    sched: Scheduler, db: asyncpg.Connection, call: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await call(sched)  # type: ignore[operator]
    assert await hot_count(db, sched.schema) == 0


async def test_schedule_many_returns_ids_in_order_across_chunks(
    sched: Scheduler, db: asyncpg.Connection
) -> None:
    ids = await sched.schedule_many("noop", [{"i": i} for i in range(25)], chunk_size=10)
    assert len(ids) == 25
    rows = await db.fetch(f'SELECT id, params::text AS p FROM "{sched.schema}".jobs')
    by_id = {r["id"]: r["p"] for r in rows}
    assert [by_id[i] for i in ids] == [f'{{"i":{i}}}' for i in range(25)]
    assert await sched.schedule_many("noop", []) == []


def test_constructor_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one of dsn=, pool= or backend="):
        Scheduler()
    with pytest.raises(ConfigError, match="schema"):
        Scheduler("postgresql://x", schema="")
    with pytest.raises(ConfigError, match="too long"):
        Scheduler("postgresql://x", schema="s" * 60)
    s = Scheduler("postgresql://x")
    s.register("a", lambda job: None)
    with pytest.raises(ConfigError, match="already registered"):
        s.register("a", lambda job: None)
    with pytest.raises(ConfigError, match="not callable"):
        s.register("b", "nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="string"):
        s.worker(queues="default")
    with pytest.raises(ConfigError, match="concurrency"):
        s.worker(concurrency=0)
    with pytest.raises(ConfigError, match="prefetch"):
        s.worker(concurrency=10, prefetch=5)
    with pytest.raises(ConfigError, match="no queues"):
        Scheduler("postgresql://x").worker()
