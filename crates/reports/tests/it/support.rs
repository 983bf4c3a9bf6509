//! The stored history every report test reads: tenant *Medições* in `America/Sao_Paulo`, gateway
//! `aa:bb:cc:00:14:01` (reporting every 300 s, the default) with two energy counters, D01 (+0.25
//! kWh per reading) and D02 (+0.5 kWh), read every 5 minutes on the UTC clock from local
//! midnight of 2018-10-28 up to local midnight of 2018-12-01, except D01 on 2018-11-20 from
//! 10:00 to 14:00 local (48 readings missing: an incomplete day).
//!
//! Why 2018: Brazil abolished daylight saving in 2019, and tzdata keeps the old rule, so
//! 2018-11-04 in São Paulo began at 01:00 (-02) and lasted 23 hours: November 2018 is a month
//! with a DST change (719 hours). 2018-10-29..11-04 is an ISO week that crosses a month end.
//!
//! Hand-computed figures (every reading after the first closes a 5-minute interval):
//! - D01 per whole day: 288 readings, 72.0 kWh; 2018-11-04: 276 readings, 69.0; 2018-10-28 (the
//!   first reading opens the series): 71.75; 2018-11-20: 240 readings of 288, still 72.0 (the
//!   reading after the gap closes a 4-hour interval).
//! - D01 November 2018: 2157.0 (8628 expected, 8580 received); October 28..31: 287.75.
//! - D02 is D01 times two; the gateway is D01 times three.

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use tds_domain::{Mac, Name, TenantId, TimeZone};
use tds_store::Store;
use tds_store::devices::Device;
use tds_store::readings::NewReading;
use tds_store::tenants::NewTenant;
use tds_testkit::fixtures;

pub const MAC: &str = "aa:bb:cc:00:14:01";

pub struct History {
    pub tenant: TenantId,
    pub mac: Mac,
    pub d01: Device,
    pub d02: Device,
}

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn sao_paulo() -> TimeZone {
    TimeZone::parse("America/Sao_Paulo").unwrap()
}

/// Equal within a relative 1e-9 (sums of f64).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[track_caller]
pub fn assert_close(a: f64, b: f64, what: &str) {
    assert!(close(a, b), "{what}: {a} != {b}");
}

pub async fn history(store: &Store) -> History {
    let new =
        NewTenant { timezone: sao_paulo(), ..NewTenant::named(Name::parse("name", "Medições").unwrap()) };
    let tenant = store.tenants().staff_create(&new).await.unwrap();
    let gateway = fixtures::gateway(store, tenant.id, MAC, "GW-14").await;
    let d01 = fixtures::meter(store, tenant.id, &gateway, "D01").await;
    let d02 = fixtures::meter(store, tenant.id, &gateway, "D02").await;
    let start = utc("2018-10-28T03:00:00Z");
    let end = utc("2018-12-01T02:00:00Z");
    let gap = (utc("2018-11-20T12:00:00Z"), utc("2018-11-20T16:00:00Z"));
    let mut rows = Vec::new();
    let mut t = start;
    let mut i = 0_u32;
    while t < end {
        if !(gap.0 <= t && t < gap.1) {
            rows.push(NewReading {
                device_id: d01.id,
                time: t,
                value: 1000.0 + f64::from(i) * 0.25,
                unit: "kWh".into(),
            });
        }
        rows.push(NewReading {
            device_id: d02.id,
            time: t,
            value: 500.0 + f64::from(i) * 0.5,
            unit: "kWh".into(),
        });
        t += Duration::minutes(5);
        i += 1;
    }
    for chunk in rows.chunks(5000) {
        store.readings().insert(tenant.id, chunk).await.unwrap();
    }
    while store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
    History { tenant: tenant.id, mac: Mac::parse(MAC).unwrap(), d01, d02 }
}

/// A fixed "now" inside November 2018: 2018-11-10 12:00 in São Paulo.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2018, 11, 10, 14, 0, 0).unwrap()
}
