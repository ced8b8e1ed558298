"""pgqueue: an asyncio job runner on PostgreSQL.

Schedule jobs with :class:`Scheduler` (one round trip: INSERT + NOTIFY, optionally inside
your transaction), run them with a :class:`Worker` (LISTEN wake-ups, batched claims with
``FOR UPDATE SKIP LOCKED``, results flushed in batches, one statement each, into the
job-runs log).
"""

from __future__ import annotations

from contextlib import suppress as _suppress

from ._context import ContextNotSetError, current_job, current_scheduler
from ._enqueue import JobId
from ._errors import (
    ConfigError,
    DatabaseUnavailableError,
    ErrorWithRetry,
    InvalidStateError,
    JobCancelled,
    JobNotFound,
    LeaseLost,
    NotPending,
    NotRunning,
    ParamsEncodeError,
    PgQueueError,
    SchemaError,
    SchemaNotMigratedError,
    SchemaTooNewError,
    UnknownJobTypeError,
    WorkerHasActiveJobs,
    WorkerNotFound,
)
from ._joblog import JobLog, LogLine
from ._limits import TENANT, QueueLimit, RateLimit
from ._models import CancelResult, Job, Outcome, RunInfo, log_final_runs
from ._params import ParamsValidationError
from ._records import (
    Activity,
    ActivityBucket,
    ActivityCounts,
    CancelCounts,
    JobRecord,
    JobState,
    JobStats,
    JobTypeInfo,
    Page,
    RunRecord,
    WorkerInfo,
)
from ._retry import ErrorFilter, ExponentialBackoff, LinearBackoff, chain
from ._scheduler import Scheduler
from ._verdicts import Cancel, Skip, Snooze, Suspended
from ._waiting import WaitTimeoutError
from .maintenance.retention import PruneResult
from .periodic.records import PeriodicInfo
from .pull import Lease
from .worker import Worker

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - plain sorted(), which the public-API test checks (not isort-style)
    "Activity",
    "ActivityBucket",
    "ActivityCounts",
    "Cancel",
    "CancelCounts",
    "CancelResult",
    "ConfigError",
    "ContextNotSetError",
    "DatabaseUnavailableError",
    "ErrorFilter",
    "ErrorWithRetry",
    "ExponentialBackoff",
    "InvalidStateError",
    "Job",
    "JobCancelled",
    "JobId",
    "JobLog",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "JobStats",
    "JobTypeInfo",
    "Lease",
    "LeaseLost",
    "LinearBackoff",
    "LogLine",
    "NotPending",
    "NotRunning",
    "Outcome",
    "Page",
    "ParamsEncodeError",
    "ParamsValidationError",
    "PeriodicInfo",
    "PgQueueError",
    "PruneResult",
    "QueueLimit",
    "RateLimit",
    "RunInfo",
    "RunRecord",
    "Scheduler",
    "SchemaError",
    "SchemaNotMigratedError",
    "SchemaTooNewError",
    "Skip",
    "Snooze",
    "Suspended",
    "TENANT",
    "UnknownJobTypeError",
    "WaitTimeoutError",
    "Worker",
    "WorkerHasActiveJobs",
    "WorkerInfo",
    "WorkerNotFound",
    "chain",
    "current_job",
    "current_scheduler",
    "log_final_runs",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("pgqueue."):
        with _suppress(AttributeError, TypeError):  # e.g. typing constructs
            _obj.__module__ = "pgqueue"
del _name, _obj
