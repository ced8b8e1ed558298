-- 011_queue_limits: global limits per queue, set through the API and enforced by the claim.
--
-- A queue whose only limit is concurrency is leased (queue_leases, lease_slots below): its
-- workers claim it with the plain claim and run at most the slots they lease. A queue with
-- a per_key or rate limit (with or without concurrency) is claimed through claim_limited()
-- below. Every other queue keeps the plain claim (job_claim_many), which neither reads nor
-- writes anything here.
--   concurrency  alone: jobs of the queue running at once, across all workers (the slots
--                leased). With per_key or rate: jobs of the queue held by workers at once
--                (claimed and not yet finished: a claimed job waiting for a free runner
--                holds its slot too).
--   per_key, key_param  at most per_key held jobs per value of the top-level params field
--                key_param (e.g. customer_id), compared as text; a job whose params lack
--                it has no key and only the other limits apply to it.
--   rate_count, rate_period  at most rate_count claims in any window of rate_period.
--   rate_used    the claims recorded in queue_starts that were inside the window at the
--                last claim: a running total, so a claim reads only the entries that
--                leave the window instead of summing all of them.
-- The checks repeat the API's validation, so a hand-written row cannot confuse a claim.
CREATE TABLE queue_limits (
    queue       text        PRIMARY KEY,
    concurrency integer     CHECK (concurrency >= 1),
    per_key     integer     CHECK (per_key >= 1),
    key_param   text,
    rate_count  integer     CHECK (rate_count >= 1),
    rate_period interval    CHECK (rate_period > interval '0'),
    rate_used   integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((per_key IS NULL) = (key_param IS NULL)),
    CHECK ((rate_count IS NULL) = (rate_period IS NULL)),
    CHECK (concurrency IS NOT NULL OR per_key IS NOT NULL OR rate_count IS NOT NULL)
);

-- The rate window of each rate-limited queue: one row per claim that took jobs (n of them,
-- at the claim's time), deleted by the first claim after it leaves the window. Rows are
-- per claim, not per job, so a window holds at most rate_count rows and usually far fewer.
CREATE TABLE queue_starts (
    queue   text        NOT NULL,
    at      timestamptz NOT NULL,
    n       integer     NOT NULL
);
CREATE INDEX queue_starts_queue_at_idx ON queue_starts (queue, at);

-- What makes a held job of a limited queue countable:
--   slot       set by claim_limited() on the jobs it claims for a queue with a concurrency
--              or per-key limit; the plain claim never sets it.
--   limit_key  the job's key (its params' key_param field as text) at that claim.
-- The partial index holds exactly the held, slotted jobs, so counting a queue's held jobs
-- reads that many index entries. The plain path writes no entry: its claimed rows have
-- slot = false and its pending rows no worker. Released or put-back rows (worker_id NULL
-- or 0) get no entry either; a row version that had one becomes dead like any other.
-- New columns: a constant default and a NULL one, so no table rewrite.
ALTER TABLE jobs ADD COLUMN slot boolean NOT NULL DEFAULT false,
                 ADD COLUMN limit_key text;
CREATE INDEX jobs_slot_idx ON jobs (queue, limit_key) WHERE slot AND worker_id > 0;

-- claim_limited: the claim of one limited queue, as job_claim_many claims: up to want due
-- jobs in (priority, run_at, id) order, marked as the worker's, the same columns back in
-- the same order (pgqueue._models ROW_*), plus a last row with a NULL id that says whether
-- a limit held the claim back (capped) and, for the rate limit, in how many seconds the
-- window frees a start (free_in; NULL when it is not the rate that binds).
--   done_ids, done_attempts: this worker's runs that have finished but whose results are
--   not written yet. They are not running, so their slots are free: without them a slot
--   would free only at the flush, and a worker would wait for its own writes. A run is
--   named by (id, attempt, this worker), which names one claim: every claim raises the
--   attempt, so an entry whose result was written meanwhile matches no held row.
--   Subtracted as a set (EXCEPT), so the count costs the held rows plus the entries, not
--   their product.
-- VOLATILE plpgsql, so each statement below takes a fresh snapshot (READ COMMITTED): the
-- count after the lock sees every claim committed by the holders before us. Taking the
-- lock in the same statement as the count would not: that statement's snapshot predates
-- the wait, and the rows the previous holder claimed would be invisible to it.
-- Time: one clock_timestamp() read after the lock, used for claimed_at and the rate
-- window, so the claims of a queue are recorded in the order the lock serialises them.
-- Per-key claims read a bounded prefix of the queue: at most max(200, 4 * room) due jobs,
-- and at most 2000, in claim order. When every job in that prefix belongs to keys at
-- their limit, the claim takes nothing (and says capped) even if jobs of other keys wait
-- further back: they are reached as the keys at the head run and leave.
CREATE FUNCTION claim_limited(q text, want integer, worker bigint, done_ids bigint[], done_attempts integer[])
RETURNS TABLE (id bigint, queue text, type text, params json, priority smallint, attempt integer,
               errors integer, last_error text, run_at float8, inserted_at float8, timeout_s real,
               cancel_requested boolean, counted integer, checkpoint json, trace_context text,
               capped boolean, free_in float8)
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
            SELECT u.id, u.priority, u.run_at, u.params
            FROM (
                (SELECT j.id, j.priority, j.run_at, j.params FROM jobs j
                 WHERE j.queue = q AND j.worker_id IS NULL AND NOT j.delayed
                 ORDER BY j.priority, j.run_at, j.id
                 LIMIT scan)
                UNION ALL
                (SELECT j.id, j.priority, j.run_at, j.params FROM jobs j
                 WHERE j.queue = q AND j.worker_id IS NULL AND j.delayed AND j.run_at <= t
                 ORDER BY j.run_at
                 LIMIT scan)
            ) AS u
            ORDER BY u.priority, u.run_at, u.id
            LIMIT scan
        ), keyed AS (
            SELECT c.id, c.priority, c.run_at, c.params ->> lim.key_param AS k
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
            limit_key = CASE WHEN lim.key_param IS NULL THEN NULL ELSE j.params ->> lim.key_param END
        WHERE j.id = ANY(chosen)
        RETURNING j.id, j.queue, j.type, j.params, j.priority, j.attempt, j.errors, j.last_error,
                  date_part('epoch', j.run_at), date_part('epoch', j.inserted_at), j.timeout_s,
                  j.cancel_requested, j.attempt - j.attempt_base, j.checkpoint, j.trace_context,
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

-- Slot leases: how a concurrency-only limit (concurrency set, neither per_key nor rate) is
-- kept without a claim per slot. A worker leases slots of the queue, claims its jobs with
-- the plain claim (prefetching as for any queue) while it holds at least one slot, and runs
-- at most its slots' worth of them at once; so the limit bounds jobs RUNNING at once, and
-- prefetched jobs wait in the worker without holding a slot. Lease traffic is per claim
-- cycle and per give-back, never per job. A worker's row goes with the worker (deregister
-- or reap: ON DELETE CASCADE), so its slots free with it.
-- Limits with per_key or rate (with or without concurrency) stay claim-counted
-- (claim_limited above): they bound starts and keys, which a lease cannot see.
CREATE TABLE queue_leases (
    queue     text    NOT NULL,
    worker_id bigint  NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    slots     integer NOT NULL CHECK (slots >= 0),
    PRIMARY KEY (queue, worker_id)
);
CREATE INDEX queue_leases_worker_idx ON queue_leases (worker_id);

-- lease_slots: set this worker's slots of q to as many of want as fit: granted =
-- greatest(0, least(want, concurrency - the other workers' slots)). The worker asks at
-- least the jobs of q it runs now, so a grant never falls below them while the limit is
-- unchanged. Locking the limit row serialises the leases of q, which keeps the invariant
-- sum(slots) <= concurrency. NULL: q is not leased (no limit, or one with per_key or rate):
-- the worker's row goes and it looks at the limits again. A reaped worker gets 0.
CREATE FUNCTION lease_slots(q text, worker bigint, want integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    lim queue_limits%ROWTYPE;
    others integer;
    granted integer;
BEGIN
    PERFORM 1 FROM workers w WHERE w.id = worker FOR KEY SHARE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT * INTO lim FROM queue_limits l WHERE l.queue = q FOR NO KEY UPDATE;
    IF NOT FOUND OR lim.concurrency IS NULL OR lim.per_key IS NOT NULL OR lim.rate_count IS NOT NULL THEN
        DELETE FROM queue_leases s WHERE s.queue = q AND s.worker_id = worker;
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(s.slots), 0) INTO others
    FROM queue_leases s WHERE s.queue = q AND s.worker_id <> worker;
    granted := greatest(0, least(want, lim.concurrency - others));
    IF granted = 0 THEN
        DELETE FROM queue_leases s WHERE s.queue = q AND s.worker_id = worker;
    ELSE
        INSERT INTO queue_leases AS s (queue, worker_id, slots) VALUES (q, worker, granted)
        ON CONFLICT ON CONSTRAINT queue_leases_pkey DO UPDATE SET slots = excluded.slots;
    END IF;
    RETURN granted;
END
$$;

-- queue_limit_set: the API's set_queue_limit(), in one call. The limit row is written
-- first, which waits for a claim of the queue in flight and holds the next ones back until
-- this commits; then, with a newer snapshot, the jobs held in the queue now are marked
-- countable under the new key, so jobs claimed before the limit existed count against it.
-- The rate window's history is kept while the queue has a rate limit (changing the limit
-- does not grant a fresh burst) and dropped with it.
CREATE FUNCTION queue_limit_set(q text, max_held integer, max_per_key integer, key_field text,
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
        limit_key = CASE WHEN key_field IS NULL THEN NULL ELSE j.params ->> key_field END
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
