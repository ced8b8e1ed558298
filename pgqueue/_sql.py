"""Named SQL: parses ``queries.sql`` once at import into :data:`QUERIES`.

Why a file and not strings in code: every statement pgqueue runs is in one place, can be
read and EXPLAINed as SQL, and a unit test checks that the store uses each of them. A
query's name is its attribute on :class:`Queries`; an unknown, missing or duplicate name
fails at import, not at the first job.

The schema is configurable, so statements carry a ``{schema}`` token that
:meth:`Queries.for_schema` replaces with the quoted identifier. Only the schema is
substituted; every value is a bind parameter.
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
    """One attribute per named query in ``queries.sql``."""

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
    job_next_due: str
    job_finalize_many: str
    job_release_many: str
    worker_register: str
    worker_heartbeat: str
    worker_deregister: str
    listen_probe: str
    job_lock: str
    job_cancel_pending: str
    job_cancel_running: str
    job_cancel_requested_many: str
    worker_reap_lock: str
    worker_reap_release: str
    jobs_dead_tuples: str
    jobs_vacuum_lock: str
    jobs_vacuum_unlock: str
    jobs_vacuum: str

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


def parse_queries(text: str) -> dict[str, str]:
    """Split the file into ``{name: sql}``; comment lines inside a query are dropped."""
    out: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def close() -> None:
        if name is None:
            return
        body = "\n".join(lines).strip().rstrip(";").strip()
        if not body:
            raise ValueError(f"query {name!r} in queries.sql has no SQL")
        out[name] = body

    for raw in text.splitlines():
        m = _NAME_RE.match(raw.strip())
        if m:
            close()
            name, lines = m.group(1), []
            if name in out:
                raise ValueError(f"duplicate query name in queries.sql: {name!r}")
            continue
        if name is None or raw.strip().startswith("--"):
            continue
        lines.append(raw)
    close()
    return out


def _load() -> Queries:
    text = importlib.resources.files("pgqueue").joinpath("queries.sql").read_text(encoding="utf-8")
    parsed = parse_queries(text)
    expected = set(Queries.names())
    unknown, missing = set(parsed) - expected, expected - set(parsed)
    if unknown or missing:
        raise ValueError(
            f"queries.sql does not match Queries: unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    return Queries(**parsed)


QUERIES = _load()
