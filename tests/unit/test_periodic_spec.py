"""Periodic declarations: validation at declaration, grace, the policies' due ticks, next fire times."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random
from typing import Any

import pytest

from pgqueue import ConfigError, Job, ParamsEncodeError, ParamsValidationError, Scheduler
from pgqueue.periodic.enqueuer import PeriodicEnqueuer
from pgqueue.periodic.spec import PeriodicSpec, declare

UTC = dt.UTC


def utc(  # noqa: PLR0917 - datetime's own positional fields
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def spec(schedule: str | None = None, **options: Any) -> PeriodicSpec:
    base: dict[str, Any] = {
        "job": "t",
        "every": None,
        "params": None,
        "queue": None,
        "priority": 0,
        "timezone": None,
        "missed": "skip",
        "overlap": True,
        "grace": None,
    }
    return declare("p", schedule, **{**base, **options})


async def noop(job: Job) -> None:
    return None


# -- grace and the policies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "grace"),
    [
        ({"every": 10}, 5.0),
        ({"every": dt.timedelta(hours=1)}, 60.0),
        ({"schedule": "* * * * *"}, 30.0),
        ({"schedule": "0 * * * *"}, 60.0),
        ({"every": 10, "grace": 2}, 2.0),
        ({"every": 10, "grace": dt.timedelta(seconds=20)}, 20.0),
    ],
)
def test_default_grace_is_half_the_gap_to_the_next_tick_at_most_a_minute(
    declared: dict[str, Any], grace: float
) -> None:
    s = spec(**declared)
    tick = s.ticks.latest(utc(2026, 5, 1, 12, 0, 3))
    assert tick is not None
    assert s.grace(tick) == grace


def test_skip_offers_a_tick_only_within_its_grace() -> None:
    s = spec(every=10)
    assert s.due(utc(2026, 5, 1, 12, 0, 5)) == (utc(2026, 5, 1, 12), True)
    assert s.due(utc(2026, 5, 1, 12, 0, 5, 1)) is None  # 5 s and a microsecond late: missed


def test_a_schedule_that_has_not_fired_yet_offers_nothing() -> None:
    from_2050 = spec("0 0 1 1 * 0 2050")  # croniter's seventh field: the year
    assert from_2050.due(utc(2026, 5, 1)) is None
    assert from_2050.next_fire(utc(2026, 5, 1), None) == utc(2050, 1, 1)


def test_latest_offers_a_late_tick_marked_as_not_fresh() -> None:
    s = spec(every=10, missed="latest")
    assert s.due(utc(2026, 5, 1, 12, 0, 9)) == (utc(2026, 5, 1, 12), False)


def test_next_fire_is_a_due_tick_not_yet_consumed_else_the_next_tick() -> None:
    s = spec(every=10)
    now = utc(2026, 5, 1, 12, 0, 3)
    assert s.next_fire(now, None) == utc(2026, 5, 1, 12)
    assert s.next_fire(now, utc(2026, 5, 1, 12)) == utc(2026, 5, 1, 12, 0, 10)
    assert s.next_fire(utc(2026, 5, 1, 12, 0, 7), None) == utc(2026, 5, 1, 12, 0, 10)  # missed: skipped
    late = spec(every=10, missed="latest")
    assert late.next_fire(utc(2026, 5, 1, 12, 0, 7), utc(2026, 5, 1, 11)) == utc(2026, 5, 1, 12)  # caught up
    assert late.next_fire(utc(2026, 5, 1, 12, 0, 7), None) == utc(
        2026, 5, 1, 12, 0, 10
    )  # never fired: no catch-up


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "exactly one of a cron schedule"),
        ({"schedule": "* * * * *", "every": 10}, "exactly one of a cron schedule"),
        ({"schedule": "61 * * * *"}, "not a valid cron expression"),
        ({"schedule": "0 0 30 2 *"}, "never fires again"),
        ({"every": 0}, "every must be"),
        ({"every": -1}, "every must be"),
        ({"every": 10, "timezone": "Europe/Paris"}, "timezone applies to cron"),
        ({"schedule": "* * * * *", "timezone": "Nowhere/Land"}, "unknown timezone"),
        ({"every": 10, "missed": "all"}, "missed must be 'skip' or 'latest'"),
        ({"every": 10, "overlap": "no"}, "overlap must be True or False"),
        ({"every": 10, "grace": 0}, "grace must be a positive duration"),
        ({"every": 10, "grace": -1}, "grace must be between"),
        ({"every": 10, "grace": float("nan")}, "grace must be between"),
        ({"every": 10, "priority": 40_000}, "priority"),
        ({"every": 10, "queue": ""}, "queue"),
        ({"every": 10, "job": ""}, "job"),
    ],
)
def test_bad_declarations_raise_config_error_naming_the_field(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        spec(**options)


def test_scheduler_refuses_a_bad_declaration_and_keeps_nothing() -> None:
    s = Scheduler.in_memory()
    s.register("t", noop)
    with pytest.raises(ConfigError, match="exactly one of"):
        s.add_periodic("p", job="t")
    with pytest.raises(ConfigError, match="periodic name"):
        s.add_periodic("", "* * * * *", job="t")
    with pytest.raises(ConfigError, match="unknown timezone"):
        s.periodic("* * * * *", "decorated", timezone="Nowhere/Land")(noop)
    assert s.registry.periodic == {}
    assert "decorated" not in s.registry  # the type is registered only with a valid declaration


def test_duplicate_declaration_names_are_refused() -> None:
    s = Scheduler.in_memory()
    s.register("t", noop)
    s.add_periodic("p", every=60, job="t")
    with pytest.raises(ConfigError, match="periodic 'p' is already declared"):
        s.add_periodic("p", "* * * * *", job="t")
    with pytest.raises(ConfigError, match="periodic 'p' is already declared"):
        s.periodic(every=5, name="p")(noop)
    assert "p" not in s.registry


def test_decorator_registers_the_function_as_a_job_type_named_after_it() -> None:
    s = Scheduler.in_memory()

    @s.periodic(every=dt.timedelta(minutes=5), queue="cron", params={"x": 1}, max_attempts=3)
    async def cleanup(job: Job) -> None:
        return None

    assert cleanup is not None
    jt = s.registry.get("cleanup")
    assert jt is not None
    assert (jt.queue, jt.max_attempts) == ("cron", 3)
    declared = s.registry.periodic["cleanup"]
    assert (declared.type, declared.schedule, declared.params) == ("cleanup", "every 5m", {"x": 1})


def test_decorator_needs_a_name_for_a_callable_without_one() -> None:
    s = Scheduler.in_memory()
    with pytest.raises(ConfigError, match="name= is needed"):
        s.periodic(every=60)(functools.partial(noop))
    s.periodic(every=60, name="partial")(functools.partial(noop))
    assert list(s.registry.periodic) == ["partial"]


def test_decorator_refuses_params_that_cannot_be_encoded_before_registering() -> None:
    s = Scheduler.in_memory()
    with pytest.raises(ParamsEncodeError):
        s.periodic(every=60, name="bad", params={"x": float("nan")})(noop)
    assert "bad" not in s.registry
    assert s.registry.periodic == {}


@dataclasses.dataclass
class Report:
    day: int


def test_params_are_validated_by_the_types_model_at_declaration_when_the_type_is_known() -> None:
    s = Scheduler.in_memory()
    s.register("report", noop, params=Report)
    with pytest.raises(ParamsValidationError, match="day"):
        s.add_periodic("daily", "0 6 * * *", job="report", params={"day": "not a number"})
    s.add_periodic("daily", "0 6 * * *", job="report", params={"day": 3})
    assert list(s.registry.periodic) == ["daily"]


async def test_unknown_type_and_bad_params_surface_when_the_enqueuer_is_built() -> None:
    s = Scheduler.in_memory()
    s.add_periodic("later", every=60, job="registered_later", params={"day": "x"})
    with pytest.raises(ConfigError, match=r"periodic 'later': job='registered_later' is not a registered"):
        await s.enqueue_due_periodic(utc(2026, 5, 1))
    s.register("registered_later", noop, params=Report)
    with pytest.raises(ParamsValidationError, match="periodic 'later'"):
        PeriodicEnqueuer(await s.open(), s.registry)
    assert await (await s.open()).periodic_list() == []  # nothing was written


async def test_now_must_be_aware() -> None:
    s = Scheduler.in_memory()
    with pytest.raises(ConfigError, match="timezone-aware"):
        await s.enqueue_due_periodic(dt.datetime(2026, 5, 1))  # noqa: DTZ001 - the naive time refused
    with pytest.raises(ConfigError, match="timezone-aware"):
        await s.list_periodic(dt.datetime(2026, 5, 1))  # noqa: DTZ001


async def test_a_round_without_declarations_enqueues_nothing_and_has_no_next_tick() -> None:
    s = Scheduler.in_memory()
    enqueuer = PeriodicEnqueuer(await s.open(), s.registry)
    assert await enqueuer.run_once(utc(2026, 5, 1)) == float("inf")
    assert await s.enqueue_due_periodic() == 0


async def test_the_enqueuer_keeps_windows_that_match_computing_them_afresh() -> None:
    """The enqueuer steps each declaration's window on instead of asking croniter again: for
    any walk of the clock (small steps, jumps, a clock going back), it must match a fresh one."""
    s = Scheduler.in_memory()
    s.register("t", noop)
    s.add_periodic("irregular", "* * * * * */7", job="t")  # 0, 7 ... 56, then 0: gaps of 7 s and 4 s
    s.add_periodic("tens", every=10, job="t")
    enqueuer = PeriodicEnqueuer(await s.open(), s.registry)
    rng = random.Random(14)
    now = utc(2026, 5, 1, 12)
    for _ in range(400):
        now += dt.timedelta(seconds=rng.choice([0.5, 1, 3, 4, 7, 30, 200, -2, -60]))
        for spec in enqueuer.specs:
            assert enqueuer._window(spec, now) == spec.window(now), (spec.name, now)
