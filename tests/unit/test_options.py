"""One home for options: Scheduler.worker(**overrides) and `pgqueue worker` derive from WorkerConfig."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pgqueue import ConfigError, Scheduler
from pgqueue._config import (
    BUFFER_BATCHES,
    PREFETCH,
    VACUUM_MIN_DEAD,
    SchedulerConfig,
    WorkerConfig,
    field_docs,
)
from pgqueue.cli.worker import config_options

PLAIN = {"int", "float", "bool"}


@dataclasses.dataclass(frozen=True, slots=True)
class _WithANewOption(WorkerConfig):
    burst: int = 7
    """Jobs started at once after an idle spell (an option that does not exist: the test's)."""


def _command_for(config: type[WorkerConfig], seen: dict[str, object]) -> typer.Typer:
    """A command whose options come from ``config`` as `pgqueue worker`'s come from WorkerConfig."""
    app = typer.Typer()

    def command(**options: object) -> None:
        seen.update(options)

    command.__signature__ = __import__("inspect").Signature(config_options(config))  # type: ignore[attr-defined]
    app.command()(command)
    return app


def test_a_new_field_becomes_an_option_of_build_and_of_the_command() -> None:
    """The one edit: a field with its docstring. build() takes it by name, the command line
    gets --burst with the docstring as help, and nothing else was written for it."""
    cfg = _WithANewOption.build(["q"], burst=3)
    assert cfg.burst == 3
    seen: dict[str, object] = {}
    app = _command_for(_WithANewOption, seen)
    result = CliRunner().invoke(app, ["--burst", "5", "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    assert seen["burst"] == 5
    assert seen["concurrency"] == 2
    assert seen["prefetch"] is None  # not given: the config's (derived) default applies
    help_text = CliRunner().invoke(app, ["--help"]).output
    assert "--burst" in help_text
    assert "idle spell" in help_text


def test_every_plain_field_is_a_command_option_and_nothing_else() -> None:
    options = {p.name for p in config_options(WorkerConfig)}
    durations = {"retention", "retention_failed"}  # seconds or a timedelta: "14d" on the command line
    fields = {f.name for f in dataclasses.fields(WorkerConfig) if str(f.type) in PLAIN}
    assert options == fields | durations
    assert {"queues", "should_log_run", "on_error"}.isdisjoint(options)


def test_duration_options_take_a_number_and_a_unit() -> None:
    seen: dict[str, object] = {}
    app = _command_for(WorkerConfig, seen)
    result = CliRunner().invoke(app, ["--retention", "2d", "--retention-failed", "36h"])
    assert result.exit_code == 0, result.output
    assert (seen["retention"], seen["retention_failed"]) == (dt.timedelta(days=2), dt.timedelta(hours=36))
    bad = CliRunner().invoke(app, ["--retention", "2 days"])
    assert bad.exit_code == 2
    assert "--retention takes a number and a unit" in bad.output


def test_every_field_is_documented() -> None:
    for cls in (WorkerConfig, SchedulerConfig):
        assert set(field_docs(cls)) == {f.name for f in dataclasses.fields(cls)}, cls


def test_scheduler_worker_takes_every_field_by_name() -> None:
    s = Scheduler("postgresql://unused")
    values: dict[str, Any] = {
        f.name: f.default for f in dataclasses.fields(WorkerConfig) if f.name != "queues"
    }
    worker = s.worker(["q"], **values)
    for name, value in values.items():
        assert getattr(worker.config, name) == value, name


def test_the_help_shows_how_derived_defaults_are_derived() -> None:
    shown = {
        p.name: typing.get_args(p.annotation)[1].show_default
        for p in config_options(WorkerConfig)
        if typing.get_origin(p.annotation) is typing.Annotated
    }
    assert shown["prefetch"] == "max(500, 4 × concurrency)"
    assert shown["buffer_max"] == "4 × flush_max"
    assert shown["concurrency"] == "10"
    assert WorkerConfig.build(["q"], concurrency=300, flush_max=7).prefetch == max(500, 4 * 300)
    assert WorkerConfig.build(["q"], flush_max=7).buffer_max == 4 * 7


def test_derived_defaults() -> None:
    assert WorkerConfig.build(["q"], concurrency=800).prefetch == 3200  # 4 per runner
    assert WorkerConfig.build(["q"], concurrency=200).prefetch == 800
    assert WorkerConfig.build(["q"], concurrency=125).prefetch == PREFETCH
    assert WorkerConfig.build(["q"], concurrency=8).prefetch == PREFETCH
    assert WorkerConfig.build(["q"], concurrency=200, prefetch=300).prefetch == 300  # given beats derived
    assert WorkerConfig.build(["q"], flush_max=10).buffer_max == 10 * BUFFER_BATCHES
    plain, bouncer = WorkerConfig.build(["q"]), WorkerConfig.build(["q"], True)
    assert (plain.listen, plain.vacuum_min_dead) == (True, VACUUM_MIN_DEAD)
    assert (bouncer.listen, bouncer.vacuum_min_dead) == (False, 0)
    assert WorkerConfig.build(["q"], True, listen=True).listen is True  # given beats derived


def test_none_means_the_default() -> None:
    assert WorkerConfig.build(["q"], concurrency=None, prefetch=None) == WorkerConfig.build(["q"])


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown worker option 'concurency'"):
        Scheduler("postgresql://unused").worker(["q"], concurency=3)


@pytest.mark.parametrize(
    "kwargs",
    [{"schema": ""}, {"pool_min_size": 5, "pool_max_size": 2}, {"pool_max_size": 0}, {"pgbouncer": "yes"}],
)
def test_scheduler_config_is_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SchedulerConfig(**kwargs)


def test_pgqueue_worker_passes_its_flags_as_worker_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgqueue.cli import app

    seen: dict[str, object] = {}

    def capture(self: Scheduler, queues: object = None, **overrides: object) -> None:
        seen.update(overrides, queues=queues)
        raise typer.Exit(0)

    monkeypatch.setattr(Scheduler, "worker", capture)
    args = [
        "worker",
        "tests.cli_app:scheduler",
        "-q",
        "a",
        "--queue",
        "b",
        "--concurrency",
        "3",
        "--no-listen",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["queues"] == ["a", "b"]
    assert seen["concurrency"] == 3
    assert seen["listen"] is False
    assert seen["prefetch"] is None


@pytest.mark.parametrize(
    ("flag", "expected"), [((), False), (("--take-turns",), True), (("--no-take-turns",), False)]
)
def test_pgqueue_worker_does_not_take_turns_unless_asked(
    monkeypatch: pytest.MonkeyPatch, flag: tuple[str, ...], expected: bool
) -> None:
    """A worker process has no neighbours on its loop: its claims and flushes overlap by default."""
    from pgqueue.cli import app

    seen: dict[str, object] = {}

    def capture(self: Scheduler, queues: object = None, **overrides: object) -> None:
        seen.update(overrides)
        raise typer.Exit(0)

    monkeypatch.setattr(Scheduler, "worker", capture)
    result = CliRunner().invoke(app, ["worker", "tests.cli_app:scheduler", *flag])
    assert result.exit_code == 0, result.output
    assert seen["take_turns"] is expected


def test_the_command_help_shows_each_default() -> None:
    from pgqueue.cli import app

    text = " ".join(CliRunner().invoke(app, ["worker", "--help"], terminal_width=200).output.split())
    assert "--concurrency" in text
    assert "default: (10)" in text
    assert "default: (5.0)" in text  # poll_interval


@pytest.mark.parametrize("name", ["pgbouncer", "cls", "queues"])
def test_the_builders_own_parameter_names_are_not_options(name: str) -> None:
    with pytest.raises((ConfigError, TypeError)):
        WorkerConfig.build(["q"], **{name: True})
    with pytest.raises(ConfigError, match="unknown worker option"):
        Scheduler("postgresql://unused").worker(
            ["q"], **{name: True} if name != "queues" else {"pgbouncer": 1}
        )
