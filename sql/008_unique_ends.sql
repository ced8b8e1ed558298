-- 008_unique_ends: which ends keep a job's unique key (its type's unique_kept_after).
--
-- A job that ends in one of these states ('succeeded', 'failed', 'cancelled') keeps its key
-- in unique_keys for unique_hold seconds. NULL (jobs without a key, and keyed jobs from
-- before this migration) means the default, success only. A NULL column: no table rewrite.
ALTER TABLE jobs ADD COLUMN unique_ends text[];
