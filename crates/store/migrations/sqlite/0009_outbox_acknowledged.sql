-- Alert notifications (SPEC §5): an acknowledgement is told to webhooks, so the outbox takes
-- 'acknowledged' rows too. Kept parallel to ../postgres/0009_outbox_acknowledged.sql. SQLite
-- cannot change a CHECK in place: the table is made again with the same columns in the same
-- order (nothing refers to it).
CREATE TABLE notification_outbox_new (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    -- NULL for a channel's test message.
    alert_id        INTEGER REFERENCES alerts (id),
    channel_id      INTEGER REFERENCES notification_channels (id),
    user_id         INTEGER REFERENCES users (id),
    event           TEXT NOT NULL CHECK (event IN ('raised', 'cleared', 'acknowledged', 'reminder', 'test')),
    idempotency_key TEXT NOT NULL UNIQUE,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    -- Given up on (retries exhausted).
    failed_at       INTEGER,
    created_at      INTEGER NOT NULL,
    CHECK (channel_id IS NOT NULL OR user_id IS NOT NULL),
    CHECK (event = 'test' OR alert_id IS NOT NULL)
);
INSERT INTO notification_outbox_new (id, tenant_id, alert_id, channel_id, user_id, event, idempotency_key,
    payload, attempts, next_attempt_at, last_error, delivered_at, failed_at, created_at)
    SELECT id, tenant_id, alert_id, channel_id, user_id, event, idempotency_key, payload, attempts,
        next_attempt_at, last_error, delivered_at, failed_at, created_at FROM notification_outbox;
DROP TABLE notification_outbox;
ALTER TABLE notification_outbox_new RENAME TO notification_outbox;
-- The sender's query: undelivered rows by next attempt.
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notification_outbox_alert ON notification_outbox (alert_id);
CREATE INDEX notification_outbox_channel ON notification_outbox (channel_id);
