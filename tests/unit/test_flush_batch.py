"""flusher.build_batch: results split into ended and put-back jobs, plus run-log rows."""

from __future__ import annotations

import datetime as dt

import pgqueue
from pgqueue import ErrorWithRetry, Job, Outcome, RunInfo
from pgqueue._flusher import build_batch
from pgqueue._runner import RunResult
from pgqueue._store import RUN_COLUMNS

WORKER_ID = 77
RUN_AT = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
INSERTED_AT = dt.datetime(2029, 12, 31, tzinfo=dt.UTC)
RETRY_AT = dt.datetime(2030, 2, 1, tzinfo=dt.UTC)


def make_job(job_id: int, attempt: int, params: object) -> Job:
    return Job(
        id=job_id,
        type=f"type{job_id}",
        params=params,
        queue=f"queue{job_id}",
        priority=job_id * 10,
        attempt=attempt,
        run_at=RUN_AT,
        inserted_at=INSERTED_AT,
    )


def final_result(job: Job) -> RunResult:
    return RunResult(job, Outcome.SUCCEEDED, 1_700_000_000.25, 1_700_000_001.5, None, '{"ok":true}', None, 0)


def retry_result(job: Job, retry: ErrorWithRetry) -> RunResult:
    return RunResult(job, Outcome.FAILED, 1_700_000_002.0, 1_700_000_003.0, "Traceback: boom", None, retry, 1)


def col(row: list[object], name: str) -> object:
    return row[RUN_COLUMNS.index(name)]


def test_splits_results_into_ended_and_put_back() -> None:
    ended = make_job(1, attempt=1, params={"a": 1})
    back_delay = make_job(2, attempt=3, params=[2])
    back_at = make_job(3, attempt=2, params=None)
    batch = build_batch(
        [
            final_result(ended),
            retry_result(back_delay, ErrorWithRetry(RuntimeError("boom"), 12.5)),
            retry_result(back_at, ErrorWithRetry(RuntimeError("boom"), RETRY_AT)),
        ],
        WORKER_ID,
        None,
    )
    assert batch.ended_ids == [1]
    assert batch.ended_attempts == [1]
    assert batch.back_ids == [2, 3]
    assert batch.back_attempts == [3, 2]
    assert batch.back_at == [None, RETRY_AT]
    assert batch.back_delay == [12.5, 0.0]
    assert batch.back_error_inc == [1, 1]
    assert batch.back_error == ["Traceback: boom", "Traceback: boom"]
    # The put-back arrays are parallel (one unnest in job_finalize_many).
    lengths = {
        len(x)
        for x in (
            batch.back_ids,
            batch.back_attempts,
            batch.back_at,
            batch.back_delay,
            batch.back_error_inc,
            batch.back_error,
        )
    }
    assert lengths == {2}


def test_put_back_without_an_error_count() -> None:
    job = make_job(5, attempt=1, params=None)
    interrupted = RunResult(
        job, Outcome.INTERRUPTED, 1.0, 2.0, None, None, ErrorWithRetry(RuntimeError("stop"), 0), 0
    )
    batch = build_batch([interrupted], WORKER_ID, None)
    assert batch.back_error_inc == [0]
    assert batch.back_error == [None]


def test_run_rows_follow_run_columns() -> None:
    ended = make_job(1, attempt=1, params={"a": 1})
    back = make_job(2, attempt=3, params=[2])
    batch = build_batch(
        [final_result(ended), retry_result(back, ErrorWithRetry(RuntimeError("boom"), 5))], WORKER_ID, None
    )
    assert len(batch.runs) == 2
    for row in batch.runs:
        assert len(row) == len(RUN_COLUMNS)
        assert col(row, "worker_id") == WORKER_ID
        assert col(row, "inserted_at") == INSERTED_AT
        assert col(row, "run_at") == RUN_AT
        assert col(row, "retry_at") is None  # filled in from the database after the write

    first, second = batch.runs
    assert col(first, "job_id") == 1
    assert col(first, "attempt") == 1
    assert col(first, "priority") == 10
    assert col(first, "queue") == "queue1"
    assert col(first, "type") == "type1"
    assert col(first, "outcome") == "succeeded"
    assert isinstance(col(first, "outcome"), str)  # an Outcome (StrEnum) is a str: COPY encodes it as text
    assert col(first, "error") is None
    assert col(first, "params") == '{"a":1}'
    assert col(first, "result") == '{"ok":true}'

    assert col(second, "job_id") == 2
    assert col(second, "attempt") == 3
    assert col(second, "outcome") == "failed"
    assert col(second, "error") == "Traceback: boom"
    assert col(second, "params") == "[2]"
    assert col(second, "result") is None


def test_started_and_finished_become_aware_utc_datetimes() -> None:
    job = make_job(1, attempt=1, params=None)
    (row,) = build_batch([final_result(job)], WORKER_ID, None).runs
    started, finished = col(row, "started_at"), col(row, "finished_at")
    assert isinstance(started, dt.datetime)
    assert isinstance(finished, dt.datetime)
    assert started.tzinfo is not None
    assert started.utcoffset() == dt.timedelta(0)
    assert finished.utcoffset() == dt.timedelta(0)
    assert started == dt.datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=dt.UTC)
    assert finished - started == dt.timedelta(seconds=1.25)


def test_params_of_a_claimed_row_are_logged_as_stored() -> None:
    row = (9, "q", "t", '{"x": 1}', 0, 1, 0, None, RUN_AT, INSERTED_AT)
    job = Job._from_row(row)
    (run,) = build_batch([final_result(job)], WORKER_ID, None).runs
    assert col(run, "params") == '{"x": 1}'


def test_log_final_runs_keeps_rows_only_for_final_runs_but_finalizes_both() -> None:
    ended = make_job(1, attempt=1, params=None)
    back = make_job(2, attempt=1, params=None)
    batch = build_batch(
        [final_result(ended), retry_result(back, ErrorWithRetry(RuntimeError("boom"), 5))],
        WORKER_ID,
        pgqueue.log_final_runs,
    )
    assert [col(r, "job_id") for r in batch.runs] == [1]
    assert batch.ended_ids == [1]
    assert batch.back_ids == [2]


def test_the_hook_sees_final_true_for_ended_and_false_for_put_back() -> None:
    seen: list[tuple[int, RunInfo]] = []

    def hook(job: Job, run: RunInfo) -> bool:
        seen.append((job.id, run))
        return False

    ended = make_job(1, attempt=1, params=None)
    back = make_job(2, attempt=1, params=None)
    batch = build_batch(
        [final_result(ended), retry_result(back, ErrorWithRetry(RuntimeError("boom"), 5))], WORKER_ID, hook
    )
    assert batch.runs == []
    assert batch.ended_ids == [1]
    assert batch.back_ids == [2]
    assert seen == [
        (1, RunInfo(Outcome.SUCCEEDED, final=True, error=None)),
        (2, RunInfo(Outcome.FAILED, final=False, error="Traceback: boom")),
    ]


def test_a_failed_run_without_retry_is_final() -> None:
    job = make_job(1, attempt=4, params=None)
    failed = RunResult(job, Outcome.FAILED, 1.0, 2.0, "Traceback: final", None, None, 1)
    batch = build_batch([failed], WORKER_ID, pgqueue.log_final_runs)
    assert batch.ended_ids == [1]
    assert batch.ended_attempts == [4]
    assert batch.back_ids == []
    assert [col(r, "error") for r in batch.runs] == ["Traceback: final"]


def test_empty_input_gives_an_empty_batch() -> None:
    batch = build_batch([], WORKER_ID, None)
    assert batch.ended_ids == []
    assert batch.back_ids == []
    assert batch.runs == []
