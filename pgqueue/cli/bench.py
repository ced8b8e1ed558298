"""``pgqueue bench``: the benchmark, one JSON line on stdout and a table on stderr."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app

__all__ = ["bench"]


@app.command()
def bench(
    *,
    jobs: Annotated[
        int, typer.Option("--jobs", "-n", min=1, envvar="BENCH_N", help="Jobs per drain.")
    ] = 20_000,
    concurrency: Annotated[
        list[str] | None,
        typer.Option(
            "--concurrency",
            "-c",
            envvar="BENCH_CONCURRENCY",
            help="Worker concurrency of the drains (repeatable or comma-separated; default 10,50).",
        ),
    ] = None,
    phases: Annotated[
        str | None,
        typer.Option(
            envvar="BENCH_PHASES",
            help=(
                "Comma-separated, from: enqueue, drain, latency, two_workers, unique, depends_on, "
                "awaited, manage, memory, metrics, churn, limits, pull, colocate, iobound, big "
                "(default: all but big)."
            ),
        ),
    ] = None,
    big: Annotated[
        bool, typer.Option("--big", envvar="BENCH_BIG", help="Add the 1,000,000-job backlog drain (minutes).")
    ] = False,
    big_jobs: Annotated[
        int, typer.Option("--big-jobs", min=1, envvar="BENCH_BIG_N", help="Backlog of --big.")
    ] = 1_000_000,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr for long phases.")] = True,
    dsn: Annotated[
        str | None,
        typer.Option(
            "--dsn", envvar="BENCH_DSN", help="Database to (re)create; name must start with bench_."
        ),
    ] = None,
) -> None:
    """Benchmark enqueue, drain, latency and cost; one JSON line on stdout, a table on stderr.

    Without --dsn: 127.0.0.1:5432 when it answers, else an embedded PostgreSQL.
    """
    import dataclasses  # noqa: PLC0415 - the benchmark is not needed to run jobs

    from pgqueue.bench import Params, run_bench  # noqa: PLC0415

    try:
        levels = [int(c) for item in concurrency or ["10,50"] for c in item.replace(" ", ",").split(",") if c]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--concurrency") from exc
    params = dataclasses.replace(
        Params(), n=jobs, concurrencies=tuple(levels), big_n=big_jobs, progress=progress
    )
    try:
        chosen = None if phases is None else [p.strip() for p in phases.split(",") if p.strip()]
        run_bench(params=params, dsn=dsn, phases=chosen, big=big)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
