-- When a device's mark was made (issue 20). Kept parallel to ../sqlite/0017_rollup_dirty_since.sql.

-- The rollup refresh takes the marks in the order they were made, not by `marked_at`, which
-- every fold moves to its latest commit: under a load where every device is in every fold, all
-- marks had the same `marked_at`, and a round of 2,000 of 10,000 devices took the same ones
-- round after round while the others waited for the load to stop. Set when the mark is made,
-- kept when later commits merge into it.
ALTER TABLE rollup_dirty ADD COLUMN dirty_since TIMESTAMPTZ;
UPDATE rollup_dirty SET dirty_since = marked_at;
ALTER TABLE rollup_dirty ALTER COLUMN dirty_since SET NOT NULL;
