"""JSON in and out: what params and results may be, and how failures are reported."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import orjson
import pydantic
import pytest

from pgqueue import ParamsEncodeError, PgQueueError
from pgqueue._codec import decode, encode


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(pydantic.BaseModel):
    name: str
    when: dt.datetime
    tags: list[str] = []


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2.5, "s", True, False, None], "c": {"d": {}}},
        [1, "two", 3.0, None],
        'text with ünïcode and "quotes"',
        "",
        0,
        -7,
        2**63 - 1,
        1.25,
        True,
        False,
        None,
        {},
        [],
    ],
)
def test_json_values_round_trip(value: object) -> None:
    text = encode(value)
    assert isinstance(text, str)
    assert decode(text) == value


def test_dataclass_encodes_as_an_object() -> None:
    assert decode(encode(Point(1, 2))) == {"x": 1, "y": 2}
    assert decode(encode({"p": [Point(0, -1)]})) == {"p": [{"x": 0, "y": -1}]}


def test_pydantic_v2_model_encodes_through_model_dump_json_mode() -> None:
    when = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    m = Model(name="n", when=when, tags=["a"])
    assert decode(encode(m)) == {"name": "n", "when": m.model_dump(mode="json")["when"], "tags": ["a"]}
    assert decode(encode({"nested": m}))["nested"]["name"] == "n"


def test_datetime_and_uuid_encode() -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    out = decode(encode({"when": when, "id": u, "day": dt.date(2030, 1, 2)}))
    assert dt.datetime.fromisoformat(out["when"]) == when
    assert out["id"] == str(u)
    assert out["day"] == "2030-01-02"


@pytest.mark.parametrize("value", [object(), {1, 2}, 1 + 2j, {"nested": {3}}, [object()], b"bytes", {1: "x"}])
def test_unencodable_values_raise_params_encode_error(value: object) -> None:
    with pytest.raises(ParamsEncodeError) as info:
        encode(value)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, PgQueueError)
    assert "params" in str(info.value)


def test_what_names_the_value_in_the_message() -> None:
    with pytest.raises(ParamsEncodeError, match="result of job type 'x'"):
        encode(object(), what="result of job type 'x'")


def test_the_type_is_named_in_the_message() -> None:
    class Custom:
        pass

    with pytest.raises(ParamsEncodeError, match="Custom"):
        encode(Custom())


def test_decode_none_is_none() -> None:
    assert decode(None) is None


def test_decode_json_null_is_none() -> None:
    assert decode("null") is None


def test_decode_invalid_json_raises() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        decode("{not json")
