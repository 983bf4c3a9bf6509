-- The tenant-wide sums of day and month rows read from an index alone (issue 20). Kept
-- parallel to ../sqlite/0015_rollup_tenant_sums.sql.

-- The home page's "today" and "this month" by medium, and the consumption alert rules' totals
-- per device, add up one day or month row per device of the tenant. Through `rollups_tenant`
-- each of those rows is a read of the table, scattered among the hour rows: 10,000 devices
-- cost 41 ms a query. This index holds the columns those sums need, for day and month rows
-- only (a thirtieth of the rows: the same for hour rows would be several GB at 10,000
-- devices), so PostgreSQL answers them with an index-only scan. The statements write the
-- granularity as a constant so that the planner can see the index applies.
CREATE INDEX IF NOT EXISTS rollups_tenant_sums ON rollups (tenant_id, granularity, bucket_start)
    INCLUDE (device_id, consumption) WHERE granularity IN ('day', 'month');
