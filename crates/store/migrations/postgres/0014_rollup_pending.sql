-- Commits' rollup marks kept out of their rows' way (issue 20). Kept parallel to
-- ../sqlite/0014_rollup_pending.sql.

-- One row per commit of readings: the devices it stored readings for, each with its tenant and
-- the earliest and latest instant, as a JSON array of [device, tenant, from µs, to µs]. Written
-- in the readings' own transaction (a committed reading is never missing from the rollups'
-- to-do list), by an INSERT that touches no other commit's rows: the per-device upsert into
-- `rollup_dirty` it replaces made each commit wait for the rollup refresh's locks on those rows.
-- The rollup worker folds these rows into `rollup_dirty` and deletes them.
CREATE TABLE rollup_pending (
    id        BIGSERIAL PRIMARY KEY,
    marked_at TIMESTAMPTZ NOT NULL,
    marks     TEXT NOT NULL
);
