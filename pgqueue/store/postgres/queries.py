"""Named SQL: reads ``queries/*.sql`` once at import into :data:`QUERIES`.

Why files and not strings in code: every statement pgqueue runs is in one place per noun
(``jobs.sql``, ``runs.sql``, ``workers.sql``, ``listen.sql``, ``maintenance.sql``,
``migrations.sql``), can be read and EXPLAINed as SQL, and a unit test checks that the
store uses each of them. A query's name is its attribute on :class:`Queries`; an unknown,
missing or duplicate name fails at import, not at the first job.

File format: each query opens with ``-- name: <noun>_<verb>[_many]``, then ``-- why:``
and ``-- params:`` lines (asyncpg has no named parameters), then the SQL up to the next
name. Comment lines inside a query are dropped.

The schema is configurable, so statements carry a ``{schema}`` token that
:meth:`Queries.for_schema` replaces with the quoted identifier. Only the schema is
substituted; every value is a bind parameter. Time is the database's ``now()``, and what a
worker must wait for comes back as seconds from now, never as a timestamp to compare with
its own clock: a worker whose clock runs ahead would otherwise claim in a loop until the
server's clock caught up.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from typing import Self

__all__ = ["QUERIES", "Queries", "parse_queries", "quote_ident"]

_NAME_RE = re.compile(r"^--\s*name:\s*(\w+)\s*$")
SCHEMA_TOKEN = "{schema}"  # noqa: S105 - an SQL placeholder, not a secret


@dataclasses.dataclass(frozen=True, slots=True)
class Queries:
    """One attribute per named query in ``queries/*.sql``."""

    migration_lock: str
    migration_schema_create: str
    migration_version_table_create: str
    migration_search_path_set: str
    migration_versions_get: str
    migration_version_insert: str
    schema_version_table_exists: str
    schema_version_max: str
    job_insert: str
    job_insert_many: str
    job_claim_many: str
    job_claim_announced: str
    job_next_due: str
    job_finalize_many: str
    job_release_many: str
    worker_register: str
    worker_heartbeat: str
    worker_deregister: str
    worker_list: str
    worker_lock: str
    worker_jobs_held: str
    listen_probe: str
    job_lock: str
    job_cancel_pending: str
    job_cancel_running: str
    job_cancel_requested_many: str
    job_lock_many: str
    job_get: str
    job_runs_get_many: str
    job_runs_activity: str
    job_list_live: str
    job_list_finished: str
    job_stats: str
    job_retry_many: str
    job_delete: str
    job_await: str
    job_suspend: str
    job_request_suspend: str
    job_resume: str
    job_progress_many: str
    plan_custom: str
    job_unique_lock: str
    job_insert_unique: str
    job_by_key: str
    job_depend_lock: str
    job_insert_dependent: str
    job_dependencies_many: str
    unique_keys_expire: str
    worker_reap_lock: str
    worker_reap_release: str
    jobs_dead_tuples: str
    jobs_vacuum_lock: str
    jobs_vacuum_unlock: str
    jobs_vacuum: str
    runs_retention_plan: str
    runs_partitions_expired: str
    runs_partition_ensure: str
    runs_partition_drop: str
    runs_lock_timeout_set: str
    runs_defaults_expire: str
    periodic_declare_many: str
    periodic_fire_many: str
    periodic_list: str
    periodic_delete: str
    leader_lock_held: str
    leader_lock_try: str
    leader_lock_check: str
    leader_unlock: str
    job_claim_limited: str
    queue_limited: str
    lease_slots: str
    queue_limit_adopt: str
    queue_limit_set: str
    queue_limit_remove: str
    queue_limit_list: str
    consumer_register: str
    queues_with_jobs: str
    lease_claim_many: str
    lease_claim_one: str
    lease_next_due: str
    lease_heartbeat: str
    lease_get: str
    leases_release_expired: str
    consumers_forget: str
    consumer_leave: str

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """All query names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def for_schema(self, schema: str) -> Self:
        """Return a copy with ``{schema}`` replaced by the quoted identifier."""
        quoted = quote_ident(schema)
        return dataclasses.replace(
            self, **{n: getattr(self, n).replace(SCHEMA_TOKEN, quoted) for n in self.names()}
        )


def quote_ident(name: str) -> str:
    """Quote an SQL identifier the way PostgreSQL's ``quote_ident`` always would."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def parse_queries(text: str, source: str = "queries") -> dict[str, str]:
    """Split one file into ``{name: sql}``; comment lines inside a query are dropped."""
    out: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def close() -> None:
        if name is None:
            return
        body = "\n".join(lines).strip().rstrip(";").strip()
        if not body:
            raise ValueError(f"query {name!r} in {source} has no SQL")
        out[name] = body

    for raw in text.splitlines():
        m = _NAME_RE.match(raw.strip())
        if m:
            close()
            name, lines = m.group(1), []
            if name in out:
                raise ValueError(f"duplicate query name in {source}: {name!r}")
            continue
        if name is None or raw.strip().startswith("--"):
            continue
        lines.append(raw)
    close()
    return out


def load_files() -> dict[str, str]:
    """Every query of every ``queries/*.sql`` file; a name defined twice is an error."""
    parsed: dict[str, str] = {}
    folder = importlib.resources.files(__package__ or "").joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse_queries(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in parsed:
                raise ValueError(f"query {name!r} is defined in two files (again in {entry.name})")
            parsed[name] = sql
    return parsed


def _load() -> Queries:
    parsed = load_files()
    expected = set(Queries.names())
    unknown, missing = set(parsed) - expected, expected - set(parsed)
    if unknown or missing:
        raise ValueError(
            f"queries/*.sql do not match Queries: unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    return Queries(**parsed)


QUERIES = _load()
