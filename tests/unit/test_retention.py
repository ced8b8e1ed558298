"""Retention without a database: the durations it accepts, the round's bookkeeping (busy
steps, progress, dry run) on a store that answers as PostgreSQL's would, and the memory
store's rule for which runs go."""

from __future__ import annotations

import datetime as dt

import pytest
import typer

from pgqueue import ConfigError, Scheduler
from pgqueue._config import RETENTION_FAILED_S, RETENTION_S, WorkerConfig, check_retention
from pgqueue._retention_api import prune_durations
from pgqueue.cli._app import parse_duration
from pgqueue.cli.prune import _summary
from pgqueue.maintenance.retention import PruneResult, Retention
from pgqueue.store.memory import MemoryStore
from pgqueue.store.memory.rows import LoggedRun
from pgqueue.store.retention_plan import RetentionPlan

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


def test_defaults_are_14_and_30_days() -> None:
    config = WorkerConfig(queues=("q",))
    assert (config.retention, config.retention_failed) == (RETENTION_S, RETENTION_FAILED_S)
    assert check_retention(config.retention, config.retention_failed) == (14 * 86400.0, 30 * 86400.0)
    assert prune_durations(None, None) == (14 * 86400.0, 30 * 86400.0)
    assert prune_durations(40 * DAY, None) == (40 * 86400.0, 40 * 86400.0)  # failed: never shorter
    assert prune_durations(3600, 7 * DAY) == (3600.0, 7 * 86400.0)


@pytest.mark.parametrize(
    ("keep", "keep_failed", "message"),
    [
        (0, 10, "retention must be a positive duration"),
        (dt.timedelta(0), DAY, "retention must be a positive duration"),
        (-1, 10, "retention must be between 0 seconds and a century"),
        (float("nan"), 10, "retention must be between"),
        ("14d", 10, "retention must be a number of seconds or a timedelta"),
        (True, 10, "retention must be a number of seconds or a timedelta"),
        (10, 5, r"retention_failed \(5 s\) must be at least retention \(10 s\)"),
        (2 * DAY, DAY, r"retention_failed \(1 day, 0:00:00\) must be at least retention \(2 days"),
    ],
)
def test_bad_retentions_are_refused_when_the_config_is_built(
    keep: object, keep_failed: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerConfig(queues=("q",), retention=keep, retention_failed=keep_failed)  # type: ignore[arg-type]


def test_worker_options_take_timedeltas() -> None:
    config = WorkerConfig.build(["q"], retention=dt.timedelta(days=7), retention_failed=dt.timedelta(days=7))
    assert config.retention == dt.timedelta(days=7)


def test_prune_names_its_own_arguments() -> None:
    with pytest.raises(
        ConfigError, match=r"failed_older_than \(60 s\) must be at least older_than \(120 s\)"
    ):
        prune_durations(120, 60)
    with pytest.raises(ConfigError, match="older_than must be a positive"):
        prune_durations(0, None)


async def test_prune_refuses_bad_durations_before_touching_the_store() -> None:
    s = Scheduler.in_memory()
    with pytest.raises(ConfigError, match="older_than"):
        await s.prune(-5)
    with pytest.raises(ConfigError, match="failed_older_than"):
        await s.prune(DAY, 3600)
    await s.close()


def test_parse_duration_units() -> None:
    assert [parse_duration("-", t) for t in ("90s", "15m", "36h", "14d", "2w", " 1.5d ")] == [
        dt.timedelta(seconds=90),
        dt.timedelta(minutes=15),
        dt.timedelta(hours=36),
        dt.timedelta(days=14),
        dt.timedelta(weeks=2),
        dt.timedelta(days=1.5),
    ]
    for bad in ("", "d", "14", "14 days", "1e3s", "-1d", "14D"):
        with pytest.raises(typer.BadParameter, match="takes a number and a unit"):
            parse_duration("--older-than", bad)


def test_the_summary_line() -> None:
    result = PruneResult(
        T0, T0 - 16 * DAY, 2, ("job_runs_done_p20260301",), 1, busy=("job_runs_done_p20260302",)
    )
    assert _summary(result) == (
        "dropped 1 partition (runs before 2026-03-10 12:00 UTC, failed jobs' before 2026-02-22 12:00 UTC), "
        "created 2, deleted 1 row; 1 skipped (locks busy), the next round does them"
    )
    dry = PruneResult(T0, T0, 0, (), 3, dry_run=True)
    assert _summary(dry).startswith("would drop 0 partitions")
    assert _summary(dry).endswith("would create 0, would delete 3 rows")


class _Store:
    """Answers as the PostgreSQL store would; records the calls. ``busy``: steps whose locks
    do not come (None), as a lock timeout makes them."""

    def __init__(
        self, plan: RetentionPlan, *, expired_after: list[str] | None = None, busy: set[object]
    ) -> None:
        self.plan = plan
        self.expired_after = expired_after
        self.busy = busy
        self.calls: list[tuple[str, object]] = []
        self.schema = "s"

    async def runs_retention_plan(
        self, now: dt.datetime | None, keep_s: float, keep_failed_s: float, days_ahead: int
    ) -> RetentionPlan:
        self.calls.append(("plan", (now, keep_s, keep_failed_s, days_ahead)))
        return self.plan

    async def runs_partitions_expired(
        self, done_before: dt.datetime, failed_before: dt.datetime
    ) -> list[str]:
        self.calls.append(("expired", (done_before, failed_before)))
        return list(self.expired_after if self.expired_after is not None else self.plan.expired)

    async def runs_partition_ensure(self, day: dt.date, lock_timeout: float) -> int | None:
        self.calls.append(("ensure", day))
        return None if day in self.busy else 2

    async def runs_partition_drop(self, partition: str, lock_timeout: float) -> int | None:
        self.calls.append(("drop", partition))
        return None if partition in self.busy else 1

    async def runs_defaults_expire(self, done_before: dt.datetime, failed_before: dt.datetime) -> int:
        self.calls.append(("defaults", (done_before, failed_before)))
        return 5


def _plan(missing: tuple[dt.date, ...], expired: tuple[str, ...], default_rows: int = 0) -> RetentionPlan:
    return RetentionPlan(T0, T0 - 16 * DAY, missing, 2 * len(missing), expired, default_rows)


async def test_a_round_creates_then_deletes_then_drops_and_reports_busy_steps() -> None:
    day1, day2 = T0.date(), T0.date() + DAY
    store = _Store(_plan((day1, day2), ("a", "b", "c"), default_rows=5), busy={day2, "b"})
    progress: list[tuple[int, int]] = []
    result = await Retention(store, DAY, 2 * DAY, 4).run_once(
        T0, on_progress=lambda d, t: progress.append((d, t))
    )
    assert store.calls == [
        ("plan", (T0, 86400.0, 172800.0, 4)),
        ("ensure", day1),
        ("ensure", day2),
        ("expired", (T0, T0 - 16 * DAY)),  # a day was created: what expired is read again
        ("defaults", (T0, T0 - 16 * DAY)),
        ("drop", "a"),
        ("drop", "b"),
        ("drop", "c"),
    ]
    assert result == PruneResult(T0, T0 - 16 * DAY, 2, ("a", "c"), 5 + 2, busy=(day2.isoformat(), "b"))
    assert progress == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


async def test_a_partition_created_expired_is_dropped_in_the_same_round() -> None:
    store = _Store(_plan((T0.date(),), ()), expired_after=["x"], busy=set())
    progress: list[tuple[int, int]] = []
    result = await Retention(store).run_once(on_progress=lambda d, t: progress.append((d, t)))
    assert result.partitions_dropped == ("x",)
    assert progress[-1] == (2, 2)


async def test_a_dry_run_only_reads_the_plan() -> None:
    store = _Store(_plan((T0.date(),), ("a",), default_rows=3), busy=set())
    result = await Retention(store).run_once(dry_run=True)
    assert [c[0] for c in store.calls] == ["plan"]
    assert result == PruneResult(T0, T0 - 16 * DAY, 2, ("a",), 3, dry_run=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days_ahead": -1}, "days_ahead must be an integer from 0 to 366"),
        ({"days_ahead": 367}, "days_ahead"),
        ({"days_ahead": True}, "days_ahead"),
        ({"lock_timeout": 0}, "lock_timeout must be a positive number"),
        ({"keep": 5, "keep_failed": 1}, "retention_failed"),
    ],
)
def test_bad_round_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Retention(_Store(_plan((), ()), busy=set()), **kwargs)  # type: ignore[arg-type]


async def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        await Retention(_Store(_plan((), ()), busy=set())).run_once(dt.datetime(2026, 1, 1))  # noqa: DTZ001


def _run(
    job_id: int, attempt: int, finished: dt.datetime, outcome: str, *, put_back: bool = False
) -> LoggedRun:
    at = finished.timestamp()
    return LoggedRun(
        job_id, None, at, at, at, at, at if put_back else None, attempt, 0, "q", "t", outcome, None, None
    )


async def test_the_memory_store_removes_runs_by_the_partitions_they_would_be_in() -> None:
    """Days are UTC days; a day goes once it is wholly before its tree's cutoff (midnight UTC
    at or before now minus the retention), as on PostgreSQL; a failed run goes with a later
    run of its job."""
    store = MemoryStore()
    midnight = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    store.runs = {
        1: [_run(1, 1, midnight - dt.timedelta(microseconds=1), "succeeded")],  # 28 Feb, its last instant
        2: [_run(2, 1, midnight, "succeeded")],  # 1 Mar: kept
        3: [_run(3, 1, midnight - DAY, "crashed")],  # 28 Feb, failed for good: kept
        4: [_run(4, 1, midnight - DAY, "crashed", put_back=True)],  # 28 Feb, put back: done tree
        6: [_run(6, 1, midnight - DAY, "failed"), _run(6, 2, midnight - DAY / 2, "succeeded")],  # retried
        7: [_run(7, 1, midnight - 9 * DAY, "timeout")],  # 20 Feb, failed for good
    }
    now = midnight + 14 * DAY + dt.timedelta(hours=23)
    plan = await store.runs_retention_plan(now, 14 * 86400, 16 * 86400, 3)
    assert (plan.done_before, plan.failed_before) == (midnight, midnight - 2 * DAY)
    assert plan.expired == ("job_runs_failed_p20260220", "job_runs_done_p20260228")
    assert (plan.missing, plan.missing_partitions, plan.default_rows) == ((), 0, 0)
    assert [await store.runs_partition_drop(name, 1.0) for name in plan.expired] == [0, 1]
    assert sorted(store.runs) == [2, 3]
    assert await store.runs_partitions_expired(plan.done_before, plan.failed_before) == []
    with pytest.raises(ValueError, match="not a day partition"):
        await store.runs_partition_drop("jobs", 1.0)
