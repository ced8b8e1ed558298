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
from pathlib import Path

from ._errors import SchemaNotMigratedError, SchemaTooNewError
from ._store import Store

__all__ = ["LATEST_VERSION", "apply_migrations", "check_schema_version", "load_migrations"]

_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def _sql_dir() -> Path:
    """The packaged ``pgqueue/sql`` in a wheel; the repository's ``sql/`` in a checkout."""
    packaged = importlib.resources.files("pgqueue").joinpath("sql")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "sql"


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


async def apply_migrations(store: Store) -> list[int]:
    """Apply pending migrations; returns the versions applied (empty when up to date)."""
    try:
        return await store.migration_apply(MIGRATIONS, LATEST_VERSION)
    except LookupError as exc:
        raise SchemaTooNewError(
            f"schema {store.schema!r} is at version {exc.args[0]}, newer than this pgqueue "
            f"(knows up to {LATEST_VERSION}): upgrade pgqueue"
        ) from None


async def check_schema_version(store: Store) -> int:
    """Refuse to run against a schema that is missing, older or newer than the code."""
    version = await store.schema_version()
    if version is None or version < LATEST_VERSION:
        state = "not migrated" if version is None else f"at version {version}"
        raise SchemaNotMigratedError(
            f"schema {store.schema!r} is {state}, this pgqueue needs version {LATEST_VERSION}: "
            "run `pgqueue migrate` (or `await scheduler.migrate()`)"
        )
    if version > LATEST_VERSION:
        raise SchemaTooNewError(
            f"schema {store.schema!r} is at version {version}, newer than this pgqueue "
            f"(knows up to {LATEST_VERSION}): upgrade pgqueue"
        )
    return version
