"""Global queue limits on PostgreSQL: the claim function under races, what the plain path
pays (nothing), slots freed by finished runs and by reaping, and limits that change while
workers run."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random

import anyio
import asyncpg
import pytest

from pgqueue import Job, Scheduler
from pgqueue.bench._drain import bench_drain
from pgqueue.bench._harness import Params
from pgqueue.bench._limits import bench_limits, limits_rows
from pgqueue.store.postgres import PostgresStore
from pgqueue.store.postgres.queries import QUERIES
from tests._support import Counter, pg_store, running, until, wait
from tests.contract._helpers import Hold, ended, noting
from tests.integration.test_bench import bench_dsn

pytestmark = pytest.mark.pg

__all__ = ["bench_dsn"]  # the fixture, for the bench phase's smoke test

Q = "limited"
# job_claim_many as queue limits leave it: they must not touch the plain claim.
PLAIN_CLAIM_SHA256 = "1dd3faecb4977d41ba53a93f8fdb773d1ee05c8cfc11b1c7976378fbe1b15cf3"
EMPTY_BTREE_BYTES = 8192  # a B-tree that never had an entry: its metapage alone


async def _jobs(db: asyncpg.Connection, schema: str, n: int, *, queue: str = Q, keys: int = 3) -> None:
    """``n`` pending jobs in ``queue`` whose params' field "c" cycles through ``keys`` values."""
    await db.execute(
        f"""INSERT INTO "{schema}".jobs (queue, type, params)
            SELECT $1, 't', json_build_object('c', 'k' || (g % $2)) FROM generate_series(1, $3) AS g""",
        queue,
        keys,
        n,
    )


async def _workers(store: PostgresStore, n: int) -> list[int]:
    return [(await store.worker_register([Q]))[0] for _ in range(n)]


async def _held(db: asyncpg.Connection, schema: str) -> int:
    return int(
        await db.fetchval(f'SELECT count(*) FROM "{schema}".jobs WHERE queue = $1 AND worker_id > 0', Q)
    )


def test_the_plain_claim_is_unchanged() -> None:
    assert hashlib.sha256(QUERIES.job_claim_many.encode()).hexdigest() == PLAIN_CLAIM_SHA256


async def test_a_plain_claim_puts_nothing_in_the_slot_index(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Jobs held by plain claims have slot = false: the partial index gets no entry (its size
    stays one metapage) while a limited claim's jobs do get one."""
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await _jobs(db, schema, 300, queue="plain")
    await _jobs(db, schema, 10)
    [wid] = await _workers(store, 1)
    size = f"SELECT pg_relation_size('\"{schema}\".jobs_slot_idx')"
    assert len(await store.job_claim_many(["plain"], 300, wid)) == 300
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".jobs WHERE slot') == 0
    assert await db.fetchval(size) == EMPTY_BTREE_BYTES
    await scheduler.set_queue_limit(Q, concurrency=5)
    assert len((await store.job_claim_limited(Q, 10, wid, [])).rows) == 5
    assert await db.fetchval(size) > EMPTY_BTREE_BYTES


async def test_a_plain_drain_leaves_no_slot_marks(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    done = Counter(200)
    scheduler.register("t", noting(done, lambda job: job.id))
    await scheduler.schedule_many("t", [{"i": i} for i in range(200)])
    async with running(scheduler.worker(concurrency=10, poll_interval=3600)):
        await wait(done.done)
    assert (
        await db.fetchval(f"SELECT pg_relation_size('\"{scheduler.schema}\".jobs_slot_idx')")
        == EMPTY_BTREE_BYTES
    )


async def test_racing_claims_never_exceed_the_limits(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """Eight workers claim at once, round after round, while jobs end at random: the queue
    never holds more than its limit, nor any key more than its per-key limit."""
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await _jobs(db, schema, 400)
    await scheduler.set_queue_limit(Q, concurrency=7, per_key=3, key="c")
    wids = await _workers(store, 8)
    rng = random.Random(14)
    most = 0
    for _ in range(25):
        claims = await asyncio.gather(*(store.job_claim_limited(Q, 4, wid, []) for wid in wids))
        per_key = await db.fetch(
            f'SELECT limit_key, count(*) AS n FROM "{schema}".jobs WHERE queue = $1 AND worker_id > 0'
            " GROUP BY limit_key",
            Q,
        )
        held = sum(r["n"] for r in per_key)
        assert held <= 7, claims
        assert max((r["n"] for r in per_key), default=0) <= 3, per_key
        most = max(most, held)
        ids = [r[0] for c in claims for r in c.rows]
        ended_ids = rng.sample(ids, k=len(ids) // 2 + 1) if ids else []
        await db.execute(f'DELETE FROM "{schema}".jobs WHERE id = ANY($1::bigint[])', ended_ids)
    assert most == 7


async def test_racing_claims_keep_the_rate(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await _jobs(db, schema, 100)
    await scheduler.set_queue_limit(Q, rate=(6, dt.timedelta(hours=1)))
    wids = await _workers(store, 8)
    claims = await asyncio.gather(*(store.job_claim_limited(Q, 3, wid, []) for wid in wids))
    assert sum(len(c.rows) for c in claims) == 6
    capped = [c for c in claims if c.capped]
    assert capped
    for c in capped:
        assert c.free_in is not None
        assert 3590 < c.free_in <= 3600  # the window frees its first start an hour after it
    assert await db.fetchval(f'SELECT sum(n) FROM "{schema}".queue_starts') == 6


async def test_finished_runs_free_their_slots_before_the_flush(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await _jobs(db, schema, 10)
    await scheduler.set_queue_limit(Q, concurrency=3)
    [wid, other] = await _workers(store, 2)
    first = await store.job_claim_limited(Q, 10, wid, [])
    assert (len(first.rows), first.capped) == (3, True)
    finished = first.rows[0]
    # Another worker's done runs, or a done run at another attempt, free nothing.
    assert (await store.job_claim_limited(Q, 10, other, [(finished[0], finished[5])])).rows == []
    assert (await store.job_claim_limited(Q, 10, wid, [(finished[0], finished[5] + 1)])).rows == []
    again = await store.job_claim_limited(Q, 10, wid, [(finished[0], finished[5])])
    assert (len(again.rows), again.capped) == (1, True)
    assert await _held(db, schema) == 4  # the finished run's row waits for its flush


async def test_a_reaped_worker_frees_its_slots(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await _jobs(db, schema, 10)
    await scheduler.set_queue_limit(Q, concurrency=3)
    [dead, alive] = await _workers(store, 2)
    assert len((await store.job_claim_limited(Q, 10, dead, [])).rows) == 3
    blocked = await store.job_claim_limited(Q, 10, alive, [])
    assert (blocked.rows, blocked.capped, blocked.free_in) == ([], True, None)
    await db.execute(
        f"UPDATE \"{schema}\".workers SET heartbeat = now() - interval '1 hour' WHERE id = $1", dead
    )
    assert await store.worker_reap(60, alive) == (3, 1)
    assert len((await store.job_claim_limited(Q, 10, alive, [])).rows) == 3


async def test_a_removed_limit_claims_as_the_plain_claim(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await _jobs(db, schema, 10)
    await scheduler.set_queue_limit(Q, concurrency=1, rate=(1, 3600))
    [wid] = await _workers(store, 1)
    assert len((await store.job_claim_limited(Q, 10, wid, [])).rows) == 1
    assert await scheduler.remove_queue_limit(Q)
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".queue_starts') == 0
    claim = await store.job_claim_limited(Q, 5, wid, [])
    assert (len(claim.rows), claim.capped) == (5, False)
    assert await db.fetchval(f'SELECT count(*) FROM "{schema}".jobs WHERE slot') == 1  # the first claim's


async def test_keys_are_read_from_params_as_text(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """A number and its string are one key; a job without the field, or with params that
    are not an object, has none and is not held back by the per-key limit."""
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await scheduler.set_queue_limit(Q, per_key=1, key="c")
    for params in ('{"c": 7}', '{"c": "7"}', '{"d": 1}', "[1, 2]", '"c"', "null", '{"c": null}'):
        await db.execute(
            f'INSERT INTO "{schema}".jobs (queue, type, params) VALUES ($1, $2, $3)', Q, "t", params
        )
    [wid] = await _workers(store, 1)
    claim = await store.job_claim_limited(Q, 10, wid, [])
    keys = await db.fetch(
        f'SELECT params::text AS p, limit_key FROM "{schema}".jobs WHERE worker_id > 0 ORDER BY id'
    )
    assert [(r["p"], r["limit_key"]) for r in keys] == [
        ('{"c": 7}', "7"),
        ('{"d": 1}', None),
        ("[1, 2]", None),
        ('"c"', None),
        ("null", None),
        ('{"c": null}', None),
    ]
    assert claim.capped  # '{"c": "7"}' was passed over


async def test_setting_a_limit_counts_the_jobs_already_running(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A worker runs four jobs of a plain queue; a limit of two is set. The four count at
    once (its gate counts them running), so once the worker has seen the limit nothing else
    starts until they end, and then never more than two at a time."""
    s = scheduler
    hold = Hold(runs=4)
    naps = [0, 0, 0]  # running, most at once, started while the held jobs ran
    released = [False]
    done = Counter(6)

    async def nap(job: Job) -> None:
        naps[0] += 1
        naps[1] = max(naps[1], naps[0])
        naps[2] += not released[0]
        await anyio.sleep(0.005)
        naps[0] -= 1
        done.hit(job.id)

    s.register("hold", hold.run, queue=Q)
    s.register("nap", nap, queue=Q)
    held = [await s.schedule("hold") for _ in range(4)]
    worker = s.worker([Q], concurrency=10, poll_interval=0.02, heartbeat_interval=0.02)
    async with running(worker):
        await wait(hold.started.done)
        await s.set_queue_limit(Q, concurrency=2)
        assert await db.fetchval(f'SELECT count(*) FROM "{s.schema}".jobs WHERE slot AND worker_id > 0') == 4
        stages = worker._stages  # the fetcher's view of the limits
        assert stages is not None
        await until(lambda: stages.fetcher.limited == (Q,))
        await s.schedule_many("nap", [{"i": i} for i in range(6)])
        gate = stages.fetcher.gates[Q]
        assert (gate.running, gate.held) == (4, 4)  # the four running hold slots (of two)
        await until(lambda: gate.size == 2)
        assert naps == [0, 0, 0]
        released[0] = True
        hold.release()
        await ended(s, *held)
        await wait(done.done)
    assert naps == [0, 2, 0]


async def test_a_worker_counts_its_plain_claims_once_it_sees_a_limit(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A claim-counted limit written behind the API's back (no marking at set): the worker
    marks the jobs it holds in the queue when it sees the limit."""
    s = scheduler
    hold = Hold(runs=3)
    s.register("hold", hold.run, queue=Q)
    ids = [await s.schedule("hold") for _ in range(3)]
    worker = s.worker([Q], concurrency=10, poll_interval=0.02, heartbeat_interval=0.02)
    async with running(worker):
        await wait(hold.started.done)
        await db.execute(
            f'INSERT INTO "{s.schema}".queue_limits (queue, concurrency, rate_count, rate_period)'
            " VALUES ($1, 2, 100, interval '1 s')",
            Q,
        )
        stages = worker._stages
        assert stages is not None
        await until(lambda: stages.fetcher.limited == (Q,))
        assert await db.fetchval(f'SELECT count(*) FROM "{s.schema}".jobs WHERE slot AND worker_id > 0') == 3
        assert stages.fetcher.gates == {}  # with a rate: claim-counted, not leased
        hold.release()
        await ended(s, *ids)


async def test_a_worker_counts_the_jobs_it_runs_once_it_sees_a_leased_limit(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """A concurrency-only limit written behind the API's back: the worker's gate counts the
    three jobs it runs, and it leases no more slots than the limit."""
    s = scheduler
    hold = Hold(runs=3)
    s.register("hold", hold.run, queue=Q)
    ids = [await s.schedule("hold") for _ in range(3)]
    worker = s.worker([Q], concurrency=10, poll_interval=0.02, heartbeat_interval=0.02)
    async with running(worker):
        await wait(hold.started.done)
        await db.execute(f'INSERT INTO "{s.schema}".queue_limits (queue, concurrency) VALUES ($1, 2)', Q)
        stages = worker._stages
        assert stages is not None
        await until(lambda: stages.fetcher.limited == (Q,))
        gate = stages.fetcher.gates[Q]
        assert (gate.running, gate.held) == (3, 3)
        await until(lambda: gate.size == 2)
        slots = await db.fetchval(f'SELECT sum(slots) FROM "{s.schema}".queue_leases WHERE queue = $1', Q)
        assert slots == 2
        hold.release()
        await ended(s, *ids)
        await until(lambda: gate.size == 0)  # nothing held: the slots went back
    assert await db.fetchval(f'SELECT count(*) FROM "{s.schema}".queue_leases') == 0


async def test_a_limited_and_a_plain_queue_in_one_worker(scheduler: Scheduler) -> None:
    s = scheduler
    now = [0, 0]
    done = Counter(40)

    async def limited(job: Job) -> None:
        now[0] += 1
        now[1] = max(now[1], now[0])
        await anyio.sleep(0.002)
        now[0] -= 1
        done.hit(job.id)

    s.register("limited", limited, queue=Q)
    s.register("plain", noting(done, lambda job: job.id), queue="plain")
    await s.set_queue_limit(Q, concurrency=2)
    await s.schedule_many("limited", [{"i": i} for i in range(20)])
    await s.schedule_many("plain", [{"i": i} for i in range(20)])
    async with running(s.worker([Q, "plain"], concurrency=10, poll_interval=3600)):
        await wait(done.done)
    assert now[1] == 2


async def test_the_limits_bench_phase_reports_both_drains(
    bench_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Smoke test, no timing: both drains ran and the ratio is reported."""
    monkeypatch.setenv("BENCH_LIMITS_REPEATS", "1")
    out = await bench_limits(bench_dsn, Params(n=300, progress=False), bench_drain)
    assert (out["n"], out["limit"], out["repeats"]) == (300, 50, 1)
    assert isinstance(out["limited_vs_plain"], float)
    claims = out["claims"]
    assert isinstance(claims, dict)
    assert claims["limited"][0] >= 1
    assert limits_rows({"limits": out})[0][0] == "drain (concurrency limit)"


# -- slot leases (concurrency-only limits) ----------------------------------------------------


async def _leased(db: asyncpg.Connection, schema: str) -> int:
    return int(
        await db.fetchval(f'SELECT coalesce(sum(slots), 0) FROM "{schema}".queue_leases WHERE queue = $1', Q)
    )


async def test_racing_leases_never_exceed_the_limit(scheduler: Scheduler, db: asyncpg.Connection) -> None:
    """Eight workers lease at once, round after round, each asking for a random number of
    slots (giving some back): the slots leased never exceed the limit, and reach it."""
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await scheduler.set_queue_limit(Q, concurrency=7)
    wids = await _workers(store, 8)
    rng = random.Random(14)
    most = 0
    for _ in range(25):
        asks = [rng.randint(0, 4) for _ in wids]
        grants = await asyncio.gather(*(store.lease_slots(Q, w, n) for w, n in zip(wids, asks, strict=True)))
        assert all(g is not None and 0 <= g <= n for g, n in zip(grants, asks, strict=True)), grants
        leased = await _leased(db, schema)
        assert leased == sum(g or 0 for g in grants) <= 7
        most = max(most, leased)
    assert most == 7


async def test_a_lease_keeps_what_the_worker_has_and_frees_with_the_worker(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    schema = scheduler.schema
    store = await pg_store(scheduler)
    await scheduler.set_queue_limit(Q, concurrency=3)
    [dead, alive, gone] = await _workers(store, 3)
    assert await store.lease_slots(Q, dead, 5) == 3
    assert await store.lease_slots(Q, alive, 2) == 0  # every slot is the other worker's
    assert await store.lease_slots(Q, dead, 3) == 3  # asking again keeps them
    assert await store.lease_slots(Q, dead, 1) == 1  # a give-back
    assert await store.lease_slots(Q, alive, 2) == 2
    # Reaping (or deregistering) a worker frees its slots with its row.
    await db.execute(
        f"UPDATE \"{schema}\".workers SET heartbeat = now() - interval '1 hour' WHERE id = $1", dead
    )
    await store.worker_reap(60, alive)
    assert await store.lease_slots(Q, dead, 1) == 0  # a reaped worker leases nothing
    assert await store.lease_slots(Q, alive, 3) == 3
    await store.worker_deregister(alive)
    assert await _leased(db, schema) == 0
    assert await store.lease_slots(Q, gone, 3) == 3


async def test_a_lease_of_a_queue_not_leased_is_null_and_drops_the_row(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """No limit, or a limit that counts claims (per_key or rate): NULL, and the worker's
    lease row goes (the worker looks at the limits again)."""
    schema = scheduler.schema
    store = await pg_store(scheduler)
    [wid] = await _workers(store, 1)
    assert await store.lease_slots(Q, wid, 2) is None
    await scheduler.set_queue_limit(Q, concurrency=3)
    assert await store.lease_slots(Q, wid, 2) == 2
    await scheduler.set_queue_limit(Q, concurrency=3, rate=(10, 1.0))
    assert await _leased(db, schema) == 0  # set_queue_limit drops the leases of a claim-counted limit
    assert await store.lease_slots(Q, wid, 2) is None
    await scheduler.set_queue_limit(Q, concurrency=3)
    assert await store.lease_slots(Q, wid, 2) == 2
    assert await scheduler.remove_queue_limit(Q)
    assert await _leased(db, schema) == 0
    assert await store.lease_slots(Q, wid, 2) is None
    assert await store.queue_limited([Q]) == {}
    await scheduler.set_queue_limit(Q, per_key=1, key="c")
    assert await store.queue_limited([Q]) == {Q: (None, False)}
    await scheduler.set_queue_limit(Q, concurrency=4)
    assert await store.queue_limited([Q]) == {Q: (4, True)}
