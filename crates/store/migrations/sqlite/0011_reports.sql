-- Reports (issue 14): a tenant may bill from a day of the month (1..28, SPEC §6); its "month"
-- buckets then run from that day to the day before it in the next month. NULL: calendar months.
ALTER TABLE tenants ADD COLUMN billing_day INTEGER CHECK (billing_day BETWEEN 1 AND 28);

-- Saved reports (SPEC §6): what the Relatórios page asks for (spec: the reports crate's
-- ReportSpec as JSON), the file format and language, and optionally recipients and a monthly or
-- weekly schedule at a local hour of the tenant's zone. next_run_at is the next scheduled run
-- (NULL: not scheduled).
CREATE TABLE report_definitions (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    format        TEXT NOT NULL CHECK (format IN ('pdf', 'xlsx', 'csv', 'csv-br')),
    lang          TEXT NOT NULL CHECK (lang IN ('pt-BR', 'en')),
    -- Email addresses, one per line.
    recipients    TEXT NOT NULL,
    schedule_kind TEXT CHECK (schedule_kind IN ('monthly', 'weekly')),
    schedule_day  INTEGER,
    schedule_hour INTEGER,
    next_run_at   INTEGER,
    created_by    INTEGER REFERENCES users (id),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX report_definitions_due ON report_definitions (next_run_at) WHERE next_run_at IS NOT NULL;

-- Every run of a definition (scheduled or "run now"): pending until made and mailed, retried
-- while attempts remain, then succeeded or failed with its error. The file is kept for 90 days
-- (then set to NULL; the row stays as the record). delivered: the addresses already mailed, one
-- per line, so that a retry does not mail them twice.
CREATE TABLE report_runs (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    definition_id   INTEGER REFERENCES report_definitions (id) ON DELETE SET NULL,
    name            TEXT NOT NULL,
    trigger         TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    scheduled_for   INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    error           TEXT,
    period_from     TEXT,
    period_to       TEXT,
    file_name       TEXT,
    content_type    TEXT,
    file            BLOB,
    file_size       INTEGER,
    delivered       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX report_runs_due ON report_runs (next_attempt_at) WHERE status = 'pending';
CREATE INDEX report_runs_definition ON report_runs (tenant_id, definition_id, id);
