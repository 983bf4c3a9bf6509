-- Incremental rollups (issue 20). Kept parallel to ../sqlite/0013_rollup_resume.sql.

-- An hour row's last reading (time and raw value): a device whose new readings all come after
-- it is brought up to date by adding them to the row (`tds_domain::rollup::resume`) instead of
-- reading the hour's readings again. NULL on day and month rows and on hour rows written before
-- this column existed (those hours are recomputed from their readings, as before).
ALTER TABLE rollups ADD COLUMN last_time TIMESTAMPTZ;
ALTER TABLE rollups ADD COLUMN last_value DOUBLE PRECISION;
