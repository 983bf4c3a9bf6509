-- Room on each page for the rows that are updated all the time (issue 20). Kept parallel to
-- ../sqlite/0018_hot_updates.sql.

-- A device's mark is merged by every fold (every 3 s under load) and `last_seen_at` is set by
-- every refresh of it. Neither changes an indexed column, so PostgreSQL can write the new
-- version on the same page without touching the indexes (a HOT update), but only if the page
-- has room: with the default fillfactor of 100 the pages are full, and 98 % of these updates
-- were written elsewhere with a new entry in every index. With 10,000 meters for 60 s (`tds
-- bench ingest --gateways 1000 --devices 10 --seconds 60 --rate 15000`) that left
-- `rollup_dirty` at 119,000 dead rows (11 MB for 10,000 marks) for the fold's upsert and the
-- refresh's queue to wade through, and each `last_seen_at` update of a device cost ~30 µs.
-- Tables and pages written from now on keep this room; existing full pages are left as they
-- are (`VACUUM FULL devices` rewrites them, which can wait for a quiet moment).
ALTER TABLE rollup_dirty SET (fillfactor = 50);
ALTER TABLE devices SET (fillfactor = 70);
