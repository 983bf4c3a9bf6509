//! TDS background work inside the server (SPEC §8): no separate worker processes.
//!
//! - [`rollups`]: keeps hourly, daily and monthly rollups current as readings are committed;
//! - [`retention`]: removes raw readings older than each tenant's retention, keeping rollups.
//!
//! Both are safe to run on every instance sharing one PostgreSQL: a rollup refresh computes from
//! committed rows and clears only the marks it saw (see `tds_store::rollups`), and a retention
//! delete is idempotent, so neither needs a lease. Must not: serve requests or read the
//! environment; `bins/tds` starts these loops and stops them.

pub mod retention;
pub mod rollups;
