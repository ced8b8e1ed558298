-- Global limits of queues (sql/011): the claim of a limited queue, the worker's look at
-- which of its queues are limited, and the API's set, remove and list. Nothing here runs
-- for a queue without a limit.

-- name: job_claim_limited
-- why: the claim of one limited queue, within its limits, in one round trip; the function
--      (sql/011) serialises the claims of the queue and counts its held jobs. Its last row
--      has a NULL id and says whether a limit held the claim back (capped) and when the
--      rate window frees a start (free_in, seconds); the others are claimed jobs, in
--      job_claim_many's column order (tenant last, sql/014).
-- params: $1 queue text, $2 limit int, $3 worker_id bigint, $4 done ids (bigint[] as text),
--         $5 done attempts (int[] as text): this worker's finished runs whose results are
--         unwritten, as array literals (cheaper for the driver to send than arrays)
SELECT id, queue, type, params, priority, attempt, errors, last_error, run_at, inserted_at, timeout_s,
       cancel_requested, counted, checkpoint, trace_context, tenant, capped, free_in
FROM {schema}.claim_limited($1::text, $2::int, $3::bigint, $4::text::bigint[], $5::text::int[]);

-- name: queue_limited
-- why: a worker's look (at start, then every heartbeat interval, never per claim) at
--      which of its queues are limited, with their concurrency limits and whether the
--      worker leases their slots (concurrency only: lease_slots, sql/011) or claims them
--      through claim_limited; the primary key, one entry per queue.
-- params: $1 queues text[]
SELECT queue, concurrency, (concurrency IS NOT NULL AND per_key IS NULL AND rate_count IS NULL) AS leased
FROM {schema}.queue_limits WHERE queue = ANY($1::text[]) ORDER BY queue;

-- name: lease_slots
-- why: a worker's lease of a concurrency-limited queue's slots, set to as many of $3 as
--      fit (sql/011 lease_slots); once per claim cycle and per give-back, never per job.
--      NULL: the queue is not leased (any more): the worker looks at the limits again.
-- params: $1 queue text, $2 worker_id bigint, $3 slots wanted int
SELECT {schema}.lease_slots($1::text, $2::bigint, $3::int);

-- name: queue_limit_adopt
-- why: jobs this worker claimed with the plain claim before it saw a new limit count
--      against it from now on. Runs only when a worker sees a queue become limited: it
--      scans the small hot table (no index on worker_id, on purpose: see sql/001). The key
--      is the tenant for a limit keyed by '@tenant' (sql/014 job_limit_key).
-- params: $1 queues text[], $2 worker_id bigint
UPDATE {schema}.jobs j
SET slot = true, limit_key = {schema}.job_limit_key(l.key_param, j.params, j.tenant)
FROM {schema}.queue_limits l
WHERE l.queue = ANY($1::text[]) AND j.queue = l.queue AND j.worker_id = $2 AND NOT j.slot
  AND (l.concurrency IS NOT NULL OR l.per_key IS NOT NULL);

-- name: queue_limit_set
-- why: set_queue_limit(): the row, and the queue's held jobs marked countable under it,
--      in one call (sql/011 queue_limit_set says in which order, and why).
-- params: $1 queue text, $2 concurrency int, $3 per_key int, $4 key text, $5 rate count int,
--         $6 rate period seconds float8 (NULL with $5)
SELECT {schema}.queue_limit_set($1::text, $2::int, $3::int, $4::text, $5::int,
                                make_interval(secs => $6::float8));

-- name: queue_limit_remove
-- why: remove_queue_limit(): the row, its rate window and its leases go; the queue is claimed plainly
--      from each worker's next look (a claim_limited call in between claims plainly too).
-- params: $1 queue text
WITH starts AS (
    DELETE FROM {schema}.queue_starts WHERE queue = $1::text
), leases AS (
    DELETE FROM {schema}.queue_leases WHERE queue = $1::text
)
DELETE FROM {schema}.queue_limits WHERE queue = $1::text RETURNING queue;

-- name: queue_limit_list
-- why: list_queue_limits() and `pgqueue limits list`: every limit, by queue.
-- params: none
SELECT queue, concurrency, per_key, key_param, rate_count,
       extract(epoch FROM rate_period)::float8 AS rate_period_s, updated_at
FROM {schema}.queue_limits
ORDER BY queue;
