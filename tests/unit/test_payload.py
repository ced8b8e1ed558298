"""parse_payload: the notification format documented in queries/listen.sql."""

from __future__ import annotations

import pytest

from pgqueue._notifications import Payload, parse_payload


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("r:q", Payload("r", "q")),
        ("r:with:colons", Payload("r", "with:colons")),
        ("d:1712345678.5:q:with:colons", Payload("d", "q:with:colons", at=1712345678.5)),
        ("d:1712345678:q", Payload("d", "q", at=1712345678.0)),
        ("d:1712345678.123456:default", Payload("d", "default", at=1712345678.123456)),
        ("j:42:default", Payload("j", "default", job=42)),
        ("j:7:with:colons", Payload("j", "with:colons", job=7)),
        ("p:tok", Payload("p", "tok")),
        ("p:0123abcd", Payload("p", "0123abcd")),
    ],
)
def test_known_payloads(payload: str, expected: Payload) -> None:
    assert parse_payload(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "x:1",
        "d:notanumber:q",
        "d::q",
        "d",
        "R:q",
        "rq",
        ":q",
        "ready:q",
        "j::q",
        "j:-1:q",
        "j:1.5:q",
        "j:x:q",
        "j:\u0661:q",  # a digit to str.isdigit (and to int()), never in an id SQL writes
        "j:\u00b2:q",  # a digit to str.isdigit that int() refuses
    ],
)
def test_garbage_gives_empty_kind(payload: str) -> None:
    assert parse_payload(payload) == Payload("", "")


def test_due_epoch_is_a_float() -> None:
    assert isinstance(parse_payload("d:1700000000:q").at, float)


def test_job_id_is_an_int() -> None:
    assert isinstance(parse_payload("j:9007199254740993:q").job, int)
