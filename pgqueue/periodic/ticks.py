"""When a periodic declaration fires: its ticks, as aware UTC datetimes.

Every process computes the same ticks from the same declaration and nothing else (no
start time, no randomness), so the database can tell one tick from another and enqueue
each once: the ticks are the identity of the jobs.

- :class:`CronTicks`: a cron expression (croniter) read in a timezone. croniter works on
  aware datetimes, so daylight-saving changes follow the zone's rules: a local time that
  does not exist (clocks go forward) fires at the first time after the gap, as croniter
  decides. A local time that occurs twice (clocks go back) fires once, at its first
  occurrence, unless the hour field is ``*``: an hourly schedule follows real hours and
  fires in both, a daily one at 02:30 does not run twice that night (Vixie cron's rule).
  ``H`` fields are hashed from the declaration's name (croniter's ``hash_id``), so they
  spread declarations deterministically; ``R`` (random) fields are refused: each process
  would draw other ticks.
- :class:`EveryTicks`: every ``interval``, at the multiples of the interval since
  1970-01-01T00:00Z (a 5-minute interval fires at :00, :05…, a day at 00:00 UTC), whatever
  moment a process starts.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgqueue._errors import MAX_DELAY_S, ConfigError

if TYPE_CHECKING:  # croniter is imported when a cron schedule is declared: `import pgqueue` stays lean
    from croniter import croniter

__all__ = ["CronTicks", "EveryTicks", "Ticks", "check_timezone", "every_text", "ticks_from_text"]

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = dt.timedelta(microseconds=1)
MIN_EVERY_S = 1.0  # shorter intervals are polling, not periodic jobs
_RANDOM_TOKEN = re.compile(r"(^|[,/-])R($|[(,/-])")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_EVERY_RE = re.compile(r"^every ((?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+(?:\.\d+)?s)?)$")
_TZ_SUFFIX = re.compile(r"^(.*\S) \(([^()]+)\)$")


class Ticks(Protocol):
    """A schedule's ticks."""

    text: str
    """The schedule as listings show it (and as ``ticks_from_text`` reads it back)."""

    def latest(self, now: dt.datetime) -> dt.datetime | None:
        """The last tick at or before ``now`` (None: none before it)."""
        ...

    def following(self, after: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after ``after`` (None: it never fires again)."""
        ...


def check_timezone(timezone: str | ZoneInfo | None) -> ZoneInfo:
    """The zone named (UTC for None); ConfigError for a name the tz database does not know."""
    if timezone is None:
        return ZoneInfo("UTC")
    if isinstance(timezone, ZoneInfo):
        return timezone
    if not isinstance(timezone, str) or not timezone:
        raise ConfigError(f"timezone must be an IANA zone name such as 'Europe/Paris', got {timezone!r}")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone: unknown timezone {timezone!r} (an IANA name such as 'Europe/Paris')"
        ) from None


class CronTicks:
    """The ticks of a cron expression in a timezone (see the module)."""

    def __init__(self, expr: str, timezone: ZoneInfo, hash_id: str) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ConfigError(f"schedule must be a cron expression such as '*/5 * * * *', got {expr!r}")
        expr = " ".join(expr.split())
        if any(_RANDOM_TOKEN.search(field) for field in expr.split(" ")):
            raise ConfigError(
                f"schedule {expr!r}: R (random) fields are refused: every process would draw other ticks "
                "(H fields are hashed from the name, the same everywhere)"
            )
        self.expr = expr
        self.zone = timezone
        self._hash_id = hash_id.encode()
        from croniter import CroniterError, croniter  # noqa: PLC0415 - see the TYPE_CHECKING import

        try:
            expanded = croniter(expr, hash_id=self._hash_id).expanded
        except CroniterError as exc:
            raise ConfigError(f"schedule {expr!r} is not a valid cron expression: {exc}") from None
        # Only an hour field of `*` follows real hours through a repeated (fall-back) hour.
        self._every_hour = expanded[1] == ["*"]
        self.text = expr if timezone.key == "UTC" else f"{expr} ({timezone.key})"

    def _iter(self, at: dt.datetime) -> croniter:
        from croniter import croniter  # noqa: PLC0415 - imported by __init__ already: a dict lookup

        return croniter(self.expr, at.astimezone(self.zone), hash_id=self._hash_id)

    def _repeat(self, tick: dt.datetime) -> bool:
        """A second occurrence of a wall-clock time (fold 1) that this schedule does not repeat."""
        return (
            not self._every_hour and tick.fold == 1 and tick.replace(fold=0).utcoffset() != tick.utcoffset()
        )

    def latest(self, now: dt.datetime) -> dt.datetime | None:
        """The last tick at or before ``now``."""
        return self._walk(
            now + MICROSECOND, backwards=True
        )  # croniter's previous is strictly before its start

    def following(self, after: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after ``after``."""
        return self._walk(after, backwards=False)

    def _walk(self, start: dt.datetime, *, backwards: bool) -> dt.datetime | None:
        """The first tick from ``start`` in one direction that is not a skipped repeat."""
        from croniter import CroniterBadDateError  # noqa: PLC0415 - see _iter

        it = self._iter(start)
        step = it.get_prev if backwards else it.get_next
        try:
            tick: dt.datetime = step(dt.datetime)
            while self._repeat(tick):
                tick = step(dt.datetime)
        except CroniterBadDateError:
            return None
        return tick.astimezone(UTC)


class EveryTicks:
    """Every ``interval``, at its multiples since the epoch (see the module)."""

    def __init__(self, interval: float | dt.timedelta) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float | dt.timedelta):
            raise ConfigError(f"every must be a timedelta or a number of seconds, got {interval!r}")
        seconds = interval.total_seconds() if isinstance(interval, dt.timedelta) else float(interval)
        if not (MIN_EVERY_S <= seconds <= MAX_DELAY_S):  # NaN fails both comparisons
            raise ConfigError(f"every must be between {MIN_EVERY_S:g} second and a century, got {interval!r}")
        self._us = round(seconds * 1_000_000)  # integer microseconds: exact multiples, no float drift
        self.interval = dt.timedelta(microseconds=self._us)
        self.text = every_text(self.interval)

    def latest(self, now: dt.datetime) -> dt.datetime | None:
        """The last multiple of the interval at or before ``now``."""
        return EPOCH + MICROSECOND * ((now - EPOCH) // MICROSECOND // self._us * self._us)

    def following(self, after: dt.datetime) -> dt.datetime | None:
        """The first multiple of the interval strictly after ``after``."""
        return EPOCH + MICROSECOND * (((after - EPOCH) // MICROSECOND // self._us + 1) * self._us)


def every_text(interval: dt.timedelta) -> str:
    """``every 1h30m``: the largest units first; fractions of a second as a decimal."""
    us = interval // MICROSECOND
    parts = []
    seconds, frac = divmod(us, 1_000_000)
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if unit == "s" and frac:
            parts.append(f"{count}.{frac:06d}".rstrip("0") + "s")
        elif count:
            parts.append(f"{count}{unit}")
    return "every " + "".join(parts)


def ticks_from_text(text: str, name: str) -> CronTicks | EveryTicks:
    """The ticks a stored schedule text names (``CronTicks.text`` or ``EveryTicks.text``).

    Listings read the schedules of declarations this process does not make from the
    table; ConfigError when the text is neither form.
    """
    m = _EVERY_RE.match(text)
    if m and m.group(1):
        total = 0.0
        for count, unit in re.findall(r"(\d+(?:\.\d+)?)([dhms])", m.group(1)):
            total += float(count) * dict(_UNITS)[unit]
        return EveryTicks(total)
    tz = _TZ_SUFFIX.match(text)
    if tz:
        return CronTicks(tz.group(1), check_timezone(tz.group(2)), name)
    return CronTicks(text, check_timezone(None), name)
