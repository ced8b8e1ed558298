"""Job (a read-only view of a claimed row), Outcome, RunInfo and log_final_runs."""

from __future__ import annotations

import datetime as dt

import pytest

from pgqueue import ConfigError, Job, Outcome, RunInfo, log_final_runs
from pgqueue._models import (
    ROW_ATTEMPT,
    ROW_CANCEL_REQUESTED,
    ROW_COUNTED,
    ROW_ERRORS,
    ROW_ID,
    ROW_INSERTED_AT,
    ROW_LAST_ERROR,
    ROW_PARAMS,
    ROW_PRIORITY,
    ROW_QUEUE,
    ROW_RUN_AT,
    ROW_TIMEOUT,
    ROW_TYPE,
)

RUN_AT = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
INSERTED_AT = dt.datetime(2029, 12, 31, tzinfo=dt.UTC)


def claimed_row(
    params_text: str | None = '{"a": [1, 2], "b": "x"}',
    *,
    last_error: str | None = "boom",
    run_at: dt.datetime = RUN_AT,
    inserted_at: dt.datetime = INSERTED_AT,
) -> tuple[object, ...]:
    """A row shaped like the claim's, placed by the ROW_* constants (the times as epoch
    seconds, as the claim returns them). That the claim really returns its columns in this
    order is checked against the database in tests/integration/test_store.py."""
    values = {
        ROW_ID: 42,
        ROW_QUEUE: "emails",
        ROW_TYPE: "send",
        ROW_PARAMS: params_text,
        ROW_PRIORITY: -3,
        ROW_ATTEMPT: 2,
        ROW_ERRORS: 1,
        ROW_LAST_ERROR: last_error,
        ROW_RUN_AT: run_at.timestamp(),
        ROW_INSERTED_AT: inserted_at.timestamp(),
        ROW_TIMEOUT: None,
        ROW_CANCEL_REQUESTED: False,
        ROW_COUNTED: 2,
    }
    return tuple(values[i] for i in range(len(values)))


# -- hand-built jobs ---------------------------------------------------------------------


def test_constructor_fields_are_readable() -> None:
    job = Job(
        id=7,
        type="t",
        params={"k": 1},
        queue="q",
        priority=5,
        attempt=3,
        errors=2,
        last_error="e",
        run_at=RUN_AT,
        inserted_at=INSERTED_AT,
        tenant="acme",
    )
    assert (job.id, job.type, job.queue, job.priority, job.attempt, job.errors) == (7, "t", "q", 5, 3, 2)
    assert job.last_error == "e"
    assert job.tenant == "acme"
    assert job.run_at == RUN_AT
    assert job.inserted_at == INSERTED_AT


def test_constructor_defaults() -> None:
    job = Job(id=1, type="t")
    assert job.queue == "default"
    assert (job.priority, job.attempt, job.errors) == (0, 1, 0)
    assert job.last_error is None
    assert job.tenant is None
    assert job.params is None
    assert job.params_json is None
    assert job.run_at.tzinfo is not None
    assert job.inserted_at.tzinfo is not None


def test_params_are_returned_as_given() -> None:
    params = {"a": [1, 2]}
    job = Job(id=1, type="t", params=params)
    assert job.params is params


@pytest.mark.parametrize(
    ("params", "text"),
    [({"a": 1}, '{"a":1}'), ([1, "x"], '[1,"x"]'), ("s", '"s"'), (0, "0"), (False, "false")],
)
def test_params_json_encodes_params_of_a_hand_built_job(params: object, text: str) -> None:
    assert Job(id=1, type="t", params=params).params_json == text


def test_fields_are_read_only() -> None:
    job = Job(id=1, type="t")
    with pytest.raises(AttributeError):
        job.id = 2  # type: ignore[misc]


def test_repr_contains_id_and_type() -> None:
    r = repr(Job(id=123, type="send_email", queue="mail", attempt=2))
    assert "123" in r
    assert "send_email" in r
    assert r.startswith("<Job")


# -- jobs wrapped from a claimed row -----------------------------------------------------


def test_hand_built_times_must_be_aware_and_read_back_in_utc() -> None:
    with pytest.raises(ConfigError, match="run_at must be timezone-aware"):
        Job(id=1, type="t", run_at=dt.datetime(2030, 1, 1))  # noqa: DTZ001 - the naive case on purpose
    with pytest.raises(ConfigError, match="inserted_at must be timezone-aware"):
        Job(id=1, type="t", inserted_at=dt.datetime(2030, 1, 1))  # noqa: DTZ001
    paris = dt.timezone(dt.timedelta(hours=1))
    job = Job(id=1, type="t", run_at=dt.datetime(2030, 1, 1, 1, tzinfo=paris))
    assert job.run_at == RUN_AT
    assert job.run_at.tzinfo == dt.UTC


def test_epoch_seconds_keep_the_microsecond() -> None:
    """The claim sends times as float8 epoch seconds; the datetime must come back exactly."""
    for when in (
        dt.datetime(2026, 11, 25, 1, 2, 3, 999_999, tzinfo=dt.UTC),
        dt.datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=dt.UTC),
        dt.datetime(2105, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    ):
        job = Job._from_row(claimed_row(run_at=when, inserted_at=when))
        assert (job.run_at, job.inserted_at) == (when, when)
        assert job.run_at.utcoffset() == dt.timedelta(0)


def test_from_row_decodes_params() -> None:
    job = Job._from_row(claimed_row())
    assert job.params == {"a": [1, 2], "b": "x"}
    assert job.params_json == '{"a": [1, 2], "b": "x"}'  # as stored, not re-encoded


def test_from_row_decodes_params_once() -> None:
    job = Job._from_row(claimed_row())
    first = job.params
    assert job.params is first


def test_from_row_decodes_params_lazily() -> None:
    job = Job._from_row(claimed_row("{not json"))  # wrapping does not decode
    assert job.id == 42
    assert job.params_json == "{not json"
    with pytest.raises(ValueError):  # orjson.JSONDecodeError is a ValueError
        _ = job.params


def test_from_row_with_null_params() -> None:
    job = Job._from_row(claimed_row(None))
    assert job.params is None
    assert job.params_json is None


def test_from_row_null_last_error() -> None:
    assert Job._from_row(claimed_row(last_error=None)).last_error is None


# -- Outcome, RunInfo, log_final_runs ----------------------------------------------------


def test_outcomes_are_strings() -> None:
    # That the database accepts exactly these values is checked in tests/integration/test_store.py.
    assert isinstance(Outcome.SUCCEEDED, str)
    assert str(Outcome.SUCCEEDED) == "succeeded"


@pytest.mark.parametrize("final", [True, False])
def test_log_final_runs_logs_only_final_runs(final: bool) -> None:
    info = RunInfo(outcome=Outcome.FAILED, final=final, error="e")
    assert log_final_runs(Job(id=1, type="t"), info) is final


def test_run_info_is_frozen() -> None:
    info = RunInfo(Outcome.SUCCEEDED, final=True, error=None)
    with pytest.raises(AttributeError):
        info.final = False  # type: ignore[misc]
