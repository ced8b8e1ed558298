-- 012_partitioned_runs: the run log is partitioned by the day a run finished, so retention
-- drops whole days instead of deleting rows: no dead tuples, nothing for VACUUM to do.
--
--   job_runs                   PARTITION BY LIST (the run is the final run of a failed job)
--     job_runs_done            false: every other run             PARTITION BY RANGE (finished_at)
--       job_runs_done_pYYYYMMDD   one per UTC day: [day 00:00 UTC, next day 00:00 UTC)
--       job_runs_done_default     rows of a day that has no partition
--     job_runs_failed          true: kept longer than the rest     (the same shape)
--
-- "Final run of a failed job" is run_end_state(retry_at, outcome) = 'failed' (sql/006),
-- written out: a partition key must be an immutable expression of the row. Days are UTC
-- days whatever the session's time zone; a partition's name carries its day.
--
-- With the DEFAULT partitions an insert never fails for want of a partition (the
-- maintenance leader was down for days, a worker's clock is off): the row waits there until
-- runs_partition_ensure() creates its day and moves it. Rows of an expired day still in a
-- DEFAULT partition are deleted: the one case where retention leaves dead tuples.
--
-- The history moves here: the old table is renamed, the new tree takes the old names (the
-- columns, the outcome check, and the two indexes, now on the parent so that every
-- partition gets them), each day of history gets its partitions, the rows are copied as
-- they are, and the old table is dropped. The outcome check is valid on the new table:
-- every old row satisfies it (002 and 007 only widened it).

ALTER TABLE job_runs RENAME TO job_runs_unpartitioned;
ALTER INDEX job_runs_job_id_idx RENAME TO job_runs_unpartitioned_job_id_idx;
ALTER INDEX job_runs_finished_at_idx RENAME TO job_runs_unpartitioned_finished_at_idx;

CREATE TABLE job_runs (
    job_id      bigint      NOT NULL,
    worker_id   bigint,
    inserted_at timestamptz NOT NULL,
    run_at      timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    retry_at    timestamptz,
    attempt     integer     NOT NULL,
    priority    smallint    NOT NULL,
    queue       text        NOT NULL,
    type        text        NOT NULL,
    outcome     text        NOT NULL CONSTRAINT job_runs_outcome_check CHECK (
        outcome IN ('succeeded', 'failed', 'timeout', 'interrupted', 'cancelled', 'crashed', 'snoozed',
                    'suspended')
    ),
    error       text,
    params      json,
    result      json
) PARTITION BY LIST ((retry_at IS NULL AND outcome NOT IN ('succeeded', 'cancelled')));

CREATE TABLE job_runs_done PARTITION OF job_runs FOR VALUES IN (false) PARTITION BY RANGE (finished_at);
CREATE TABLE job_runs_failed PARTITION OF job_runs FOR VALUES IN (true) PARTITION BY RANGE (finished_at);
CREATE TABLE job_runs_done_default PARTITION OF job_runs_done DEFAULT;
CREATE TABLE job_runs_failed_default PARTITION OF job_runs_failed DEFAULT;

-- A job's runs in order. started_at is in the key so that the index gives the whole order
-- of "a job's last run" (job_id, attempt, started_at): a merge of the partitions' indexes
-- then serves list_jobs' finished side a page at a time. With (job_id, attempt) alone,
-- DISTINCT ON over a partitioned table sorts every run first on PostgreSQL 15 (which has
-- no incremental sort under DISTINCT).
CREATE INDEX job_runs_job_id_idx ON job_runs (job_id, attempt, started_at);
-- Within a day's partition runs arrive in finished_at order: BRIN stays tiny and answers
-- "runs since …" (the activity charts) inside the partitions the range leaves.
CREATE INDEX job_runs_finished_at_idx ON job_runs USING brin (finished_at);

-- runs_partition_ensure: the partitions of `day` in both trees, created if missing; returns
-- how many it created (0, 1 or 2).
-- Each is built beside the tree and then attached: ATTACH locks the parent in SHARE UPDATE
-- EXCLUSIVE mode, which inserts and reads go on through (CREATE TABLE … PARTITION OF would
-- lock them out). The DEFAULT partition is locked first against writes, its rows of that
-- day move into the new partition, and ATTACH (which checks that none is left) locks it
-- in ACCESS EXCLUSIVE mode, briefly: it is normally empty. Inserts routed to other
-- partitions never wait for it. Callers set a lock_timeout. A transaction-level advisory
-- lock serialises concurrent callers (and drops), and the SHARE UPDATE EXCLUSIVE lock on
-- both parents alone (ONLY: not on every partition, where autovacuum takes that mode),
-- taken next, brings this session's catalog cache up to date (an advisory lock does
-- not): the second caller sees the partitions the first one committed.
CREATE FUNCTION runs_partition_ensure(day date) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
    kind text;
    part text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('pgqueue.runs_partitions:' || current_schema(), 0));
    LOCK TABLE ONLY job_runs_done, ONLY job_runs_failed IN SHARE UPDATE EXCLUSIVE MODE;
    FOREACH kind IN ARRAY ARRAY['done', 'failed'] LOOP
        part := 'job_runs_' || kind || '_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('%I.%I', current_schema(), part)) IS NOT NULL;
        EXECUTE format('LOCK TABLE %I IN EXCLUSIVE MODE', 'job_runs_' || kind || '_default');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       part, 'job_runs_' || kind);
        -- The bounds as a check constraint, so that ATTACH need not scan the new table.
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (finished_at >= %L AND finished_at < %L)',
                       part, part || '_bounds', lo, hi);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE finished_at >= $1 AND finished_at < $2 RETURNING *)'
                       ' INSERT INTO %I SELECT * FROM moved',
                       'job_runs_' || kind || '_default', part)
            USING lo, hi;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       'job_runs_' || kind, part, lo, hi);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_bounds');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- runs_partition_drop: drop one day partition, by the name runs_partition_ensure() gave it
-- (any other table is an error). A name of that form that no longer exists (a concurrent
-- round dropped it) is a no-op. Returns the failed runs it deleted beside it:
-- A failed run is kept longer while it is the final run of its job, and it stops being
-- final when retry() runs the job again. Such a failed run goes with the first later run
-- of its job (a higher attempt) that retention removes, so it never outlives the runs that
-- came after it: a job that failed, was retried and succeeded never looks failed again
-- (and is not retried again) once its success is pruned. Those deletes are rare (failed
-- jobs retried by hand), and the only dead tuples a drop leaves.
-- DROP TABLE locks the tree's parent in ACCESS EXCLUSIVE mode until the commit: callers
-- set a lock_timeout, so that the log's writers never queue behind a drop for long.
CREATE FUNCTION runs_partition_drop(partition text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    m text[] := regexp_match(partition, '^job_runs_(done|failed)_p([0-9]{8})$');
    part regclass;
    superseded bigint := 0;
BEGIN
    IF m IS NULL THEN
        RAISE EXCEPTION 'not a day partition of %.job_runs: %', current_schema(), partition
            USING ERRCODE = 'undefined_table';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('pgqueue.runs_partitions:' || current_schema(), 0));
    -- Any relation lock brings the catalog cache up to date (the advisory lock does not);
    -- the weakest one keeps the log open until DROP TABLE needs it closed.
    EXECUTE format('LOCK TABLE ONLY %I IN ACCESS SHARE MODE', 'job_runs_' || m[1]);
    part := to_regclass(format('%I.%I', current_schema(), partition));
    IF part IS NULL THEN
        RETURN 0;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_inherits
                   WHERE inhrelid = part
                     AND inhparent = to_regclass(format('%I.%I', current_schema(), 'job_runs_' || m[1]))) THEN
        RAISE EXCEPTION 'not a day partition of %.job_runs: %', current_schema(), partition
            USING ERRCODE = 'undefined_table';
    END IF;
    IF m[1] = 'done' THEN
        EXECUTE format('DELETE FROM job_runs_failed f WHERE EXISTS ('
                       'SELECT 1 FROM %I d WHERE d.job_id = f.job_id AND d.attempt > f.attempt)', partition);
        GET DIAGNOSTICS superseded = ROW_COUNT;
    END IF;
    EXECUTE format('DROP TABLE %I', partition);
    RETURN superseded;
END
$$;

-- The history: partitions for every day it covers and for today and the next two days
-- (the maintenance leader's retention rounds create the days after), then its rows.
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT DISTINCT (finished_at AT TIME ZONE 'UTC')::date FROM job_runs_unpartitioned
        UNION
        SELECT (now() AT TIME ZONE 'UTC')::date + i FROM generate_series(0, 2) AS i
        ORDER BY 1
    LOOP
        PERFORM runs_partition_ensure(day);
    END LOOP;
END
$$;

INSERT INTO job_runs (job_id, worker_id, inserted_at, run_at, started_at, finished_at, retry_at, attempt,
                      priority, queue, type, outcome, error, params, result)
SELECT job_id, worker_id, inserted_at, run_at, started_at, finished_at, retry_at, attempt,
       priority, queue, type, outcome, error, params, result
FROM job_runs_unpartitioned;

DROP TABLE job_runs_unpartitioned;

-- Statistics for the new partitions now, not at autovacuum's next pass: list_jobs and
-- get_job are planned on them from the first call.
ANALYZE job_runs;
