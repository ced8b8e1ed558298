-- 005_unique_keys: schedule(..., unique_key=...) finds the job that holds a key instead of
-- inserting a second one.
--
-- A live job holds its key in jobs.unique_key; a partial unique index enforces it and has
-- no entry for the jobs without a key (the plain path pays nothing). unique_hold is how
-- long, in seconds, the key stays held after the job succeeds (its type's unique_for);
-- the flush copies such keys to unique_keys, where schedule() also looks. A job that
-- ends failed or cancelled frees its key.
ALTER TABLE jobs ADD COLUMN unique_key text, ADD COLUMN unique_hold real;
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobs (unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE unique_keys (
    key     text        PRIMARY KEY,
    job_id  bigint      NOT NULL,
    until   timestamptz NOT NULL
);
-- Workers drop the expired kept keys as they reap (by this index), so keys never reused
-- do not pile up.
CREATE INDEX unique_keys_until_idx ON unique_keys (until);
