"""WorkerConfig: one validation pass at construction, each error naming its field; check_run_at."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from pgqueue import ConfigError
from pgqueue._config import WorkerConfig, check_run_at


def test_defaults_are_valid() -> None:
    cfg = WorkerConfig(queues=("q",))
    assert cfg.concurrency <= cfg.prefetch
    assert cfg.flush_max <= cfg.buffer_max
    assert cfg.dead_after >= 3 * cfg.heartbeat_interval


def test_a_full_valid_config() -> None:
    cfg = WorkerConfig(
        queues=("a", "b"),
        concurrency=1,
        prefetch=1,
        poll_interval=0.1,
        flush_max=1,
        flush_age=0.001,
        buffer_max=1,
        heartbeat_interval=1,
        dead_after=3,
        should_log_run=lambda _job, _run: True,
    )
    assert cfg.queues == ("a", "b")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"queues": ()}, "queues"),
        ({"queues": []}, "queues"),
        ({"queues": "q"}, "queues"),
        ({"queues": ("q", "q")}, "queues"),
        ({"queues": ("q", "")}, "queue"),
        ({"queues": ("q", "a\x00b")}, "queue"),
        ({"queues": ("q", 1)}, "queue"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"prefetch": 0}, "prefetch"),
        ({"concurrency": 20, "prefetch": 19}, "prefetch"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"poll_interval": math.nan}, "poll_interval"),
        ({"poll_interval": math.inf}, "poll_interval"),
        ({"poll_interval": "5"}, "poll_interval"),
        ({"flush_max": 0}, "flush_max"),
        ({"flush_age": 0}, "flush_age"),
        ({"flush_age": math.nan}, "flush_age"),
        ({"buffer_max": 0}, "buffer_max"),
        ({"flush_max": 100, "buffer_max": 99}, "buffer_max"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"dead_after": -1}, "dead_after"),
        ({"heartbeat_interval": 5, "dead_after": 14.9}, "dead_after"),
        ({"should_log_run": "yes"}, "should_log_run"),
        ({"should_log_run": 1}, "should_log_run"),
    ],
)
def test_bad_field_raises_config_error_naming_it(kwargs: dict[str, object], field: str) -> None:
    kwargs.setdefault("queues", ("q",))
    with pytest.raises(ConfigError, match=field) as info:
        WorkerConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_dead_after_exactly_three_heartbeats_is_allowed() -> None:
    WorkerConfig(queues=("q",), heartbeat_interval=5, dead_after=15)


def test_prefetch_equal_to_concurrency_is_allowed() -> None:
    WorkerConfig(queues=("q",), concurrency=7, prefetch=7)


def test_config_is_frozen() -> None:
    cfg = WorkerConfig(queues=("q",))
    with pytest.raises(AttributeError):
        cfg.concurrency = 3  # type: ignore[misc]


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_run_at_with_no_utc_equivalent_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=r"run_at .* outside the range") as info:
        check_run_at(dt.datetime.fromisoformat(text))
    assert isinstance(info.value, ValueError)


def test_a_run_at_at_the_edge_of_the_range_is_kept_in_utc() -> None:
    at, delay = check_run_at(dt.datetime.fromisoformat("9999-12-31T23:59:59+14:00"))
    assert (at, delay) == (dt.datetime(9999, 12, 31, 9, 59, 59, tzinfo=dt.UTC), None)
    assert at is not None
    assert at.tzinfo is dt.UTC
