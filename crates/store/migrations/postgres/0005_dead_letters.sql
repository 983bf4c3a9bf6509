-- Dead letters keep at most the first bytes of a refused payload (SPEC §2 Limits): the size it
-- had when it arrived, NULL when the payload is kept whole. PostgreSQL dialect, parallel to
-- ../sqlite/0005_dead_letters.sql.
ALTER TABLE rejected_messages ADD COLUMN payload_size BIGINT;
