-- Alerts (SPEC §5, issue 13), SQLite dialect. Kept parallel to ../postgres/0007_alerts.sql line
-- for line.

-- The alert_rules and alerts tables of 0001 were never written (no store used them) and had no
-- medium target, no hold time and no way to tell a device's own thresholds from other rules.
-- SQLite cannot change a CHECK in place, so both are made again.
DROP TABLE alerts;
DROP TABLE alert_rules;

-- A target is one of: a device or a gateway (target_id), every device of the tenant measuring a
-- medium (target_medium), or the whole tenant (neither). The same three columns name an alert's
-- target (a rule on a gateway, a medium or the tenant raises one alert per member it covers).
CREATE TABLE alert_rules (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    -- RuleKind::name and RuleKind::params_json of the domain.
    kind          TEXT NOT NULL,
    params        TEXT NOT NULL,
    severity      TEXT NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL')),
    target_kind   TEXT NOT NULL CHECK (target_kind IN ('device', 'gateway', 'tenant', 'medium')),
    target_id     INTEGER,
    target_medium TEXT CHECK (target_medium IN ('water', 'energy', 'gas', 'other')),
    hysteresis    REAL,
    hold_secs     INTEGER,
    enabled       BOOLEAN NOT NULL,
    -- 'user': made in the rule editor. 'device_alarm': stands for a device's own daily or monthly
    -- threshold (devices.alarm_daily, alarm_monthly); made, changed and removed only by
    -- AlertRuleStore::sync_device_thresholds, never by hand.
    source        TEXT NOT NULL CHECK (source IN ('user', 'device_alarm')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    created_by    INTEGER,
    CHECK ((target_kind IN ('device', 'gateway') AND target_id IS NOT NULL AND target_medium IS NULL)
        OR (target_kind = 'medium' AND target_id IS NULL AND target_medium IS NOT NULL)
        OR (target_kind = 'tenant' AND target_id IS NULL AND target_medium IS NULL)),
    CHECK (source = 'user'
        OR (target_kind = 'device' AND kind IN ('daily_consumption', 'monthly_consumption')))
);
CREATE INDEX alert_rules_tenant ON alert_rules (tenant_id, target_kind, target_id);
-- At most one daily and one monthly threshold rule per device.
CREATE UNIQUE INDEX alert_rules_device_alarm ON alert_rules (tenant_id, target_id, kind) WHERE source = 'device_alarm';

CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    -- NULL once the rule is deleted (its open alerts are cleared first): the alert and its
    -- history stay, with the rule's name and kind as they were when it was raised.
    rule_id         INTEGER REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule_name       TEXT NOT NULL,
    rule_kind       TEXT NOT NULL,
    target_kind     TEXT NOT NULL CHECK (target_kind IN ('device', 'gateway', 'tenant', 'medium')),
    target_id       INTEGER,
    target_medium   TEXT CHECK (target_medium IN ('water', 'energy', 'gas', 'other')),
    severity        TEXT NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL')),
    message         TEXT NOT NULL,
    value           REAL,
    raised_at       INTEGER NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by INTEGER REFERENCES users (id),
    ack_comment     TEXT,
    cleared_at      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK ((target_kind IN ('device', 'gateway') AND target_id IS NOT NULL AND target_medium IS NULL)
        OR (target_kind = 'medium' AND target_id IS NULL AND target_medium IS NOT NULL)
        OR (target_kind = 'tenant' AND target_id IS NULL AND target_medium IS NULL)),
    CHECK (cleared_at IS NOT NULL OR rule_id IS NOT NULL)
);
-- One open alert per rule and target: re-evaluation finds it instead of duplicating it.
CREATE UNIQUE INDEX alerts_open_key ON alerts (rule_id, target_kind, COALESCE(target_id, 0), COALESCE(target_medium, ''))
    WHERE cleared_at IS NULL;
-- Lists (newest first by id), the top bar's count of active alerts, a device's or gateway's
-- alerts, and the foreign key from alert_rules.
CREATE INDEX alerts_tenant ON alerts (tenant_id, id);
CREATE INDEX alerts_tenant_open ON alerts (tenant_id) WHERE cleared_at IS NULL;
CREATE INDEX alerts_target ON alerts (tenant_id, target_kind, target_id);
CREATE INDEX alerts_rule ON alerts (rule_id);

-- Every transition of an alert, oldest first. A raise or a clear decided by evaluation waits with
-- dispatched_at NULL until the notifier has fanned it out to the outbox (in the same transaction
-- as its outbox rows, so a crash loses no notification); the other events are written with
-- dispatched_at set, as there is nothing to send for them.
CREATE TABLE alert_events (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    alert_id      INTEGER NOT NULL REFERENCES alerts (id),
    event         TEXT NOT NULL CHECK (event IN ('raised', 'acknowledged', 'cleared', 'reminded', 'updated')),
    at            INTEGER NOT NULL,
    user_id       INTEGER REFERENCES users (id),
    comment       TEXT,
    severity      TEXT NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL')),
    value         REAL,
    dispatched_at INTEGER
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE INDEX alert_events_undispatched ON alert_events (id) WHERE dispatched_at IS NULL;

-- A tenant's ways out: email (its config may add addresses beyond the users') and webhooks
-- (Telegram and WhatsApp are webhook presets in the config).
CREATE TABLE notification_channels (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    kind            TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
    name            TEXT NOT NULL,
    -- A JSON object: a webhook's URL, preset and body template; an email channel's addresses.
    config          TEXT NOT NULL,
    -- The webhook's HMAC-SHA256 key, as given (signing needs it back); NULL for email.
    secret          TEXT,
    -- Which severities reach the channel: bit 1 INFO, 2 WARNING, 4 CRITICAL.
    severities      INTEGER NOT NULL CHECK (severities BETWEEN 0 AND 7),
    enabled         BOOLEAN NOT NULL,
    last_error      TEXT,
    last_error_at   INTEGER,
    last_success_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    created_by      INTEGER,
    CHECK ((kind = 'webhook') = (secret IS NOT NULL))
);
CREATE UNIQUE INDEX notification_channels_name ON notification_channels (tenant_id, name);

-- Deliveries to make: one row per message and recipient (a channel, or a user for email).
-- The idempotency key is stable across retries and refuses a second row for the same message.
CREATE TABLE notification_outbox (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    -- NULL for a channel's test message.
    alert_id        INTEGER REFERENCES alerts (id),
    channel_id      INTEGER REFERENCES notification_channels (id),
    user_id         INTEGER REFERENCES users (id),
    event           TEXT NOT NULL CHECK (event IN ('raised', 'cleared', 'reminder', 'test')),
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
-- The sender's query: undelivered rows by next attempt.
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notification_outbox_alert ON notification_outbox (alert_id);
CREATE INDEX notification_outbox_channel ON notification_outbox (channel_id);

-- A user's alert preferences in a tenant. No row means the defaults of SPEC §5 (admins and
-- editors: WARNING and CRITICAL by email; everyone: every severity in the UI; no quiet hours,
-- no reminders). Severities as in notification_channels; quiet hours in minutes after midnight,
-- tenant time (start > end crosses midnight); reminders every N hours for a critical alert left
-- active and unacknowledged.
CREATE TABLE user_alert_prefs (
    tenant_id         INTEGER NOT NULL REFERENCES tenants (id),
    user_id           INTEGER NOT NULL REFERENCES users (id),
    email_severities  INTEGER NOT NULL CHECK (email_severities BETWEEN 0 AND 7),
    in_app_severities INTEGER NOT NULL CHECK (in_app_severities BETWEEN 0 AND 7),
    quiet_start_min   INTEGER CHECK (quiet_start_min BETWEEN 0 AND 1439),
    quiet_end_min     INTEGER CHECK (quiet_end_min BETWEEN 0 AND 1439),
    reminder_hours    INTEGER CHECK (reminder_hours BETWEEN 1 AND 168),
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    CHECK ((quiet_start_min IS NULL) = (quiet_end_min IS NULL)),
    CHECK (quiet_start_min IS NULL OR quiet_start_min <> quiet_end_min)
);
CREATE INDEX user_alert_prefs_user ON user_alert_prefs (user_id);
