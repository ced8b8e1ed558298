-- Retention of the run log: day partitions created ahead, expired days dropped whole
-- (sql/012 holds the partition functions and says why the log is split this way).
-- Days are UTC days. A cutoff is the start of the UTC day that a moment minus the
-- retention falls in: a day partition goes when its whole day is before its tree's cutoff.

-- name: runs_retention_plan
-- why: one retention round's plan, read in one statement on the database's clock (or $1):
--      the two cutoffs, the days that lack a partition in either tree among today and the
--      next $4 days and the days of the rows waiting in a DEFAULT partition that are not yet
--      expired (rows dated after those days stay where they are), and how many rows of
--      expired days wait in a DEFAULT partition (they can only be deleted).
-- params: $1 now timestamptz (NULL = now()), $2 retention seconds float8, $3 failed
--         retention seconds float8, $4 days ahead int, $5 schema text (unquoted)
WITH t AS (
    SELECT date_trunc('day', coalesce($1::timestamptz, now()) - make_interval(secs => $2::float8), 'UTC')
               AS done_before,
           date_trunc('day', coalesce($1::timestamptz, now()) - make_interval(secs => $3::float8), 'UTC')
               AS failed_before,
           (coalesce($1::timestamptz, now()) AT TIME ZONE 'UTC')::date AS today
), horizon AS (
    SELECT t.*, (t.today + $4::int + 1)::timestamp AT TIME ZONE 'UTC' AS ahead_end FROM t
), wanted AS (
    SELECT h.today + i AS day FROM horizon h, generate_series(0, $4::int) AS i
    UNION
    SELECT (r.finished_at AT TIME ZONE 'UTC')::date
    FROM {schema}.job_runs_done_default r, horizon h
    WHERE r.finished_at >= h.done_before AND r.finished_at < h.ahead_end
    UNION
    SELECT (r.finished_at AT TIME ZONE 'UTC')::date
    FROM {schema}.job_runs_failed_default r, horizon h
    WHERE r.finished_at >= h.failed_before AND r.finished_at < h.ahead_end
), missing AS (
    SELECT w.day,
           (to_regclass(format('%I.%I', $5::text, 'job_runs_done_p' || to_char(w.day, 'YYYYMMDD'))) IS NULL)::int
           + (to_regclass(format('%I.%I', $5::text, 'job_runs_failed_p' || to_char(w.day, 'YYYYMMDD'))) IS NULL)::int
               AS tables
    FROM wanted w
)
SELECT h.done_before, h.failed_before,
       (SELECT coalesce(array_agg(m.day ORDER BY m.day), '{}') FROM missing m WHERE m.tables > 0) AS missing,
       (SELECT coalesce(sum(m.tables), 0)::int FROM missing m) AS missing_partitions,
       (SELECT count(*) FROM {schema}.job_runs_done_default WHERE finished_at < h.done_before)
       + (SELECT count(*) FROM {schema}.job_runs_failed_default WHERE finished_at < h.failed_before)
           AS default_rows
FROM horizon h;

-- name: runs_partitions_expired
-- why: the day partitions whose whole day is before their tree's cutoff, oldest first, read
--      from the catalog: the day is in the name runs_partition_ensure() gave the partition.
-- params: $1 schema text (unquoted), $2 done cutoff timestamptz, $3 failed cutoff timestamptz
SELECT p.relname::text AS partition
FROM (
    SELECT c.relname, m[1] AS kind, to_date(m[2], 'YYYYMMDD') AS day
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL regexp_match(c.relname, '^job_runs_(done|failed)_p([0-9]{8})$') AS m
    WHERE i.inhparent IN (to_regclass(format('%I.%I', $1::text, 'job_runs_done')),
                          to_regclass(format('%I.%I', $1::text, 'job_runs_failed')))
      AND m IS NOT NULL
) AS p
WHERE (p.day + 1)::timestamp AT TIME ZONE 'UTC' <= CASE p.kind WHEN 'done' THEN $2::timestamptz
                                                                ELSE $3::timestamptz END
ORDER BY p.day, p.kind;

-- name: runs_partition_ensure
-- why: create a day's partitions in both trees, moving that day's rows out of the DEFAULT
--      partitions (sql/012). In its own transaction, under runs_lock_timeout_set.
-- params: $1 day date
SELECT {schema}.runs_partition_ensure($1::date);

-- name: runs_partition_drop
-- why: drop one expired day partition, with the failed runs a later run of theirs in it
--      supersedes (sql/012). In its own transaction, under runs_lock_timeout_set.
-- params: $1 partition name text
SELECT {schema}.runs_partition_drop($1::text);

-- name: runs_lock_timeout_set
-- why: partition DDL waits for the log's readers, and the log's writers wait behind it:
--      bound that wait for this transaction; a round that times out tries again next time.
-- params: $1 timeout text (like '1000ms')
SELECT set_config('lock_timeout', $1::text, true);

-- name: runs_defaults_expire
-- why: rows of expired days waiting in the DEFAULT partitions (their day never got a
--      partition) can only be deleted: the one place retention leaves dead tuples. The
--      failed runs that a deleted done run supersedes go too, as runs_partition_drop() has
--      them go (those older than the failed cutoff go with their own day anyway).
-- params: $1 done cutoff timestamptz, $2 failed cutoff timestamptz
WITH gone AS (
    DELETE FROM {schema}.job_runs_done_default WHERE finished_at < $1::timestamptz
    RETURNING job_id, attempt
), superseded AS (
    DELETE FROM {schema}.job_runs_failed f
    USING gone g
    WHERE g.job_id = f.job_id AND g.attempt > f.attempt AND f.finished_at >= $2::timestamptz
    RETURNING 1
), failed AS (
    DELETE FROM {schema}.job_runs_failed_default WHERE finished_at < $2::timestamptz
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM superseded) + (SELECT count(*) FROM failed);
