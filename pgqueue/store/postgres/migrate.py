"""Versioned migrations from ``sql/NNN_name.sql``, applied in order under an advisory lock.

The files live at the top of the repository so they read as plain SQL in review, and are
copied into the wheel as ``pgqueue/sql``. Each runs with ``search_path`` set to the
configured schema, so the files use unqualified names.

Rules: a released file is never edited (add a new one); applying is idempotent; all
pending files apply in one transaction (all or nothing); a database migrated by a newer
pgqueue is refused, because this code does not know what those migrations changed.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Collection
from pathlib import Path

from pgqueue._errors import SchemaNotMigratedError, SchemaTooNewError

from .pool import StoreBase
from .queries import QUERIES, quote_ident

__all__ = ["LATEST_VERSION", "MIGRATIONS", "MigrateMixin", "load_migrations", "migration_script"]

_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def _sql_dir() -> Path:
    """The packaged ``pgqueue/sql`` in a wheel; the repository's ``sql/`` in a checkout."""
    packaged = importlib.resources.files("pgqueue").joinpath("sql")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "sql"


def load_migrations(directory: Path | None = None) -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for every migration file, in version order.

    Versions must run 1, 2, 3… without gaps or duplicates: a missing file would otherwise be
    skipped silently on a fresh database and applied out of order on an old one.
    """
    d = directory or _sql_dir()
    found: list[tuple[int, str, str]] = []
    for path in sorted(d.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise ValueError(f"migration file name must look like 001_name.sql: {path.name}")
        found.append((int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations in {d} must be numbered 1..n without gaps, found {versions}")
    return found


MIGRATIONS = load_migrations()
LATEST_VERSION = len(MIGRATIONS)


def _too_new(schema: str, version: int) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"schema {schema!r} is at version {version}, newer than this pgqueue "
        f"(knows up to {LATEST_VERSION}): upgrade pgqueue"
    )


def _literal(text: str) -> str:
    """An SQL string literal (standard_conforming_strings, PostgreSQL's default since 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def migration_script(schema: str, applied: Collection[int] = ()) -> str:
    """The statements :meth:`MigrateMixin.migrate` runs for the versions not in ``applied``.

    One psql-ready script in one transaction, with the same advisory lock, schema, version
    table and ``search_path`` as ``migrate()``, so a DBA who reviews and applies it leaves
    the schema exactly as ``pgqueue migrate`` would. Empty when nothing is pending.
    """
    pending = [m for m in MIGRATIONS if m[0] not in applied]
    if not pending:
        return ""
    q = QUERIES.for_schema(schema)
    quoted = quote_ident(schema)
    lock = q.migration_lock.replace("$1", _literal(f"pgqueue.migrate:{schema}"))
    parts = [
        f"-- pgqueue migrations {pending[0][0]}..{pending[-1][0]} for schema {quoted}",
        "BEGIN;",
        f"{lock};",
        f"{q.migration_schema_create};",
        f"{q.migration_version_table_create};",
        f"SET LOCAL search_path TO {quoted};",
    ]
    insert = q.migration_version_insert
    for version, name, sql in pending:
        parts += [
            f"\n-- {version:03d}_{name}.sql",
            sql.strip(),
            insert.replace("$1", str(version)).replace("$2", _literal(name)) + ";",
        ]
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


class MigrateMixin(StoreBase):
    """``migrations.sql``: apply the files, read and check the version."""

    async def migrate(self) -> list[int]:
        """Apply the missing migrations in one transaction under an advisory lock.

        Returns the versions applied (empty when up to date); a schema newer than the code
        raises :class:`SchemaTooNewError`.
        """
        q = self.q
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.migration_lock, f"pgqueue.migrate:{self.schema}")
            await conn.execute(q.migration_schema_create)
            await conn.execute(q.migration_version_table_create)
            applied = {r[0] for r in await conn.fetch(q.migration_versions_get)}
            if applied and max(applied) > LATEST_VERSION:
                raise _too_new(self.schema, max(applied))
            done: list[int] = []
            for version, name, sql in MIGRATIONS:
                if version in applied:
                    continue
                await conn.fetchval(q.migration_search_path_set, quote_ident(self.schema))
                await conn.execute(sql)
                await conn.execute(q.migration_version_insert, version, name)
                done.append(version)
            return done

    async def migration_pending_sql(self) -> str:
        """The script of the migrations this database lacks (see :func:`migration_script`)."""
        async with self.pool.acquire() as conn:
            table = f"{quote_ident(self.schema)}.schema_version"
            applied: list[int] = []
            if await conn.fetchval(self.q.schema_version_table_exists, table):
                applied = [r[0] for r in await conn.fetch(self.q.migration_versions_get)]
        if applied and max(applied) > LATEST_VERSION:
            raise _too_new(self.schema, max(applied))
        return migration_script(self.schema, applied)

    async def schema_version(self) -> int | None:
        """The highest applied migration, or None when the schema was never migrated."""
        async with self.pool.acquire() as conn:
            table = f"{quote_ident(self.schema)}.schema_version"
            if not await conn.fetchval(self.q.schema_version_table_exists, table):
                return None
            v: int = await conn.fetchval(self.q.schema_version_max)
            return v

    async def schema_check(self) -> int:
        """Refuse a schema that is missing, older or newer than the code; returns its version."""
        version = await self.schema_version()
        if version is None or version < LATEST_VERSION:
            state = "not migrated" if version is None else f"at version {version}"
            raise SchemaNotMigratedError(
                f"schema {self.schema!r} is {state}, this pgqueue needs version {LATEST_VERSION}: "
                "run `pgqueue migrate` (or `await scheduler.migrate()`)"
            )
        if version > LATEST_VERSION:
            raise _too_new(self.schema, version)
        return version
