-- 002_retry_budget: a job's budget of runs can start afresh without renumbering its runs.
--
-- retry() puts a failed or cancelled job back under its own id: its runs go on being
-- numbered from its history (attempt keeps counting), but max_attempts must count only
-- the runs since the retry. A snoozed run (the handler raised Snooze) does not count
-- either. attempt_base holds the runs that no longer count; the claim returns
-- attempt - attempt_base for the max_attempts check.
--
-- A constant default: PostgreSQL 11+ adds the column without rewriting the table, so live
-- jobs stay where they are.
ALTER TABLE jobs ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;

-- A run can end snoozed: put back for later, neither an error nor a counted run. The old
-- rows all satisfy the wider check, so it is added NOT VALID: no scan of the run log.
ALTER TABLE job_runs DROP CONSTRAINT job_runs_outcome_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_outcome_check CHECK (
    outcome IN ('succeeded', 'failed', 'timeout', 'interrupted', 'cancelled', 'crashed', 'snoozed')
) NOT VALID;
