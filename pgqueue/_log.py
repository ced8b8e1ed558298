"""structlog for pgqueue, routed through the stdlib logger ``pgqueue``.

Why through ``logging``: a library must not print by default nor impose a renderer. The
``pgqueue`` logger has a ``NullHandler``, so with no logging configured nothing reaches
Python's last-resort handler and nothing is printed. Once the application configures
logging, each record's message is the event name followed by its fields in logfmt
(``job_failed job_id=7 type=send_email error="ValueError: boom"``), so a plain
``logging.basicConfig()`` shows them, and the event name and the same fields ride on the
record as attributes (``record.event``, ``record.job_id``; structlog's
``render_to_log_kwargs``) for structured handlers. Per-job events are DEBUG and the
worker checks :func:`debug_enabled` once per batch, so they cost nothing unless asked for.

Event names are constants: grep an event, not a phrase.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = [
    "BATCH_CLAIMED",
    "BATCH_FLUSHED",
    "CLAIM_FAILED",
    "CONSUMER_LEAVE_FAILED",
    "FLUSH_FAILED",
    "JOBS_VACUUMED",
    "JOB_FAILED",
    "JOB_FINISHED",
    "JOB_LOG",
    "JOB_RETRY",
    "JOB_STARTED",
    "JOB_STOPPED",
    "LEADER_ELECTED",
    "LEADER_STEPPED_DOWN",
    "LEASES_EXPIRED",
    "LISTENER_CONNECTED",
    "LISTENER_LOST",
    "PERIODIC_ENQUEUED",
    "PERIODIC_SKIPPED",
    "QUEUE_LIMITS_SEEN",
    "RUNS_PRUNED",
    "RUN_UNWRITABLE",
    "SHOULD_LOG_RUN_FAILED",
    "WORKERS_REAPED",
    "WORKER_ERROR",
    "WORKER_REAPED",
    "WORKER_REGISTERED",
    "WORKER_STOPPED",
    "debug_enabled",
    "get_logger",
]

JOB_STARTED = "job_started"
JOB_FINISHED = "job_finished"
JOB_RETRY = "job_retry"
JOB_FAILED = "job_failed"
JOB_STOPPED = "job_stopped"
JOB_LOG = "job_log"  # a line a handler wrote through job.log, mirrored at its own level
JOBS_VACUUMED = "jobs_vacuumed"
WORKER_REAPED = "worker_reaped"
WORKERS_REAPED = "workers_reaped"
LEASES_EXPIRED = "leases_expired"  # pull leases past their deadline freed (warning)
CONSUMER_LEAVE_FAILED = "consumer_leave_failed"  # a closing scheduler could not remove its pull row
LEADER_ELECTED = "leader_elected"
PERIODIC_ENQUEUED = "periodic_enqueued"
PERIODIC_SKIPPED = "periodic_skipped"
RUNS_PRUNED = "runs_pruned"
LEADER_STEPPED_DOWN = "leader_stepped_down"
BATCH_CLAIMED = "batch_claimed"
BATCH_FLUSHED = "batch_flushed"
FLUSH_FAILED = "flush_failed"
CONFLICT_RERUN = "conflict_rerun"  # a deadlock's (or serialization failure's) victim, run again (warning)
RUN_UNWRITABLE = "run_unwritable"
SHOULD_LOG_RUN_FAILED = "should_log_run_failed"
CLAIM_FAILED = "claim_failed"
QUEUE_LIMITS_SEEN = "queue_limits_seen"  # a worker found its queues' limits changed
LISTENER_CONNECTED = "listener_connected"
LISTENER_LOST = "listener_lost"
WORKER_REGISTERED = "worker_registered"
WORKER_STOPPED = "worker_stopped"
WORKER_ERROR = "worker_error"

_STDLIB = logging.getLogger("pgqueue")
_STDLIB.addHandler(logging.NullHandler())
_FIELDS = structlog.processors.LogfmtRenderer()


def _to_record(logger: Any, method_name: str, event_dict: Any) -> Any:  # noqa: ANN401 - structlog's processor signature
    """The stdlib call's kwargs: the message is the event and its fields in logfmt.

    The event and the fields also become record attributes (``record.event``, ``record.job_id``).
    """
    kwargs = structlog.stdlib.render_to_log_kwargs(logger, method_name, event_dict)
    event = kwargs["msg"]
    fields = kwargs.setdefault("extra", {})
    if fields:
        kwargs["msg"] = f"{event} {_FIELDS(logger, method_name, dict(fields))}"
    fields["event"] = event
    return kwargs


def get_logger(**bound: Any) -> Any:  # noqa: ANN401 - structlog's bound loggers are dynamically typed
    """A structlog logger with ``bound`` key-values, writing to stdlib ``pgqueue``."""
    return structlog.wrap_logger(
        _STDLIB,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.stdlib.filter_by_level, _to_record],
    ).bind(**bound)


def debug_enabled() -> bool:
    """Whether per-job DEBUG events would be emitted right now."""
    return _STDLIB.isEnabledFor(logging.DEBUG)
