-- 010_periodic: periodic jobs declared in code (@scheduler.periodic), one row per declaration.
--
-- The row is the guard that makes a tick fire once across any number of processes: the
-- enqueuing statement moves last_tick forward with a compare-and-set (only to a later
-- tick) and inserts the tick's job in the same statement, so a second process firing the
-- same tick, or a process whose clock is behind, changes nothing. Ticks are computed from
-- the declaration alone, so every process names the same ticks.
--   schedule    the declaration as text ("*/5 * * * * Europe/Paris", "every 300s"), as
--               the last process that declared it wrote it: for listings.
--   type, queue what its jobs run and where (for listings, without the application's code).
--   last_tick   the latest tick consumed (a job enqueued, or skipped for overlap); NULL
--               before the first.
--   last_job_id the job of the latest tick that enqueued one; a tick skipped for overlap
--               keeps it (that job is still live).
--   last_note   NULL when the latest tick enqueued last_job_id; 'skipped (overlap)' when it
--               was consumed without a job because last_job_id was still live.
-- Nothing on the plain path reads or writes this table.
CREATE TABLE periodic (
    name        text        PRIMARY KEY,
    schedule    text        NOT NULL,
    type        text        NOT NULL,
    queue       text        NOT NULL,
    last_tick   timestamptz,
    last_job_id bigint,
    last_note   text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The id of the job a periodic tick enqueues, or NULL when the tick is to be skipped
-- because the declaration allows no overlap and its previous job (prev) is still live.
-- The fire statement calls it once per row it updates, after the row's lock: a process
-- that waited for another's commit on the row re-evaluates it on the new row version,
-- and its look at jobs must see the job that commit inserted. plpgsql, VOLATILE: each of
-- its queries takes a fresh snapshot in READ COMMITTED (an SQL function could be inlined
-- into the caller's statement and read the caller's older snapshot). The id is drawn
-- from the jobs identity here, so the statement can store it before inserting the job.
CREATE FUNCTION periodic_job_id(prev bigint, overlap boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT overlap AND prev IS NOT NULL AND EXISTS (SELECT 1 FROM jobs WHERE id = prev) THEN
        RETURN NULL;
    END IF;
    RETURN nextval(pg_get_serial_sequence('jobs', 'id'));
END
$$;
