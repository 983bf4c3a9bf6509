//! Consumption figures of the pages (SPEC §4): a device's today / this month / last month with
//! today's completeness and a 14-day sparkline, and a tenant's today and this month by medium.
//! All from the rollups, in the tenant's time zone, never from raw readings.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tds_domain::buckets::{Bucket, bucket_start, bucket_starts};
use tds_domain::{DeviceId, MeasurementKind, TenantId, TimeZone};
use tds_store::rollups::MediumConsumption;
use tds_store::{Store, StoreError};

/// Days in a device's sparkline.
pub const SPARK_DAYS: i64 = 14;

#[derive(Debug, Clone, Default)]
pub struct DeviceFigures {
    /// `None` for gauges (never summed) and when nothing was received.
    pub today: Option<f64>,
    pub month: Option<f64>,
    pub last_month: Option<f64>,
    /// Today's readings over what the reporting interval promised since local midnight.
    pub completeness_today: Option<f64>,
    /// Daily consumption (or a gauge's daily average), oldest first, `null` for a day without
    /// readings: JSON for the page's sparkline.
    pub spark_json: String,
}

#[derive(Serialize)]
struct SparkPoint(i64, Option<f64>);

/// The start of the local day, month and previous month containing `now`.
fn starts(tz: TimeZone, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    let day = bucket_start(tz, Bucket::Day, now);
    let month = bucket_start(tz, Bucket::Month, now);
    let last_month = bucket_start(tz, Bucket::Month, month - Duration::seconds(1));
    (day, month, last_month)
}

pub async fn device(
    store: &Store,
    tenant: TenantId,
    device: DeviceId,
    kind: MeasurementKind,
    tz: TimeZone,
    now: DateTime<Utc>,
) -> Result<DeviceFigures, StoreError> {
    let (day, month, last_month) = starts(tz, now);
    let rollups = store.rollups();
    let months = rollups.for_device(tenant, device, Bucket::Month, last_month, now).await?;
    let spark_from = bucket_start(tz, Bucket::Day, now - Duration::days(SPARK_DAYS - 1));
    let days = rollups.for_device(tenant, device, Bucket::Day, spark_from, now).await?;
    let gauge = kind == MeasurementKind::Gauge;
    let at = |rows: &[tds_store::rollups::RollupRow], start| rows.iter().find(|r| r.start == start).cloned();
    let today = at(&days, day);
    let spark: Vec<SparkPoint> = bucket_starts(tz, Bucket::Day, spark_from, now)
        .map(|s| {
            SparkPoint(
                s.timestamp_millis(),
                at(&days, s).and_then(|r| if gauge { r.avg } else { r.consumption }),
            )
        })
        .collect();
    Ok(DeviceFigures {
        today: today.as_ref().and_then(|r| r.consumption),
        month: at(&months, month).and_then(|r| r.consumption),
        last_month: at(&months, last_month).and_then(|r| r.consumption),
        completeness_today: today.and_then(|r| {
            // The day row expects a whole day; so far only the elapsed part of it was due.
            let length =
                (bucket_start(tz, Bucket::Day, day + Duration::hours(36)) - day).num_seconds().max(1);
            let elapsed = (now - day).num_seconds().clamp(1, length);
            let due = f64::from(r.expected) * elapsed as f64 / length as f64;
            (due >= 1.0).then(|| (f64::from(r.count) / due).min(1.0))
        }),
        spark_json: serde_json::to_string(&spark).unwrap_or_else(|_| "[]".into()),
    })
}

/// The tenant's consumption today and this month, per medium and unit.
pub async fn tenant_by_medium(
    store: &Store,
    tenant: TenantId,
    tz: TimeZone,
    now: DateTime<Utc>,
) -> Result<(Vec<MediumConsumption>, Vec<MediumConsumption>), StoreError> {
    let (day, month, _) = starts(tz, now);
    let rollups = store.rollups();
    let today = rollups.consumption_by_medium(tenant, Bucket::Day, day, now).await?;
    let this_month = rollups.consumption_by_medium(tenant, Bucket::Month, month, now).await?;
    Ok((today, this_month))
}
