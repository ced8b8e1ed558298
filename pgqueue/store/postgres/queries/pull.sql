-- Pull consumers: a Scheduler that leases jobs (dequeue, claim) instead of running them in
-- a Worker. Each lease is fenced by (job id, owner, attempt), as a worker's run is, and has
-- its own deadline (jobs.lease_until), moved on by its heartbeats.

-- name: consumer_register
-- why: a pull consumer's identity: its row owns the jobs it leases, so listings show them
--      held and remove_worker() can release them. It never heartbeats as a whole (the
--      worker reaper skips kind 'pull'); every claim touches it, and consumers_forget
--      removes it once it has been idle and holds nothing. The server's clock comes back to
--      put the consumer's run times on the database's clock.
-- params: $1 pid int, $2 hostname text, $3 queues text[]
INSERT INTO {schema}.workers (pid, hostname, queues, kind) VALUES ($1, $2, $3, 'pull')
RETURNING id, date_part('epoch', clock_timestamp()) AS server_time;

-- name: queues_with_jobs
-- why: dequeue() without queues= looks in every queue that has unclaimed jobs: a loose
--      index scan (one probe per distinct queue) of each claim index, instead of a sort of
--      the whole backlog. Queues with a global limit are left out: they are for workers.
-- params: none
WITH RECURSIVE ready AS (
    (SELECT queue FROM {schema}.jobs WHERE worker_id IS NULL AND NOT delayed ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM {schema}.jobs j
            WHERE j.worker_id IS NULL AND NOT j.delayed AND j.queue > r.queue ORDER BY j.queue LIMIT 1)
    FROM ready r WHERE r.queue IS NOT NULL
), due AS (
    (SELECT queue FROM {schema}.jobs WHERE worker_id IS NULL AND delayed ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM {schema}.jobs j
            WHERE j.worker_id IS NULL AND j.delayed AND j.queue > d.queue ORDER BY j.queue LIMIT 1)
    FROM due d WHERE d.queue IS NOT NULL
)
SELECT coalesce(array_agg(DISTINCT queue), '{}') FROM (
    SELECT queue FROM ready UNION ALL SELECT queue FROM due
) AS q WHERE queue IS NOT NULL AND queue NOT IN (SELECT l.queue FROM {schema}.queue_limits l);

-- name: lease_claim_many
-- why: dequeue() and claim(): job_claim_many's claim (same order, same SKIP LOCKED
--      branches per queue, same columns back, tenant at the end), restricted to some job
--      types, with a lease deadline on each claimed job. The consumer's row is share-locked
--      as a worker's is (concurrent claims of one consumer do not wait for each other) and
--      its heartbeat refreshed once a minute at most: consumers_forget only takes rows idle
--      for far longer, so it waits for such a claim and then sees the fresh heartbeat.
--      Global limits are not enforced here: a claim that names a limited queue takes
--      nothing, and the last column names the limited queues, for a clear error. Each row is a job (NULL when nothing was due: one row),
--      when the lease was taken and when it expires, then the owner and the server's
--      clock; no row at all: the consumer's row is gone, and it must register again.
-- params: $1 queues text[], $2 types text[] (NULL = any), $3 limit int, $4 owner bigint,
--         $5 lease seconds float8
WITH w AS (
    SELECT id FROM {schema}.workers WHERE id = $4 AND kind = 'pull' FOR KEY SHARE
), touched AS (
    UPDATE {schema}.workers SET heartbeat = now()
    WHERE id = $4 AND kind = 'pull' AND heartbeat < now() - interval '1 minute'
), limited AS (
    SELECT coalesce(array_agg(queue ORDER BY queue), '{}') AS queues
    FROM {schema}.queue_limits WHERE queue = ANY($1::text[])
), claimed AS (
    UPDATE {schema}.jobs j
    SET worker_id = $4, attempt = j.attempt + 1, delayed = false, claimed_at = now(),
        lease_until = now() + make_interval(secs => $5)
    WHERE (SELECT queues FROM limited) = '{}' AND j.id = ANY(ARRAY(
        SELECT c.id
        FROM unnest($1::text[]) AS q(name)
        CROSS JOIN LATERAL (
            SELECT * FROM (
                SELECT id, priority, run_at FROM {schema}.jobs
                WHERE queue = q.name AND worker_id IS NULL AND NOT delayed
                  AND ($2::text[] IS NULL OR type = ANY($2::text[]))
                ORDER BY priority, run_at, id
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ) AS ready
            UNION ALL
            SELECT * FROM (
                SELECT id, priority, run_at FROM {schema}.jobs
                WHERE queue = q.name AND worker_id IS NULL AND delayed AND run_at <= now()
                  AND ($2::text[] IS NULL OR type = ANY($2::text[]))
                ORDER BY run_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ) AS due
        ) AS c
        ORDER BY c.priority, c.run_at, c.id
        LIMIT $3
    ))
    AND EXISTS (SELECT 1 FROM w)
    RETURNING j.id, j.queue, j.type, j.params, j.priority, j.attempt, j.errors, j.last_error,
              date_part('epoch', j.run_at) AS run_at, date_part('epoch', j.inserted_at) AS inserted_at,
              j.timeout_s, j.cancel_requested, j.attempt - j.attempt_base AS counted, j.checkpoint,
              j.trace_context, j.tenant, date_part('epoch', j.claimed_at) AS leased_at,
              date_part('epoch', j.lease_until) AS lease_until
)
SELECT c.*, w.id AS owner, date_part('epoch', clock_timestamp()) AS server_time,
       (SELECT queues FROM limited) AS limited
FROM w LEFT JOIN claimed c ON true
ORDER BY c.priority, c.run_at, c.id;

-- name: lease_claim_one
-- why: dequeue_by_id(): lease one given job if it is waiting to run (unclaimed, and due or
--      scheduled for later: a consumer may take a delayed job early, as osbuild's
--      DequeueByID does). The row lock waits for a claim in flight, so the answer is
--      exact. Same columns as lease_claim_many; no row: the job is not pending (or the
--      consumer's row is gone, which the owner column tells), and job_state says why.
-- params: $1 job id bigint, $2 owner bigint, $3 lease seconds float8
WITH w AS (
    SELECT id FROM {schema}.workers WHERE id = $2 AND kind = 'pull' FOR KEY SHARE
), touched AS (
    UPDATE {schema}.workers SET heartbeat = now()
    WHERE id = $2 AND kind = 'pull' AND heartbeat < now() - interval '1 minute'
), limited AS (
    SELECT coalesce(array_agg(l.queue), '{}') AS queues
    FROM {schema}.queue_limits l JOIN {schema}.jobs x ON x.queue = l.queue WHERE x.id = $1
), claimed AS (
    UPDATE {schema}.jobs j
    SET worker_id = $2, attempt = j.attempt + 1, delayed = false, claimed_at = now(),
        lease_until = now() + make_interval(secs => $3)
    WHERE j.id = $1 AND j.worker_id IS NULL AND EXISTS (SELECT 1 FROM w)
      AND (SELECT queues FROM limited) = '{}'
    RETURNING j.id, j.queue, j.type, j.params, j.priority, j.attempt, j.errors, j.last_error,
              date_part('epoch', j.run_at) AS run_at, date_part('epoch', j.inserted_at) AS inserted_at,
              j.timeout_s, j.cancel_requested, j.attempt - j.attempt_base AS counted, j.checkpoint,
              j.trace_context, j.tenant, date_part('epoch', j.claimed_at) AS leased_at,
              date_part('epoch', j.lease_until) AS lease_until
)
SELECT c.*, w.id AS owner, date_part('epoch', clock_timestamp()) AS server_time,
       (SELECT queues FROM limited) AS limited
FROM w LEFT JOIN claimed c ON true;

-- name: lease_next_due
-- why: a waiting dequeue() sleeps until the next delayed job of its types is due (a job
--      of another type must not wake it in a loop): per queue, the due index in run_at
--      order, skipping other types.
-- params: $1 queues text[], $2 types text[] (NULL = any)
SELECT extract(epoch FROM min(n.run_at) - now())::float8
FROM unnest($1::text[]) AS q(name)
CROSS JOIN LATERAL (
    SELECT run_at FROM {schema}.jobs
    WHERE queue = q.name AND worker_id IS NULL AND delayed
      AND ($2::text[] IS NULL OR type = ANY($2::text[]))
    ORDER BY run_at
    LIMIT 1
) AS n;

-- name: lease_heartbeat
-- why: move a lease's deadline on, fenced by (job, owner, attempt); no row back: the lease
--      is lost. The cancel flag comes back so that a cancelled job's consumer is told.
-- params: $1 job id bigint, $2 owner bigint, $3 attempt int, $4 lease seconds float8
UPDATE {schema}.jobs
SET lease_until = now() + make_interval(secs => $4)
WHERE id = $1 AND worker_id = $2 AND attempt = $3 AND lease_until IS NOT NULL
RETURNING cancel_requested, date_part('epoch', lease_until) AS lease_until;

-- name: lease_get
-- why: a lease from its token (the HTTP API, a consumer that restarted): the job's row as
--      the claim returned it, with the lease's times, if (job, owner, attempt) still holds
--      it; and the holder, attempt and lease mark of any live job, for the error when not.
--      worker_id NULL: pending; 0: suspended; no row: ended or never existed. The server's
--      clock comes last: a process that acts on others' leases puts run times on it.
-- params: $1 job id bigint
SELECT j.id, j.queue, j.type, j.params, j.priority, j.attempt, j.errors, j.last_error,
       date_part('epoch', j.run_at) AS run_at, date_part('epoch', j.inserted_at) AS inserted_at,
       j.timeout_s, j.cancel_requested, j.attempt - j.attempt_base AS counted, j.checkpoint,
       j.trace_context, j.tenant, date_part('epoch', j.claimed_at) AS leased_at,
       date_part('epoch', j.lease_until) AS lease_until, j.worker_id,
       date_part('epoch', clock_timestamp()) AS server_time
FROM {schema}.jobs j WHERE j.id = $1;

-- name: leases_release_expired
-- why: a lease whose deadline passed frees its job as a dead worker's run is freed (the
--      attempt counts, a "crashed" run row, or "timeout" past the job's own deadline), a
--      batch at a time, oldest first; SKIP LOCKED leaves a job whose heartbeat or finish is
--      in flight to that statement, which the deadline re-check then lets win.
-- params: $1 batch size int
WITH expired AS (
    SELECT id, worker_id FROM {schema}.jobs
    WHERE lease_until < now()
    ORDER BY lease_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), released AS (
    UPDATE {schema}.jobs j
    SET worker_id = CASE WHEN j.suspend_requested THEN 0 END, suspend_requested = false, delayed = true,
        last_error = format('the lease of pull consumer %s expired at %s without a heartbeat; the run was cut short',
                            j.worker_id, j.lease_until),
        lease_until = NULL
    FROM expired e
    WHERE j.id = e.id AND j.lease_until < now()
    RETURNING j.id, e.worker_id AS wid, j.inserted_at, j.run_at, j.claimed_at, j.timeout_s, j.attempt,
              j.priority, j.queue, j.type, j.params, j.last_error, j.tenant
), logged AS (
    INSERT INTO {schema}.job_runs (job_id, worker_id, inserted_at, run_at, started_at, finished_at,
                                   retry_at, attempt, priority, queue, type, outcome, error, params, tenant)
    SELECT id, wid, inserted_at, run_at, coalesce(claimed_at, now()), now(), now(), attempt, priority,
           queue, type,
           CASE WHEN claimed_at + make_interval(secs => timeout_s) < now() THEN 'timeout' ELSE 'crashed' END,
           last_error, params, tenant
    FROM released
    RETURNING job_id
)
SELECT count(*) FROM logged;

-- name: consumers_forget
-- why: a pull consumer's row is removed once it holds no job and has not claimed for the
--      given time (its process exited, or stopped pulling); a claim in flight holds the row
--      and refreshes its heartbeat, so the re-check after the wait spares it.
-- params: $1 idle seconds float8
DELETE FROM {schema}.workers w
WHERE w.kind = 'pull' AND w.heartbeat < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.worker_id = w.id)
RETURNING w.id;

-- name: consumer_leave
-- why: a scheduler that closes removes its pull-consumer row unless it still holds leases
--      (they stay valid until they finish or expire; the row goes later, when forgotten).
-- params: $1 owner bigint
DELETE FROM {schema}.workers w
WHERE w.id = $1 AND w.kind = 'pull'
  AND NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.worker_id = w.id);
