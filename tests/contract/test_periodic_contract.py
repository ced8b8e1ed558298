"""Periodic jobs on both backends: one job per tick, the missed-tick policies, overlap, listings.

Rounds run with an injected ``now`` an hour in the past, on a grid of 60-second ticks, so
the jobs they enqueue are due at once and a worker can run them.
"""

from __future__ import annotations

import datetime as dt

from pgqueue import Job, PeriodicInfo, Scheduler
from pgqueue.periodic.ticks import EveryTicks
from tests.contract._helpers import run_until_ended

MINUTE = dt.timedelta(minutes=1)


def base_tick() -> dt.datetime:
    """A tick of every=60 s an hour ago: its jobs are due now."""
    tick = EveryTicks(60).latest(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert tick is not None
    return tick


async def noop(job: Job) -> None:
    return None


def declare_on(s: Scheduler, **options: object) -> None:
    """The declarations every scheduler of a test makes: the same in each process."""
    if "tick" not in s.registry:
        s.register("tick", noop, queue="cron")
    s.add_periodic("minutely", every=60, job="tick", params={"n": 1}, priority=-3, **options)  # type: ignore[arg-type]


async def peer(s: Scheduler) -> Scheduler:
    """Another scheduler on the same backend (another process, for the tick's purposes)."""
    return Scheduler(backend=await s.open())


async def jobs_of(s: Scheduler) -> list[tuple[str, dt.datetime]]:
    """(type, run_at) of every job, live or finished, oldest first."""
    page = await s.list_jobs(limit=500)
    return sorted(((j.type, j.run_at) for j in page.items), key=lambda x: x[1])


async def info(s: Scheduler, name: str, now: dt.datetime) -> PeriodicInfo:
    (found,) = [p for p in await s.list_periodic(now) if p.name == name]
    return found


async def test_each_tick_enqueues_one_job_due_at_its_tick_across_schedulers(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    other = await peer(s)
    declare_on(s)
    declare_on(other)
    t = base_tick()
    counts = []
    for now in (t, t + dt.timedelta(seconds=1), t + dt.timedelta(seconds=29)):
        counts += [await s.enqueue_due_periodic(now), await other.enqueue_due_periodic(now)]
    assert counts == [1, 0, 0, 0, 0, 0]
    counts = [await other.enqueue_due_periodic(t + MINUTE), await s.enqueue_due_periodic(t + MINUTE)]
    assert counts == [1, 0]
    assert await jobs_of(s) == [("tick", t), ("tick", t + MINUTE)]
    page = await s.list_jobs()
    assert {(j.queue, j.priority, repr(j.params)) for j in page.items} == {("cron", -3, "{'n': 1}")}
    listed = await info(s, "minutely", t + MINUTE)
    newest = page.items[0]
    assert (listed.last_tick, listed.last_job_id, listed.last_outcome) == (t + MINUTE, newest.id, "pending")
    assert (listed.schedule, listed.type, listed.queue, listed.declared) == ("every 1m", "tick", "cron", True)
    assert listed.next_fire_at == t + 2 * MINUTE


async def test_a_round_whose_clock_is_behind_changes_nothing(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s)
    t = base_tick()
    assert await s.enqueue_due_periodic(t + MINUTE) == 1
    assert await s.enqueue_due_periodic(t + dt.timedelta(seconds=2)) == 0  # the older tick: never again
    assert await jobs_of(s) == [("tick", t + MINUTE)]
    assert (await info(s, "minutely", t + MINUTE)).last_tick == t + MINUTE


async def test_skip_drops_the_ticks_missed_while_no_process_ran(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s)
    t = base_tick()
    assert await s.enqueue_due_periodic(t) == 1
    # Down from t + 1 min to t + 5 min 40 s: the latest tick (t + 5 min) is 40 s old, past its 30 s grace.
    assert await s.enqueue_due_periodic(t + 5 * MINUTE + dt.timedelta(seconds=40)) == 0
    assert await s.enqueue_due_periodic(t + 6 * MINUTE) == 1
    assert await jobs_of(s) == [("tick", t), ("tick", t + 6 * MINUTE)]


async def test_latest_runs_the_latest_missed_tick_once(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s, missed="latest")
    t = base_tick()
    assert await s.enqueue_due_periodic(t) == 1
    late = t + 5 * MINUTE + dt.timedelta(seconds=40)
    assert await s.enqueue_due_periodic(late) == 1
    assert await s.enqueue_due_periodic(late) == 0
    assert await (await peer(s)).enqueue_due_periodic(late) == 0  # no declarations there: nothing
    assert await jobs_of(s) == [("tick", t), ("tick", t + 5 * MINUTE)]


async def test_latest_has_missed_nothing_before_its_first_tick(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s, missed="latest")
    t = base_tick()
    assert await s.enqueue_due_periodic(t + dt.timedelta(seconds=45)) == 0  # first tick, past its grace
    assert await s.enqueue_due_periodic(t + MINUTE) == 1
    assert await jobs_of(s) == [("tick", t + MINUTE)]


async def test_no_overlap_skips_ticks_while_the_previous_job_is_live(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s, overlap=False)
    t = base_tick()
    assert await s.enqueue_due_periodic(t) == 1
    first = (await info(s, "minutely", t)).last_job_id
    assert first is not None
    assert await s.enqueue_due_periodic(t + MINUTE) == 0  # the first job is still pending
    skipped = await info(s, "minutely", t + MINUTE)
    assert (skipped.last_tick, skipped.last_job_id, skipped.last_outcome) == (
        t + MINUTE,
        first,
        "skipped (overlap)",
    )
    assert await s.enqueue_due_periodic(t + MINUTE) == 0  # consumed: not offered again
    # Outside the maintenance election: a leader would run rounds on the wall clock, not t's.
    (done,) = await run_until_ended(s, first, maintenance=False)
    assert done.state == "succeeded"
    assert await s.enqueue_due_periodic(t + 2 * MINUTE) == 1
    second = await info(s, "minutely", t + 2 * MINUTE)
    assert second.last_job_id not in (None, first)
    assert second.last_outcome == "pending"
    assert second.last_job_id is not None
    await run_until_ended(s, second.last_job_id, maintenance=False)
    assert (await info(s, "minutely", t + 2 * MINUTE)).last_outcome == "succeeded"
    assert await jobs_of(s) == [("tick", t), ("tick", t + 2 * MINUTE)]


async def test_a_restarted_process_continues_from_the_last_tick(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s)
    t = base_tick()
    assert await s.enqueue_due_periodic(t) == 1
    restarted = await peer(s)  # the same declarations in a fresh process
    declare_on(restarted)
    assert await restarted.enqueue_due_periodic(t + dt.timedelta(seconds=3)) == 0
    assert await restarted.enqueue_due_periodic(t + MINUTE) == 1
    assert await jobs_of(s) == [("tick", t), ("tick", t + MINUTE)]


async def test_a_changed_declaration_keeps_its_last_tick(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s)
    t = base_tick()
    assert await s.enqueue_due_periodic(t) == 1
    redeployed = await peer(s)
    redeployed.register("tick", noop, queue="cron")
    redeployed.add_periodic("minutely", "* * * * *", job="tick", queue="elsewhere")  # same ticks, new text
    assert await redeployed.enqueue_due_periodic(t + dt.timedelta(seconds=1)) == 0
    listed = await info(redeployed, "minutely", t + dt.timedelta(seconds=1))
    assert (listed.schedule, listed.queue, listed.last_tick) == ("* * * * *", "elsewhere", t)
    (row,) = await (await peer(s)).list_periodic(t)  # the row, as a process without declarations lists it
    assert (row.schedule, row.queue, row.last_tick) == ("* * * * *", "elsewhere", t)


async def test_rows_without_a_declaration_here_are_listed_as_undeclared(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    declare_on(s)
    t = base_tick()
    await s.enqueue_due_periodic(t)
    (row,) = await (await peer(s)).list_periodic(t + dt.timedelta(seconds=5))
    assert (row.name, row.schedule, row.type, row.queue, row.declared) == (
        "minutely",
        "every 1m",
        "tick",
        "cron",
        False,
    )
    assert (row.last_tick, row.last_outcome, row.next_fire_at) == (t, "pending", t + MINUTE)


async def test_remove_periodic_forgets_the_row_and_a_declaring_process_writes_it_again(
    backend_scheduler: Scheduler,
) -> None:
    s = backend_scheduler
    declare_on(s)
    elsewhere = await peer(s)
    declare_on(elsewhere)
    t = base_tick()
    assert await s.enqueue_due_periodic(t) == 1
    assert await elsewhere.enqueue_due_periodic(t) == 0  # it has written its declarations too
    assert await s.remove_periodic("minutely") is True
    assert s.registry.periodic == {}
    assert await s.list_periodic(t) == []
    assert await s.remove_periodic("minutely") is False
    # Another process still declares it: its next round finds the row gone, writes it again
    # (a first declaration), and enqueues the tick.
    assert await elsewhere.enqueue_due_periodic(t + MINUTE) == 1
    assert [p.last_tick for p in await s.list_periodic(t + MINUTE)] == [t + MINUTE]
    assert await jobs_of(s) == [("tick", t), ("tick", t + MINUTE)]


async def test_list_periodic_before_any_round_shows_the_declaration(backend_scheduler: Scheduler) -> None:
    s = backend_scheduler
    s.register("report", noop)
    s.add_periodic("nightly", "30 2 * * *", job="report", timezone="Europe/Paris")
    now = dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC)
    (listed,) = await s.list_periodic(now)
    assert listed == PeriodicInfo(
        name="nightly",
        schedule="30 2 * * * (Europe/Paris)",
        type="report",
        queue="default",
        next_fire_at=dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC),
        last_tick=None,
        last_job_id=None,
        last_outcome=None,
    )
