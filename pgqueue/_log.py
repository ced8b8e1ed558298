"""structlog for pgqueue, routed through the stdlib logger ``pgqueue``.

Why through ``logging``: a library must not print by default nor impose a renderer.
Events go to ``logging.getLogger("pgqueue")`` as a message plus ``extra`` fields (structlog's
``render_to_log_kwargs``), so the application's logging (or structlog's
``ProcessorFormatter``) decides the output, and standard levels filter them. Per-job events
are DEBUG and the worker checks :func:`debug_enabled` once per batch, so they cost nothing
unless asked for.

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
    "FLUSH_FAILED",
    "JOBS_VACUUMED",
    "JOB_FAILED",
    "JOB_FINISHED",
    "JOB_RETRY",
    "JOB_STARTED",
    "JOB_STOPPED",
    "LISTENER_CONNECTED",
    "LISTENER_LOST",
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
JOBS_VACUUMED = "jobs_vacuumed"
WORKER_REAPED = "worker_reaped"
WORKERS_REAPED = "workers_reaped"
BATCH_CLAIMED = "batch_claimed"
BATCH_FLUSHED = "batch_flushed"
FLUSH_FAILED = "flush_failed"
RUN_UNWRITABLE = "run_unwritable"
SHOULD_LOG_RUN_FAILED = "should_log_run_failed"
CLAIM_FAILED = "claim_failed"
LISTENER_CONNECTED = "listener_connected"
LISTENER_LOST = "listener_lost"
WORKER_REGISTERED = "worker_registered"
WORKER_STOPPED = "worker_stopped"
WORKER_ERROR = "worker_error"

_STDLIB = logging.getLogger("pgqueue")


def get_logger(**bound: Any) -> Any:  # noqa: ANN401 - structlog's bound loggers are dynamically typed
    """A structlog logger with ``bound`` key-values, writing to stdlib ``pgqueue``."""
    return structlog.wrap_logger(
        _STDLIB,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.render_to_log_kwargs],
    ).bind(**bound)


def debug_enabled() -> bool:
    """Whether per-job DEBUG events would be emitted right now."""
    return _STDLIB.isEnabledFor(logging.DEBUG)
