-- Worker rows: registration, heartbeats (the lease on every claimed job), deregistration
-- and the reaping of workers that stopped heartbeating.

-- name: worker_register
-- why: a worker's identity; its row is the lease on every job it claims. The server's
--      clock comes back too (epoch seconds): the worker measures its own clock's offset
--      from it, and the run log's start and finish times are written on the database's
--      clock. Its concurrency is stored for list_workers() (kind stays 'worker').
-- params: $1 pid int, $2 hostname text, $3 queues text[], $4 concurrency int (NULL: not said)
INSERT INTO {schema}.workers (pid, hostname, queues, concurrency) VALUES ($1, $2, $3, $4)
RETURNING id, date_part('epoch', clock_timestamp()) AS server_time;

-- name: worker_heartbeat
-- why: keep the lease alive; no row back means this worker was reaped. Returns the
--      server's clock (epoch seconds) to refresh the worker's clock offset.
-- params: $1 worker_id bigint
UPDATE {schema}.workers SET heartbeat = now() WHERE id = $1
RETURNING date_part('epoch', clock_timestamp()) AS server_time;

-- name: worker_deregister
-- why: a clean exit: give back whatever this worker still holds and drop its row, in one
--      statement, so no job stays owned by a worker that is gone, and wake the workers of
--      the queues it gave jobs back to (no job notification announces them). (No index on
--      worker_id: it would cost every claim an index insert for this rare scan of the small
--      hot table.)
-- params: $1 worker_id bigint, $2 channel text
WITH released AS (
    UPDATE {schema}.jobs
    SET worker_id = CASE WHEN suspend_requested THEN 0 END, suspend_requested = false, delayed = true
    WHERE worker_id = $1
    RETURNING id, queue, worker_id
)
DELETE FROM {schema}.workers WHERE id = $1
RETURNING (SELECT count(*) FROM released) AS released,
          (SELECT count(pg_notify($2::text, 'r:' || q))
           FROM (SELECT DISTINCT queue AS q FROM released WHERE worker_id IS NULL) AS qs) AS woken;

-- name: worker_reap_lock
-- why: find workers silent for longer than the deadline and lock their rows (pull
--      consumers do not heartbeat as a whole: their leases expire one by one instead). A worker with a
--      claim in flight holds its own row FOR KEY SHARE, so SKIP LOCKED leaves it for the next
--      round; once locked here, a late claim of the dead worker waits, finds no row and takes
--      nothing, and the release that follows (a later statement of this transaction, so a
--      newer snapshot) sees every job the dead workers ever claimed.
-- params: $1 dead after seconds float8, $2 the reaping worker's id bigint
SELECT id FROM {schema}.workers
WHERE heartbeat < now() - make_interval(secs => $1) AND id <> $2 AND kind = 'worker'
ORDER BY id
FOR UPDATE SKIP LOCKED;

-- name: worker_reap_release
-- why: free every job the dead workers held, at once, and record the cut-short runs: one
--      "crashed" (or "timeout", when the run had passed its deadline) row per job, so each
--      claim has its run row. The claim already counted the attempt, so a job that keeps
--      killing its workers runs out of attempts instead of looping; a job suspend() asked
--      for is left suspended. Then drop the rows, and wake the workers of the freed jobs'
--      queues (no job notification announces them).
-- params: $1 worker ids bigint[], $2 channel text
WITH released AS (
    UPDATE {schema}.jobs j
    SET worker_id = CASE WHEN j.suspend_requested THEN 0 END, suspend_requested = false, delayed = true,
        last_error = format('worker %s (%s pid %s) stopped heartbeating; the run was cut short',
                            w.id, w.hostname, w.pid),
        lease_until = NULL
    FROM {schema}.workers w
    WHERE j.worker_id = w.id AND w.id = ANY($1::bigint[])
    RETURNING j.id, w.id AS wid, j.inserted_at, j.run_at, j.claimed_at, j.timeout_s, j.attempt,
              j.priority, j.queue, j.type, j.params, j.last_error, j.tenant, j.worker_id
), logged AS (
    INSERT INTO {schema}.job_runs (job_id, worker_id, inserted_at, run_at, started_at, finished_at,
                                   retry_at, attempt, priority, queue, type, outcome, error, params,
                                   tenant)
    SELECT id, wid, inserted_at, run_at, coalesce(claimed_at, now()), now(), now(), attempt, priority,
           queue, type,
           CASE WHEN claimed_at + make_interval(secs => timeout_s) < now() THEN 'timeout' ELSE 'crashed' END,
           last_error, params, tenant
    FROM released
    RETURNING job_id
), dropped AS (
    DELETE FROM {schema}.workers WHERE id = ANY($1::bigint[]) RETURNING id
)
SELECT (SELECT count(*) FROM logged) AS jobs_released, (SELECT count(*) FROM dropped) AS workers_reaped,
       (SELECT count(pg_notify($2::text, 'r:' || q))
        FROM (SELECT DISTINCT queue AS q FROM released WHERE worker_id IS NULL) AS qs) AS woken;

-- name: worker_list
-- why: Scheduler.list_workers() and `pgqueue workers`: the registered workers, oldest first,
--      each with the number of jobs it holds. The count scans the hot table once, grouped,
--      for all workers (no index on worker_id, on purpose: see worker_deregister); an admin
--      read, never on a worker's path.
-- params: none
SELECT w.id, w.hostname, w.pid, w.queues, w.started_at, w.heartbeat, w.kind, w.concurrency,
       coalesce(h.held, 0) AS jobs_held
FROM {schema}.workers w
LEFT JOIN (SELECT worker_id, count(*) AS held FROM {schema}.jobs WHERE worker_id > 0 GROUP BY worker_id) h
       ON h.worker_id = w.id
ORDER BY w.id;

-- name: worker_lock
-- why: remove_worker(): lock one worker's row before counting what it holds. A claim in
--      flight holds the row FOR KEY SHARE, so this waits for it to commit; once locked, a
--      later claim of that worker waits, then finds no row and takes nothing. No row: no
--      such worker.
-- params: $1 worker_id bigint
SELECT id FROM {schema}.workers WHERE id = $1 FOR UPDATE;

-- name: worker_jobs_held
-- why: remove_worker(): the jobs the locked worker holds, per queue (a later statement than
--      the lock, so its snapshot sees every claim that committed before it). A scan of the
--      hot table (no index on worker_id): an admin call.
-- params: $1 worker_id bigint
SELECT queue, count(*) AS held FROM {schema}.jobs WHERE worker_id = $1 GROUP BY queue ORDER BY queue;
