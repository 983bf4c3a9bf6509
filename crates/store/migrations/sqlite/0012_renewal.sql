-- Certificate renewal over the air (issue 16, SPEC §2 and §3).

-- One renewal of one gateway's certificate: offered → (csr_received →) issued → confirmed, or
-- failed / rolled_back. At most one open renewal per gateway (partial unique index below).
CREATE TABLE renewals (
    id                 INTEGER PRIMARY KEY,
    tenant_id          INTEGER NOT NULL REFERENCES tenants (id),
    gateway_id         INTEGER NOT NULL REFERENCES gateways (id),
    old_certificate_id INTEGER REFERENCES certificates (id),
    new_certificate_id INTEGER REFERENCES certificates (id),
    mode               TEXT NOT NULL CHECK (mode IN ('server_key', 'csr')),
    state              TEXT NOT NULL CHECK (state IN ('offered', 'csr_received', 'issued', 'confirmed', 'failed', 'rolled_back')),
    manual             BOOLEAN NOT NULL,
    detail             TEXT NOT NULL,
    started_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    created_by         INTEGER
);
CREATE UNIQUE INDEX renewals_open ON renewals (gateway_id) WHERE finished_at IS NULL;
CREATE INDEX renewals_tenant ON renewals (tenant_id, started_at);

-- Messages from TDS to a gateway, kept until the gateway confirms them (SPEC §2): delivered
-- retained on every subscription to the exact topic; `delivered_at` is the last PUBACK;
-- `cleared_at` ends it (the payload is then emptied: a server-generated key is not kept).
CREATE TABLE gateway_messages (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id),
    gateway_id   INTEGER NOT NULL REFERENCES gateways (id),
    mac          TEXT NOT NULL,
    topic        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    renewal_id   INTEGER REFERENCES renewals (id),
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    cleared_at   INTEGER
);
CREATE UNIQUE INDEX gateway_messages_pending ON gateway_messages (mac, topic) WHERE cleared_at IS NULL;
CREATE INDEX gateway_messages_gateway ON gateway_messages (gateway_id, created_at);

-- Tenants whose renewal campaign staff paused.
CREATE TABLE renewal_pauses (
    tenant_id  INTEGER PRIMARY KEY REFERENCES tenants (id),
    paused_at  INTEGER NOT NULL,
    paused_by  INTEGER
);

-- The renewal mode of a gateway; NULL: by its model (SPEC §3).
ALTER TABLE gateways ADD COLUMN renewal_mode TEXT CHECK (renewal_mode IN ('server_key', 'csr'));

-- A replaced certificate is revoked (reason superseded) so that the CRL lists it too.
UPDATE certificates SET revoked_at = updated_at, revocation_reason = 'superseded'
    WHERE status = 'superseded' AND revoked_at IS NULL;
CREATE INDEX certificates_updated ON certificates (updated_at);
