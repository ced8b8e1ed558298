-- 015_settle_order: settle_dependents locks every waiting job it may change in one pass.
--
-- settle_dependents (sql/014), redefined. It locked the direct dependents of the ended jobs
-- in id order, and then the whole cancelled closure in id order: across the two passes the
-- order was not ascending, so two calls ending different jobs of one graph (two workers'
-- flushes of final failures, a cancel() beside a flush) could each hold a row the other
-- wanted next, a deadlock whose victim was written again. Now the first pass locks the
-- direct dependents and everything the cancellation reaches below the ended jobs that did
-- not succeed, together in id order; the second pass finds them locked already and only
-- takes rows that became dependents meanwhile (a job scheduled on one of them while the
-- first pass waits is locked after it, out of order, as before). Ends that all succeeded
-- lock what they did before, their direct dependents, with the same statement: a long
-- chain is not walked at every step.

CREATE OR REPLACE FUNCTION settle_dependents(ended bigint[], outcomes text[], channel text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    doomed_ids bigint[];
    doomed_notes text[];
    told bigint;
BEGIN
    -- Every waiting job this call may change, locked in one pass in id order: the direct
    -- dependents of the ended jobs (released or cancelled) and, below the ones that did
    -- not succeed, every waiting job the cancellation reaches. `id = ANY(ARRAY(...))` keeps
    -- primary-key lookups (in id order); an OR of two IN lists plans as a scan of jobs.
    -- Ends that all succeeded change only the direct dependents: they lock just those.
    IF 'succeeded' = ALL(outcomes) THEN
        PERFORM 1 FROM jobs j
        WHERE j.worker_id = -1
          AND j.id IN (SELECT d.job_id FROM job_dependencies d WHERE d.depends_on = ANY(ended))
        ORDER BY j.id
        FOR UPDATE;
    ELSE
        PERFORM 1 FROM jobs j
        WHERE j.worker_id = -1
          AND j.id = ANY(ARRAY(
              SELECT d.job_id FROM job_dependencies d WHERE d.depends_on = ANY(ended)
              UNION
              (WITH RECURSIVE reach(id) AS (
                   SELECT d.job_id
                   FROM unnest(ended, outcomes) AS e(id, outcome)
                   JOIN job_dependencies d ON d.depends_on = e.id
                   WHERE e.outcome <> 'succeeded'
                   UNION
                   SELECT d.job_id
                   FROM reach r
                   JOIN jobs w ON w.id = r.id AND w.worker_id = -1
                   JOIN job_dependencies d ON d.depends_on = r.id
               )
               SELECT id FROM reach)))
        ORDER BY j.id
        FOR UPDATE;
    END IF;

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
                  j.awaited, j.tenant, x.note
    ), waiters AS (
        SELECT pg_notify(channel, 'e:' || id::text) FROM gone WHERE awaited
    ), logged AS (
        INSERT INTO job_runs (job_id, inserted_at, run_at, started_at, finished_at, attempt,
                              priority, queue, type, outcome, error, params, tenant)
        SELECT id, inserted_at, run_at, now(), now(), attempt + 1, priority, queue, type,
               'cancelled', note, params, tenant
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
