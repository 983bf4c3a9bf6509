-- A version of each tenant's alert rules (issue 20), bumped in the same transaction by every
-- write to them (`tds_store::alert_rules`), so that the alert evaluation can keep the rules in
-- memory between its rounds and read a tenant's again only when its version moved. Kept
-- parallel to ../postgres/0019_alert_rules_version.sql.
ALTER TABLE tenants ADD COLUMN alert_rules_version INTEGER NOT NULL DEFAULT 0;
