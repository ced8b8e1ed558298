-- Keeping the hot table lean: dead-tuple checks and the workers' own VACUUM.

-- name: jobs_dead_tuples
-- why: the hot table churns (insert, claim, delete); its dead index entries sit at the head
--      of the claim index, where every claim walks over them until a VACUUM. Workers check
--      the count and vacuum sooner than autovacuum's server-wide naptime would.
-- params: $1 qualified table name text
SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relid = to_regclass($1);

-- name: jobs_vacuum_lock
-- why: one worker vacuums at a time; the others skip. Session-level, released right after.
-- params: $1 lock key text
SELECT pg_try_advisory_lock(hashtextextended($1, 0));

-- name: jobs_vacuum_unlock
-- why: release the lock taken by jobs_vacuum_lock on the same connection.
-- params: $1 lock key text
SELECT pg_advisory_unlock(hashtextextended($1, 0));

-- name: jobs_vacuum
-- why: remove dead tuples and index entries of the hot table (see jobs_dead_tuples).
--      INDEX_CLEANUP ON: the index entries are the point. By default (AUTO, PostgreSQL 14+)
--      VACUUM skips the indexes when the dead rows sit on under 2% of the heap's pages,
--      which is exactly the shape of a drained head on a large backlog.
-- params: none
VACUUM (INDEX_CLEANUP ON) {schema}.jobs;

-- name: leader_lock_held
-- why: workers that do not lead look before they connect: while the lock is held (nearly
--      always), trying would cost a connection and a backend each time.
-- params: $1 lock key text
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND (classid::bigint << 32) | objid::bigint = hashtextextended($1, 0)
);

-- name: leader_lock_try
-- why: one maintenance leader per schema: a session lock on a connection the leader keeps,
--      so the server frees it the moment that session ends (a killed process, a dropped
--      connection) and another worker takes over at its next try. Never waits.
-- params: $1 lock key text
SELECT pg_try_advisory_lock(hashtextextended($1, 0));

-- name: leader_lock_check
-- why: the leader's periodic proof that its session (and so its lock) is still there.
-- params: $1 lock key text
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
      AND (classid::bigint << 32) | objid::bigint = hashtextextended($1, 0)
);

-- name: leader_unlock
-- why: a leader stepping down hands over at once instead of when its connection closes.
-- params: $1 lock key text
SELECT pg_advisory_unlock(hashtextextended($1, 0));
