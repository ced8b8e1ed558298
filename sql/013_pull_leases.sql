-- 013_pull_leases: pull consumers with fenced leases, the worker registry's details, tenants
-- and per-run log lines.
--
-- workers
--   kind         'worker': a Worker process, which heartbeats and is reaped when it stops.
--                'pull': a Scheduler that leases jobs (dequeue, claim). It does not
--                heartbeat as a whole: each lease has its own deadline (jobs.lease_until),
--                and the row is removed once it holds nothing and has been idle.
--   concurrency  a worker's concurrency limit (NULL for pull consumers).
-- jobs
--   lease_until  set only while a pull lease holds the job: the lease's deadline, moved on
--                by its heartbeats. Past it, the job is freed as a dead worker's jobs are
--                (the attempt counts). Worker claims never set it, so the partial index
--                below gets no entry on the worker's path.
--   tenant       an optional owner of the job (customer, account), for listing, stats and
--                per-key limits; NULL when not given.
-- job_runs
--   tenant       the job's tenant, copied with the rest of the run row.
--   log          the lines the handler wrote through job.log during this run (a JSON
--                array, size-capped by the worker), or NULL when it wrote none.
-- New columns are NULL or have a constant default: no table rewrite.
ALTER TABLE workers ADD COLUMN kind text NOT NULL DEFAULT 'worker'
                        CONSTRAINT workers_kind_check CHECK (kind IN ('worker', 'pull')),
                    ADD COLUMN concurrency integer;

ALTER TABLE jobs ADD COLUMN lease_until timestamptz,
                 ADD COLUMN tenant text;

CREATE INDEX jobs_lease_idx ON jobs (lease_until) WHERE lease_until IS NOT NULL;

ALTER TABLE job_runs ADD COLUMN tenant text,
                     ADD COLUMN log json;
