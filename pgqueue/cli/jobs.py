"""``pgqueue schedule`` and ``pgqueue jobs ...``: schedule, look up and act on jobs.

Every command opens the database (see ``_app``), does one thing through the Scheduler's
management API and prints the outcome: a rich table or line, or with ``--json`` one JSON
document. A job id that is not known, or a state that does not allow the action, is one
line on stderr and exit code 1, as is a value pgqueue refuses (a naive time, a priority
out of range); a malformed command (invalid JSON, an unknown option, a value of the wrong
type) exits with code 2. ``--app`` names the application's scheduler: ``schedule``
checks params with its types, and ``jobs suspend`` can then ask a running job of a
suspendable type to stop at its next checkpoint.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import orjson
import typer
from rich.table import Table

from pgqueue._config import SCHEMA
from pgqueue._joblog import LogLine
from pgqueue._jsonable import job_json
from pgqueue._records import Page
from pgqueue._scheduler import Scheduler

from ._app import (
    AppOption,
    DsnOption,
    JsonOption,
    SchemaOption,
    acting_as,
    app,
    emit_json,
    progress_bar,
    run_with,
    stdout,
)
from .worker import load_scheduler

__all__ = ["jobs_app", "schedule"]

jobs_app = typer.Typer(no_args_is_help=True, help="Look up and act on jobs.")
app.add_typer(jobs_app, name="jobs")

IdArgument = Annotated[int, typer.Argument(help="The job's id.", min=1)]


def _params(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="PARAMS") from exc


def _run_at(text: str | None) -> dt.datetime | dt.timedelta | None:
    """An ISO 8601 time with its offset, or +SECONDS from now."""
    if text is None:
        return None
    if text.startswith("+"):
        try:
            return dt.timedelta(seconds=float(text[1:]))
        except ValueError as exc:
            raise typer.BadParameter(f"expected +SECONDS, got {text!r}", param_hint="--run-at") from exc
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected an ISO 8601 time or +SECONDS, got {text!r}", param_hint="--run-at"
        ) from exc


@app.command()
def schedule(  # noqa: PLR0917 - typer passes options by keyword; they are schedule()'s own
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="The job type.")],
    params: Annotated[str, typer.Argument(metavar="PARAMS", help="The params as JSON.")] = "null",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the type's, else 'default').")] = None,
    run_at: Annotated[str | None, typer.Option(help="When: ISO 8601 with an offset, or +SECONDS.")] = None,
    priority: Annotated[int, typer.Option(help="Lower runs first.")] = 0,
    unique_key: Annotated[
        str | None, typer.Option(help="Return the job that holds this key instead.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="The job's tenant.")] = None,
    app_target: AppOption = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Schedule one job and print its id (with --app, params are checked by its types)."""
    value = _params(params)
    when = _run_at(run_at)
    owner = load_scheduler(app_target) if app_target else None

    async def work(scheduler: Scheduler) -> tuple[int, bool]:
        if owner is None:
            scheduler.register(type_, _not_here)  # no application: the type is taken as given
        with acting_as(owner, scheduler) as target:
            job_id = await target.schedule(
                type_,
                value,
                queue=queue,
                run_at=when,
                priority=priority,
                unique_key=unique_key,
                tenant=tenant,
            )
        return int(job_id), job_id.inserted

    job_id, inserted = run_with(dsn, schema, work)
    if as_json:
        emit_json({"id": job_id, "inserted": inserted})
    else:
        stdout.print(f"job {job_id} {'scheduled' if inserted else 'already holds the key'}")


def _not_here(job: object) -> None:
    """The CLI schedules; it never runs jobs."""


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@jobs_app.command("list")
def list_jobs(  # noqa: PLR0917 - typer passes options by keyword; they are list_jobs()'s filters
    state: Annotated[str | None, typer.Option(help="pending, scheduled, running, succeeded, failed…")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only jobs scheduled with this tenant.")] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (1 to 500).")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The cursor a previous page printed.")] = None,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Every matching job: all pages, read --limit at a time.")
    ] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first, one page at a time (or every page with --all)."""

    async def work(scheduler: Scheduler) -> Page:
        page = await scheduler.list_jobs(
            state=state, queue=queue, type=type_, limit=limit, cursor=cursor, tenant=tenant
        )
        if not all_pages:
            return page
        items = list(page.items)
        with progress_bar() as bar:  # a long listing shows how far it got
            task = bar.add_task("reading jobs", total=None, completed=len(items))
            while page.cursor is not None:
                page = await scheduler.list_jobs(
                    state=state, queue=queue, type=type_, limit=limit, cursor=page.cursor, tenant=tenant
                )
                items += page.items
                bar.update(task, completed=len(items))
        return Page(tuple(items), None)

    page = run_with(dsn, schema, work)
    if as_json:
        emit_json({"items": [job_json(r) for r in page.items], "cursor": page.cursor})
        return
    table = Table("id", "type", "queue", "state", "attempts", "run at (UTC)", "last error")
    for r in page.items:
        error = (r.last_error or "").strip().splitlines()
        table.add_row(
            str(r.id),
            r.type,
            r.queue,
            r.state.value,
            str(r.attempts),
            _when(r.run_at),
            error[-1] if error else "",
        )
    stdout.print(table)
    if page.cursor is not None:
        stdout.print(f"next page: --cursor {page.cursor}")


@jobs_app.command("show")
def show(
    job_id: IdArgument, dsn: DsnOption = None, schema: SchemaOption = SCHEMA, as_json: JsonOption = False
) -> None:
    """Show one job, live or finished, with its runs."""
    record = run_with(dsn, schema, lambda s: s.get_job(job_id))
    if as_json:
        emit_json(job_json(record))
        return
    stdout.print(f"job {record.id}: {record.type} in {record.queue}, {record.state.value}")
    for label, value in (
        ("params", orjson.dumps(record.params).decode()),
        ("priority", record.priority),
        ("tenant", record.tenant or ""),
        ("attempts", record.attempts),
        ("errors", record.errors),
        ("scheduled", _when(record.inserted_at)),
        ("due", _when(record.run_at)),
        ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at)),
        ("result", orjson.dumps(record.result).decode()),
        ("depends on", ", ".join(map(str, record.depends_on))),
        ("dependents", ", ".join(map(str, record.dependents))),
    ):
        stdout.print(f"  {label}: {value}", markup=False)
    runs = Table("attempt", "outcome", "worker", "started (UTC)", "finished (UTC)", "error")
    for run in record.runs:
        error = (run.error or "").strip().splitlines()
        runs.add_row(
            str(run.attempt),
            run.outcome.value,
            str(run.worker_id or ""),
            _when(run.started_at),
            _when(run.finished_at),
            error[-1] if error else "",
        )
    stdout.print(runs)
    for run in record.runs:
        if run.log:
            count = len(run.log)
            stdout.print(f"run {run.attempt} log ({count} line{'' if count == 1 else 's'}):", markup=False)
        for line in run.log:
            stdout.print(f"  {_log_line(line)}", markup=False, highlight=False)


def _log_line(line: LogLine) -> str:
    """``2030-01-01 12:00:00.250 info    charged amount=12 currency="EUR"`` (fields as JSON)."""
    when = line.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    fields = "".join(f" {k}={orjson.dumps(v, default=repr).decode()}" for k, v in line.fields.items())
    return f"{when} {line.level:<7} {line.msg}{fields}"


def _act(  # noqa: PLR0917 - the command's options, passed on
    verb: str,
    job_id: int,
    dsn: str | None,
    schema: str,
    as_json: bool,
    app_target: str | None,
) -> None:
    owner = load_scheduler(app_target) if app_target else None

    async def work(scheduler: Scheduler) -> str:
        with acting_as(owner, scheduler) as target:  # the application's types say which are suspendable
            if verb == "cancel":
                return (await target.cancel(job_id)).value
            await getattr(target, verb)(job_id)
        return "done"

    outcome = run_with(dsn, schema, work)
    if verb == "cancel" and outcome == "not_found":
        raise typer.Exit(_not_live(job_id))
    if as_json:
        emit_json({"id": job_id, "action": verb, "outcome": outcome})
    else:
        stdout.print(f"job {job_id}: {verb} {outcome}")


def _not_live(job_id: int) -> int:
    typer.echo(f"error: job {job_id} is not live (it ended, or never existed): nothing to cancel", err=True)
    return 1


def _action_command(verb: str, doc: str) -> None:
    """Register ``pgqueue jobs <verb> ID``: one management call on one job."""

    def command(
        job_id: IdArgument,
        app_target: AppOption = None,
        dsn: DsnOption = None,
        schema: SchemaOption = SCHEMA,
        as_json: JsonOption = False,
    ) -> None:
        _act(verb, job_id, dsn, schema, as_json, app_target)

    command.__doc__ = doc
    jobs_app.command(verb)(command)


for _verb, _doc in (
    ("cancel", "Cancel a job: a waiting one ends at once, a running one is stopped by its worker."),
    ("retry", "Run a failed or cancelled job again, under its id."),
    ("delete", "Remove a job no worker holds (its runs stay)."),
    ("suspend", "Take a pending or scheduled job out of the queue (a running one: see --app)."),
    ("resume", "Put a suspended job back in the queue."),
):
    _action_command(_verb, _doc)


@jobs_app.command("wait")
def wait(
    job_id: IdArgument,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait at most (default: no limit).")
    ] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """Wait until a job ends and print how (exit code 1 on timeout)."""
    record = run_with(dsn, schema, lambda s: s.wait(job_id, timeout=timeout))
    if as_json:
        emit_json(job_json(record))
    else:
        stdout.print(f"job {record.id}: {record.state.value}")
