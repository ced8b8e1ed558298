-- 006_dependencies: schedule(..., depends_on=[ids]) runs a job only after every dependency
-- has succeeded, and cancels it when one ends otherwise.
--
-- A job with unmet dependencies waits under the lock value -1 (worker ids start at 1; 0 is
-- suspended), outside both claim indexes, so no claim ever reads it; waiting_on counts its
-- dependencies that are still live. A dependency carries has_dependents, set when the first
-- dependent is scheduled on it: the statements that end jobs call settle_dependents only
-- for ended rows that have it, and the plain path reads one boolean of a row it returns
-- anyway. New columns: a NULL one and one with a constant default, so no table rewrite.
ALTER TABLE jobs ADD COLUMN waiting_on integer,
                 ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;

-- The edges, written once when the dependent is scheduled. They outlive both jobs, so
-- get_job shows a finished job's dependencies and dependents; nothing on the plain path
-- reads or writes this table.
CREATE TABLE job_dependencies (
    job_id      bigint NOT NULL,
    depends_on  bigint NOT NULL,
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX job_dependencies_depends_on_idx ON job_dependencies (depends_on);

-- The state of a live job, decided with the database's clock: the one definition every
-- management statement uses. An SQL function of one expression, which the planner inlines.
CREATE FUNCTION job_state(worker_id bigint, delayed boolean, run_at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN worker_id = -1 THEN 'waiting'
                WHEN worker_id = 0 THEN 'suspended'
                WHEN worker_id IS NOT NULL THEN 'running'
                WHEN delayed AND run_at > now() THEN 'scheduled'
                ELSE 'pending' END
$$;

-- The state of a job that left the hot table, judged by its last logged run. A last run
-- that put the job back (retry_at set: the job was deleted since, or its final run was not
-- logged) does not say how it ended: 'gone'.
CREATE FUNCTION run_end_state(retry_at timestamptz, outcome text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN retry_at IS NOT NULL THEN 'gone'
                WHEN outcome = 'succeeded' THEN 'succeeded'
                WHEN outcome = 'cancelled' THEN 'cancelled'
                ELSE 'failed' END
$$;

-- settle_dependents: what the end of some jobs means for the jobs that depend on them.
-- ended: the ids of jobs that just ended; outcomes: how each ended ('succeeded',
-- 'cancelled', 'deleted', or a failure); channel: the notification channel.
--   Succeeded: each dependent's waiting_on goes down; at 0 it becomes claimable (due
--   now, or at its run_at) and its queue's workers are told, as an insert tells them.
--   Otherwise: every dependent still waiting, and theirs in turn, ends as cancelled with
--   a run row whose note names the dependency, and its waiters (awaited) are told.
-- Called from the statement that ended the jobs. VOLATILE, so each statement here reads a
-- fresh snapshot: it sees a dependent scheduled (and committed) while the caller waited
-- for the dependency's row lock, which the caller's own snapshot, taken earlier, misses.
-- Rows are locked in id order first, so concurrent calls never deadlock on each other.
CREATE FUNCTION settle_dependents(ended bigint[], outcomes text[], channel text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    doomed_ids bigint[];
    doomed_notes text[];
    told bigint;
BEGIN
    PERFORM 1 FROM jobs j
    WHERE j.worker_id = -1
      AND j.id IN (SELECT d.job_id FROM job_dependencies d WHERE d.depends_on = ANY(ended))
    ORDER BY j.id
    FOR UPDATE;

    WITH met AS (
        SELECT d.job_id, count(*)::int AS n
        FROM unnest(ended, outcomes) AS e(id, outcome)
        JOIN job_dependencies d ON d.depends_on = e.id
        WHERE e.outcome = 'succeeded'
        GROUP BY d.job_id
    ), freed AS (
        UPDATE jobs j
        SET waiting_on = j.waiting_on - m.n,
            worker_id = CASE WHEN j.waiting_on - m.n > 0 THEN -1 END,
            delayed = j.run_at > now()
        FROM met m
        WHERE j.id = m.job_id AND j.worker_id = -1
        RETURNING j.queue, j.run_at, j.worker_id
    )
    SELECT count(pg_notify(channel, CASE WHEN f.due > now()
                                    THEN 'd:' || extract(epoch FROM f.due - now())::text || ':' || f.queue
                                    ELSE 'r:' || f.queue END))
    INTO told
    FROM (SELECT queue, min(run_at) AS due FROM freed WHERE worker_id IS NULL GROUP BY queue) AS f;

    -- Only dependents that still wait are cancelled, and only through them does the walk go
    -- on: a dependent that retry() put back runs whatever its dependencies did.
    WITH RECURSIVE doomed(id, parent, cause) AS (
        SELECT d.job_id, NULL::bigint,
               'dependency ' || e.id || CASE e.outcome WHEN 'cancelled' THEN ' was cancelled'
                                                       WHEN 'deleted' THEN ' was deleted'
                                                       ELSE ' failed' END
        FROM unnest(ended, outcomes) AS e(id, outcome)
        JOIN job_dependencies d ON d.depends_on = e.id
        JOIN jobs j ON j.id = d.job_id AND j.worker_id = -1
        WHERE e.outcome <> 'succeeded'
        UNION
        SELECT d.job_id, w.id, w.cause
        FROM doomed w
        JOIN job_dependencies d ON d.depends_on = w.id
        JOIN jobs j ON j.id = d.job_id AND j.worker_id = -1
    ), one AS (
        SELECT DISTINCT ON (id) id,
               CASE WHEN parent IS NULL THEN cause
                    ELSE 'dependency ' || parent || ' was cancelled (' || cause || ')' END AS note
        FROM doomed
        ORDER BY id, parent NULLS FIRST, cause
    )
    SELECT array_agg(id ORDER BY id), array_agg(note ORDER BY id) INTO doomed_ids, doomed_notes FROM one;
    IF doomed_ids IS NULL THEN
        RETURN;
    END IF;

    PERFORM 1 FROM jobs j WHERE j.id = ANY(doomed_ids) ORDER BY j.id FOR UPDATE;

    WITH gone AS (
        DELETE FROM jobs j
        USING unnest(doomed_ids, doomed_notes) AS x(id, note)
        WHERE j.id = x.id AND j.worker_id = -1
        RETURNING j.id, j.inserted_at, j.run_at, j.attempt, j.priority, j.queue, j.type, j.params,
                  j.awaited, x.note
    ), waiters AS (
        SELECT pg_notify(channel, 'e:' || id::text) FROM gone WHERE awaited
    ), logged AS (
        INSERT INTO job_runs (job_id, inserted_at, run_at, started_at, finished_at, attempt,
                              priority, queue, type, outcome, error, params)
        SELECT id, inserted_at, run_at, now(), now(), attempt + 1, priority, queue, type,
               'cancelled', note, params
        FROM gone
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM waiters) + (SELECT count(*) FROM logged) INTO told;

    -- A job scheduled on one of the doomed ones commits while this call waits for that
    -- row's lock, after the walk above read the graph: this statement's newer snapshot
    -- sees it waiting on a job that is gone, and the same settling ends it in turn.
    SELECT array_agg(DISTINCT d.depends_on) INTO doomed_ids
    FROM job_dependencies d
    JOIN jobs j ON j.id = d.job_id AND j.worker_id = -1
    WHERE d.depends_on = ANY(doomed_ids);
    IF doomed_ids IS NOT NULL THEN
        PERFORM settle_dependents(doomed_ids, array_fill('cancelled'::text, ARRAY[cardinality(doomed_ids)]),
                                  channel);
    END IF;
END
$$;
