-- Rollup upkeep, PostgreSQL dialect. Kept parallel to ../sqlite/0004_rollups.sql line for line.

-- Counter decreases taken as a reset or meter replacement, per bucket (shown next to the
-- consumption so that a person can tell a quiet hour from a replaced meter).
ALTER TABLE rollups ADD COLUMN resets BIGINT NOT NULL DEFAULT 0;

-- Devices whose rollups must be recomputed: the instants of the earliest and latest readings
-- stored since their rollups were last computed. Written in the readings' own transaction, so a
-- committed reading is never missed; the rollup worker widens the range to whole buckets, and
-- deletes the row only if no new reading marked it meanwhile (`marked_at` unchanged).
CREATE TABLE rollup_dirty (
    device_id BIGINT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    from_time TIMESTAMPTZ NOT NULL,
    to_time   TIMESTAMPTZ NOT NULL,
    marked_at TIMESTAMPTZ NOT NULL
);

-- A tenant's rollups by bucket: the home page's and reports' tenant-wide sums.
CREATE INDEX IF NOT EXISTS rollups_tenant ON rollups (tenant_id, granularity, bucket_start);
