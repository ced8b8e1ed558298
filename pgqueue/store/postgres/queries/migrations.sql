-- Migrations and the schema version: the migrator's statements (the migration files
-- themselves are in the repository's sql/ directory).

-- name: migration_lock
-- why: serialise concurrent migrators (several processes starting at once) per schema.
-- params: $1 lock key text
SELECT pg_advisory_xact_lock(hashtextextended($1, 0));

-- name: migration_schema_create
-- why: the schema must exist before the version table and the migrations go in it.
-- params: none
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: migration_version_table_create
-- why: records which migrations ran; created by the migrator, not by a migration.
-- params: none
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migration_search_path_set
-- why: migration files use unqualified names; this points them at our schema for the
--      current transaction only.
-- params: $1 quoted schema identifier text
SELECT set_config('search_path', $1, true);

-- name: migration_versions_get
-- why: the versions already applied, to apply the rest and to refuse a newer schema.
-- params: none
SELECT version FROM {schema}.schema_version ORDER BY version;

-- name: migration_version_insert
-- why: mark a migration applied, in the same transaction as its DDL.
-- params: $1 version int, $2 name text
INSERT INTO {schema}.schema_version (version, name) VALUES ($1, $2);

-- name: schema_version_table_exists
-- why: tell "never migrated" from "migrated to version N" without an error.
-- params: $1 qualified table name text
SELECT to_regclass($1) IS NOT NULL;

-- name: schema_version_max
-- why: startup check that the database schema matches the code.
-- params: none
SELECT coalesce(max(version), 0) FROM {schema}.schema_version;
