"""The only home of options: defaults as constants with units, validation, derived defaults.

:class:`WorkerConfig` holds every worker option; ``Scheduler.worker(**overrides)`` and the
``pgqueue worker`` command both derive from its fields (:meth:`WorkerConfig.build`,
:func:`field_docs`), so a new option is one field here. :class:`SchedulerConfig` does the
same for the scheduler's own options.

Each bad value raises :class:`ConfigError` (a ``ValueError``) naming the field, when the
worker or scheduler is built, not minutes later inside a loop.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import inspect
import itertools
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Self

from ._errors import ConfigError, check_delay
from ._models import ShouldLogRun

if TYPE_CHECKING:  # pgqueue.metrics imports prometheus-client, an optional extra
    from .metrics import Metrics

__all__ = [
    "DERIVED_DEFAULTS",
    "SchedulerConfig",
    "WorkerConfig",
    "check_max_attempts",
    "check_priority",
    "check_retention",
    "check_run_at",
    "check_timeout",
    "field_docs",
]

CONCURRENCY = 10
PREFETCH = 500  # most jobs a worker holds claimed and unfinished, at least
PREFETCH_PER_RUNNER = 4  # and at least this many per runner (see WorkerConfig.prefetch)
POLL_INTERVAL_S = 5.0  # backstop when no notification arrives (LISTEN normally wakes us)
FLUSH_MAX = 500  # results buffered before a flush
FLUSH_AGE_S = 0.02  # oldest buffered result waits at most this long
BUFFER_BATCHES = 4  # results buffered beyond flush_max × this block the runners
DERIVED_DEFAULTS = {"prefetch": "max(500, 4 × concurrency)", "buffer_max": "4 × flush_max"}
"""How ``WorkerConfig.build`` derives these defaults from other options (the CLI's help shows it)."""
HEARTBEAT_INTERVAL_S = 5.0
DEAD_AFTER_S = 30.0  # a worker silent this long is dead; its jobs are freed
SHUTDOWN_GRACE_S = 30.0  # running jobs get this long to finish on shutdown before they are interrupted
MAX_ATTEMPTS = 25  # runs (claims) a job gets at most, crashes included; River's default
LISTEN_PROBE_INTERVAL_S = 10.0
LISTEN_PROBE_TIMEOUT_MAX_S = 5.0  # a probe unanswered this long (or half the interval) means reconnect
SCHEMA = "pgqueue"
POOL_MIN_SIZE = 0  # the scheduler's own pool connects on first use: it can start while the database is down
POOL_MAX_SIZE = 10
VACUUM_MIN_DEAD = 20_000  # dead tuples in the hot table that make a worker VACUUM it
PROGRESS_INTERVAL_S = 1.0  # a job's progress reports are written at most this often
RETENTION_S = 14 * 86_400.0  # the run log keeps a run this long (rounded up to whole UTC days)
RETENTION_FAILED_S = 30 * 86_400.0  # and the final run of a failed job this long
RUNS_DAYS_AHEAD = 3  # days after today whose run-log partitions exist ahead of time
RUNS_DDL_LOCK_TIMEOUT_S = 1.0  # longest a partition create/drop waits for its locks (flushes wait behind it)
MAX_IDENT_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
SMALLINT = (-32768, 32767)  # the priority column's range


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def check_timeout(name: str, value: float | None) -> float | None:
    """A run-time limit: None (no limit) or a positive number of seconds."""
    if value is None:
        return None
    _positive(name, value)
    return float(value)


def check_max_attempts(value: int) -> int:
    """Runs a job may get: an integer from 1 to 1000."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:  # noqa: PLR2004
        raise ConfigError(f"max_attempts must be an integer from 1 to 1000, got {value!r}")
    return value


def check_name(kind: str, value: str) -> None:
    """Queue and type names: non-empty text without NUL, at most 200 characters."""
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > 200:  # noqa: PLR2004
        raise ConfigError(f"{kind} must be a non-empty string of at most 200 characters, got {value!r}")


def check_run_at(run_at: dt.datetime | dt.timedelta | None) -> tuple[dt.datetime | None, float | None]:
    """(absolute time, or delay in seconds): a timedelta is added to the database's clock."""
    if run_at is None:
        return None, None
    if isinstance(run_at, dt.timedelta):
        return None, check_delay(run_at, "run_at")
    if not isinstance(run_at, dt.datetime):
        raise ConfigError(f"run_at must be a timezone-aware datetime or a timedelta, got {run_at!r}")
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        raise ConfigError(f"run_at must be timezone-aware (naive datetimes are ambiguous), got {run_at!r}")
    try:
        # The driver stores UTC: a time at the edge of datetime's range (9999-12-31 at -14:00)
        # has no UTC equivalent, and is bad input here rather than a crash at the insert.
        utc = run_at.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise ConfigError(
            f"run_at {run_at.isoformat()} is outside the range of times that can be stored in UTC"
        ) from None
    return utc, None


def check_priority(priority: int) -> int:
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not SMALLINT[0] <= priority <= SMALLINT[1]
    ):
        raise ConfigError(f"priority must be an integer in [{SMALLINT[0]}, {SMALLINT[1]}], got {priority!r}")
    return priority


def check_retention(
    keep: float | dt.timedelta,
    keep_failed: float | dt.timedelta,
    names: tuple[str, str] = ("retention", "retention_failed"),
) -> tuple[float, float]:
    """How long the run log keeps runs, and the final runs of failed jobs: seconds, each > 0.

    A failed job's final run is kept at least as long as the other runs: retention drops
    the two kinds by their own cutoffs, and a shorter one for failures would lose exactly
    the runs someone comes back to look at.
    """
    seconds = []
    for name, value in zip(names, (keep, keep_failed), strict=True):
        s = check_delay(value, name)
        if s <= 0:
            raise ConfigError(f"{name} must be a positive duration, got {_duration(value)}")
        seconds.append(s)
    if seconds[1] < seconds[0]:
        raise ConfigError(
            f"{names[1]} ({_duration(keep_failed)}) must be at least {names[0]} ({_duration(keep)}): "
            "failed jobs are kept at least as long as the rest"
        )
    return seconds[0], seconds[1]


def _duration(value: float | dt.timedelta) -> str:
    return str(value) if isinstance(value, dt.timedelta) else f"{value!r} s"


def check_schema(schema: str) -> None:
    """The schema name must fit PostgreSQL's identifiers, with room for the channel suffix."""
    if not isinstance(schema, str) or not schema or "\x00" in schema:
        raise ConfigError(f"schema must be a non-empty string, got {schema!r}")
    if len((schema + "_events").encode()) > MAX_IDENT_BYTES:
        raise ConfigError(f"schema name is too long ({schema!r}): at most {MAX_IDENT_BYTES - 7} bytes")


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How one worker claims, runs and records jobs."""

    queues: tuple[str, ...]
    """Queues to take jobs from."""
    concurrency: int = CONCURRENCY
    """Jobs run at the same time (each by one runner task)."""
    prefetch: int = PREFETCH
    """Most jobs held claimed and unfinished (default: max(500, 4 × concurrency)). The jobs
    held adapt to the observed rate between ``concurrency`` and this, so slow jobs are not
    hoarded by one worker. The default grows with ``concurrency`` because short jobs at a
    high concurrency need several claim round trips' worth of jobs waiting: with 200
    runners of 10 ms jobs, 300 waiting jobs last 15 ms, and a claim's round trip on a
    busy machine takes 4–13 ms."""
    poll_interval: float = POLL_INTERVAL_S
    """Seconds between backstop claims when no notification arrives."""
    flush_max: int = FLUSH_MAX
    """Results buffered before they are written."""
    flush_age: float = FLUSH_AGE_S
    """Seconds the oldest buffered result may wait before it is written; an idle worker
    writes at once, at most once per this many seconds."""
    buffer_max: int = FLUSH_MAX * BUFFER_BATCHES
    """Results buffered at most (default: 4 × flush_max); runners wait (and claims pause)
    above it."""
    heartbeat_interval: float = HEARTBEAT_INTERVAL_S
    """Seconds between heartbeats of this worker's row."""
    dead_after: float = DEAD_AFTER_S
    """Seconds without heartbeat after which a worker counts as dead."""
    should_log_run: ShouldLogRun | None = None
    """Which runs get a row in ``job_runs``; None logs every run."""
    shutdown_grace: float = SHUTDOWN_GRACE_S
    """Seconds running jobs get to finish on shutdown before they are interrupted."""
    listen: bool = True
    """LISTEN for wake-ups; False polls only (the default with PgBouncer in transaction mode)."""
    listen_probe_interval: float = LISTEN_PROBE_INTERVAL_S
    """Seconds between the listener's self-notifications that prove its connection alive;
    a probe unanswered within half this (at most 5 s) means reconnect."""
    vacuum_min_dead: int = VACUUM_MIN_DEAD
    """Dead tuples in the hot table (and at least 5% of its live rows) at which a worker
    VACUUMs it, checked every second; 0 leaves it to autovacuum (the default with PgBouncer,
    which may run the vacuum lock and unlock on different server connections)."""
    maintenance: bool = True
    """Take part in the election of the schema's maintenance leader, which reaps dead workers,
    vacuums the hot table, enqueues periodic jobs and manages ``job_runs``' partitions. False
    leaves that to other workers (at least one worker should take part)."""
    progress_interval: float = PROGRESS_INTERVAL_S
    """Seconds between writes of the progress that running jobs report (``job.set_progress``);
    reports in between replace each other."""
    on_error: Callable[[BaseException], None] | None = None
    """Called with every error a background loop survives (claim, flush, heartbeat, listener,
    start-up while the database is down); the error is logged either way."""
    metrics: Metrics | None = None
    """Where to record Prometheus metrics (a :class:`pgqueue.metrics.Metrics`, from the
    ``pgqueue[metrics]`` extra; default: the scheduler's, if it has one); None records nothing."""
    retention: float | dt.timedelta = RETENTION_S
    """How long the run log keeps a run (seconds or a timedelta; on the command line 14d, 36h…;
    default 14 days). Whole UTC days are dropped at once, so a run stays up to a day longer."""
    retention_failed: float | dt.timedelta = RETENTION_FAILED_S
    """How long it keeps the final run of a failed job (default 30 days; at least ``retention``)."""
    take_turns: bool = False
    """The claim and the flush statements take turns on the database unless one is urgent (at
    most one in flight), so the server's backends do not take the CPU core from the event
    loop the worker shares with its application (default: True when the DSN names a server
    on this machine, by a Unix socket or a loopback address; False otherwise, for a
    scheduler given a pool, and in ``pgqueue worker``, whose loop has no neighbours)."""
    freeze_gc: bool = True
    """When the first worker of the process starts, collect garbage once and ``gc.freeze()``
    what is alive, so later full collections (pauses of the whole event loop) walk only the
    objects created since, and raise the youngest generation's threshold to 10,000 (when
    lower and the collector is enabled), so the jobs in flight do not trigger a young
    collection every few hundred jobs. False leaves Python's collector alone."""

    @classmethod
    def build(
        cls,
        queues: Iterable[str],
        pgbouncer: bool = False,  # noqa: FBT001, FBT002 - positional-only, so no option name is taken
        local: bool = False,  # noqa: FBT001, FBT002
        /,
        **overrides: object,
    ) -> Self:
        """A config from option names and values, with the derived defaults filled in.

        ``queues``, ``pgbouncer`` and ``local`` (the server is on this machine) are
        positional-only, so every option name is free.

        ``None`` means "the default" for every option. Derived defaults: ``prefetch`` is
        max(500, 4 × concurrency), ``buffer_max`` 4 × ``flush_max``, with ``pgbouncer``
        ``listen`` is False and ``vacuum_min_dead`` 0, and ``take_turns`` is ``local``. An
        unknown name is a ConfigError.
        """
        if isinstance(queues, str):
            raise ConfigError(f"queues must be a list of queue names, got the string {queues!r}")
        names = {f.name for f in dataclasses.fields(cls)} - {"queues"}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(
                f"unknown worker option {unknown[0]!r}; the options are {', '.join(sorted(names))}"
            )
        values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        concurrency, flush_max = values.get("concurrency", CONCURRENCY), values.get("flush_max", FLUSH_MAX)
        if isinstance(concurrency, int):
            values.setdefault("prefetch", max(PREFETCH, PREFETCH_PER_RUNNER * concurrency))
        if isinstance(flush_max, int):
            values.setdefault("buffer_max", flush_max * BUFFER_BATCHES)
        values.setdefault("listen", not pgbouncer)
        values.setdefault("vacuum_min_dead", 0 if pgbouncer else VACUUM_MIN_DEAD)
        values.setdefault("take_turns", local)
        return cls(queues=tuple(queues), **values)

    def __post_init__(self) -> None:
        self._check_queues()
        for name in ("concurrency", "prefetch", "flush_max", "buffer_max"):
            _positive_int(name, getattr(self, name))
        for name in (
            "poll_interval",
            "flush_age",
            "heartbeat_interval",
            "dead_after",
            "shutdown_grace",
            "listen_probe_interval",
            "progress_interval",
        ):
            _positive(name, getattr(self, name))
        self._check_relations()
        for name in ("should_log_run", "on_error"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ConfigError(f"{name} must be callable")
        if (
            isinstance(self.vacuum_min_dead, bool)
            or not isinstance(self.vacuum_min_dead, int)
            or self.vacuum_min_dead < 0
        ):
            raise ConfigError(f"vacuum_min_dead must be an integer >= 0, got {self.vacuum_min_dead!r}")
        for name in ("listen", "maintenance", "take_turns", "freeze_gc"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.metrics is not None:
            _check_metrics(self.metrics)
        check_retention(self.retention, self.retention_failed)

    @property
    def listen_probe_timeout(self) -> float:
        """Seconds a probe may go unanswered before the LISTEN connection counts as dead."""
        return min(LISTEN_PROBE_TIMEOUT_MAX_S, self.listen_probe_interval / 2)

    def _check_queues(self) -> None:
        if isinstance(self.queues, str) or not self.queues:
            raise ConfigError(f"queues must be a non-empty list of queue names, got {self.queues!r}")
        for q in self.queues:
            check_name("queue", q)
        if len(set(self.queues)) != len(self.queues):
            raise ConfigError(f"queues has duplicates: {list(self.queues)!r}")

    def _check_relations(self) -> None:
        if self.prefetch < self.concurrency:
            raise ConfigError(f"prefetch ({self.prefetch}) must be >= concurrency ({self.concurrency})")
        if self.buffer_max < self.flush_max:
            raise ConfigError(f"buffer_max ({self.buffer_max}) must be >= flush_max ({self.flush_max})")
        if self.dead_after < 3 * self.heartbeat_interval:
            raise ConfigError(
                f"dead_after ({self.dead_after}) must be >= 3 × heartbeat_interval "
                f"({self.heartbeat_interval})"
            )


def _check_metrics(value: object) -> None:
    """A Metrics object; imported here only once one is given, so workers without it never load it."""
    try:
        from .metrics import Metrics  # noqa: PLC0415 - prometheus-client is optional
    except ImportError as exc:
        raise ConfigError(f"metrics needs the pgqueue[metrics] extra (prometheus-client): {exc}") from exc
    if not isinstance(value, Metrics):
        raise ConfigError(f"metrics must be a pgqueue.metrics.Metrics, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """The scheduler's own options (the DSN or pool is given beside them)."""

    schema: str = SCHEMA
    """Schema holding pgqueue's tables; its notification channel is ``<schema>_events``."""
    pool_min_size: int = POOL_MIN_SIZE
    """Connections the scheduler's own pool opens at start (0: connect on first use, so a
    scheduler can be built while the database is down)."""
    pool_max_size: int = POOL_MAX_SIZE
    """Connections the scheduler's own pool holds at most."""
    pgbouncer: bool = False
    """PgBouncer or Supavisor in transaction mode: no statement cache, and workers poll
    instead of LISTEN (give them a short ``poll_interval``)."""

    def __post_init__(self) -> None:
        check_schema(self.schema)
        sizes = (self.pool_min_size, self.pool_max_size)
        if (
            any(isinstance(v, bool) or not isinstance(v, int) for v in sizes)
            or not 0 <= self.pool_min_size <= self.pool_max_size
            or self.pool_max_size < 1
        ):
            raise ConfigError(
                f"need 0 <= pool_min_size <= pool_max_size and 1 <= pool_max_size, got {sizes[0]}, {sizes[1]}"
            )
        if not isinstance(self.pgbouncer, bool):
            raise ConfigError(f"pgbouncer must be True or False, got {self.pgbouncer!r}")


def field_docs(cls: type) -> dict[str, str]:
    """Each field's attribute docstring, read from the class's source (for the CLI's help).

    The docstrings are the one description of an option; reading them here keeps the
    ``--help`` text from drifting. Without the source (a stripped install) the help is empty.
    """
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
