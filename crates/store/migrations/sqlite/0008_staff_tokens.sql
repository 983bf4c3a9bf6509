-- Staff API tokens (issue 15): for platform operations (tenants) through the API, a kind of
-- token apart from the tenants' own: it belongs to no tenant and acts only on /api/v1/staff.
CREATE TABLE staff_api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    created_at   INTEGER NOT NULL
);
