"""flusher.build_batch: results split into ended and put-back jobs, as job_finalize_many's arrays."""

from __future__ import annotations

import datetime as dt

import pgqueue
from pgqueue import ErrorWithRetry, Job, Outcome, RunInfo
from pgqueue.store import FlushBatch
from pgqueue.worker.flusher import build_batch
from pgqueue.worker.results import RunResult

RUN_AT = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
INSERTED_AT = dt.datetime(2029, 12, 31, tzinfo=dt.UTC)
RETRY_AT = dt.datetime(2030, 2, 1, tzinfo=dt.UTC)


def make_job(job_id: int, attempt: int, params: object = None) -> Job:
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


def success(job: Job, result: str | None = None) -> RunResult:
    return RunResult(job, Outcome.SUCCEEDED, 1_700_000_000.25, 1_700_000_001.5, None, result, None, 0)


def retry_result(job: Job, retry: ErrorWithRetry) -> RunResult:
    return RunResult(job, Outcome.FAILED, 1_700_000_002.0, 1_700_000_003.0, "Traceback: boom", None, retry, 1)


def final_failure(job: Job) -> RunResult:
    return RunResult(job, Outcome.FAILED, 1.0, 2.0, "Traceback: final", None, None, 1)


def test_plain_successes_send_only_ids_attempts_and_times() -> None:
    batch = build_batch([success(make_job(1, 1)), success(make_job(2, 3))], None)
    assert batch.end_ids == [1, 2]
    assert batch.end_attempts == [1, 3]
    assert batch.end_started == [1_700_000_000.25, 1_700_000_000.25]
    assert batch.end_finished == [1_700_000_001.5, 1_700_000_001.5]
    # Nothing else: the statement pads the missing details with NULL (a logged success).
    assert (batch.end_outcomes, batch.end_errors, batch.end_results, batch.end_log) == ([], [], [], [])
    assert batch.back_ids == []


def test_details_stop_at_the_last_run_that_needs_them() -> None:
    batch = build_batch(
        [success(make_job(1, 1)), final_failure(make_job(2, 4)), success(make_job(3, 1))], None
    )
    assert batch.end_ids == [1, 2, 3]
    assert batch.end_outcomes == [None, "failed"]
    assert batch.end_errors == [None, "Traceback: final"]
    assert batch.end_results == [None, None]
    assert batch.end_log == [None, True]


def test_a_result_is_a_detail() -> None:
    batch = build_batch([success(make_job(1, 1), '{"ok":true}')], None)
    assert batch.end_outcomes == [None]  # still a success
    assert batch.end_results == ['{"ok":true}']


def test_put_back_runs_fill_every_array() -> None:
    back_delay = make_job(2, attempt=3)
    back_at = make_job(3, attempt=2)
    batch = build_batch(
        [
            success(make_job(1, 1)),
            retry_result(back_delay, ErrorWithRetry(RuntimeError("boom"), 12.5)),
            retry_result(back_at, ErrorWithRetry(RuntimeError("boom"), RETRY_AT)),
        ],
        None,
    )
    assert batch.end_ids == [1]
    assert batch.back_ids == [2, 3]
    assert batch.back_attempts == [3, 2]
    assert batch.back_started == [1_700_000_002.0, 1_700_000_002.0]
    assert batch.back_finished == [1_700_000_003.0, 1_700_000_003.0]
    assert batch.back_outcomes == ["failed", "failed"]
    assert batch.back_errors == ["Traceback: boom", "Traceback: boom"]
    assert batch.back_due_at == [RUN_AT.timestamp(), RUN_AT.timestamp()]  # when this run was due
    assert batch.back_retry_at == [None, RETRY_AT]
    assert batch.back_delay == [12.5, 0.0]
    assert batch.back_error_inc == [1, 1]
    assert batch.back_log == [True, True]
    assert batch.back_checkpoint == [None, None]  # no checkpoint made: the job keeps its own
    args = batch.arguments()
    assert len(args) == 20  # $2 .. $21
    assert {len(a) for a in args[8:]} == {2}  # the put-back arrays are parallel


def test_put_back_without_an_error_count() -> None:
    interrupted = RunResult(
        make_job(5, 1), Outcome.INTERRUPTED, 1.0, 2.0, None, None, ErrorWithRetry(RuntimeError("stop"), 0), 0
    )
    batch = build_batch([interrupted], None)
    assert batch.back_error_inc == [0]
    assert batch.back_errors == [None]  # keeps the job's last error
    assert batch.back_outcomes == ["interrupted"]


def test_outcomes_are_sent_as_plain_text() -> None:
    batch = build_batch(
        [
            final_failure(make_job(1, 1)),
            retry_result(make_job(2, 1), ErrorWithRetry(RuntimeError("again"), 1)),
        ],
        None,
    )
    assert [type(o) for o in batch.end_outcomes] == [str]
    assert [type(o) for o in batch.back_outcomes] == [str]


def test_log_final_runs_keeps_rows_only_for_final_runs_but_finalizes_both() -> None:
    batch = build_batch(
        [success(make_job(1, 1)), retry_result(make_job(2, 1), ErrorWithRetry(RuntimeError("boom"), 5))],
        pgqueue.log_final_runs,
    )
    assert batch.end_ids == [1]
    assert batch.end_log == []  # logged: the default
    assert batch.back_ids == [2]
    assert batch.back_log == [False]


def test_the_hook_sees_final_true_for_ended_and_false_for_put_back() -> None:
    seen: list[tuple[int, RunInfo]] = []

    def hook(job: Job, run: RunInfo) -> bool:
        seen.append((job.id, run))
        return False

    batch = build_batch(
        [success(make_job(1, 1)), retry_result(make_job(2, 1), ErrorWithRetry(RuntimeError("boom"), 5))], hook
    )
    assert batch.end_ids == [1]
    assert batch.end_log == [False]
    assert batch.end_outcomes == [None]
    assert batch.back_log == [False]
    assert seen == [
        (1, RunInfo(Outcome.SUCCEEDED, final=True, error=None)),
        (2, RunInfo(Outcome.FAILED, final=False, error="Traceback: boom")),
    ]


def test_a_hook_that_raises_logs_the_run() -> None:
    def hook(job: Job, run: RunInfo) -> bool:
        raise RuntimeError("broken hook")

    batch = build_batch([success(make_job(1, 1))], hook)
    assert batch.end_log == []  # logged


def test_a_replayed_job_keeps_only_its_newest_attempt() -> None:
    batch = build_batch([success(make_job(1, 1)), success(make_job(1, 2))], None)
    assert (batch.end_ids, batch.end_attempts) == ([1], [2])


def test_without_runs_finalizes_but_logs_nothing() -> None:
    batch = build_batch(
        [
            final_failure(make_job(1, 1)),
            success(make_job(2, 1)),
            retry_result(make_job(3, 1), ErrorWithRetry(RuntimeError("again"), 1)),
        ],
        None,
    )
    batch.without_runs()
    assert batch.end_log == [False, False]
    assert batch.back_log == [False]
    assert batch.end_outcomes == ["failed"]  # the other details stay


def test_end_detail_pads_earlier_runs_as_plain_successes() -> None:
    batch = FlushBatch(end_ids=[1, 2, 3], end_attempts=[1, 1, 1])
    batch.end_detail(2, "cancelled", "note", None, True)
    assert batch.end_outcomes == [None, None, "cancelled"]
    assert batch.end_log == [None, None, True]
    batch.end_detail(0, None, None, "1", False)
    assert batch.end_outcomes == [None, None, "cancelled"]
    assert batch.end_results == ["1", None, None]
    assert batch.end_log == [False, None, True]


def test_empty_input_gives_an_empty_batch() -> None:
    batch = build_batch([], None)
    assert all(a == [] for a in batch.arguments())
