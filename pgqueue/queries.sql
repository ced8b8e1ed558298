-- Every runtime query of pgqueue, by name. `_sql.py` parses this file once at import.
--
-- Format: each query opens with `-- name: <noun>_<verb>[_many]`, then `-- why:` and
-- `-- params:` lines (asyncpg has no named parameters), then the SQL up to the next name.
-- `{schema}` stands for the configured schema, substituted as a quoted identifier when a
-- store is built; everything else is a bind parameter. Time is the database's now(), and
-- what a worker must wait for comes back as seconds from now, never as a timestamp to
-- compare with its own clock: a worker whose clock runs ahead would otherwise claim in a
-- loop until the server's clock caught up.
--
-- Notification payloads on the schema's channel (parsed by `_listener.py`):
--   r:<queue>          jobs in <queue> are due now: claim
--   d:<secs>:<queue>   a job in <queue> is due in <secs> seconds: arm a timer, do not claim
--   c:<job id>         cancel this job if you are running it
--   p:<token>          a listener's probe of its own connection

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

-- name: job_insert
-- why: one round trip inserts the job and wakes the workers of its queue; on a caller's
--      connection both commit or roll back with the caller's transaction.
-- params: $1 queue text, $2 type text, $3 params json, $4 run_at timestamptz (NULL = now),
--         $5 priority smallint, $6 channel text, $7 timeout seconds real (NULL = none),
--         $8 delay seconds float8 (with a NULL $4: run at the database's now() + $8)
WITH ins AS (
    INSERT INTO {schema}.jobs (queue, type, params, run_at, priority, delayed, timeout_s)
    SELECT $1, $2, $3::json, t.at, $5, t.at > now(), $7
    FROM (SELECT coalesce($4::timestamptz, now() + make_interval(secs => coalesce($8::float8, 0))) AS at) AS t
    RETURNING id, run_at, delayed
)
SELECT id, pg_notify($6::text, CASE WHEN delayed
                           THEN 'd:' || extract(epoch FROM run_at - now())::text || ':' || $1::text
                           ELSE 'r:' || $1::text END)
FROM ins;

-- name: job_insert_many
-- why: bulk insert of one type into one queue: one statement and one notification per chunk.
--      Ids come back in input order (the identity follows the ORDER BY of the insert).
-- params: $1 queue text, $2 type text, $3 params json[], $4 run_at timestamptz (NULL = now),
--         $5 priority smallint, $6 channel text, $7 timeout seconds real (NULL = none),
--         $8 delay seconds float8 (with a NULL $4: run at the database's now() + $8)
WITH ins AS (
    INSERT INTO {schema}.jobs (queue, type, params, run_at, priority, delayed, timeout_s)
    SELECT $1, $2, u.p, t.at, $5, t.at > now(), $7
    FROM (SELECT coalesce($4::timestamptz, now() + make_interval(secs => coalesce($8::float8, 0))) AS at) AS t,
         unnest($3::json[]) WITH ORDINALITY AS u(p, n)
    ORDER BY u.n
    RETURNING id, run_at, delayed
)
SELECT array_agg(id ORDER BY id) AS ids,
       pg_notify($6::text, CASE WHEN bool_and(delayed)
                           THEN 'd:' || extract(epoch FROM min(run_at) - now())::text || ':' || $1::text
                           ELSE 'r:' || $1::text END)
FROM ins;

-- name: job_claim_many
-- why: the worker's only read on the hot path. Locks up to $2 due jobs across the worker's
--      queues with SKIP LOCKED and marks them as its own, in one statement. Per queue, one
--      branch reads the claim index in (priority, run_at, id) order and one reads due
--      delayed jobs from the due index; the merge keeps priority order across queues.
--      `id = ANY(ARRAY(...))`, not `id IN (SELECT ...)`: the latter can plan as a hash
--      semi-join over a sequential scan. The worker's own row is locked FOR KEY SHARE, so
--      a reaper deleting it waits for this claim to commit and then releases these jobs;
--      a reaped worker claims nothing.
--      run_at and inserted_at come back as epoch seconds (float8: the microsecond survives
--      the round trip until 2106): asyncpg decodes a timestamptz with Python datetime
--      arithmetic, 1.4 µs per value, and most handlers never read them (Job converts on
--      access).
--      The rows come back in the order the update met them, not in claim order: the
--      fetcher sorts them (a sort here, over a materialized RETURNING, was 8% of the
--      statement, on the database's side of the pipeline, which is its bottleneck).
-- params: $1 queues text[], $2 limit int, $3 worker_id bigint
WITH w AS (
    SELECT id FROM {schema}.workers WHERE id = $3 FOR KEY SHARE
)
UPDATE {schema}.jobs j
SET worker_id = $3, attempt = j.attempt + 1, delayed = false, claimed_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT c.id
    FROM unnest($1::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT * FROM (
            SELECT id, priority, run_at FROM {schema}.jobs
            WHERE queue = q.name AND worker_id IS NULL AND NOT delayed
            ORDER BY priority, run_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) AS ready
        UNION ALL
        SELECT * FROM (
            SELECT id, priority, run_at FROM {schema}.jobs
            WHERE queue = q.name AND worker_id IS NULL AND delayed AND run_at <= now()
            ORDER BY run_at
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) AS due
    ) AS c
    ORDER BY c.priority, c.run_at, c.id
    LIMIT $2
))
AND EXISTS (SELECT 1 FROM w)
RETURNING j.id, j.queue, j.type, j.params, j.priority, j.attempt, j.errors, j.last_error,
          date_part('epoch', j.run_at) AS run_at, date_part('epoch', j.inserted_at) AS inserted_at,
          j.timeout_s, j.cancel_requested;

-- name: job_next_due
-- why: when the queues are drained the fetcher sleeps until the next delayed job is due
--      instead of polling; one due-index entry per queue. Seconds from the server's now().
-- params: $1 queues text[]
SELECT extract(epoch FROM min(n.run_at) - now())::float8
FROM unnest($1::text[]) AS q(name)
CROSS JOIN LATERAL (
    SELECT run_at FROM {schema}.jobs
    WHERE queue = q.name AND worker_id IS NULL AND delayed
    ORDER BY run_at
    LIMIT 1
) AS n;

-- name: job_finalize_many
-- why: one statement per flush, so one round trip and no explicit transaction: it ends
--      finished jobs (delete), puts failed or interrupted ones back (update) and logs
--      their runs. The run rows are built here from the job rows, so the worker sends only
--      what it alone knows (ids, attempts, times, outcomes) and never encodes queue, type,
--      params or timestamps it read from this same row: with COPY, that encoding was the
--      largest share of the worker's CPU per job (asyncpg encodes a timestamptz in ~1 µs).
--      Fencing: a job is ended or put back only if this worker still holds it at the
--      attempt the run was, and a run is logged only for a job so written (the log reads
--      the RETURNING rows). A row updated concurrently is re-checked on its newest version
--      (a reaper's release fails the check; a cancel flag does not). So a repeated flush, a
--      reaped worker or a stale run changes and logs nothing.
--      Plan shape: the owner is compared with a column of the materialized input, not with
--      $1, on purpose. Against $1 the generic planner estimated "jobs held by this worker"
--      at 1 row (worker_id is mostly NULL) and joined that scan to the arrays (estimated
--      at 10 rows) in a nested loop over every pair, O(n²) in the batch. Without that
--      estimate it picks a hash join on small tables and primary-key lookups on large
--      ones: linear either way (a test checks the plans).
--      Ended runs: $6..$9 may be shorter than $2 (unnest pads them with NULL): NULL outcome
--      is 'succeeded', NULL log is true, so a batch of plain successes sends four arrays.
--      Put-back rows go to the due index (delayed = true) whatever their time: the claim
--      takes due rows from there in run_at order. Their run row has the run_at the run
--      was due at ($16, from the claim: the update overwrites it) and the new one as
--      retry_at. Ids in one call are unique.
-- params: $1 worker_id bigint,
--         ended: $2 ids bigint[], $3 attempts int[], $4 started float8[] (epoch seconds),
--         $5 finished float8[], $6 outcomes text[], $7 errors text[], $8 results json[],
--         $9 log bool[];
--         put back: $10 ids bigint[], $11 attempts int[], $12 started float8[],
--         $13 finished float8[], $14 outcomes text[], $15 errors text[] (NULL keeps the
--         job's last error), $16 due at float8[] (epoch seconds), $17 retry at
--         timestamptz[] (NULL = now() + delay), $18 delay seconds float8[],
--         $19 error increments int[], $20 log bool[];
--         $21 clock offset float8 (seconds added to the worker's times to put them on the
--         database's clock, measured at registration and each heartbeat)
WITH done AS MATERIALIZED (
    SELECT d.*, $1::bigint AS owner
    FROM unnest($2::bigint[], $3::int[], $4::float8[], $5::float8[],
                $6::text[], $7::text[], $8::json[], $9::bool[])
         AS d(id, attempt, started, finished, outcome, error, result, log)
), back AS MATERIALIZED (
    SELECT d.*, $1::bigint AS owner
    FROM unnest($10::bigint[], $11::int[], $12::float8[], $13::float8[], $14::text[], $15::text[],
                $16::float8[], $17::timestamptz[], $18::float8[], $19::int[], $20::bool[])
         AS d(id, attempt, started, finished, outcome, error, due_at, retry_at, delay, error_inc, log)
), ended AS (
    DELETE FROM {schema}.jobs j
    USING done d
    WHERE j.id = d.id AND j.worker_id = d.owner AND j.attempt = d.attempt
    RETURNING j.id, j.inserted_at, j.run_at, j.attempt, j.priority, j.queue, j.type, j.params,
              d.started, d.finished, d.outcome, d.error, d.result, d.log
), put_back AS (
    UPDATE {schema}.jobs j
    SET worker_id = NULL,
        delayed = true,
        run_at = coalesce(b.retry_at, now() + make_interval(secs => b.delay)),
        errors = j.errors + b.error_inc,
        last_error = coalesce(b.error, j.last_error)
    FROM back b
    WHERE j.id = b.id AND j.worker_id = b.owner AND j.attempt = b.attempt
    RETURNING j.id, j.inserted_at, b.due_at, j.run_at, j.attempt, j.priority, j.queue, j.type,
              j.params, b.started, b.finished, b.outcome, b.error, b.log
), logged AS (
    INSERT INTO {schema}.job_runs (job_id, worker_id, inserted_at, run_at, started_at, finished_at,
                                   retry_at, attempt, priority, queue, type, outcome, error, params,
                                   result)
    SELECT id, $1, inserted_at, run_at, to_timestamp(started + $21::float8), to_timestamp(finished + $21::float8), NULL,
           attempt, priority, queue, type, coalesce(outcome, 'succeeded'), error, params, result
    FROM ended
    WHERE log IS NOT false
    UNION ALL
    SELECT id, $1, inserted_at, to_timestamp(due_at), to_timestamp(started + $21::float8),
           to_timestamp(finished + $21::float8),
           run_at, attempt, priority, queue, type, outcome, error, params, NULL
    FROM put_back
    WHERE log
    RETURNING 1
)
SELECT (SELECT array_agg(id) FROM ended) AS ended_ids,
       (SELECT array_agg(id) FROM put_back) AS put_back_ids,
       (SELECT array_agg(run_at) FROM put_back) AS put_back_run_at,
       (SELECT count(*) FROM logged) AS runs_logged,
       (SELECT extract(epoch FROM min(run_at) - now())::float8 FROM put_back) AS put_back_due_in;

-- name: job_release_many
-- why: shutdown hands back claimed jobs that never started, at once and without counting
--      the claim as an attempt, so another worker takes them immediately.
-- params: $1 worker_id bigint, $2 ids bigint[]
UPDATE {schema}.jobs
SET worker_id = NULL, attempt = attempt - 1, delayed = false
WHERE id = ANY($2::bigint[]) AND worker_id = $1;

-- name: worker_register
-- why: a worker's identity; its row is the lease on every job it claims. The server's
--      clock comes back too (epoch seconds): the worker measures its own clock's offset
--      from it, and the run log's start and finish times are written on the database's
--      clock.
-- params: $1 pid int, $2 hostname text, $3 queues text[]
INSERT INTO {schema}.workers (pid, hostname, queues) VALUES ($1, $2, $3)
RETURNING id, date_part('epoch', clock_timestamp()) AS server_time;

-- name: worker_heartbeat
-- why: keep the lease alive; no row back means this worker was reaped. Returns the
--      server's clock (epoch seconds) to refresh the worker's clock offset.
-- params: $1 worker_id bigint
UPDATE {schema}.workers SET heartbeat = now() WHERE id = $1
RETURNING date_part('epoch', clock_timestamp()) AS server_time;

-- name: worker_deregister
-- why: a clean exit: give back whatever this worker still holds and drop its row, in one
--      statement, so no job stays owned by a worker that is gone. (No index on worker_id:
--      it would cost every claim an index insert for this rare scan of the small hot table.)
-- params: $1 worker_id bigint
WITH released AS (
    UPDATE {schema}.jobs SET worker_id = NULL, delayed = true
    WHERE worker_id = $1
    RETURNING id
)
DELETE FROM {schema}.workers WHERE id = $1 RETURNING (SELECT count(*) FROM released);

-- name: listen_probe
-- why: the listener's health check: a notification it sends itself must come back, or
--      the LISTEN connection is treated as dead (half-open sockets look alive otherwise).
-- params: $1 channel text, $2 payload text
SELECT pg_notify($1, $2);

-- name: job_lock
-- why: cancel() first locks the row, so a claim in progress finishes before we decide
--      whether the job is pending (delete it) or running (ask its owner to stop it).
-- params: $1 job id bigint
SELECT worker_id FROM {schema}.jobs WHERE id = $1 FOR UPDATE;

-- name: job_cancel_pending
-- why: a job nobody holds ends at once, with a "cancelled" row as its final run.
-- params: $1 job id bigint, $2 reason text
WITH gone AS (
    DELETE FROM {schema}.jobs WHERE id = $1 AND worker_id IS NULL
    RETURNING id, inserted_at, run_at, attempt, priority, queue, type, params
)
INSERT INTO {schema}.job_runs (job_id, inserted_at, run_at, started_at, finished_at, attempt, priority,
                               queue, type, outcome, error, params)
SELECT id, inserted_at, run_at, now(), now(), attempt + 1, priority, queue, type, 'cancelled', $2, params
FROM gone;

-- name: job_cancel_running
-- why: a claimed job is flagged (so no later claim runs it) and its owner is told by
--      NOTIFY to interrupt it; the owner records the cancelled run.
-- params: $1 job id bigint, $2 channel text
WITH flagged AS (
    UPDATE {schema}.jobs SET cancel_requested = true WHERE id = $1 AND worker_id IS NOT NULL
    RETURNING id
)
SELECT pg_notify($2, 'c:' || id::text) FROM flagged;

-- name: job_cancel_requested_many
-- why: the heartbeat's backstop for a missed cancel notification: which of the jobs this
--      worker runs have been cancelled since.
-- params: $1 ids bigint[]
SELECT id FROM {schema}.jobs WHERE id = ANY($1::bigint[]) AND cancel_requested;

-- name: worker_reap_lock
-- why: find workers silent for longer than the deadline and lock their rows. A worker with a
--      claim in flight holds its own row FOR KEY SHARE, so SKIP LOCKED leaves it for the next
--      round; once locked here, a late claim of the dead worker waits, finds no row and takes
--      nothing, and the release that follows (a later statement of this transaction, so a
--      newer snapshot) sees every job the dead workers ever claimed.
-- params: $1 dead after seconds float8, $2 the reaping worker's id bigint
SELECT id FROM {schema}.workers
WHERE heartbeat < now() - make_interval(secs => $1) AND id <> $2
ORDER BY id
FOR UPDATE SKIP LOCKED;

-- name: worker_reap_release
-- why: free every job the dead workers held, at once, and record the cut-short runs: one
--      "crashed" (or "timeout", when the run had passed its deadline) row per job, so each
--      claim has its run row. The claim already counted the attempt, so a job that keeps
--      killing its workers runs out of attempts instead of looping. Then drop the rows.
-- params: $1 worker ids bigint[]
WITH released AS (
    UPDATE {schema}.jobs j
    SET worker_id = NULL, delayed = true,
        last_error = format('worker %s (%s pid %s) stopped heartbeating; the run was cut short',
                            w.id, w.hostname, w.pid)
    FROM {schema}.workers w
    WHERE j.worker_id = w.id AND w.id = ANY($1::bigint[])
    RETURNING j.id, w.id AS wid, j.inserted_at, j.run_at, j.claimed_at, j.timeout_s, j.attempt,
              j.priority, j.queue, j.type, j.params, j.last_error
), logged AS (
    INSERT INTO {schema}.job_runs (job_id, worker_id, inserted_at, run_at, started_at, finished_at,
                                   retry_at, attempt, priority, queue, type, outcome, error, params)
    SELECT id, wid, inserted_at, run_at, coalesce(claimed_at, now()), now(), now(), attempt, priority,
           queue, type,
           CASE WHEN claimed_at + make_interval(secs => timeout_s) < now() THEN 'timeout' ELSE 'crashed' END,
           last_error, params
    FROM released
    RETURNING job_id
), dropped AS (
    DELETE FROM {schema}.workers WHERE id = ANY($1::bigint[]) RETURNING id
)
SELECT (SELECT count(*) FROM logged) AS jobs_released, (SELECT count(*) FROM dropped) AS workers_reaped;

-- name: jobs_dead_tuples
-- why: the hot table churns (insert, claim, delete); its dead index entries sit at the head
--      of the claim index, where every claim walks over them until a VACUUM. Workers check
--      the count and vacuum sooner than autovacuum's server-wide naptime would.
-- params: $1 qualified table name text
SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relid = to_regclass($1);

-- name: jobs_vacuum_lock
-- why: one worker vacuums at a time; the others skip. Session-level, released right after.
-- params: $1 lock key text
SELECT pg_try_advisory_lock(hashtextextended($1, 0));

-- name: jobs_vacuum_unlock
-- why: release the lock taken by jobs_vacuum_lock on the same connection.
-- params: $1 lock key text
SELECT pg_advisory_unlock(hashtextextended($1, 0));

-- name: jobs_vacuum
-- why: remove dead tuples and index entries of the hot table (see jobs_dead_tuples).
--      INDEX_CLEANUP ON: the index entries are the point. By default (AUTO, PostgreSQL 14+)
--      VACUUM skips the indexes when the dead rows sit on under 2% of the heap's pages,
--      which is exactly the shape of a drained head on a large backlog.
-- params: none
VACUUM (INDEX_CLEANUP ON) {schema}.jobs;
