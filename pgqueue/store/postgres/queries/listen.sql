-- LISTEN/NOTIFY. Payloads on the schema's channel (parsed by pgqueue/_notifications.py):
--   r:<queue>          jobs in <queue> are due now: claim
--   j:<job id>:<queue> this one job in <queue> is due now: claim it (by id, when idle)
--   d:<secs>:<queue>   a job in <queue> is due in <secs> seconds: arm a timer, do not claim
--   c:<job id>         cancel this job if you are running it
--   s:<job id>         ask this job to suspend at its next checkpoint, if you are running it
--   p:<token>          a listener's probe of its own connection
--   e:<job id>         this job ended (sent only for jobs a wait() marked awaited)

-- name: listen_probe
-- why: the listener's health check: a notification it sends itself must come back, or
--      the LISTEN connection is treated as dead (half-open sockets look alive otherwise).
-- params: $1 channel text, $2 payload text
SELECT pg_notify($1, $2);
