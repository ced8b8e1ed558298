"""Periodic tick math: every= alignment, cron in a timezone across DST, the text round trip."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pgqueue import ConfigError
from pgqueue.periodic.ticks import CronTicks, EveryTicks, check_timezone, every_text, ticks_from_text

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")


def utc(  # noqa: PLR0917 - datetime's own positional fields
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def cron(expr: str, tz: str = "UTC", name: str = "p") -> CronTicks:
    return CronTicks(expr, check_timezone(tz), name)


def run(ticks: CronTicks | EveryTicks, start: dt.datetime, count: int) -> list[dt.datetime]:
    out, at = [], start
    for _ in range(count):
        nxt = ticks.following(at)
        assert nxt is not None
        out.append(nxt)
        at = nxt
    return out


# -- every= ------------------------------------------------------------------------------


def test_every_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    five = EveryTicks(dt.timedelta(minutes=5))
    assert five.latest(utc(2026, 5, 1, 12, 7, 13)) == utc(2026, 5, 1, 12, 5)
    assert five.following(utc(2026, 5, 1, 12, 7, 13)) == utc(2026, 5, 1, 12, 10)
    odd = EveryTicks(7)  # not a divisor of a minute: still the same ticks in every process
    for now in (utc(2026, 5, 1, 12, 7, 13), utc(2031, 1, 1), utc(2026, 5, 1, 12, 7, 13, 999_999)):
        tick = odd.latest(now)
        assert tick is not None
        assert tick <= now < tick + dt.timedelta(seconds=7)
        assert (tick - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % 7 == 0


def test_every_tick_at_its_own_instant_is_the_latest_and_the_following_is_the_next() -> None:
    ten = EveryTicks(10)
    at = utc(2026, 5, 1, 12, 0, 10)
    assert ten.latest(at) == at
    assert ten.following(at) == at + dt.timedelta(seconds=10)
    assert ten.latest(at - dt.timedelta(microseconds=1)) == utc(2026, 5, 1, 12, 0, 0)


def test_every_day_fires_at_midnight_utc_and_fractions_of_seconds_are_exact() -> None:
    assert EveryTicks(dt.timedelta(days=1)).latest(utc(2026, 5, 1, 23, 59)) == utc(2026, 5, 1)
    fractional = EveryTicks(1.5)
    assert run(fractional, utc(2026, 5, 1), 3) == [
        utc(2026, 5, 1, 0, 0, 1, 500_000),
        utc(2026, 5, 1, 0, 0, 3),
        utc(2026, 5, 1, 0, 0, 4, 500_000),
    ]


@pytest.mark.parametrize(
    "bad", [0, -5, 0.5, dt.timedelta(milliseconds=999), float("nan"), float("inf"), True, "5m"]
)
def test_every_refuses_intervals_under_a_second_and_non_durations(bad: object) -> None:
    with pytest.raises(ConfigError, match="every"):
        EveryTicks(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (dt.timedelta(seconds=10), "every 10s"),
        (dt.timedelta(minutes=5), "every 5m"),
        (dt.timedelta(hours=1, minutes=30), "every 1h30m"),
        (dt.timedelta(days=2, seconds=1), "every 2d1s"),
        (dt.timedelta(seconds=1.25), "every 1.25s"),
    ],
)
def test_every_text_reads_back_as_the_same_ticks(interval: dt.timedelta, text: str) -> None:
    assert every_text(interval) == text
    back = ticks_from_text(text, "p")
    assert isinstance(back, EveryTicks)
    assert back.interval == interval


# -- cron --------------------------------------------------------------------------------


def test_cron_latest_is_at_or_before_now_and_following_strictly_after() -> None:
    every5 = cron("*/5 * * * *")
    assert every5.latest(utc(2026, 5, 1, 12, 7)) == utc(2026, 5, 1, 12, 5)
    assert every5.latest(utc(2026, 5, 1, 12, 5)) == utc(2026, 5, 1, 12, 5)
    assert every5.following(utc(2026, 5, 1, 12, 5)) == utc(2026, 5, 1, 12, 10)
    seconds = cron("* * * * * */10")  # croniter's sixth field: seconds
    assert seconds.latest(utc(2026, 5, 1, 12, 5, 27)) == utc(2026, 5, 1, 12, 5, 20)


def test_cron_in_a_timezone_fires_at_local_time() -> None:
    weekdays = cron("0 9 * * 1-5", "America/New_York")
    friday_evening = utc(2026, 5, 1, 23)  # Friday 19:00 in New York (EDT, UTC-4)
    assert weekdays.following(friday_evening) == utc(2026, 5, 4, 13)  # Monday 09:00 EDT
    assert weekdays.latest(friday_evening) == utc(2026, 5, 1, 13)


def test_cron_hourly_follows_real_hours_across_spring_forward_and_fall_back() -> None:
    hourly = cron("30 * * * *", "Europe/Paris")
    # 2026-03-29: 02:00 local does not exist (clocks go to 03:00); in UTC the ticks stay hourly.
    spring = run(hourly, utc(2026, 3, 28, 23), 4)
    assert spring == [
        utc(2026, 3, 28, 23, 30),
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 2, 30),
    ]
    # 2026-10-25: 02:00-03:00 local happens twice; an hourly schedule fires in both.
    autumn = run(hourly, utc(2026, 10, 24, 23), 4)
    assert autumn == [
        utc(2026, 10, 24, 23, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 30),
    ]
    assert hourly.latest(utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 1, 30)


def test_cron_daily_in_the_repeated_hour_fires_once_and_in_the_skipped_hour_after_the_gap() -> None:
    nightly = cron("30 2 * * *", "Europe/Paris")
    autumn = run(nightly, utc(2026, 10, 24, 12), 2)
    assert autumn == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]  # 02:30 CEST once, then 02:30 CET
    assert nightly.latest(utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)  # not the second 02:30
    spring = run(nightly, utc(2026, 3, 28, 12), 2)
    # 02:30 does not exist on 2026-03-29: croniter fires at 03:00 CEST (01:00 UTC), once.
    assert spring == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]


def test_cron_hashed_fields_depend_on_the_name_only() -> None:
    at = utc(2026, 5, 1, 12)
    assert cron("H * * * *", name="a").following(at) == cron("H * * * *", name="a").following(at)
    spread = {cron("H * * * *", name=n).following(at) for n in "abcdefgh"}
    assert len(spread) > 1


@pytest.mark.parametrize("expr", ["R * * * *", "0 R(0-5) * * *", "*/R * * * *"])
def test_cron_random_fields_are_refused(expr: str) -> None:
    with pytest.raises(ConfigError, match="R \\(random\\)"):
        cron(expr)


def test_cron_month_and_day_names_are_not_taken_for_random_fields() -> None:
    assert cron("0 0 1 MAR FRI").following(utc(2026, 1, 1)) is not None


@pytest.mark.parametrize("expr", ["61 * * * *", "* * *", "nonsense", "", "   "])
def test_cron_refuses_invalid_expressions(expr: str) -> None:
    with pytest.raises(ConfigError, match="schedule"):
        cron(expr)


def test_cron_that_never_matches_has_no_ticks() -> None:
    feb30 = cron("0 0 30 2 *")
    assert feb30.following(utc(2026, 1, 1)) is None
    assert feb30.latest(utc(2026, 1, 1)) is None


def test_cron_text_names_the_zone_unless_utc_and_reads_back() -> None:
    assert cron("*/5 * * * *").text == "*/5 * * * *"
    paris = cron("30  2 * * *", "Europe/Paris")
    assert paris.text == "30 2 * * * (Europe/Paris)"
    back = ticks_from_text(paris.text, "p")
    assert isinstance(back, CronTicks)
    assert back.following(utc(2026, 10, 24, 12)) == paris.following(utc(2026, 10, 24, 12))
    with pytest.raises(ConfigError):
        ticks_from_text("every", "p")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", 5])
def test_unknown_timezones_are_refused(tz: object) -> None:
    with pytest.raises(ConfigError, match="timezone"):
        check_timezone(tz)  # type: ignore[arg-type]


def test_timezone_accepts_zoneinfo_and_defaults_to_utc() -> None:
    assert check_timezone(PARIS) is PARIS
    assert check_timezone(None).key == "UTC"
