-- 014_tenant_limits: a job's tenant (sql/013) as the key of a per-key limit, returned by
-- the limited claim, and carried into the cancelled runs of dependents.
--
-- queue_limits.key_param '@tenant' (pgqueue.TENANT) is reserved: a per-key limit with that
-- key counts held jobs per jobs.tenant instead of per a params field, so a params field of
-- that exact name cannot be a key. A job without a tenant has no key (as a job whose
-- params lack the field): only the queue's other limits apply to it.
--
-- job_limit_key: the key a held job counts under: its tenant for '@tenant', else its
-- params' key_field as text (NULL when there is no key field). IMMUTABLE SQL without SET
-- clauses, so the planner inlines it where claim_limited, queue_limit_set and the worker's
-- adoption (limits.sql) call it.
CREATE FUNCTION job_limit_key(key_field text, params json, tenant text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN key_field IS NULL THEN NULL
                WHEN key_field = '@tenant' THEN tenant
                ELSE params ->> key_field END
$$;

-- claim_limited (sql/011), redefined: the same claim, keyed through job_limit_key, and
-- returning the tenant after trace_context, as job_claim_many does (pgqueue._models
-- ROW_TENANT). Its result type changes, so it is dropped and created again; a worker of
-- the previous release reads its columns by name and does not see the new one.
DROP FUNCTION claim_limited(text, integer, bigint, bigint[], integer[]);

CREATE FUNCTION claim_limited(q text, want integer, worker bigint, done_ids bigint[], done_attempts integer[])
RETURNS TABLE (id bigint, queue text, type text, params json, priority smallint, attempt integer,
               errors integer, last_error text, run_at float8, inserted_at float8, timeout_s real,
               cancel_requested boolean, counted integer, checkpoint json, trace_context text,
               tenant text, capped boolean, free_in float8)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    lim queue_limits%ROWTYPE;
    t timestamptz;
    held_keys text[] := '{}';
    held_counts integer[] := '{}';
    held integer := 0;
    room integer;
    used integer := 0;
    scan integer;
    chosen bigint[];
    passed_over boolean := false;
    got integer := 0;
BEGIN
    -- As job_claim_many: a reaper deleting this worker's row waits for this claim to commit
    -- and then releases what it took; a reaped worker claims nothing.
    PERFORM 1 FROM workers w WHERE w.id = worker FOR KEY SHARE;
    IF NOT FOUND OR want < 1 THEN
        capped := false;
        RETURN NEXT;
        RETURN;
    END IF;

    -- Serialises the claims of this queue. No row: the limit was removed since the worker
    -- last looked, and the queue is claimed as the plain claim would (lim stays all NULL).
    SELECT * INTO lim FROM queue_limits l WHERE l.queue = q FOR NO KEY UPDATE;
    t := clock_timestamp();

    IF lim.concurrency IS NOT NULL OR lim.per_key IS NOT NULL THEN
        IF lim.per_key IS NULL THEN
            SELECT count(*) INTO held
            FROM (
                SELECT j.id, j.attempt, j.worker_id FROM jobs j
                WHERE j.queue = q AND j.slot AND j.worker_id > 0
                EXCEPT
                SELECT d.id, d.attempt, worker FROM unnest(done_ids, done_attempts) AS d(id, attempt)
            ) AS x;
        ELSE
            SELECT coalesce(array_agg(h.k), '{}'), coalesce(array_agg(h.n), '{}'), coalesce(sum(h.n), 0)
            INTO held_keys, held_counts, held
            FROM (
                SELECT j.limit_key AS k, count(*)::integer AS n
                FROM (
                    SELECT j.id, j.attempt, j.worker_id FROM jobs j
                    WHERE j.queue = q AND j.slot AND j.worker_id > 0
                    EXCEPT
                    SELECT d.id, d.attempt, worker FROM unnest(done_ids, done_attempts) AS d(id, attempt)
                ) AS x
                JOIN jobs j ON j.id = x.id
                GROUP BY j.limit_key
            ) AS h;
        END IF;
    END IF;

    room := want;
    IF lim.concurrency IS NOT NULL THEN
        room := least(room, lim.concurrency - held);
    END IF;
    IF lim.rate_count IS NOT NULL THEN
        WITH gone AS (
            DELETE FROM queue_starts s WHERE s.queue = q AND s.at <= t - lim.rate_period RETURNING s.n
        )
        SELECT lim.rate_used - coalesce(sum(gone.n), 0) INTO used FROM gone;
        room := least(room, lim.rate_count - used);
    END IF;
    room := greatest(room, 0);

    IF room > 0 AND lim.per_key IS NULL THEN
        -- As job_claim_many reads one queue: both indexes in claim order, SKIP LOCKED.
        chosen := ARRAY(
            SELECT c.id
            FROM (
                SELECT * FROM (
                    SELECT x.id, x.priority, x.run_at FROM jobs x
                    WHERE x.queue = q AND x.worker_id IS NULL AND NOT x.delayed
                    ORDER BY x.priority, x.run_at, x.id
                    LIMIT room
                    FOR UPDATE SKIP LOCKED
                ) AS ready
                UNION ALL
                SELECT * FROM (
                    SELECT x.id, x.priority, x.run_at FROM jobs x
                    WHERE x.queue = q AND x.worker_id IS NULL AND x.delayed AND x.run_at <= t
                    ORDER BY x.run_at
                    LIMIT room
                    FOR UPDATE SKIP LOCKED
                ) AS due
            ) AS c
            ORDER BY c.priority, c.run_at, c.id
            LIMIT room
        );
    ELSIF room > 0 THEN
        -- Per key: read a prefix of the queue without locks (the queue's lock keeps other
        -- limited claims out), keep the jobs that fit their key's limit, lock those.
        scan := least(greatest(200, 4 * room), 2000);
        WITH c AS (
            SELECT u.id, u.priority, u.run_at, u.params, u.tenant
            FROM (
                (SELECT j.id, j.priority, j.run_at, j.params, j.tenant FROM jobs j
                 WHERE j.queue = q AND j.worker_id IS NULL AND NOT j.delayed
                 ORDER BY j.priority, j.run_at, j.id
                 LIMIT scan)
                UNION ALL
                (SELECT j.id, j.priority, j.run_at, j.params, j.tenant FROM jobs j
                 WHERE j.queue = q AND j.worker_id IS NULL AND j.delayed AND j.run_at <= t
                 ORDER BY j.run_at
                 LIMIT scan)
            ) AS u
            ORDER BY u.priority, u.run_at, u.id
            LIMIT scan
        ), keyed AS (
            SELECT c.id, c.priority, c.run_at, job_limit_key(lim.key_param, c.params, c.tenant) AS k
            FROM c
        ), ranked AS (
            SELECT keyed.id, keyed.priority, keyed.run_at,
                   keyed.k IS NULL
                   OR row_number() OVER (PARTITION BY keyed.k ORDER BY keyed.priority, keyed.run_at, keyed.id)
                      <= lim.per_key - coalesce(h.n, 0) AS fits
            FROM keyed
            LEFT JOIN unnest(held_keys, held_counts) AS h(k, n) ON h.k = keyed.k
        )
        SELECT ARRAY(SELECT r.id FROM ranked r WHERE r.fits ORDER BY r.priority, r.run_at, r.id LIMIT room),
               EXISTS (SELECT 1 FROM ranked r WHERE NOT r.fits)
        INTO chosen, passed_over;
        -- SKIP LOCKED: a job that a cancel, or the plain claim of a worker that has not
        -- seen the limit yet, holds is left to it; the claim then takes fewer, never more.
        chosen := ARRAY(
            SELECT x.id FROM jobs x
            WHERE x.id = ANY(chosen) AND x.queue = q AND x.worker_id IS NULL
              AND (NOT x.delayed OR x.run_at <= t)
            FOR UPDATE SKIP LOCKED
        );
    END IF;

    IF room > 0 THEN
        RETURN QUERY
        UPDATE jobs j
        SET worker_id = worker, attempt = j.attempt + 1, delayed = false, claimed_at = t,
            slot = (lim.concurrency IS NOT NULL OR lim.per_key IS NOT NULL),
            limit_key = job_limit_key(lim.key_param, j.params, j.tenant)
        WHERE j.id = ANY(chosen)
        RETURNING j.id, j.queue, j.type, j.params, j.priority, j.attempt, j.errors, j.last_error,
                  date_part('epoch', j.run_at), date_part('epoch', j.inserted_at), j.timeout_s,
                  j.cancel_requested, j.attempt - j.attempt_base, j.checkpoint, j.trace_context, j.tenant,
                  NULL::boolean, NULL::float8;
        GET DIAGNOSTICS got = ROW_COUNT;
    END IF;

    IF lim.rate_count IS NOT NULL THEN
        IF got > 0 THEN
            INSERT INTO queue_starts (queue, at, n) VALUES (q, t, got);
        END IF;
        IF used + got <> lim.rate_used THEN
            UPDATE queue_limits l SET rate_used = used + got WHERE l.queue = q;
        END IF;
        IF used + got >= lim.rate_count THEN
            SELECT extract(epoch FROM min(s.at) + lim.rate_period - t)::float8 INTO free_in
            FROM queue_starts s WHERE s.queue = q;
        END IF;
    END IF;
    capped := got < want AND (passed_over OR (room < want AND got = room));
    IF NOT capped THEN
        free_in := NULL;
    END IF;
    RETURN NEXT;
END
$$;

-- queue_limit_set (sql/011), redefined: held jobs are marked under job_limit_key.
CREATE OR REPLACE FUNCTION queue_limit_set(q text, max_held integer, max_per_key integer, key_field text,
                                max_starts integer, period interval)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    stamp timestamptz;
BEGIN
    INSERT INTO queue_limits AS l (queue, concurrency, per_key, key_param, rate_count, rate_period)
    VALUES (q, max_held, max_per_key, key_field, max_starts, period)
    ON CONFLICT ON CONSTRAINT queue_limits_pkey DO UPDATE
    SET concurrency = excluded.concurrency, per_key = excluded.per_key, key_param = excluded.key_param,
        rate_count = excluded.rate_count, rate_period = excluded.rate_period,
        rate_used = CASE WHEN excluded.rate_count IS NULL THEN 0 ELSE l.rate_used END,
        updated_at = now()
    RETURNING l.updated_at INTO stamp;
    UPDATE jobs j
    SET slot = (max_held IS NOT NULL OR max_per_key IS NOT NULL),
        limit_key = job_limit_key(key_field, j.params, j.tenant)
    WHERE j.queue = q AND j.worker_id > 0;
    IF max_starts IS NULL THEN
        DELETE FROM queue_starts s WHERE s.queue = q;
    END IF;
    IF max_held IS NULL OR max_per_key IS NOT NULL OR max_starts IS NOT NULL THEN
        DELETE FROM queue_leases s WHERE s.queue = q;  -- claimed through claim_limited now
    END IF;
    RETURN stamp;
END
$$;

-- settle_dependents (sql/006), redefined: a dependent cancelled because a dependency did not
-- succeed logs its cancelled run with its tenant, as every other run row does, so listing
-- by tenant finds it.
CREATE OR REPLACE FUNCTION settle_dependents(ended bigint[], outcomes text[], channel text) RETURNS void
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
