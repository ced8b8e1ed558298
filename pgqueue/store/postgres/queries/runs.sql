-- Writing outcomes: the flush that ends or puts back jobs and logs their runs into the
-- append-only job_runs table.

-- name: job_finalize_many
-- why: one statement per flush, so one round trip and no explicit transaction: it ends
--      finished jobs (delete), puts failed or interrupted ones back (update) and logs
--      their runs. The run rows are built here from the job rows, so the worker sends only
--      what it alone knows (ids, attempts, times, outcomes) and never encodes queue, type,
--      params or timestamps it read from this same row: encoding whole run rows would be
--      the largest share of the worker's CPU per job (asyncpg encodes a timestamptz in ~1 µs).
--      Fencing: a job is ended or put back only if this worker still holds it at the
--      attempt the run was, and a run is logged only for a job so written (the log reads
--      the RETURNING rows). A row updated concurrently is re-checked on its newest version
--      (a reaper's release fails the check; a cancel flag does not). So a repeated flush, a
--      reaped worker or a stale run changes and logs nothing.
--      Plan shape: the owner is compared with a column of the materialized input, not with
--      $1, on purpose. Against $1 the generic planner estimates "jobs held by this worker"
--      at 1 row (worker_id is mostly NULL) and joins that scan to the arrays (estimated
--      at 10 rows) in a nested loop over every pair, O(n²) in the batch. Without that
--      estimate it picks a hash join on small tables and primary-key lookups on large
--      ones: linear either way (a test checks the plans).
--      Ended runs: $6..$9 may be shorter than $2 (unnest pads them with NULL): NULL outcome
--      is 'succeeded', NULL log is true, so a batch of plain successes sends four arrays.
--      A snoozed or suspended run does not count against max_attempts: attempt_base takes
--      it back. A snoozed, suspended or interrupted run's note stays in its run row, not in
--      last_error, which keeps the last failure. The next run starts with no progress and
--      with the run's checkpoint, if it made one. A run that ended suspended, or any
--      put-back run of a job suspend() asked for, leaves the job suspended (worker_id 0).
--      A pull consumer's failed or requeued lease is put back here too: its deadline goes.
--      Put-back rows go to the due index (delayed = true) whatever their time: the claim
--      takes due rows from there in run_at order. Their run row has the run_at the run
--      was due at ($16, from the claim: the update overwrites it) and the new one as
--      retry_at. Ids in one call are unique.
-- params: $1 worker_id bigint,
--         ended: $2 ids bigint[], $3 attempts int[], $4 started float8[] (epoch seconds),
--         $5 finished float8[], $6 outcomes text[], $7 errors text[], $8 results json[],
--         $9 log bool[];
--         put back: $10 ids bigint[], $11 attempts int[], $12 started float8[],
--         $13 finished float8[], $14 outcomes text[], $15 errors text[] (NULL keeps the
--         job's last error), $16 due at float8[] (epoch seconds), $17 retry at
--         timestamptz[] (NULL = now() + delay), $18 delay seconds float8[],
--         $19 error increments int[], $20 log bool[], $21 checkpoints json[] (NULL keeps
--         the job's checkpoint);
--         $22 clock offset float8 (seconds added to the worker's times to put them on the
--         database's clock, measured at registration and each heartbeat), $23 channel text,
--         $24 ended runs' log lines json[], $25 put-back runs' log lines json[] (each a
--         JSON array of the lines the handler wrote through job.log; both may stop short,
--         padded with NULL like $6..$9: a flush where no handler logged sends them empty)
--      A job with a unique key that its type keeps after this end (unique_ends, for
--      unique_hold seconds) leaves the key in unique_keys; plain jobs (NULL key) are
--      filtered out of that insert.
--      Ended jobs somebody wait()s for (awaited) are announced on the channel ('e:<id>'),
--      and ended jobs that others depend on (has_dependents) have their dependents
--      settled (sql/006: released when all their dependencies succeeded, else cancelled).
--      One pass over the ended rows (seen) collects their ids, the logged count and
--      whether any of them uses one of those features; each feature's step is gated on
--      that flag (a one-time filter), so a flush that uses none reads the ended rows twice
--      (seen, and the run log's insert), never once per feature.
WITH done AS MATERIALIZED (
    SELECT d.*, $1::bigint AS owner
    FROM unnest($2::bigint[], $3::int[], $4::float8[], $5::float8[],
                $6::text[], $7::text[], $8::json[], $9::bool[], $24::json[])
         AS d(id, attempt, started, finished, outcome, error, result, log, lines)
), back AS MATERIALIZED (
    SELECT d.*, $1::bigint AS owner
    FROM unnest($10::bigint[], $11::int[], $12::float8[], $13::float8[], $14::text[], $15::text[],
                $16::float8[], $17::timestamptz[], $18::float8[], $19::int[], $20::bool[], $21::json[],
                $25::json[])
         AS d(id, attempt, started, finished, outcome, error, due_at, retry_at, delay, error_inc, log,
              checkpoint, lines)
), ended AS (
    DELETE FROM {schema}.jobs j
    USING done d
    WHERE j.id = d.id AND j.worker_id = d.owner AND j.attempt = d.attempt
    RETURNING j.id, j.inserted_at, j.run_at, j.attempt, j.priority, j.queue, j.type, j.params,
              j.awaited, j.unique_key, j.unique_hold, j.unique_ends, j.has_dependents, d.started, d.finished,
              d.outcome, d.error, d.result, d.log, j.tenant,
              d.lines
), seen AS (
    SELECT array_agg(id) AS ids, count(*) FILTER (WHERE log IS NOT false) AS logged,
           coalesce(bool_or(has_dependents), false) AS dependents,
           coalesce(bool_or(unique_key IS NOT NULL), false) AS keys,
           coalesce(bool_or(awaited), false) AS awaited
    FROM ended
), settled AS (
    SELECT {schema}.settle_dependents(array_agg(id), array_agg(coalesce(outcome, 'succeeded')), $23::text)
    FROM ended WHERE has_dependents AND (SELECT dependents FROM seen) HAVING count(*) > 0
), kept AS (
    INSERT INTO {schema}.unique_keys (key, job_id, until)
    SELECT unique_key, id, now() + make_interval(secs => unique_hold)
    FROM ended
    WHERE unique_key IS NOT NULL AND unique_hold > 0 AND (SELECT keys FROM seen)
      AND {schema}.run_end_state(NULL, coalesce(outcome, 'succeeded')) = ANY(coalesce(unique_ends, '{succeeded}'))
    ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, until = excluded.until
), told AS (
    SELECT pg_notify($23::text, 'e:' || id::text) FROM ended WHERE awaited AND (SELECT awaited FROM seen)
), put_back AS (
    UPDATE {schema}.jobs j
    SET worker_id = CASE WHEN b.outcome = 'suspended' OR j.suspend_requested THEN 0 END,
        suspend_requested = false,
        delayed = true,
        run_at = coalesce(b.retry_at, now() + make_interval(secs => b.delay)),
        errors = j.errors + b.error_inc,
        attempt_base = j.attempt_base + (b.outcome IN ('snoozed', 'suspended'))::int,
        last_error = CASE WHEN b.outcome IN ('snoozed', 'interrupted', 'suspended') THEN j.last_error
                          ELSE coalesce(b.error, j.last_error) END,
        progress = NULL,
        progress_message = NULL,
        checkpoint = coalesce(b.checkpoint, j.checkpoint),
        lease_until = NULL
    FROM back b
    WHERE j.id = b.id AND j.worker_id = b.owner AND j.attempt = b.attempt
    RETURNING j.id, j.inserted_at, b.due_at, j.run_at, j.attempt, j.priority, j.queue, j.type,
              j.params, b.started, b.finished, b.outcome, b.error, b.log, j.tenant,
              b.lines
), logged AS (
    INSERT INTO {schema}.job_runs (job_id, worker_id, inserted_at, run_at, started_at, finished_at,
                                   retry_at, attempt, priority, queue, type, outcome, error, params,
                                   result, tenant,
                                   log)
    SELECT id, $1, inserted_at, run_at, to_timestamp(started + $22::float8), to_timestamp(finished + $22::float8), NULL,
           attempt, priority, queue, type, coalesce(outcome, 'succeeded'), error, params, result, tenant,
           lines
    FROM ended
    WHERE log IS NOT false
    UNION ALL
    SELECT id, $1, inserted_at, to_timestamp(due_at), to_timestamp(started + $22::float8),
           to_timestamp(finished + $22::float8),
           run_at, attempt, priority, queue, type, outcome, error, params, NULL, tenant,
           lines
    FROM put_back
    WHERE log
)
SELECT (SELECT ids FROM seen) AS ended_ids,
       (SELECT array_agg(id) FROM put_back) AS put_back_ids,
       (SELECT array_agg(run_at) FROM put_back) AS put_back_run_at,
       (SELECT logged FROM seen) + (SELECT count(*) FROM put_back WHERE log) AS runs_logged,
       (SELECT extract(epoch FROM min(run_at) - now())::float8 FROM put_back) AS put_back_due_in,
       (SELECT count(*) FROM told) AS waiters_told,
       (SELECT count(*) FROM settled) AS dependents_settled;

-- name: job_runs_get_many
-- why: get_job() and list_jobs(): every logged run of some jobs, by job and attempt (the
--      job_id index), with the job's own fields, which a finished job has nowhere else.
--      The runs' job.log lines (up to 128 KiB a run) only when asked: get_job() reads them,
--      list_jobs() pages (up to 500 jobs) do not.
-- params: $1 job ids bigint[], $2 with the log lines bool
SELECT job_id, attempt, outcome, worker_id, run_at, started_at, finished_at, retry_at, error,
       result::text AS result, queue, type, params::text AS params, priority, inserted_at, tenant,
       CASE WHEN $2::bool THEN log::text END AS log
FROM {schema}.job_runs
WHERE job_id = ANY($1::bigint[])
ORDER BY job_id, attempt, started_at;

-- name: job_list_finished
-- why: list_jobs(), finished side: the jobs below the cursor that have left the hot table,
--      newest first, read backwards on the job_id index, each judged by its last run (the
--      state filter applies to how that run ended). A last run that put the job back
--      (retry_at set: the job was deleted afterwards, or its final run was not logged) does
--      not say how it ended: such a job is 'gone' and listed under no state.
-- params: $1 below this id bigint, $2 queue text (NULL = any), $3 type text (NULL = any),
--         $4 state text (NULL = any finished state), $5 limit int, $6 tenant text (NULL = any)
SELECT job_id FROM (
    SELECT DISTINCT ON (r.job_id) r.job_id,
           {schema}.run_end_state(r.retry_at, r.outcome) AS state
    FROM {schema}.job_runs r
    WHERE r.job_id < $1 AND ($2::text IS NULL OR r.queue = $2::text)
      AND ($3::text IS NULL OR r.type = $3::text) AND ($6::text IS NULL OR r.tenant = $6::text)
      AND NOT EXISTS (SELECT 1 FROM {schema}.jobs j WHERE j.id = r.job_id)
    ORDER BY r.job_id DESC, r.attempt DESC, r.started_at DESC
) AS finished
WHERE state <> 'gone' AND ($4::text IS NULL OR state = $4::text)
LIMIT $5;

-- name: job_runs_activity
-- why: activity(), the dashboard's charts: the runs that ended in the last $2 buckets of $1
--      seconds, counted by bucket, queue and kind, in one pass over those runs alone. The
--      range on finished_at is what the BRIN index answers (runs are appended in finished_at
--      order, so only the recent block ranges are read, however long the log); its bounds
--      are expressions of now() and the params, so a custom plan sees them as values. Buckets
--      are aligned on multiples of $1 since the epoch: bucket k covers [k*$1, (k+1)*$1), the
--      newest is the one now() falls in, and the oldest starts at `since`. The kinds follow
--      run_end_state(): a final run (no retry_at) succeeded, was cancelled, or failed (any
--      other outcome); a put-back run counts as retried when it failed, timed out or crashed
--      (a snoozed, suspended or interrupted run put back is no outcome). The LEFT JOIN keeps
--      one row (with NULL counts) when no run ended, so since and until always come back.
-- params: $1 bucket seconds float8, $2 buckets int
WITH span AS (
    SELECT now() AS until,
           floor(extract(epoch FROM now())::float8 / $1::float8)::bigint AS last_bucket
), counted AS (
    SELECT floor(extract(epoch FROM r.finished_at)::float8 / $1::float8)::bigint AS bucket,
           r.queue,
           count(*) FILTER (WHERE r.retry_at IS NULL AND r.outcome = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE r.retry_at IS NULL AND r.outcome NOT IN ('succeeded', 'cancelled'))
               AS failed,
           count(*) FILTER (WHERE r.retry_at IS NOT NULL AND r.outcome IN ('failed', 'timeout', 'crashed'))
               AS retried,
           count(*) FILTER (WHERE r.retry_at IS NULL AND r.outcome = 'cancelled') AS cancelled
    FROM {schema}.job_runs r
    WHERE r.finished_at >= to_timestamp((floor(extract(epoch FROM now())::float8 / $1::float8) - ($2::int - 1))
                                        * $1::float8)
      AND r.finished_at <= now()
    GROUP BY 1, 2
)
SELECT to_timestamp((s.last_bucket - ($2::int - 1)) * $1::float8) AS since, s.until,
       c.bucket - (s.last_bucket - ($2::int - 1)) AS bucket, c.queue, c.succeeded, c.failed, c.retried,
       c.cancelled
FROM span s
LEFT JOIN counted c ON true
ORDER BY c.bucket, c.queue;
