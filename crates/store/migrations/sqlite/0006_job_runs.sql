-- The job runner's record of each periodic job's runs (issue 18): how many, the last one's start,
-- instance and duration. Operators see which instance runs what; tests see that a job ran once
-- per period across instances, not once per instance.
ALTER TABLE jobs ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN last_run_at INTEGER;
ALTER TABLE jobs ADD COLUMN last_run_by TEXT;
ALTER TABLE jobs ADD COLUMN last_duration_ms INTEGER;
