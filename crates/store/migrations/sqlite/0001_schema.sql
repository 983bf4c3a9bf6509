-- TDS schema, SQLite dialect. Kept parallel to ../postgres/0001_schema.sql: the same tables,
-- columns and constraints; only the types differ (timestamps are TIMESTAMPTZ in PostgreSQL and integer
-- microseconds since the epoch in SQLite, where the store's `Ts` type converts both ways).

CREATE TABLE tenants (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    -- The name lower-cased by TDS (Unicode-aware on both databases), for uniqueness and lookups.
    name_key            TEXT NOT NULL UNIQUE,
    cnpj                TEXT,
    active              BOOLEAN NOT NULL,
    plan                TEXT NOT NULL,
    max_gateways        INTEGER NOT NULL,
    max_devices         INTEGER NOT NULL,
    max_users           INTEGER NOT NULL,
    licence_valid_until TEXT,
    timezone            TEXT NOT NULL,
    retention_days      INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    created_by          INTEGER
);
CREATE UNIQUE INDEX tenants_cnpj_key ON tenants (cnpj) WHERE cnpj IS NOT NULL;

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT,
    language      TEXT NOT NULL,
    active        BOOLEAN NOT NULL,
    is_staff      BOOLEAN NOT NULL,
    last_login_at INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    created_by    INTEGER
);

CREATE TABLE memberships (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    role       TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    created_by INTEGER,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Server-side web sessions (tower-sessions' record, serialised by the web crate).
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Single-use, expiring tokens sent by email: invitations and password resets. Only the hash of
-- the token is kept.
CREATE TABLE user_tokens (
    id         INTEGER PRIMARY KEY,
    purpose    TEXT NOT NULL CHECK (purpose IN ('invite', 'reset')),
    token_hash TEXT NOT NULL UNIQUE,
    email      TEXT NOT NULL,
    user_id    INTEGER REFERENCES users (id),
    tenant_id  INTEGER REFERENCES tenants (id),
    role       TEXT,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL,
    created_by INTEGER
);

-- Failed logins, for lockout per email and per IP.
CREATE TABLE login_failures (
    id    INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    ip    TEXT NOT NULL,
    at    INTEGER NOT NULL
);
CREATE INDEX login_failures_email ON login_failures (email, at);
CREATE INDEX login_failures_ip ON login_failures (ip, at);

CREATE TABLE gateways (
    id                  INTEGER PRIMARY KEY,
    tenant_id           INTEGER NOT NULL REFERENCES tenants (id),
    code                TEXT NOT NULL,
    mac                 TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    description         TEXT NOT NULL,
    latitude            REAL,
    longitude           REAL,
    model               TEXT,
    serial_number       TEXT,
    device_id           TEXT,
    hardware_version    TEXT,
    firmware_version    TEXT,
    max_devices         INTEGER NOT NULL CHECK (max_devices BETWEEN 1 AND 32),
    expected_interval_s INTEGER NOT NULL CHECK (expected_interval_s > 0),
    status              TEXT NOT NULL CHECK (status IN ('pre_registered', 'active', 'decommissioned')),
    last_seen_at        INTEGER,
    online              BOOLEAN NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    created_by          INTEGER,
    UNIQUE (tenant_id, code)
);

-- Connection history of a gateway (connects, disconnects with reason, refusals).
CREATE TABLE gateway_events (
    id         INTEGER PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    gateway_id INTEGER NOT NULL REFERENCES gateways (id),
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX gateway_events_gateway ON gateway_events (gateway_id, at);

CREATE TABLE devices (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    gateway_id      INTEGER NOT NULL REFERENCES gateways (id),
    code            TEXT NOT NULL,
    mac             TEXT,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    device_type     TEXT NOT NULL CHECK (device_type IN ('MEDIDOR', 'SENSOR', 'ATUADOR')),
    medium          TEXT NOT NULL CHECK (medium IN ('water', 'energy', 'gas', 'other')),
    kind            TEXT NOT NULL CHECK (kind IN ('counter', 'interval', 'gauge')),
    unit            TEXT NOT NULL,
    scale_factor    REAL NOT NULL,
    rollover_value  REAL,
    slave_id        INTEGER CHECK (slave_id BETWEEN 1 AND 247),
    register        INTEGER CHECK (register BETWEEN 1 AND 65535),
    mode            TEXT NOT NULL CHECK (mode IN ('AUTO', 'MANUAL')),
    status          TEXT NOT NULL CHECK (status IN ('ATIVO', 'INATIVO', 'MANUTENCAO')),
    alarm_daily     REAL,
    alarm_monthly   REAL,
    last_seen_at    INTEGER,
    archived_at     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    created_by      INTEGER,
    CHECK (device_type <> 'MEDIDOR' OR (slave_id IS NOT NULL AND register IS NOT NULL))
);
-- An archived device frees its code and MAC; its readings stay under its own id.
CREATE UNIQUE INDEX devices_code_key ON devices (gateway_id, code) WHERE archived_at IS NULL;
CREATE UNIQUE INDEX devices_mac_key ON devices (tenant_id, mac) WHERE archived_at IS NULL AND mac IS NOT NULL;
CREATE INDEX devices_tenant ON devices (tenant_id);

-- One row per (device, instant); the primary key is what makes ingestion idempotent.
-- No foreign keys, on purpose: their per-row checks cost 60 % of the ingest rate on PostgreSQL
-- (measured with `tds bench store`: 70 k vs 180 k rows/s). The store keeps the references
-- true instead: ReadingStore checks every device against the tenant and takes the gateway from
-- the device, and devices are archived, never deleted (a purge removes readings first).
CREATE TABLE readings (
    device_id   INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    tenant_id   INTEGER NOT NULL,
    gateway_id  INTEGER NOT NULL,
    value       REAL NOT NULL,
    unit        TEXT NOT NULL,
    ingested_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, time)
) WITHOUT ROWID;

-- Hourly, daily and monthly aggregates per device, bucketed in the tenant's time zone.
-- Kept by the store from readings; no foreign keys, like readings.
CREATE TABLE rollups (
    device_id    INTEGER NOT NULL,
    granularity  TEXT NOT NULL CHECK (granularity IN ('hour', 'day', 'month')),
    bucket_start INTEGER NOT NULL,
    tenant_id    INTEGER NOT NULL,
    consumption  REAL,
    min_value    REAL,
    max_value    REAL,
    sum_value    REAL,
    reading_count INTEGER NOT NULL,
    expected_count INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, granularity, bucket_start)
) WITHOUT ROWID;

-- Dead letters: everything a gateway sent that could not be stored as a reading.
CREATE TABLE rejected_messages (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER REFERENCES tenants (id),
    gateway_id    INTEGER REFERENCES gateways (id),
    mac           TEXT,
    topic         TEXT NOT NULL,
    payload       BLOB NOT NULL,
    reading_index INTEGER,
    reason_code   TEXT NOT NULL,
    reason        TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    replayed_at   INTEGER,
    replay_outcome TEXT
);
CREATE INDEX rejected_messages_tenant ON rejected_messages (tenant_id, received_at);
CREATE INDEX rejected_messages_received ON rejected_messages (received_at);

-- Issued device certificates. A factory batch issues certificates before their gateways are
-- registered: such a row has no tenant or gateway until the gateway is pre-registered with that
-- MAC, which links them.
CREATE TABLE certificates (
    id                 INTEGER PRIMARY KEY,
    tenant_id          INTEGER REFERENCES tenants (id),
    gateway_id         INTEGER REFERENCES gateways (id),
    mac                TEXT NOT NULL,
    serial             TEXT NOT NULL UNIQUE,
    fingerprint_sha256 TEXT NOT NULL UNIQUE,
    pem                TEXT NOT NULL,
    key_algorithm      TEXT NOT NULL,
    issued_at          INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked', 'expired')),
    revocation_reason  TEXT,
    revoked_at         INTEGER,
    renewal_state      TEXT,
    first_used_at      INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    created_by         INTEGER
);
CREATE INDEX certificates_gateway ON certificates (gateway_id);
CREATE INDEX certificates_mac ON certificates (mac);
CREATE INDEX certificates_expiry ON certificates (status, expires_at);

CREATE TABLE renewal_log (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    gateway_id     INTEGER NOT NULL REFERENCES gateways (id),
    certificate_id INTEGER REFERENCES certificates (id),
    step           TEXT NOT NULL,
    detail         TEXT NOT NULL,
    at             INTEGER NOT NULL
);
CREATE INDEX renewal_log_gateway ON renewal_log (gateway_id, at);

CREATE TABLE alert_rules (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL')),
    target_kind TEXT NOT NULL CHECK (target_kind IN ('device', 'gateway', 'tenant')),
    target_id   INTEGER,
    params      TEXT NOT NULL,
    hysteresis  REAL,
    enabled     BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    created_by  INTEGER
);
CREATE INDEX alert_rules_tenant ON alert_rules (tenant_id);

CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    rule_id         INTEGER NOT NULL REFERENCES alert_rules (id),
    target_kind     TEXT NOT NULL,
    target_id       INTEGER NOT NULL,
    severity        TEXT NOT NULL,
    message         TEXT NOT NULL,
    value           REAL,
    raised_at       INTEGER NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by INTEGER REFERENCES users (id),
    ack_comment     TEXT,
    cleared_at      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- One open alert per rule and target: re-evaluation updates it instead of duplicating it.
CREATE UNIQUE INDEX alerts_open_key ON alerts (rule_id, target_kind, target_id) WHERE cleared_at IS NULL;
CREATE INDEX alerts_tenant ON alerts (tenant_id, raised_at);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER REFERENCES tenants (id),
    user_id     INTEGER REFERENCES users (id),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id   TEXT,
    detail      TEXT NOT NULL,
    ip          TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    created_by   INTEGER,
    UNIQUE (tenant_id, name)
);

-- Background jobs. A job is claimed by setting a lease (locked_until); a crashed instance's lease
-- runs out and another instance picks the job up. Periodic jobs are one row per `key`,
-- rescheduled after each run.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    key          TEXT UNIQUE,
    payload      TEXT NOT NULL,
    run_after    INTEGER NOT NULL,
    locked_until INTEGER,
    locked_by    TEXT,
    attempts     INTEGER NOT NULL,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_after);
