-- Reports (issue 14): a tenant may bill from a day of the month (1..28, SPEC §6); its "month"
-- buckets then run from that day to the day before it in the next month. NULL: calendar months.
ALTER TABLE tenants ADD COLUMN billing_day BIGINT CHECK (billing_day BETWEEN 1 AND 28);
