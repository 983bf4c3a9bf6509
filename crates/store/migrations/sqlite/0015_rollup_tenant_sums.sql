-- The tenant-wide sums of day and month rows read from an index alone (issue 20). Kept
-- parallel to ../postgres/0015_rollup_tenant_sums.sql.

-- The home page's "today" and "this month" by medium, and the consumption alert rules' totals
-- per device, add up one day or month row per device of the tenant. This index holds the
-- columns those sums need, for day and month rows only, so they are answered from the index
-- alone. SQLite has no INCLUDE, and uses a partial index only for a statement that names its
-- condition as written: one index per granularity, and the statements write the granularity
-- as a constant.
CREATE INDEX IF NOT EXISTS rollups_tenant_sums_day ON rollups (tenant_id, bucket_start, device_id, consumption)
    WHERE granularity = 'day';
CREATE INDEX IF NOT EXISTS rollups_tenant_sums_month ON rollups (tenant_id, bucket_start, device_id, consumption)
    WHERE granularity = 'month';
