"""Rows of ``jobs`` and ``job_runs`` turned into the records job management returns.

Rows are read by column name, so every backend builds its records here: PostgreSQL's
asyncpg Records and the memory store's dicts alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pgqueue._codec import decode
from pgqueue._joblog import decode_lines
from pgqueue._models import Outcome
from pgqueue._records import JobRecord, JobState, RunRecord

__all__ = ["Edges", "Row", "job_record"]

_END_STATE = {Outcome.SUCCEEDED: JobState.SUCCEEDED, Outcome.CANCELLED: JobState.CANCELLED}


class Row(Protocol):
    """A ``jobs`` or ``job_runs`` row by column name: an asyncpg Record, or the memory store's dict."""

    def __getitem__(self, key: str, /) -> Any: ...  # noqa: ANN401 - columns of several types


def _run(row: Row) -> RunRecord:
    return RunRecord(
        attempt=row["attempt"],
        outcome=Outcome(row["outcome"]),
        worker_id=row["worker_id"],
        run_at=row["run_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        retry_at=row["retry_at"],
        error=row["error"],
        result=decode(row["result"]),
        log=decode_lines(row["log"]),
    )


class Edges:
    """Dependency edges (job_id, depends_on) read for some jobs, looked up both ways."""

    def __init__(self, rows: Iterable[Any]) -> None:
        """``rows``: (job_id, depends_on) pairs."""
        self._up: dict[int, list[int]] = {}
        self._down: dict[int, list[int]] = {}
        for job_id, depends_on in rows:
            self._up.setdefault(job_id, []).append(depends_on)
            self._down.setdefault(depends_on, []).append(job_id)

    def depends_on(self, job_id: int) -> tuple[int, ...]:
        """The jobs ``job_id`` waits (or waited) for, ascending."""
        return tuple(sorted(self._up.get(job_id, ())))

    def dependents(self, job_id: int) -> tuple[int, ...]:
        """The jobs that wait (or waited) for ``job_id``, ascending."""
        return tuple(sorted(self._down.get(job_id, ())))


def job_record(job_id: int, live: Row | None, run_rows: Sequence[Row], edges: Edges) -> JobRecord | None:
    """The record of one job from its ``jobs`` row (None once it ended) and its runs.

    A job that ended is known by its runs alone: the last one says how it ended (a success
    is ``succeeded``, a cancel ``cancelled``, anything else ``failed``), and carries the
    job's own fields; its ``errors`` are counted from the logged runs. A job with neither,
    or whose last logged run put it back (it was deleted since, or its final run was not
    logged), is unknown (None).
    """
    runs = tuple(_run(r) for r in run_rows)
    if live is not None:
        return JobRecord(
            id=live["id"],
            type=live["type"],
            queue=live["queue"],
            params=decode(live["params"]),
            state=JobState(live["state"]),
            priority=live["priority"],
            attempts=live["attempt"],
            errors=live["errors"],
            last_error=live["last_error"],
            inserted_at=live["inserted_at"],
            run_at=live["run_at"],
            started_at=live["claimed_at"] if live["state"] == JobState.RUNNING else _last_start(runs),
            finished_at=None,
            result=None,
            progress=live["progress"],
            progress_message=live["progress_message"],
            runs=runs,
            suspend_requested=live["suspend_requested"],
            checkpoint=decode(live["checkpoint"]),
            depends_on=edges.depends_on(job_id),
            dependents=edges.dependents(job_id),
            tenant=live["tenant"],
        )
    if not run_rows or runs[-1].retry_at is not None:
        return None  # a last run that put the job back does not say how it ended: gone
    last_row, last = run_rows[-1], runs[-1]
    state = _END_STATE.get(last.outcome, JobState.FAILED)
    return JobRecord(
        id=job_id,
        type=last_row["type"],
        queue=last_row["queue"],
        params=decode(last_row["params"]),
        state=state,
        priority=last_row["priority"],
        attempts=last.attempt,
        errors=sum(1 for r in runs if r.outcome in _COUNTED_ERRORS),
        last_error=next((r.error for r in reversed(runs) if r.outcome in _ERRORS), None),
        inserted_at=last_row["inserted_at"],
        run_at=last.run_at,
        started_at=last.started_at,
        finished_at=last.finished_at,
        result=last.result if state is JobState.SUCCEEDED else None,
        progress=None,
        progress_message=None,
        runs=runs,
        depends_on=edges.depends_on(job_id),
        dependents=edges.dependents(job_id),
        tenant=last_row["tenant"],
    )


# What the runner counts as an error (a retry filter's job.errors), and what sets last_error
# (a crash too: the reaper writes why the run was cut short).
_COUNTED_ERRORS = frozenset({Outcome.FAILED, Outcome.TIMEOUT})
_ERRORS = _COUNTED_ERRORS | {Outcome.CRASHED}


def _last_start(runs: tuple[RunRecord, ...]) -> dt.datetime | None:
    return runs[-1].started_at if runs else None
