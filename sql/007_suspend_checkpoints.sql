-- 007_suspend_checkpoints: a running job of a suspendable type can be suspended: suspend()
-- asks its worker, the handler stops at its next checkpoint, and the job waits suspended
-- with that checkpoint until resume().
--
--   suspend_requested  set by suspend() on a claimed job; its worker tells the handler
--              (job.suspend_requested), and a run that ends without finishing the job
--              (put back, or cut short by a dead worker) leaves it suspended.
--   checkpoint the handler's last job.checkpoint(data) of a run that did not finish the job;
--              the next run reads it (job.checkpoint_data). NULL for the jobs that never
--              checkpoint.
-- A constant default and a NULL column: no table rewrite.
ALTER TABLE jobs ADD COLUMN suspend_requested boolean NOT NULL DEFAULT false,
                 ADD COLUMN checkpoint json;

-- A run can end suspended: put back under the suspended lock, neither an error nor a
-- counted run. Old rows satisfy the wider check: NOT VALID, no scan of the run log.
ALTER TABLE job_runs DROP CONSTRAINT job_runs_outcome_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_outcome_check CHECK (
    outcome IN ('succeeded', 'failed', 'timeout', 'interrupted', 'cancelled', 'crashed', 'snoozed',
                'suspended')
) NOT VALID;
