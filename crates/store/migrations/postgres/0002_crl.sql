-- The platform's certificate revocation list: one row, re-issued on every revocation and before
-- its next-update time. The number grows by one at each issue (RFC 5280 cRLNumber).
CREATE TABLE crl (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    number      BIGINT NOT NULL,
    this_update TIMESTAMPTZ NOT NULL,
    next_update TIMESTAMPTZ NOT NULL,
    pem         TEXT NOT NULL,
    der         BYTEA NOT NULL
);

-- Notes given with a revocation (the reason code is in certificates.revocation_reason).
ALTER TABLE certificates ADD COLUMN revocation_notes TEXT;
