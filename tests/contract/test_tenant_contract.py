"""Tenants on jobs, on each backend: stored and returned, filters, stats, validation,
schedule_many, and a per-key limit keyed by the tenant."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable

import anyio
import pytest

from pgqueue import TENANT, ConfigError, Job, JobState, Page, Scheduler
from tests._support import Counter, fired, running, wait
from tests.contract._helpers import Hold, ended, nothing_stored, noting, reach, run_until_ended

Q = "tenanted"


def _ids(page: Page) -> list[int]:
    return [r.id for r in page.items]


# -- stored and returned -----------------------------------------------------------------------


async def test_the_tenant_is_stored_and_returned_live_finished_and_in_the_handler(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    seen = Counter(2)
    s.register("t", noting(seen, lambda job: (job.id, job.tenant)))
    mine = await s.schedule("t", {"n": 1}, tenant="acme")
    plain = await s.schedule("t", {"n": 2})
    live = await s.get_job(mine)
    assert (live.state, live.tenant) == (JobState.PENDING, "acme")
    assert (await s.get_job(plain)).tenant is None
    assert {r.id: r.tenant for r in (await s.list_jobs()).items} == {mine: "acme", plain: None}
    done = await run_until_ended(s, mine, plain)
    assert sorted(seen.calls) == [(mine, "acme"), (plain, None)]
    assert [(r.state, r.tenant) for r in done] == [(JobState.SUCCEEDED, "acme"), (JobState.SUCCEEDED, None)]


async def test_a_retry_delayed_run_and_a_retried_job_keep_their_tenant(backend_scheduler: Scheduler) -> None:
    """A failed run puts nothing in the way: the job fails, retry() brings it back from its
    runs, and it still carries its tenant (live, and in the handler of its next run)."""
    s = backend_scheduler
    seen = Counter(2)

    async def fail_first(job: Job) -> None:
        seen.hit(job.tenant)
        if job.attempt == 1:
            raise RuntimeError("first run fails")

    s.register("t", fail_first)
    job_id = await s.schedule("t", tenant="acme")
    [failed] = await run_until_ended(s, job_id)
    assert (failed.state, failed.tenant) == (JobState.FAILED, "acme")
    await s.retry(job_id)
    assert (await s.get_job(job_id)).tenant == "acme"
    [done] = await run_until_ended(s, job_id)
    assert (done.state, done.tenant) == (JobState.SUCCEEDED, "acme")
    assert seen.calls == ["acme", "acme"]


async def test_cancelled_jobs_and_their_cancelled_dependents_keep_their_tenant(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    first = await s.schedule("t", tenant="acme")  # no worker: it stays pending
    then = await s.schedule("t", tenant="globex", depends_on=[first])
    assert (await s.get_job(then)).state is JobState.WAITING
    await s.cancel(first)
    records = [await s.get_job(first), await s.get_job(then)]
    assert [(r.state, r.tenant) for r in records] == [
        (JobState.CANCELLED, "acme"),
        (JobState.CANCELLED, "globex"),
    ]
    assert _ids(await s.list_jobs(tenant="globex", state="cancelled")) == [then]


async def test_unique_and_dependent_inserts_carry_the_tenant(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    keyed = await s.schedule("t", unique_key="k", tenant="acme")
    again = await s.schedule("t", unique_key="k", tenant="globex")
    assert (again, again.inserted) == (keyed, False)  # the holder, with its own tenant
    after = await s.schedule("t", depends_on=[keyed], tenant="globex")
    assert [(await s.get_job(i)).tenant for i in (keyed, after)] == ["acme", "globex"]


# -- schedule_many ---------------------------------------------------------------------------


async def test_schedule_many_takes_one_tenant_for_all_or_one_per_job(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    shared = await s.schedule_many("t", [{"i": i} for i in range(3)], tenant="acme")
    each = await s.schedule_many(
        "t", [{"i": i} for i in range(5)], tenant=["a", None, "b", "a", None], chunk_size=2
    )
    none = await s.schedule_many("t", [{"i": 0}], tenant=[None])
    tenants = [(await s.get_job(i)).tenant for i in [*shared, *each, *none]]
    assert tenants == ["acme"] * 3 + ["a", None, "b", "a", None] + [None]
    assert sorted(_ids(await s.list_jobs(tenant="a"))) == [each[0], each[3]]


@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ("", "tenant must be a non-empty string"),
        ("x" * 201, "tenant must be a non-empty string of at most 200 characters"),
        ("a\x00b", "without NUL"),
        (42, "tenant must be a string or an iterable"),
        (b"acme", "tenant must be a string or an iterable"),
        (["a", "b"], "tenant holds 2 entries for 3 jobs"),
        (["a", "", "b"], r"tenant\[1\] must be a non-empty string"),
        (["a", 7, "b"], r"tenant\[1\] must be a non-empty string"),
    ],
)
async def test_schedule_many_refuses_bad_tenants_and_writes_nothing(
    backend_scheduler: Scheduler, tenant: object, message: str
) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    with pytest.raises(ConfigError, match=message):
        await s.schedule_many("t", [{"i": i} for i in range(3)], tenant=tenant)  # type: ignore[arg-type]
    assert await nothing_stored(s)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["", "x" * 201, "a\x00b", 42, b"acme"])
async def test_bad_tenants_raise_config_error_and_write_nothing(
    backend_scheduler: Scheduler, tenant: object
) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: s.schedule("t", tenant=tenant),  # type: ignore[arg-type]
        lambda: s.schedule("t", tenant=tenant, unique_key="k"),  # type: ignore[arg-type]
        lambda: s.schedule("t", tenant=tenant, depends_on=[1]),  # type: ignore[arg-type]
        lambda: s.list_jobs(tenant=tenant),  # type: ignore[arg-type]
        lambda: s.stats(tenant=tenant),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(ConfigError, match="tenant must be a non-empty string of at most 200 characters"):
            await call()
    assert await nothing_stored(s)


async def test_a_tenant_of_200_characters_is_accepted(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None)
    longest = "é" * 200
    job_id = await s.schedule("t", tenant=longest)
    assert (await s.get_job(job_id)).tenant == longest


# -- listing and stats -------------------------------------------------------------------------


async def test_list_jobs_filters_live_and_finished_jobs_by_tenant(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None, queue=Q)
    done_a = await s.schedule("t", tenant="a")
    done_b = await s.schedule("t", tenant="b")
    await run_until_ended(s, done_a, done_b)
    live_a = await s.schedule("t", tenant="a")
    live_b = await s.schedule("t", tenant="b")
    await s.schedule("t")
    assert _ids(await s.list_jobs(tenant="a")) == [live_a, done_a]
    assert _ids(await s.list_jobs(tenant="b")) == [live_b, done_b]
    assert _ids(await s.list_jobs(tenant="a", state="succeeded")) == [done_a]
    assert _ids(await s.list_jobs(tenant="b", state="pending")) == [live_b]
    assert _ids(await s.list_jobs(tenant="a", queue="elsewhere")) == []
    assert (await s.list_jobs(tenant="nobody")).items == ()
    first = await s.list_jobs(tenant="a", limit=1)  # pages keep the filter
    assert _ids(first) == [live_a]
    assert first.cursor is not None
    assert _ids(await s.list_jobs(tenant="a", limit=1, cursor=first.cursor)) == [done_a]


async def test_stats_count_the_live_jobs_of_one_tenant(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("t", lambda job: None, queue=Q)
    s.register("u", lambda job: None, queue="other")
    await s.schedule("t", tenant="a")
    await s.schedule("t", tenant="a")
    suspended = await s.schedule("u", tenant="a")
    await s.suspend(suspended)
    await s.schedule("t", tenant="b")
    await s.schedule("u")
    mine = await s.stats(tenant="a")
    assert mine.by_queue[Q][JobState.PENDING] == 2
    assert mine.by_queue["other"][JobState.SUSPENDED] == 1
    assert mine.by_queue["other"][JobState.PENDING] == 0
    assert mine.by_type["t"][JobState.PENDING] == 2
    everyone = await s.stats()
    assert everyone.by_queue[Q][JobState.PENDING] == 3
    assert everyone.by_queue["other"][JobState.PENDING] == 1
    assert (await s.stats(tenant="nobody")).by_queue == {}


# -- a per-key limit keyed by the tenant --------------------------------------------------------


async def test_the_limit_key_tenant_is_stored_and_listed(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    limit = await s.set_queue_limit(Q, per_key=2, key=TENANT)
    assert (limit.per_key, limit.key) == (2, TENANT)
    assert await s.list_queue_limits() == [limit]


async def test_per_key_one_by_tenant_runs_one_job_per_tenant_and_tenants_in_parallel(
    backend_scheduler: Scheduler,
) -> None:
    """Two jobs each of tenants a and b, and one without a tenant, a worker with ten
    runners: a's and b's first jobs and the tenantless one start together and are held;
    further claims take nothing more while they hold. Released, the second jobs run, never
    two of one tenant at once. Params carry a "customer" field that would key them
    otherwise: the limit reads the tenant, not the params."""
    s = backend_scheduler
    hold = Hold(runs=3)
    running_now: collections.Counter[str | None] = collections.Counter()
    peak: collections.Counter[str | None] = collections.Counter()
    both_running = anyio.Event()

    async def handler(job: Job) -> object:
        running_now[job.tenant] += 1
        peak[job.tenant] = max(peak[job.tenant], running_now[job.tenant])
        if running_now["a"] and running_now["b"]:
            both_running.set()
        try:
            return await hold.run(job)
        finally:
            running_now[job.tenant] -= 1

    s.register("hold", handler, queue=Q)
    await s.set_queue_limit(Q, per_key=1, key=TENANT)
    ids = [
        await s.schedule("hold", {"customer": "same"}, tenant=tenant) for tenant in ("a", "a", "b", "b", None)
    ]
    worker = s.worker([Q], concurrency=10, poll_interval=3600)
    async with running(worker):
        await wait(hold.started.done)
        await wait(both_running)
        seen = worker.claims
        await fired(worker.signals.claimed, seen + 2)  # two more claims while they hold
        assert sorted(hold.started.calls) == [ids[0], ids[2], ids[4]]
        assert (await s.get_job(ids[1])).state is JobState.PENDING
        hold.release()
        records = await ended(s, *ids)
    assert [r.state for r in records] == [JobState.SUCCEEDED] * 5
    assert sorted(hold.started.calls) == sorted(ids)
    assert (peak["a"], peak["b"]) == (1, 1)


async def test_a_params_field_named_like_the_reserved_key_is_not_a_key(backend_scheduler: Scheduler) -> None:
    """key=TENANT reads the tenant even when the params hold a field of that exact name:
    two jobs with different "@tenant" params fields but one tenant never run together."""
    s = backend_scheduler
    hold = Hold(runs=1)
    s.register("hold", hold.run, queue=Q)
    await s.set_queue_limit(Q, per_key=1, key=TENANT)
    first = await s.schedule("hold", {TENANT: "x"}, tenant="a")
    second = await s.schedule("hold", {TENANT: "y"}, tenant="a")
    worker = s.worker([Q], concurrency=4, poll_interval=3600)
    async with running(worker):
        await wait(hold.started.done)
        seen = worker.claims
        await fired(worker.signals.claimed, seen + 2)
        assert hold.started.calls == [first]
        await reach(s, second, JobState.PENDING)
        hold.release()
        await ended(s, first, second)
