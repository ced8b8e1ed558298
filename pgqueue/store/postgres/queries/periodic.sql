-- Periodic declarations (@scheduler.periodic): one row per declaration, and the one
-- statement that enqueues a tick at most once across every process (sql/010).

-- name: periodic_declare_many
-- why: the enqueuer writes its declarations before its first round (and again when a row
--      went missing): new names get a row, changed ones their new schedule, type and queue;
--      last_tick is kept, so a restarted or redeployed process continues where the last
--      one stopped. An unchanged row is not written. Rows go in name order, so processes
--      declaring at once wait for each other instead of deadlocking.
-- params: $1 names text[], $2 schedules text[], $3 types text[], $4 queues text[]
INSERT INTO {schema}.periodic AS p (name, schedule, type, queue)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(name, schedule, type, queue)
ORDER BY d.name
ON CONFLICT (name) DO UPDATE
SET schedule = excluded.schedule, type = excluded.type, queue = excluded.queue, updated_at = now()
WHERE (p.schedule, p.type, p.queue) IS DISTINCT FROM (excluded.schedule, excluded.type, excluded.queue);

-- name: periodic_fire_many
-- why: a round's due ticks, one statement. Compare-and-set on last_tick: a row moves only
--      to a later tick, so a tick is consumed once whichever processes offer it, and a
--      process whose clock is behind (offering an older tick) changes nothing. A second
--      process offering the same tick waits for the first one's row lock, then finds the
--      new last_tick and skips the row. A tick that is not fresh (past its grace by the
--      caller's clock) fires only for missed='latest' ($4) and only once a tick was
--      consumed before. periodic_job_id() (sql/010) draws the job's id, or NULL when the
--      previous job is still live and overlap is off ($5): the tick is then consumed and
--      noted, without a job. The job is inserted with its tick as run_at (a tick offered
--      early by a host whose clock is ahead waits as a scheduled job) and its queue is
--      told as job_insert tells it. Names without a row come back as 'missing'.
--      The offered rows are locked first, in name order (`locked`), as periodic_declare_many
--      takes them: the UPDATE alone would take them in the join's order (on disk, as a rule),
--      and two processes whose statements meet rows in other orders deadlock.
-- params: $1 names text[], $2 ticks timestamptz[], $3 fresh boolean[], $4 catch_up boolean[],
--         $5 overlap boolean[], $6 types text[], $7 queues text[], $8 params json text[],
--         $9 priorities smallint[], $10 timeouts real[] (NULL = none), $11 channel text
WITH c AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::boolean[], $4::boolean[], $5::boolean[],
                         $6::text[], $7::text[], $8::text[], $9::smallint[], $10::real[])
        AS c(name, tick, fresh, catch_up, overlap, type, queue, params, priority, timeout_s)
), locked AS MATERIALIZED (
    SELECT p.name FROM {schema}.periodic p
    WHERE p.name = ANY($1::text[])
    ORDER BY p.name
    FOR UPDATE
), won AS (
    UPDATE {schema}.periodic p
    SET (last_tick, last_job_id, last_note, updated_at) = (
        SELECT c.tick, coalesce(d.id, p.last_job_id), CASE WHEN d.id IS NULL THEN 'skipped (overlap)' END, now()
        FROM (SELECT {schema}.periodic_job_id(p.last_job_id, c.overlap) AS id) AS d
    )
    FROM c JOIN locked l ON l.name = c.name
    WHERE p.name = c.name
      AND (p.last_tick IS NULL OR p.last_tick < c.tick)
      AND (c.fresh OR (c.catch_up AND p.last_tick IS NOT NULL))
    RETURNING p.name, p.last_tick, p.last_job_id, p.last_note, c.type, c.queue, c.params, c.priority,
              c.timeout_s
), ins AS (
    INSERT INTO {schema}.jobs (id, queue, type, params, run_at, priority, delayed, timeout_s)
    SELECT last_job_id, queue, type, params::json, last_tick, priority, last_tick > now(), timeout_s
    FROM won
    WHERE last_note IS NULL
    RETURNING id, queue, run_at, delayed
), told AS (
    SELECT pg_notify($11::text, CASE WHEN delayed
                                THEN 'd:' || extract(epoch FROM run_at - now())::text || ':' || queue
                                ELSE 'r:' || queue END)
    FROM ins
)
SELECT w.name, w.last_tick AS tick, CASE WHEN w.last_note IS NULL THEN w.last_job_id END AS job_id,
       w.last_note AS note, (SELECT count(*) FROM told) AS told
FROM won w
UNION ALL
SELECT c.name, c.tick, NULL, 'missing', 0
FROM c
WHERE NOT EXISTS (SELECT 1 FROM {schema}.periodic p WHERE p.name = c.name);

-- name: periodic_list
-- why: list_periodic() and `pgqueue periodic`: every row with its last job's state, live
--      (job_state()) or ended (run_end_state() of its last run); a few rows, read rarely.
-- params: none
SELECT p.name, p.schedule, p.type, p.queue, p.last_tick, p.last_job_id, p.last_note,
       coalesce(
           (SELECT {schema}.job_state(j.worker_id, j.delayed, j.run_at) FROM {schema}.jobs j
            WHERE j.id = p.last_job_id),
           (SELECT {schema}.run_end_state(r.retry_at, r.outcome) FROM {schema}.job_runs r
            WHERE r.job_id = p.last_job_id ORDER BY r.attempt DESC, r.started_at DESC LIMIT 1)
       ) AS last_state
FROM {schema}.periodic p
ORDER BY p.name;

-- name: periodic_delete
-- why: remove_periodic(): a declaration gone from the code leaves its row (and last tick)
--      behind until it is removed on purpose.
-- params: $1 name text
DELETE FROM {schema}.periodic WHERE name = $1;
