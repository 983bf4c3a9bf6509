//! Consumption over the rollups (SPEC §6): the devices of a scope (one or several devices of a
//! gateway, a gateway, a medium, the whole tenant), summed per bucket of the tenant's zone, with
//! each bucket's readings received and expected.
//!
//! Owns: resolving a scope to its counting devices (gauges are never summed), reading the hour or
//! day rollups of the range, and adding them up into the buckets of [`crate::period::Axis`].
//! Devices are their own series for a device scope (a comparison of several devices); wider
//! scopes are one series per medium and unit (units are never added together), summed by the
//! database. Readings expected come from each gateway's reporting interval and each hour's or
//! day's real length (23 or 25 hours on a daylight-saving change), also for hours and days that
//! hold no reading at all, so that a silent device makes its buckets incomplete rather than
//! vanish. Must not: format anything.

use crate::ReportError;
use crate::period::{Axis, DayRange, ReportBucket};
use std::collections::{BTreeMap, HashMap};
use tds_domain::buckets::{completeness, expected_readings};
use tds_domain::{DeviceCode, Mac, MeasurementKind, Medium, TenantId, TimeZone};
use tds_store::Store;
use tds_store::devices::Device;

/// Which devices a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One device or several of one gateway, each its own series (a device comparison).
    Devices { gateway: Mac, codes: Vec<DeviceCode> },
    /// Every counting device of a gateway (archived ones too: their readings stay reportable).
    Gateway(Mac),
    /// Every counting device of the tenant of one medium.
    Medium(Medium),
    /// Every counting device of the tenant.
    Tenant,
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct ConsumptionQuery {
    pub tenant: TenantId,
    pub scope: Scope,
    pub range: DayRange,
    pub bucket: ReportBucket,
}

/// Consumption, readings received and readings expected of one bucket (or one total).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub consumption: f64,
    pub readings: u32,
    pub expected: u32,
}

impl Figures {
    pub fn add(&mut self, consumption: f64, readings: u32, expected: u32) {
        self.consumption += consumption;
        self.readings = self.readings.saturating_add(readings);
        self.expected = self.expected.saturating_add(expected);
    }

    /// Readings received over readings expected, at most 1; `None` when none was expected.
    pub fn completeness(&self) -> Option<f64> {
        completeness(self.readings, self.expected)
    }

    /// Fewer readings than the reporting intervals promise.
    pub fn incomplete(&self) -> bool {
        self.readings < self.expected
    }
}

/// One device (device scope) or one medium and unit (wider scopes) over the buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Device scope: the gateway and device.
    pub gateway: Option<Mac>,
    pub device: Option<DeviceCode>,
    pub device_name: Option<String>,
    pub medium: Medium,
    pub unit: String,
    /// Devices summed.
    pub devices: usize,
    /// One per period of the axis, in order.
    pub buckets: Vec<Figures>,
}

impl Series {
    pub fn total(&self) -> Figures {
        let mut t = Figures::default();
        for b in &self.buckets {
            t.add(b.consumption, b.readings, b.expected);
        }
        t
    }

    /// What identifies the series across two queries (a comparison): device or medium and unit.
    pub fn key(&self) -> (Option<Mac>, Option<DeviceCode>, Medium, String) {
        (self.gateway, self.device.clone(), self.medium, self.unit.clone())
    }
}

/// The answer: the axis and the series on it.
#[derive(Debug, Clone)]
pub struct Consumption {
    pub zone: TimeZone,
    pub range: DayRange,
    pub bucket: ReportBucket,
    pub billing_day: Option<u8>,
    pub axis: Axis,
    pub series: Vec<Series>,
}

/// What makes a series: the device (device scope) or nothing, then medium and unit.
type Key = (Option<Mac>, Option<DeviceCode>, Medium, String);

/// A counting device of the scope, with its gateway's MAC and reporting interval.
#[derive(Debug, Clone)]
struct ScopedDevice {
    mac: Mac,
    interval_s: i64,
    device: Device,
}

/// Consumption of `q` in the tenant's zone (and billing month, for month buckets).
pub async fn consumption(store: &Store, q: &ConsumptionQuery) -> Result<Consumption, ReportError> {
    let tenant = store.tenants().get(q.tenant).await?;
    let tz = tenant.timezone;
    let billing_day = tenant.billing_day;
    let devices = scoped_devices(store, q.tenant, &q.scope).await?;
    let axis = Axis::new(tz, q.range, q.bucket, billing_day);
    let (start, end) = q.range.instants(tz);
    let slot_of: HashMap<_, _> = axis.slots.iter().map(|(s, _, p)| (*s, *p)).collect();
    let n = axis.periods.len();
    let per_device = matches!(q.scope, Scope::Devices { .. });
    let ids: Vec<_> = devices.iter().map(|d| d.device.id).collect();

    // Series, and the reporting intervals of their devices (interval → devices).
    let mut series: BTreeMap<Key, (Series, BTreeMap<i64, u32>)> = BTreeMap::new();
    let key_of = |d: &ScopedDevice| -> Key {
        if per_device {
            (Some(d.mac), Some(d.device.code.clone()), d.device.medium, d.device.unit.to_string())
        } else {
            (None, None, d.device.medium, d.device.unit.to_string())
        }
    };
    for d in &devices {
        let (s, intervals) = series.entry(key_of(d)).or_insert_with(|| {
            (
                Series {
                    gateway: per_device.then_some(d.mac),
                    device: per_device.then(|| d.device.code.clone()),
                    device_name: per_device.then(|| d.device.name.to_string()),
                    medium: d.device.medium,
                    unit: d.device.unit.to_string(),
                    devices: 0,
                    buckets: vec![Figures::default(); n],
                },
                BTreeMap::new(),
            )
        });
        s.devices += 1;
        *intervals.entry(d.interval_s.max(1)).or_default() += 1;
    }

    let rollups = store.rollups();
    let granularity = q.bucket.granularity();
    if per_device {
        let by_id: HashMap<_, _> = devices.iter().map(|d| (d.device.id, key_of(d))).collect();
        for r in rollups.for_devices(q.tenant, &ids, granularity, start, end).await? {
            let (Some(c), Some(key), Some(&p)) =
                (r.consumption, by_id.get(&r.device_id), slot_of.get(&r.start))
            else {
                continue;
            };
            if let Some((s, _)) = series.get_mut(key) {
                s.buckets[p].add(c, r.count, 0);
            }
        }
    } else if !ids.is_empty() {
        for b in rollups.sum_for_devices(q.tenant, &ids, granularity, start, end).await? {
            let key = (None, None, b.medium, b.unit.clone());
            if let (Some((s, _)), Some(&p)) = (series.get_mut(&key), slot_of.get(&b.start)) {
                s.buckets[p].add(b.consumption, b.readings, 0);
            }
        }
    }
    for (s, intervals) in series.values_mut() {
        for &(_, len, p) in &axis.slots {
            let expected: u32 = intervals
                .iter()
                .map(|(interval, count)| expected_readings(len, *interval).saturating_mul(*count))
                .fold(0, u32::saturating_add);
            s.buckets[p].add(0.0, 0, expected);
        }
    }
    Ok(Consumption {
        zone: tz,
        range: q.range,
        bucket: q.bucket,
        billing_day,
        axis,
        series: series.into_values().map(|(s, _)| s).collect(),
    })
}

/// The counting devices of a scope (archived ones included: their readings stay reportable).
async fn scoped_devices(
    store: &Store,
    tenant: TenantId,
    scope: &Scope,
) -> Result<Vec<ScopedDevice>, ReportError> {
    let counting = |d: &Device| d.kind != MeasurementKind::Gauge;
    let (gateway, codes): (Option<Mac>, &[DeviceCode]) = match scope {
        Scope::Devices { gateway, codes } => (Some(*gateway), codes.as_slice()),
        Scope::Gateway(gateway) => (Some(*gateway), &[]),
        Scope::Medium(_) | Scope::Tenant => (None, &[]),
    };
    if let Some(gateway) = gateway {
        let g = store
            .gateways()
            .by_mac(tenant, gateway)
            .await
            .map_err(|e| ReportError::not_found(e, format!("gateway {gateway}")))?;
        let all = store.devices().list_for_gateway(tenant, g.id, true).await?;
        let mut out = Vec::new();
        if codes.is_empty() {
            out.extend(all.into_iter().filter(counting));
        } else {
            for code in codes {
                let d = all
                    .iter()
                    .find(|d| &d.code == code)
                    .ok_or_else(|| ReportError::NotFound(format!("device {code} of gateway {gateway}")))?;
                if !counting(d) {
                    return Err(ReportError::Invalid(format!(
                        "device {code} is a gauge: it has no consumption"
                    )));
                }
                if !out.iter().any(|o: &Device| o.id == d.id) {
                    out.push(d.clone());
                }
            }
        }
        return Ok(out
            .into_iter()
            .map(|device| ScopedDevice { mac: g.mac, interval_s: g.expected_interval_s, device })
            .collect());
    }
    let medium = match scope {
        Scope::Medium(m) => Some(*m),
        _ => None,
    };
    let gateways: HashMap<_, _> = store
        .gateways()
        .all(tenant)
        .await?
        .into_iter()
        .map(|g| (g.id, (g.mac, g.expected_interval_s)))
        .collect();
    let all = store.devices().list_with_archived(tenant).await?;
    Ok(all
        .into_iter()
        .filter(|d| counting(d) && medium.is_none_or(|m| d.medium == m))
        .filter_map(|device| {
            gateways.get(&device.gateway_id).map(|(mac, interval_s)| ScopedDevice {
                mac: *mac,
                interval_s: *interval_s,
                device,
            })
        })
        .collect())
}
