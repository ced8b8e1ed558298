-- The hot table's life: enqueue (INSERT + NOTIFY in one statement), claim, release and
-- cancel, and the management statements.
--
-- worker_id is the lock: NULL = claimable, a worker's id = claimed by it, 0 = suspended and
-- -1 = waiting for its dependencies (held by no worker: worker ids start at 1). Such jobs
-- are outside both partial indexes, so no claim reads them. job_state() (sql/006) names
-- the state of a live row.

-- name: job_insert
-- why: one round trip inserts the job and wakes the workers of its queue; on a caller's
--      connection both commit or roll back with the caller's transaction. A job due now is
--      announced by id ('j:'), so an idle worker claims it by its primary key
--      (job_claim_announced) instead of searching the claim indexes.
-- params: $1 queue text, $2 type text, $3 params json, $4 run_at timestamptz (NULL = now),
--         $5 priority smallint, $6 channel text, $7 timeout seconds real (NULL = none),
--         $8 delay seconds float8 (with a NULL $4: run at the database's now() + $8),
--         $9 trace context text (NULL: the scheduler does not trace), $10 tenant text (NULL: none)
WITH ins AS (
    INSERT INTO {schema}.jobs (queue, type, params, run_at, priority, delayed, timeout_s, trace_context,
                               tenant)
    SELECT $1, $2, $3::json, t.at, $5, t.at > now(), $7, $9::text, $10::text
    FROM (SELECT coalesce($4::timestamptz, now() + make_interval(secs => coalesce($8::float8, 0))) AS at) AS t
    RETURNING id, run_at, delayed
)
SELECT id, pg_notify($6::text, CASE WHEN delayed
                           THEN 'd:' || extract(epoch FROM run_at - now())::text || ':' || $1::text
                           ELSE 'j:' || id::text || ':' || $1::text END)
FROM ins;

-- name: job_insert_many
-- why: bulk insert of one type into one queue: one statement and one notification per chunk.
--      Ids come back in input order (the identity follows the ORDER BY of the insert).
-- params: $1 queue text, $2 type text, $3 params json[], $4 run_at timestamptz (NULL = now),
--         $5 priority smallint, $6 channel text, $7 timeout seconds real (NULL = none),
--         $8 delay seconds float8 (with a NULL $4: run at the database's now() + $8),
--         $9 trace context text of every job (NULL: the scheduler does not trace),
--         $10 tenants text[], one per params value, never longer than $3 (NULL, or shorter:
--         unnest pads it with NULL, no tenant)
WITH ins AS (
    INSERT INTO {schema}.jobs (queue, type, params, run_at, priority, delayed, timeout_s, trace_context,
                               tenant)
    SELECT $1, $2, u.p, t.at, $5, t.at > now(), $7, $9::text, u.tenant
    FROM (SELECT coalesce($4::timestamptz, now() + make_interval(secs => coalesce($8::float8, 0))) AS at) AS t,
         unnest($3::json[], $10::text[]) WITH ORDINALITY AS u(p, tenant, n)
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
--      The update finds the locked rows by ctid (a TID scan), not by id: `ctid = ANY(ARRAY(...))`
--      reads each row's page directly, where an id lookup would descend the primary key
--      once per row (a tenth of the statement's CPU). A row locked here cannot move before
--      this statement updates it; a row whose lock followed a concurrent update to a version
--      this statement's snapshot does not see is left unclaimed (its lock ends with the
--      statement) for the next claim. Not `IN (SELECT ...)`: that can plan as a hash
--      semi-join over a sequential scan. The worker's own row is locked FOR KEY SHARE, so
--      a reaper deleting it waits for this claim to commit and then releases these jobs;
--      a reaped worker claims nothing.
--      run_at and inserted_at come back as epoch seconds (float8: the microsecond survives
--      the round trip until 2106): asyncpg decodes a timestamptz with Python datetime
--      arithmetic, 1.4 µs per value, and most handlers never read them (Job converts on
--      access). counted is the run's number within its budget (max_attempts): runs before
--      a retry() do not count. checkpoint is NULL but for a job whose earlier run saved one;
--      trace_context is NULL but for a job scheduled under tracing (pgqueue.otel), tenant
--      but for a job scheduled with one.
--      The rows come back in the order the update met them, not in claim order: the
--      fetcher sorts them, because a sort here (over a materialized RETURNING) costs the
--      database, the busier side of the pipeline, a visible share of the statement.
-- params: $1 queues text[], $2 limit int, $3 worker_id bigint
WITH w AS (
    SELECT id FROM {schema}.workers WHERE id = $3 FOR KEY SHARE
)
UPDATE {schema}.jobs j
SET worker_id = $3, attempt = j.attempt + 1, delayed = false, claimed_at = now()
WHERE j.ctid = ANY(ARRAY(
    SELECT c.ctid
    FROM unnest($1::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT * FROM (
            SELECT ctid, id, priority, run_at FROM {schema}.jobs
            WHERE queue = q.name AND worker_id IS NULL AND NOT delayed
            ORDER BY priority, run_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) AS ready
        UNION ALL
        SELECT * FROM (
            SELECT ctid, id, priority, run_at FROM {schema}.jobs
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
          j.timeout_s, j.cancel_requested, j.attempt - j.attempt_base AS counted, j.checkpoint,
          j.trace_context, j.tenant;

-- name: job_claim_announced
-- why: the idle worker's claim of jobs whose 'j:' notifications it has just received: a
--      primary-key lookup of those ids, where job_claim_many searches two indexes per queue
--      (on the pickup's path: schedule, notification, claim, run). It takes only ids still
--      claimable as the notification said (ready, not delayed, in one of $1's queues), in
--      the claim's (priority, run_at, id) order, locks them as job_claim_many does (SKIP
--      LOCKED, by ctid, the worker's row FOR KEY SHARE so a reaped worker claims nothing),
--      and returns the same columns. An id another claim or transaction holds is skipped:
--      the fetcher then looks with job_claim_many shortly after.
-- params: $1 queues text[], $2 limit int, $3 worker_id bigint, $4 ids bigint[]
WITH w AS (
    SELECT id FROM {schema}.workers WHERE id = $3 FOR KEY SHARE
)
UPDATE {schema}.jobs j
SET worker_id = $3, attempt = j.attempt + 1, delayed = false, claimed_at = now()
WHERE j.ctid = ANY(ARRAY(
    SELECT ctid FROM {schema}.jobs
    WHERE id = ANY($4::bigint[]) AND queue = ANY($1::text[]) AND worker_id IS NULL AND NOT delayed
    ORDER BY priority, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
))
AND EXISTS (SELECT 1 FROM w)
RETURNING j.id, j.queue, j.type, j.params, j.priority, j.attempt, j.errors, j.last_error,
          date_part('epoch', j.run_at) AS run_at, date_part('epoch', j.inserted_at) AS inserted_at,
          j.timeout_s, j.cancel_requested, j.attempt - j.attempt_base AS counted, j.checkpoint,
          j.trace_context, j.tenant;

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

-- name: job_release_many
-- why: shutdown hands back claimed jobs that never started, at once and without counting
--      the claim as an attempt, and wakes their queues' workers (no job notification
--      announces them), so another worker takes them immediately; one that suspend()
--      asked for is left suspended instead. Returns the jobs handed back.
-- params: $1 worker_id bigint, $2 ids bigint[], $3 channel text
WITH back AS (
    UPDATE {schema}.jobs
    SET worker_id = CASE WHEN suspend_requested THEN 0 END, suspend_requested = false,
        attempt = attempt - 1, delayed = false
    WHERE id = ANY($2::bigint[]) AND worker_id = $1
    RETURNING queue, worker_id
)
SELECT count(*) AS released,
       (SELECT count(pg_notify($3::text, 'r:' || q))
        FROM (SELECT DISTINCT queue AS q FROM back WHERE worker_id IS NULL) AS qs) AS woken
FROM back;

-- name: job_lock
-- why: cancel() first locks the row, so a claim in progress finishes before we decide
--      whether the job is pending (delete it) or running (ask its owner to stop it).
-- params: $1 job id bigint
SELECT worker_id FROM {schema}.jobs WHERE id = $1 FOR UPDATE;

-- name: job_lock_many
-- why: cancel_many() first locks the jobs it is about to end or flag, as job_lock does for
--      one, so claims in flight finish first and the statements after it (a newer snapshot,
--      same transaction) see who holds each job.
-- params: $1 queue text (NULL = any), $2 type text (NULL = any)
SELECT id, worker_id FROM {schema}.jobs
WHERE ($1::text IS NULL OR queue = $1::text) AND ($2::text IS NULL OR type = $2::text)
ORDER BY id
FOR UPDATE;

-- name: job_cancel_pending
-- why: jobs no worker holds (pending, scheduled, suspended or waiting) end at once, each
--      with a "cancelled" row as its final run; their waiters (awaited) are told, their
--      dependents are cancelled in turn, and a unique key its type keeps after a cancel
--      stays held.
-- params: $1 job ids bigint[], $2 reason text, $3 channel text
WITH gone AS (
    DELETE FROM {schema}.jobs WHERE id = ANY($1::bigint[]) AND coalesce(worker_id, 0) <= 0
    RETURNING id, inserted_at, run_at, attempt, priority, queue, type, params, awaited, has_dependents,
              unique_key, unique_hold, unique_ends, tenant
), kept AS (
    INSERT INTO {schema}.unique_keys (key, job_id, until)
    SELECT unique_key, id, now() + make_interval(secs => unique_hold)
    FROM gone
    WHERE unique_key IS NOT NULL AND unique_hold > 0 AND 'cancelled' = ANY(unique_ends)
    ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, until = excluded.until
), told AS (
    SELECT pg_notify($3::text, 'e:' || id::text) FROM gone WHERE awaited
), settled AS (
    SELECT {schema}.settle_dependents(array_agg(id), array_agg('cancelled'::text), $3::text)
    FROM gone WHERE has_dependents HAVING count(*) > 0
), logged AS (
    INSERT INTO {schema}.job_runs (job_id, inserted_at, run_at, started_at, finished_at, attempt,
                                   priority, queue, type, outcome, error, params, tenant)
    SELECT id, inserted_at, run_at, now(), now(), attempt + 1, priority, queue, type, 'cancelled', $2, params,
           tenant
    FROM gone
    RETURNING 1
)
SELECT (SELECT count(*) FROM logged) AS cancelled, (SELECT count(*) FROM told) AS waiters_told,
       (SELECT count(*) FROM settled) AS settled;

-- name: job_cancel_running
-- why: claimed jobs are flagged (so no later claim runs them) and their owners are told by
--      NOTIFY to interrupt them; each owner records the cancelled run.
-- params: $1 job ids bigint[], $2 channel text
WITH flagged AS (
    UPDATE {schema}.jobs SET cancel_requested = true WHERE id = ANY($1::bigint[]) AND worker_id > 0
    RETURNING id
)
SELECT pg_notify($2, 'c:' || id::text) FROM flagged;

-- name: job_cancel_requested_many
-- why: the heartbeat's backstop for a missed cancel or suspend notification: which of the
--      jobs this worker runs have been cancelled (true) or asked to suspend (false) since.
-- params: $1 ids bigint[]
SELECT id, cancel_requested FROM {schema}.jobs
WHERE id = ANY($1::bigint[]) AND (cancel_requested OR suspend_requested);

-- name: job_request_suspend
-- why: suspend() of a running job of a suspendable type: flag it (a put-back run then
--      leaves it suspended) and tell its worker ('s:<id>'), which tells the handler.
-- params: $1 job id bigint, $2 suspendable type names text[], $3 channel text
WITH flagged AS (
    UPDATE {schema}.jobs SET suspend_requested = true
    WHERE id = $1 AND worker_id > 0 AND type = ANY($2::text[])
    RETURNING id
)
SELECT pg_notify($3::text, 's:' || id::text) FROM flagged;

-- name: job_get
-- why: get_job() of a live job: its row, and its state decided with the database's clock.
-- params: $1 job id bigint
SELECT id, queue, type, params::text AS params, priority, attempt, errors, last_error, inserted_at,
       run_at, claimed_at, progress, progress_message, suspend_requested, checkpoint::text AS checkpoint,
       tenant, {schema}.job_state(worker_id, delayed, run_at) AS state
FROM {schema}.jobs
WHERE id = $1;

-- name: job_list_live
-- why: list_jobs(), live side: newest first from the cursor, by the primary key backwards,
--      filtered on the way; the caller merges it with the finished side.
-- params: $1 below this id bigint, $2 queue text (NULL = any), $3 type text (NULL = any),
--         $4 state text (NULL = any live state), $5 limit int, $6 tenant text (NULL = any)
SELECT * FROM (
    SELECT id, queue, type, params::text AS params, priority, attempt, errors, last_error,
           inserted_at, run_at, claimed_at, progress, progress_message, suspend_requested, checkpoint::text AS checkpoint,
           tenant, {schema}.job_state(worker_id, delayed, run_at) AS state
    FROM {schema}.jobs
    WHERE id < $1 AND ($2::text IS NULL OR queue = $2::text) AND ($3::text IS NULL OR type = $3::text)
      AND ($6::text IS NULL OR tenant = $6::text)
    ORDER BY id DESC
) AS live
WHERE $4::text IS NULL OR state = $4::text
LIMIT $5;

-- name: job_stats
-- why: stats() and queue_depth(): live jobs counted by queue and type, each state as a
--      filtered count, in one pass over the hot table (which holds live jobs only).
-- params: $1 tenant text (NULL = any: every live job)
SELECT queue, type,
       count(*) FILTER (WHERE worker_id IS NULL AND NOT (delayed AND run_at > now())) AS pending,
       count(*) FILTER (WHERE worker_id IS NULL AND delayed AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE worker_id > 0) AS running,
       count(*) FILTER (WHERE worker_id = 0) AS suspended,
       count(*) FILTER (WHERE worker_id = -1) AS waiting
FROM {schema}.jobs
WHERE $1::text IS NULL OR tenant = $1::text
GROUP BY queue, type;

-- name: job_retry_many
-- why: retry() and retry_many(): finished jobs go back to the hot table under their own ids,
--      rebuilt from their last run, due now. Their runs keep counting (attempt continues)
--      but their budget starts afresh (attempt_base, errors). ON CONFLICT: a job already
--      live (retried twice at once) is left alone. One notification per queue wakes the
--      workers. A job's own timeout from schedule() is not in the run log: a retried job
--      runs with its type's timeout. last_error is the error of its last failed run (a
--      cancel's note is not an error), as get_job reports it for the finished job. Its
--      tenant comes back from the last run too.
-- params: $1 job ids bigint[] (NULL = any), $2 queue text (NULL = any), $3 type text
--         (NULL = any), $4 states of the last run to retry text[] ('failed', 'cancelled'),
--         $5 channel text
WITH last AS (
    SELECT DISTINCT ON (r.job_id) r.job_id, r.queue, r.type, r.params, r.priority,
           r.inserted_at, r.attempt, r.tenant,
           {schema}.run_end_state(r.retry_at, r.outcome) AS state
    FROM {schema}.job_runs r
    WHERE ($1::bigint[] IS NULL OR r.job_id = ANY($1::bigint[]))
      AND ($2::text IS NULL OR r.queue = $2::text) AND ($3::text IS NULL OR r.type = $3::text)
      AND NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.id = r.job_id)
    ORDER BY r.job_id, r.attempt DESC, r.started_at DESC
), back AS (
    INSERT INTO {schema}.jobs (id, queue, type, params, priority, inserted_at, run_at, attempt,
                               attempt_base, errors, last_error, tenant)
    SELECT job_id, queue, type, params, priority, inserted_at, now(), attempt, attempt, 0,
           (SELECT e.error FROM {schema}.job_runs e
            WHERE e.job_id = last.job_id AND e.outcome IN ('failed', 'timeout', 'crashed')
            ORDER BY e.attempt DESC, e.started_at DESC LIMIT 1),
           tenant
    FROM last
    WHERE state = ANY($4::text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id, queue
)
SELECT (SELECT array_agg(id ORDER BY id) FROM back) AS ids,
       (SELECT count(pg_notify($5::text, 'r:' || q)) FROM (SELECT DISTINCT queue AS q FROM back) AS qs) AS woken;

-- name: job_delete
-- why: delete(): a live job no worker holds (pending, scheduled, suspended or waiting)
--      leaves the hot table; its logged runs stay, its waiters are told, and its
--      dependents are cancelled (nothing would ever meet them).
-- params: $1 job id bigint, $2 channel text
WITH gone AS (
    DELETE FROM {schema}.jobs WHERE id = $1 AND coalesce(worker_id, 0) <= 0
    RETURNING id, awaited, has_dependents
), settled AS (
    SELECT {schema}.settle_dependents(ARRAY[id], ARRAY['deleted'], $2::text)
    FROM gone WHERE has_dependents
)
SELECT id, (SELECT count(pg_notify($2::text, 'e:' || id::text)) FROM gone WHERE awaited) AS told,
       (SELECT count(*) FROM settled) AS settled
FROM gone;

-- name: job_await
-- why: wait(): mark a live job so that the statement that ends it notifies ('e:<id>').
--      No row back: the job is not live (it ended, or never existed). A claim that met
--      the row while this update held it skipped it (SKIP LOCKED): a due job's queue is
--      told again, as job_insert_dependent does.
-- params: $1 job id bigint, $2 channel text
WITH marked AS (
    UPDATE {schema}.jobs SET awaited = true WHERE id = $1
    RETURNING id, queue, worker_id, delayed, run_at
)
SELECT id, CASE WHEN worker_id IS NULL AND (NOT delayed OR run_at <= now())
                THEN pg_notify($2::text, 'r:' || queue) END AS rewoken
FROM marked;

-- name: job_suspend
-- why: suspend(): a pending or scheduled job takes the suspended lock (worker_id 0), which
--      no claim takes.
-- params: $1 job id bigint
UPDATE {schema}.jobs SET worker_id = 0, suspend_requested = false
WHERE id = $1 AND worker_id IS NULL RETURNING id;

-- name: job_resume
-- why: resume(): a suspended job is claimable again; it goes to the due index (as a put-back
--      job does), and its queue's workers are told when it is due ('r:') or when it will be
--      ('d:').
-- params: $1 job id bigint, $2 channel text
WITH back AS (
    UPDATE {schema}.jobs SET worker_id = NULL, delayed = true, suspend_requested = false
    WHERE id = $1 AND worker_id = 0
    RETURNING id, queue, run_at
)
SELECT id, pg_notify($2::text, CASE WHEN run_at > now()
                               THEN 'd:' || extract(epoch FROM run_at - now())::text || ':' || queue
                               ELSE 'r:' || queue END)
FROM back;

-- name: job_progress_many
-- why: the worker's coalesced progress reports: one statement per interval for every job
--      that reported, fenced by (worker, attempt) like every write of a run's outcome.
-- params: $1 worker_id bigint, $2 ids bigint[], $3 attempts int[], $4 progress real[],
--         $5 messages text[]
UPDATE {schema}.jobs j
SET progress = u.progress, progress_message = u.message
FROM unnest($2::bigint[], $3::int[], $4::real[], $5::text[]) AS u(id, attempt, progress, message)
WHERE j.id = u.id AND j.worker_id = $1 AND j.attempt = u.attempt;

-- name: plan_custom
-- why: list_jobs() plans each statement for its own filters (custom plans), in its own
--      transaction only: the "NULL or equal" filters defeat the indexes under a generic plan.
-- params: none
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: job_unique_lock
-- why: schedule(..., unique_key=): concurrent schedulers of one key take turns for the
--      rest of their transaction, so the check that follows (a newer snapshot) sees any job
--      the previous one inserted. Returns the transaction's isolation: under repeatable
--      read or serializable the check would read an older snapshot, so the caller refuses.
-- params: $1 key text
SELECT current_setting('transaction_isolation')
FROM (SELECT pg_advisory_xact_lock(hashtextextended('pgqueue.unique:' || $1, 0))) AS locked;

-- name: unique_keys_expire
-- why: keys kept after their job ended expire; workers drop them as they reap, by the until
--      index.
-- params: none
DELETE FROM {schema}.unique_keys WHERE until <= now();

-- name: job_insert_unique
-- why: schedule(..., unique_key=): the job that holds the key (live, or kept after it
--      ended) is returned as found; else the job is inserted and its queue notified, as
--      job_insert does. Expired kept keys are dropped on the way.
-- params: $1 queue text, $2 type text, $3 params json, $4 run_at timestamptz (NULL = now),
--         $5 priority smallint, $6 channel text, $7 timeout seconds real (NULL = none),
--         $8 delay seconds float8, $9 key text, $10 seconds the key is kept after the job
--         ends real, $11 the end states that keep it text[], $12 trace context text,
--         $13 tenant text (NULL: none)
WITH expired AS (
    DELETE FROM {schema}.unique_keys WHERE key = $9 AND until <= now()
), holder AS (
    SELECT id FROM {schema}.jobs WHERE unique_key = $9
    UNION ALL
    SELECT job_id FROM {schema}.unique_keys WHERE key = $9 AND until > now()
    LIMIT 1
), ins AS (
    INSERT INTO {schema}.jobs (queue, type, params, run_at, priority, delayed, timeout_s, unique_key,
                               unique_hold, unique_ends, trace_context, tenant)
    SELECT $1, $2, $3::json, t.at, $5, t.at > now(), $7, $9, $10, $11::text[], $12::text, $13::text
    FROM (SELECT coalesce($4::timestamptz, now() + make_interval(secs => coalesce($8::float8, 0))) AS at) AS t
    WHERE NOT EXISTS (SELECT 1 FROM holder)
    RETURNING id, run_at, delayed
)
SELECT id, true AS inserted,
       pg_notify($6::text, CASE WHEN delayed
                           THEN 'd:' || extract(epoch FROM run_at - now())::text || ':' || $1::text
                           ELSE 'r:' || $1::text END) AS notified
FROM ins
UNION ALL
SELECT id, false, NULL FROM holder;

-- name: job_by_key
-- why: get_job_by_key(): the id of the job that holds a unique key, live or kept.
-- params: $1 key text
SELECT id FROM {schema}.jobs WHERE unique_key = $1
UNION ALL
SELECT job_id FROM {schema}.unique_keys WHERE key = $1 AND until > now()
LIMIT 1;

-- name: job_depend_lock
-- why: schedule(..., depends_on=): the live dependencies are locked (in id order) and
--      marked has_dependents, so the statement that ends one waits for this transaction
--      and then settles the new dependent. Dependencies absent here have ended (or never
--      were): the next statement, with a newer snapshot, reads how from the run log.
-- params: $1 dependency ids bigint[]
WITH locked AS (
    SELECT id FROM {schema}.jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE
)
UPDATE {schema}.jobs j SET has_dependents = true
FROM locked
WHERE j.id = locked.id
RETURNING j.id;

-- name: job_insert_dependent
-- why: schedule(..., depends_on=): the ended dependencies are judged by their last run;
--      when every one is live ($9, locked by job_depend_lock) or succeeded, the job is
--      inserted, waiting (worker_id -1) on the live ones, or claimable and its queue told
--      when there are none, and its edges are written. Otherwise nothing is inserted, and
--      the rows say which dependencies stand in the way and why (failed, cancelled, or
--      'gone': never scheduled, or no run of it logged). A claim that ran while this
--      transaction held a due dependency's lock skipped it (SKIP LOCKED) and may have been
--      the only one its notification caused: the queues of such dependencies are told
--      again, which reaches the workers when the lock is gone (on commit).
-- params: $1..$8 as job_insert, $9 live dependency ids bigint[], $10 all dependency ids bigint[],
--         $11 trace context text, $12 tenant text (NULL: none)
WITH ended AS (
    SELECT e.id,
           coalesce((SELECT {schema}.run_end_state(r.retry_at, r.outcome) FROM {schema}.job_runs r
                     WHERE r.job_id = e.id ORDER BY r.attempt DESC, r.started_at DESC LIMIT 1),
                    'gone') AS state
    FROM unnest($10::bigint[]) AS e(id)
    WHERE e.id <> ALL($9::bigint[])
), ins AS (
    INSERT INTO {schema}.jobs (queue, type, params, run_at, priority, delayed, timeout_s, worker_id,
                               waiting_on, trace_context, tenant)
    SELECT $1, $2, $3::json, t.at, $5, t.at > now(), $7,
           CASE WHEN cardinality($9::bigint[]) > 0 THEN -1 END, nullif(cardinality($9::bigint[]), 0),
           $11::text, $12::text
    FROM (SELECT coalesce($4::timestamptz, now() + make_interval(secs => coalesce($8::float8, 0))) AS at) AS t
    WHERE NOT EXISTS (SELECT 1 FROM ended WHERE state <> 'succeeded')
    RETURNING id, run_at, delayed, worker_id
), edges AS (
    INSERT INTO {schema}.job_dependencies (job_id, depends_on)
    SELECT ins.id, d.id FROM ins, unnest($10::bigint[]) AS d(id)
), skipped AS (
    SELECT DISTINCT queue FROM {schema}.jobs
    WHERE id = ANY($9::bigint[]) AND worker_id IS NULL AND (NOT delayed OR run_at <= now())
)
SELECT id, NULL::text AS state,
       CASE WHEN worker_id IS NULL THEN
           pg_notify($6::text, CASE WHEN delayed
                               THEN 'd:' || extract(epoch FROM run_at - now())::text || ':' || $1::text
                               ELSE 'r:' || $1::text END) END AS notified,
       (SELECT count(pg_notify($6::text, 'r:' || queue)) FROM skipped) AS rewoken
FROM ins
UNION ALL
SELECT id, state, NULL, NULL FROM ended WHERE state <> 'succeeded';

-- name: job_dependencies_many
-- why: get_job() and list_jobs(): the edges that touch some jobs, both ways.
-- params: $1 job ids bigint[]
SELECT job_id, depends_on FROM {schema}.job_dependencies WHERE job_id = ANY($1::bigint[])
UNION
SELECT job_id, depends_on FROM {schema}.job_dependencies WHERE depends_on = ANY($1::bigint[]);
