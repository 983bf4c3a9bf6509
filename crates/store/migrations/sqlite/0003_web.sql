-- Web sign-in, SQLite dialect. Kept parallel to ../postgres/0003_web.sql line for line.

-- The tower-sessions table of 0001 was never used: the web crate keeps its own session rows, so
-- that a user's sessions can be found and ended together ("log out everywhere").
DROP TABLE sessions;

-- One row per signed-in browser. The cookie carries a random token; only its SHA-256 (hex) is
-- kept, so that a copy of the database does not hand out live sessions.
CREATE TABLE web_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    -- The tenant the user is working in; NULL until they pick one.
    tenant_id    INTEGER REFERENCES tenants (id),
    csrf_token   TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- Purging old failures goes by time alone; the (email, at) and (ip, at) indexes do not serve it.
CREATE INDEX login_failures_at ON login_failures (at);

-- A tenant's pending invitations, and a user's outstanding reset links (voided by a reset).
CREATE INDEX user_tokens_tenant ON user_tokens (tenant_id, purpose);
CREATE INDEX user_tokens_user ON user_tokens (user_id, purpose);
