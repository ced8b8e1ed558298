"""``pgqueue limits list|set|remove``: the global limits of queues (``Scheduler.set_queue_limit``).

``set`` replaces a queue's whole limit, as the API does: ``pgqueue limits set emails
--concurrency 3 --per-key 1 --key customer_id --rate 100/1m``. A rate is COUNT/PERIOD, the
period in seconds or with a unit (``ms``, ``s``, ``m``, ``h``, ``d``). A value pgqueue
refuses (no limit at all, a zero, ``--per-key`` without ``--key``) is one line on stderr
and exit code 1; a malformed one (``--rate 5``) exits with code 2.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import typer
from rich.table import Table

from pgqueue._config import SCHEMA
from pgqueue._limits import QueueLimit, RateLimit
from pgqueue._scheduler import Scheduler

from ._app import DsnOption, JsonOption, SchemaOption, app, emit_json, run_with, stdout
from .jobs import _when

__all__ = ["limits_app", "parse_rate"]

limits_app = typer.Typer(no_args_is_help=True, help="Global limits of queues: concurrency, per key, rate.")
app.add_typer(limits_app, name="limits")

QueueArgument = Annotated[str, typer.Argument(help="The queue.")]
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)?\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_rate(text: str) -> tuple[int, dt.timedelta]:
    """``COUNT/PERIOD``: ``100/60``, ``100/1m``, ``10/500ms``, ``5/h`` (one hour)."""
    m = _RATE_RE.match(text)
    if m is None:
        raise typer.BadParameter(
            f"expected COUNT/PERIOD such as 100/60, 100/1m or 10/500ms, got {text!r}", param_hint="--rate"
        )
    count, amount, unit = m.groups()
    if amount is None and unit is None:
        raise typer.BadParameter(f"the period is missing in {text!r}", param_hint="--rate")
    seconds = float(amount or 1) * _UNIT_S[unit or "s"]
    return int(count), dt.timedelta(seconds=seconds)


def _rate_text(rate: RateLimit | None) -> str:
    if rate is None:
        return ""
    seconds = rate.per.total_seconds()
    return f"{rate.count}/{seconds:g}s"


def limit_json(limit: QueueLimit) -> dict[str, object]:
    """A limit as JSON: the rate's period in seconds."""
    rate = limit.rate
    return {
        "queue": limit.queue,
        "concurrency": limit.concurrency,
        "per_key": limit.per_key,
        "key": limit.key,
        "rate": None if rate is None else {"count": rate.count, "per_s": rate.per.total_seconds()},
        "updated_at": limit.updated_at,
    }


@limits_app.command("list")
def list_limits(dsn: DsnOption = None, schema: SchemaOption = SCHEMA, as_json: JsonOption = False) -> None:
    """Every queue's limits."""
    found: list[QueueLimit] = run_with(dsn, schema, Scheduler.list_queue_limits)
    if as_json:
        emit_json([limit_json(limit) for limit in found])
        return
    if not found:
        stdout.print("no queue limits")
        return
    table = Table("queue", "concurrency", "per key", "key", "rate", "updated (UTC)")
    for limit in found:
        table.add_row(
            limit.queue,
            "" if limit.concurrency is None else str(limit.concurrency),
            "" if limit.per_key is None else str(limit.per_key),
            limit.key or "",
            _rate_text(limit.rate),
            _when(limit.updated_at),
        )
    stdout.print(table)


@limits_app.command("set")
def set_limit(  # noqa: PLR0917 - typer passes options by keyword; they are set_queue_limit()'s
    queue: QueueArgument,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs of the queue held at once, by all workers.")
    ] = None,
    per_key: Annotated[int | None, typer.Option(help="Jobs held at once per value of --key.")] = None,
    key: Annotated[
        str | None, typer.Option(help="The params field that keys a job; @tenant: the job's tenant.")
    ] = None,
    rate: Annotated[
        str | None, typer.Option(help="At most COUNT starts per PERIOD: 100/1m, 10/500ms.")
    ] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Set a queue's limits, replacing the ones it had."""
    parsed = None if rate is None else parse_rate(rate)

    async def work(scheduler: Scheduler) -> QueueLimit:
        return await scheduler.set_queue_limit(
            queue, concurrency=concurrency, per_key=per_key, key=key, rate=parsed
        )

    limit = run_with(dsn, schema, work)
    if as_json:
        emit_json(limit_json(limit))
        return
    parts = [
        f"concurrency {limit.concurrency}" if limit.concurrency is not None else "",
        f"{limit.per_key} per {limit.key}" if limit.per_key is not None else "",
        f"rate {_rate_text(limit.rate)}" if limit.rate is not None else "",
    ]
    stdout.print(f"queue {limit.queue!r} limited: " + ", ".join(p for p in parts if p))


@limits_app.command("remove")
def remove(
    queue: QueueArgument, dsn: DsnOption = None, schema: SchemaOption = SCHEMA, as_json: JsonOption = False
) -> None:
    """Remove a queue's limits (its rate window is forgotten)."""

    async def work(scheduler: Scheduler) -> bool:
        return await scheduler.remove_queue_limit(queue)

    removed = run_with(dsn, schema, work)
    if as_json:
        emit_json({"queue": queue, "removed": removed})
    else:
        stdout.print(f"queue {queue!r}: " + ("limits removed" if removed else "had no limits"))
