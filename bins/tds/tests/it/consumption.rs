//! `tds consumption`: the figures of the rollups, in the tenant's time zone, as CSV and XLSX,
//! including readings no server has rolled up yet.

use crate::support::{Tds, text};
use chrono::{TimeZone, Utc};
use tds_store::readings::NewReading;
use tds_store::{DbOptions, Store};
use tds_testkit::{TestDb, per_backend};

async fn consumption_per_day_in_the_tenants_zone_as_csv_and_xlsx(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["tenant", "create", "--name", "Acme", "--timezone", "America/Sao_Paulo"]);
    let gws = tds.file("g.csv", "aa:bb:cc:00:00:01,GW1,Bloco A\n");
    tds.ok(&["gateway", "import", "--tenant", "Acme", gws.to_str().unwrap()]);
    let devs = tds.file("d.csv", "aa:bb:cc:00:00:01,D01,Agua,MEDIDOR,water,counter,m3,1,100\n");
    tds.ok(&["device", "import", "--tenant", "Acme", devs.to_str().unwrap()]);

    // São Paulo is UTC-3: 02:00Z on the 2nd is still the 1st there.
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let device = store.devices().list(tenant.id).await.unwrap().remove(0);
    let at = |d, h| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
    let rows: Vec<NewReading> =
        [(at(1, 12), 100.0), (at(2, 2), 101.5), (at(2, 12), 104.0), (at(3, 12), 104.25)]
            .into_iter()
            .map(|(time, value)| NewReading { device_id: device.id, time, value, unit: "m³".into() })
            .collect();
    store.readings().insert(tenant.id, &rows).await.unwrap();
    store.db().close().await;

    let args = [
        "consumption",
        "--tenant",
        "Acme",
        "--gateway",
        "AA:BB:CC:00:00:01",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
    ];
    let csv = tds.ok(&args);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("gateway_mac,device_code,device_name,medium,unit,bucket_start,consumption"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "two days, the 3rd is outside --to:\n{csv}");
    let fields = |l: &str| l.split(',').map(str::to_owned).collect::<Vec<_>>();
    let (day1, day2) = (fields(lines[1]), fields(lines[2]));
    assert_eq!(day1[..6], ["aa:bb:cc:00:00:01", "D01", "Agua", "water", "m³", "2026-11-01T00:00:00-03:00"]);
    assert_eq!(day1[6], "1.5", "the 02:00Z reading closes an interval of the 1st, local time");
    assert_eq!(day2[5], "2026-11-02T00:00:00-03:00");
    assert_eq!(day2[6], "2.5");

    let out = tds.path().join("c.xlsx");
    let mut xlsx_args = args.to_vec();
    xlsx_args.extend(["--format", "xlsx", "--out", out.to_str().unwrap()]);
    tds.ok(&xlsx_args);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..2], b"PK", "an XLSX file is a zip");

    let bad = tds.run(
        &[
            "consumption",
            "--tenant",
            "Acme",
            "--gateway",
            "aa:bb:cc:00:00:01",
            "--from",
            "2026-11-05",
            "--to",
            "2026-11-01",
        ],
        "",
    );
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("before --from"), "{}", text(&bad.stderr));
}

per_backend!(consumption_per_day_in_the_tenants_zone_as_csv_and_xlsx);
