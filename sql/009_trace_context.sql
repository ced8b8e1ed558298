-- OpenTelemetry (pgqueue[otel]): the W3C traceparent of the span that scheduled a job,
-- read by the claim so the run's span continues the scheduler's trace. NULL unless the
-- scheduler traces: a NULL costs the row one bit of its null bitmap and nothing else, and
-- the column has a NULL default, so adding it rewrites nothing.
ALTER TABLE jobs ADD COLUMN trace_context text;
