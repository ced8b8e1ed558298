"""listener.parse_payload: the notification format documented in queries/listen.sql."""

from __future__ import annotations

import pytest

from pgqueue.worker.listener import parse_payload


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("r:q", ("r", "q", None)),
        ("r:with:colons", ("r", "with:colons", None)),
        ("d:1712345678.5:q:with:colons", ("d", "q:with:colons", 1712345678.5)),
        ("d:1712345678:q", ("d", "q", 1712345678.0)),
        ("d:1712345678.123456:default", ("d", "default", 1712345678.123456)),
        ("p:tok", ("p", "tok", None)),
        ("p:0123abcd", ("p", "0123abcd", None)),
    ],
)
def test_known_payloads(payload: str, expected: tuple[str, str, float | None]) -> None:
    assert parse_payload(payload) == expected


@pytest.mark.parametrize(
    "payload",
    ["", "x:1", "d:notanumber:q", "d::q", "d", "R:q", "rq", ":q", "ready:q"],
)
def test_garbage_gives_empty_kind(payload: str) -> None:
    kind, name, at = parse_payload(payload)
    assert kind == ""
    assert name == ""
    assert at is None


def test_due_epoch_is_a_float() -> None:
    _, _, at = parse_payload("d:1700000000:q")
    assert isinstance(at, float)
