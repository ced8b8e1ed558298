-- 003_awaited: wait() is woken by a notification when the job it waits for ends.
--
-- Only jobs somebody waits for get one: wait() sets awaited on the live row (the one extra
-- write is the waiter's), and the statements that end jobs notify for the rows that have it.
-- A constant default: no table rewrite.
ALTER TABLE jobs ADD COLUMN awaited boolean NOT NULL DEFAULT false;
