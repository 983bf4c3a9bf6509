-- Kept parallel to ../postgres/0018_hot_updates.sql, which leaves room on PostgreSQL's pages
-- for the updates of `rollup_dirty` and `devices.last_seen_at` (fillfactor). SQLite has no
-- such setting and rewrites a row in place: nothing to do here but keep the schema versions
-- of the two databases the same.
SELECT 1;
