"""``pgqueue stats``, ``queues`` and ``types``: what the queues hold and what runs there.

``pgqueue workers`` (who serves them) lives in ``workers.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pgqueue._config import SCHEMA
from pgqueue._jsonable import LIVE_STATES, job_type_json, state_counts_json, stats_json
from pgqueue._records import JobState, JobStats
from pgqueue._scheduler import Scheduler

from ._app import AppOption, DsnOption, JsonOption, SchemaOption, app, emit_json, run_with, stdout
from .worker import load_scheduler

__all__ = ["queues", "stats", "types"]


def _counts_table(title: str, counts: dict[str, dict[JobState, int]]) -> Table:
    table = Table(title, *(s.value for s in LIVE_STATES), "total", title=None)
    for name in sorted(counts):
        row = counts[name]
        table.add_row(name, *(str(row.get(s, 0)) for s in LIVE_STATES), str(sum(row.values())))
    return table


@app.command()
def stats(
    tenant: Annotated[str | None, typer.Option(help="Only the live jobs of this tenant.")] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Live jobs counted by state, per queue and per type (of one tenant with --tenant)."""
    result: JobStats = run_with(dsn, schema, lambda s: s.stats(tenant=tenant))
    if as_json:
        emit_json(stats_json(result))
        return
    stdout.print(_counts_table("queue", result.by_queue))
    stdout.print(_counts_table("type", result.by_type))


@app.command()
def queues(dsn: DsnOption = None, schema: SchemaOption = SCHEMA, as_json: JsonOption = False) -> None:
    """Each queue's live jobs by state (pending is the depth: due now, not claimed)."""
    result: JobStats = run_with(dsn, schema, Scheduler.stats)
    if as_json:
        emit_json(state_counts_json(result.by_queue))
        return
    stdout.print(_counts_table("queue", result.by_queue))


@app.command()
def types(
    app_target: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your application's job types (--app or PGQUEUE_APP), with their options and params schema."""
    if not app_target:
        raise typer.BadParameter("give --app module:scheduler (or set PGQUEUE_APP)", param_hint="--app")
    described = load_scheduler(app_target).job_types()
    if as_json:
        emit_json([job_type_json(t) for t in described])
        return
    table = Table("type", "queue", "retry", "timeout", "max attempts", "params")
    for t in described:
        params = "untyped" if t.params_schema is None else str(t.params_schema.get("title", "typed"))
        table.add_row(
            t.name,
            t.queue,
            "none" if t.retry is None else repr(t.retry),
            str(t.timeout or ""),
            str(t.max_attempts),
            params,
        )
    stdout.print(table)
