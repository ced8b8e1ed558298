"""The pure parts of the fault-class fixes: JSON's missing numbers, exception groups, log records."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging

import pydantic
import pytest

from pgqueue import ParamsEncodeError
from pgqueue._codec import MAX_DEPTH, encode
from pgqueue._errors import unwrap_group
from pgqueue._log import get_logger


@dataclasses.dataclass
class _Point:
    x: float
    y: float


class _Model(pydantic.BaseModel):
    ratio: float


class _Level(enum.Enum):
    HIGH = float("inf")


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (float("nan"), "the top level"),
        ({"a": {"b": [1.0, float("inf")]}}, "['a']['b'][1]"),
        ((1, float("-inf")), "[1]"),
        (_Point(1.0, float("nan")), ".y"),
        (_Model(ratio=float("nan")), "['ratio']"),
        ([_Level.HIGH], "[0]"),
    ],
)
def test_non_finite_numbers_are_refused_with_their_path(value: object, where: str) -> None:
    with pytest.raises(ParamsEncodeError, match="NaN or Infinity") as info:
        encode(value)
    assert f"at {where} " in str(info.value)


def test_nulls_and_finite_numbers_pass() -> None:
    assert encode({"a": None, "b": [None, 1.5, -0.0], "c": _Point(1.0, 2.0)}) == (
        '{"a":null,"b":[null,1.5,-0.0],"c":{"x":1.0,"y":2.0}}'
    )


def _nested(depth: int) -> list[object]:
    root: list[object] = []
    node = root
    for _ in range(depth - 1):
        child: list[object] = []
        node.append(child)
        node = child
    return root


def test_the_nesting_limit_is_the_documented_one() -> None:
    assert encode(_nested(MAX_DEPTH)).count("[") == MAX_DEPTH
    with pytest.raises(ParamsEncodeError, match=f"nested deeper than {MAX_DEPTH} levels"):
        encode(_nested(MAX_DEPTH + 1))


def test_unwrap_group_finds_the_error_inside_nested_groups() -> None:
    err = ValueError("the one")
    group = BaseExceptionGroup("outer", [asyncio.CancelledError(), ExceptionGroup("inner", [err])])
    assert unwrap_group(group) is err
    assert unwrap_group(err) is err


def test_unwrap_group_keeps_the_others_in_a_note() -> None:
    first, second = KeyError("a"), OSError("b")
    picked = unwrap_group(ExceptionGroup("two", [first, second]))
    assert picked is first
    assert picked.__notes__ == ["at the same time: OSError: b"]


def test_a_group_of_cancellations_unwraps_to_a_cancellation() -> None:
    assert isinstance(
        unwrap_group(BaseExceptionGroup("c", [asyncio.CancelledError()])), asyncio.CancelledError
    )


def test_log_records_carry_the_fields_in_the_message_and_as_attributes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="pgqueue"):
        get_logger(worker_id=4).warning("job_failed", job_id=7, error="ValueError: boom")
    [record] = caplog.records
    assert record.getMessage() == 'job_failed worker_id=4 job_id=7 error="ValueError: boom"'
    assert record.__dict__["event"] == "job_failed"
    assert record.__dict__["job_id"] == 7


def test_the_library_logger_has_a_null_handler() -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("pgqueue").handlers)
