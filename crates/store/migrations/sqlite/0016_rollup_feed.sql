-- The rollup feed (issue 20): the readings of a commit and of a device's mark kept in the
-- memory of the store that wrote them, so that the rollup refresh need not read them back
-- (crates/store/src/rollups/feed.rs). Kept parallel to ../postgres/0016_rollup_feed.sql.

-- The writing store's token; 0 is no one's.
ALTER TABLE rollup_pending ADD COLUMN feed INTEGER NOT NULL DEFAULT 0;
-- The id of the fold whose kept readings make the whole mark; 0 when no store has them all.
ALTER TABLE rollup_dirty ADD COLUMN feed INTEGER NOT NULL DEFAULT 0;
-- Only for the fold's upsert: the id it expects a mark it goes on from to have (set to 0 when it
-- does go on from one, left as given when the row is new).
ALTER TABLE rollup_dirty ADD COLUMN feed_from INTEGER NOT NULL DEFAULT 0;
