-- Threshold defaults for new devices (issue 13, SPEC §4 Configurações): per tenant and medium,
-- the daily and monthly alarm a device gets when it is created without one (0 on the device
-- means none).
CREATE TABLE alarm_defaults (
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    medium        TEXT NOT NULL CHECK (medium IN ('water', 'energy', 'gas', 'other')),
    alarm_daily   DOUBLE PRECISION,
    alarm_monthly DOUBLE PRECISION,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, medium)
);
