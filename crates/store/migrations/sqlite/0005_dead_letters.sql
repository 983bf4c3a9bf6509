-- Dead letters keep at most the first bytes of a refused payload (SPEC §2 Limits): the size it
-- had when it arrived, NULL when the payload is kept whole. SQLite dialect, parallel to
-- ../postgres/0005_dead_letters.sql.
ALTER TABLE rejected_messages ADD COLUMN payload_size INTEGER;
