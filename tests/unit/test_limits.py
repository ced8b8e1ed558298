"""Queue limits without a database: argument checks, the fetcher's retries, the buffer's view."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, cast

import pytest

from pgqueue import ConfigError, QueueLimit, RateLimit
from pgqueue._backoff import Backoff
from pgqueue._config import WorkerConfig
from pgqueue._limits import MAX_LIMIT, LimitedClaim, LimitSeen, check_limit
from pgqueue._models import Job, Row
from pgqueue.store.memory.limits import key_of
from pgqueue.store.memory.rows import LiveJob
from pgqueue.worker.fetcher import Fetcher
from pgqueue.worker.job_buffer import Gate, JobBuffer
from pgqueue.worker.lease import Identity
from pgqueue.worker.limited import CAPPED_RETRY_S, GIVE_BACK_S, RATE_MARGIN_S
from pgqueue.worker.result_buffer import ResultBuffer
from pgqueue.worker.results import RunResult, RunStats

if TYPE_CHECKING:
    from pgqueue.store.postgres import PostgresStore as Store

NOW = 1000.0


class FixedClock:
    def time(self) -> float:
        return 1_000_000.0

    def monotonic(self) -> float:
        return NOW


def _fetcher() -> tuple[Fetcher, RunStats]:
    stats = RunStats()
    results: ResultBuffer[RunResult] = ResultBuffer(flush_max=10, flush_age=1.0, high_water=100)
    fetcher = Fetcher(
        store=cast("Store", None),
        config=WorkerConfig(queues=("q",), concurrency=10, prefetch=500),
        identity=Identity(),
        jobs=JobBuffer[Job](),
        results=results,
        stats=stats,
        clock=FixedClock(),
    )
    return fetcher, stats


def test_check_limit_takes_a_pair_or_a_rate_limit() -> None:
    minute = dt.timedelta(minutes=1)
    assert check_limit("q", concurrency=None, per_key=None, key=None, rate=(100, 60)) == QueueLimit(
        "q", rate=RateLimit(100, minute)
    )
    assert check_limit("q", concurrency=None, per_key=None, key=None, rate=(100, minute)).rate == RateLimit(
        100, minute
    )
    assert check_limit("q", concurrency=MAX_LIMIT, per_key=2, key="k", rate=None) == QueueLimit(
        "q", MAX_LIMIT, 2, "k"
    )


@pytest.mark.parametrize("per", [dt.timedelta(days=365 * 101), 1e12, float("inf")])
def test_a_rate_period_longer_than_a_century_is_refused(per: float | dt.timedelta) -> None:
    with pytest.raises(ConfigError, match="at most a century"):
        check_limit("q", concurrency=None, per_key=None, key=None, rate=(1, per))


def test_a_rate_window_retries_when_it_frees_a_start() -> None:
    fetcher, _ = _fetcher()
    fetcher._on_capped(2.5, finished=0)
    assert fetcher._retry_at == NOW + 2.5 + RATE_MARGIN_S
    assert not fetcher._capped  # runs of ours ending free no start
    fetcher._on_capped(-0.1, finished=0)  # already free by the database's clock
    assert fetcher._retry_at == NOW + RATE_MARGIN_S


def test_a_concurrency_cap_retries_when_a_run_ends_or_after_the_backstop() -> None:
    fetcher, stats = _fetcher()
    fetcher._on_capped(None, finished=stats.finished)
    assert fetcher._capped
    assert fetcher._retry_at == NOW + CAPPED_RETRY_S
    fetcher._pending = False
    fetcher.on_capacity()  # one of our runs ended: its slot is free
    assert (fetcher._capped, fetcher._limited_due) == (False, True)
    assert not fetcher._pending  # a reason to claim the limited queues only


def test_a_run_that_ended_during_the_claim_retries_at_once() -> None:
    fetcher, stats = _fetcher()
    finished = stats.finished
    stats.finished += 1
    fetcher._on_capped(None, finished=finished)
    assert fetcher._limited_due
    assert (fetcher._capped, fetcher._retry_at) == (False, None)


class FakeStore:
    """The store calls of a fetcher with one limited queue "l" (limit 50) and one plain "p"."""

    def __init__(
        self, limited: dict[str, int | None], claims: list[LimitedClaim], *, leased: bool = False
    ) -> None:
        self.limited = {q: LimitSeen(n, leased) for q, n in limited.items()}
        self.claims = claims
        self.asked: list[tuple[str, int, list[tuple[int, int]]]] = []
        self.plain: list[int] = []
        self.plain_queues: list[list[str]] = []
        self.leases: list[tuple[str, int]] = []
        self.grants: list[int] = []  # what lease_slots grants, in turn; then what is asked

    async def queue_limited(self, queues: object, held: object = None) -> dict[str, LimitSeen]:
        return self.limited

    async def lease_slots(self, queue: str, worker_id: int, want: int, held: object = None) -> int | None:
        self.leases.append((queue, want))
        return self.grants.pop(0) if self.grants else want

    async def job_claim_limited(
        self, queue: str, limit: int, worker_id: int, done: list[tuple[int, int]], held: object = None
    ) -> LimitedClaim:
        self.asked.append((queue, limit, list(done)))
        return self.claims.pop(0)

    async def job_claim_many(
        self, queues: object, limit: int, worker_id: int, held: object = None
    ) -> list[Row]:
        self.plain.append(limit)
        self.plain_queues.append(list(cast("list[str]", queues)))
        return []


def _rows(n: int) -> list[Row]:
    return [(i, "l", "t", None, 0, 1, 0, None, 0.0, 0.0, None, False, 1, None, None) for i in range(n)]


def _fetcher_on(store: FakeStore, queues: tuple[str, ...]) -> tuple[Fetcher, RunStats]:
    stats = RunStats()
    results: ResultBuffer[RunResult] = ResultBuffer(flush_max=10, flush_age=1.0, high_water=100)
    fetcher = Fetcher(
        store=cast("Store", store),
        config=WorkerConfig(queues=queues, concurrency=50, prefetch=500),
        identity=Identity(),
        jobs=JobBuffer[Job](),
        results=results,
        stats=stats,
        clock=FixedClock(),
    )
    return fetcher, stats


async def test_a_limited_queue_is_claimed_alone_and_never_asked_more_than_its_limit() -> None:
    store = FakeStore({"l": 50}, [LimitedClaim(_rows(50), capped=False, free_in=None)])
    fetcher, stats = _fetcher_on(store, ("l", "p"))
    assert await fetcher._claim(100, plain=False) == 0  # the plain claim's count: it did not run
    assert store.asked == [("l", 50, [])]
    assert store.plain == []
    assert stats.outstanding == 50
    # All its slots are taken: wait for a run of ours to end (or the backstop), not now.
    assert fetcher._capped
    assert not fetcher._limited_due
    assert fetcher._retry_at == NOW + CAPPED_RETRY_S
    assert fetcher._due_queues == ["p"]  # the next-due look skips the capped queue


async def test_a_full_claim_under_no_concurrency_limit_claims_again_at_once() -> None:
    store = FakeStore({"l": None}, [LimitedClaim(_rows(20), capped=False, free_in=None)])
    fetcher, _ = _fetcher_on(store, ("l",))
    await fetcher._claim(20, plain=True)
    assert store.asked == [("l", 20, [])]
    assert fetcher._limited_due
    assert not fetcher._capped


async def test_a_rate_capped_claim_waits_for_the_window() -> None:
    store = FakeStore({"l": None}, [LimitedClaim(_rows(3), capped=True, free_in=1.5)])
    fetcher, _ = _fetcher_on(store, ("l",))
    await fetcher._claim(20)
    assert fetcher._retry_at == NOW + 1.5 + RATE_MARGIN_S
    assert not fetcher._capped
    assert not fetcher._limited_due


async def test_finished_unwritten_runs_of_limited_queues_are_passed_as_done() -> None:
    store = FakeStore({"l": 50}, [LimitedClaim([], capped=True, free_in=None)])
    fetcher, _ = _fetcher_on(store, ("l", "p"))
    for row in [(7, "l", "t", None, 0, 2), (8, "p", "t", None, 0, 1)]:
        fetcher._results.put(cast("RunResult", (Job._from_row(row), None)))
    await fetcher._claim(10)
    assert store.asked == [("l", 10, [(7, 2)])]  # the plain queue's run frees no slot
    assert store.plain == [10]


# -- slot leases (concurrency-only limits) ----------------------------------------------------


async def test_a_leased_queue_asks_for_slots_before_the_plain_claim_and_skips_it_without_any() -> None:
    store = FakeStore({"l": 3}, [], leased=True)
    store.grants = [0]
    fetcher, _ = _fetcher_on(store, ("l", "p"))
    await fetcher._claim(100)
    assert store.leases == [("l", 3)]  # min(limit, held + the claim's size)
    assert store.plain_queues == [["p"]]  # no slots: no jobs of "l" claimed to wait here
    assert store.asked == []  # not through claim_limited
    assert fetcher.gates["l"].size == 0
    assert fetcher._lease_at(NOW) == NOW + CAPPED_RETRY_S  # short: ask again then
    await fetcher._tend_leases()
    assert fetcher._pending  # ... through a claim cycle, which asks for what it claims


async def test_a_leased_queue_with_slots_is_claimed_plainly_and_unused_slots_go_back() -> None:
    store = FakeStore({"l": 3}, [], leased=True)
    fetcher, _ = _fetcher_on(store, ("l", "p"))
    await fetcher._claim(100)
    # Three slots of fifty runners: its share of the prefetch target (100) is 6, claimed apart
    # so that its jobs waiting for slots cannot crowd out the other queue's.
    assert store.plain_queues == [["l"], ["p"]]
    assert store.plain == [6, 100]
    gate = fetcher.gates["l"]
    assert (gate.size, gate.held) == (3, 0)
    assert fetcher._lease_at(NOW) == NOW + GIVE_BACK_S  # holds none of its jobs: all slots go back then
    assert not fetcher._gated_backlog  # the apart claim came back empty
    await fetcher._tend_leases()
    assert store.leases == [("l", 3), ("l", 0)]
    assert gate.size == 0
    assert fetcher._lease_at(NOW) is None
    # Holding two jobs of the queue with three slots: the spare one goes back, not at once.
    store.grants = [3]
    gate.held = 2
    await fetcher._claim(1)
    assert store.leases[-1] == ("l", 3)
    assert store.plain_queues[-1] == ["l", "p"]  # one more cannot overshoot its share: one claim
    assert fetcher._lease_at(NOW) == NOW + GIVE_BACK_S


async def test_runners_take_the_first_job_whose_queue_has_a_free_slot() -> None:
    jobs = JobBuffer[Job]()
    gate = Gate()
    gate.size, gate.held = 1, 2
    jobs.gates["l"] = gate
    jobs.set_gated()
    ended: list[int] = []
    jobs.on_done = lambda g: ended.append(g.running)
    rows = [
        (i, q, "t", None, 0, 1, 0, None, 0.0, 0.0, None, False, 1, None, None)
        for i, q in ((1, "l"), (2, "l"), (3, "p"))
    ]
    jobs.push_many([Job._from_row(r) for r in rows])
    first = await jobs.pop()
    second = await jobs.pop()
    assert (first and first.id, second and second.id) == (1, 3)  # job 2 waits for the slot
    assert gate.running == 1
    assert first is not None
    jobs.done(first)
    assert (gate.running, gate.held, ended) == (0, 1, [0])
    third = await jobs.pop()
    assert third is not None
    assert third.id == 2
    assert jobs.take_all() == []


async def test_unwritten_results_are_the_buffered_ones_and_the_batch_in_flight() -> None:
    buf: ResultBuffer[int] = ResultBuffer(flush_max=2, flush_age=1.0, high_water=100)
    for i in range(5):
        buf.put(i)
    assert list(buf.unwritten()) == [0, 1, 2, 3, 4]
    taken = buf.take(3)
    assert list(buf.unwritten()) == [0, 1, 2, 3, 4]  # the flusher writes 0..2 now
    buf.restore(taken)  # the write failed: they are buffered again, once
    assert list(buf.unwritten()) == [0, 1, 2, 3, 4]
    buf.take(3)
    await buf.wait_batch()  # the flusher waits again: its batch is written
    assert list(buf.unwritten()) == [3, 4]
    buf.take(10)
    buf.put(5)
    assert list(buf.unwritten()) == [3, 4, 5]
    buf.take(10)
    assert list(buf.unwritten()) == [5]  # the next take forgets the last batch too


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ('{"c": "a"}', "a"),
        ('{"c": 7}', "7"),
        ('{"c": 1.5}', "1.5"),
        ('{"c": true}', "true"),
        ('{"c": {"x": 1}}', '{"x":1}'),
        ('{"c": null}', None),
        ('{"d": 1}', None),
        ("[1]", None),
        ('"c"', None),
        (None, None),
    ],
)
def test_the_memory_store_reads_keys_as_postgres_does(params: str | None, key: str | None) -> None:
    job = LiveJob(
        id=1,
        queue="q",
        type="t",
        params=params,
        run_at=0,
        inserted_at=0,
        priority=0,
        timeout_s=None,
        delayed=False,
    )
    assert key_of(job, "c") == key
    assert key_of(job, None) is None


async def test_a_reregistered_worker_holds_no_slots_until_it_leases_again() -> None:
    store = FakeStore({"l": 3}, [], leased=True)
    fetcher, _ = _fetcher_on(store, ("l",))
    await fetcher._claim(10)
    gate = fetcher.gates["l"]
    gate.held = 3
    assert gate.size == 3
    store.grants = [1]
    fetcher._identity.id = 7  # the lease was lost: the old row, and its slots, are gone
    await fetcher._claim(10)
    assert store.leases[-1] == ("l", 3)  # asked afresh for the new row
    assert gate.size == 1


async def test_a_failed_lease_call_backs_off_and_is_reported() -> None:
    class Failing(FakeStore):
        async def lease_slots(self, queue: str, worker_id: int, want: int, held: object = None) -> int | None:
            raise ConnectionError("gone")

    store = Failing({"l": 3}, [], leased=True)
    errors: list[BaseException] = []
    fetcher, _ = _fetcher_on(store, ("l",))
    fetcher._on_error = errors.append
    await fetcher._look_at_limits(0)
    gate = fetcher.gates["l"]
    gate.size = 2  # two slots, no jobs held: they go back now, and the call fails
    fetcher._leased_at = NOW - GIVE_BACK_S
    assert fetcher._lease_at(NOW) == NOW
    backoff = Backoff(first=0.001, cap=0.001)
    await fetcher._tend_leases_or_back_off(backoff)
    assert [type(e) for e in errors] == [ConnectionError]
    assert gate.size == 2  # unchanged: the next tend gives them back
    assert fetcher._lease_at(NOW) == NOW
