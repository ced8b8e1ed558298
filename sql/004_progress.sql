-- 004_progress: a running job's progress, as its handler reports it (job.set_progress).
--
-- Written by the worker at most once per progress_interval per job, only for jobs that
-- report progress; NULL otherwise. Nullable columns without a default: no table rewrite.
ALTER TABLE jobs ADD COLUMN progress real, ADD COLUMN progress_message text;
