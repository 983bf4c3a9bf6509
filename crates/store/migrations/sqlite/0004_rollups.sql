-- Rollup upkeep, SQLite dialect. Kept parallel to ../postgres/0004_rollups.sql line for line.

-- Counter decreases taken as a reset or meter replacement, per bucket (shown next to the
-- consumption so that a person can tell a quiet hour from a replaced meter).
ALTER TABLE rollups ADD COLUMN resets INTEGER NOT NULL DEFAULT 0;

-- Devices whose rollups must be recomputed: the instants of the earliest and latest readings
-- stored since their rollups were last computed. Written in the readings' own transaction, so a
-- committed reading is never missed; the rollup worker widens the range to whole buckets, and
-- deletes the row only if no new reading marked it meanwhile (`marked_at` unchanged).
CREATE TABLE rollup_dirty (
    device_id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    from_time INTEGER NOT NULL,
    to_time   INTEGER NOT NULL,
    marked_at INTEGER NOT NULL
) WITHOUT ROWID;

-- A tenant's rollups by bucket: the home page's and reports' tenant-wide sums.
CREATE INDEX IF NOT EXISTS rollups_tenant ON rollups (tenant_id, granularity, bucket_start);
