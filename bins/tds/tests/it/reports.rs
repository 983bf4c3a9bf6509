//! `tds report` and `tds readings export` from the command line: the files they write (read back
//! by poppler's pdftotext, calamine-free checks of the XLSX zip, the CSV reader), their errors,
//! and their audit entries.

use crate::support::{Tds, text};
use chrono::{Duration, TimeZone, Utc};
use tds_store::audit::AuditFilter;
use tds_store::readings::NewReading;
use tds_store::{DbOptions, Page, Store};
use tds_testkit::{TestDb, per_backend};

async fn reports_and_raw_exports_from_the_command_line_are_written_and_audited(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["tenant", "create", "--name", "Acme", "--timezone", "America/Sao_Paulo"]);
    let gws = tds.file("g.csv", "aa:bb:cc:00:00:01,GW1,Bloco A\n");
    tds.ok(&["gateway", "import", "--tenant", "Acme", gws.to_str().unwrap()]);
    let devs = tds.file(
        "d.csv",
        "aa:bb:cc:00:00:01,D01,Agua,MEDIDOR,water,counter,m3,1,100\naa:bb:cc:00:00:01,D02,Luz,MEDIDOR,energy,counter,kWh,2,100\n",
    );
    tds.ok(&["device", "import", "--tenant", "Acme", devs.to_str().unwrap()]);
    let store = Store::open(&db.url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let devices = store.devices().list(tenant.id).await.unwrap();
    // Every 5 minutes through November 2026 local time (-03): +0.5 m³ and +1 kWh per reading.
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
    let mut rows = Vec::new();
    for i in 0..(30 * 288) {
        let time = start + Duration::minutes(5 * i);
        for d in &devices {
            let (value, unit) =
                if d.code.as_str() == "D01" { (i as f64 * 0.5, "m³") } else { (i as f64, "kWh") };
            rows.push(NewReading { device_id: d.id, time, value, unit: unit.into() });
        }
    }
    for chunk in rows.chunks(5000) {
        store.readings().insert(tenant.id, chunk).await.unwrap();
    }

    let pdf = tds.path().join("r.pdf");
    let base = ["report", "--tenant", "Acme", "--from", "2026-11-01", "--to", "2026-11-30"];
    let mut args = base.to_vec();
    args.extend([
        "--scope", "medium", "--medium", "energy", "--bucket", "week", "--format", "pdf", "--lang", "en",
    ]);
    args.extend(["--compare", "previous", "--out", pdf.to_str().unwrap()]);
    tds.ok(&args);
    let out = std::process::Command::new("pdftotext").arg(&pdf).arg("-").output().unwrap();
    let got = text(&out.stdout);
    // 30 days of 288 readings, the first opening the series: 8639 kWh.
    for want in ["Acme", "2026-11-01 – 2026-11-30", "America/Sao_Paulo", "8,639.00", "medium: Energy"] {
        assert!(got.contains(want), "{want:?} missing:\n{got}");
    }

    let xlsx = tds.path().join("r.xlsx");
    let mut args = base.to_vec();
    args.extend([
        "--scope",
        "device",
        "--gateway",
        "aa:bb:cc:00:00:01",
        "--device",
        "D01",
        "--device",
        "D02",
    ]);
    args.extend(["--bucket", "month", "--format", "xlsx", "--out", xlsx.to_str().unwrap()]);
    tds.ok(&args);
    assert_eq!(&std::fs::read(&xlsx).unwrap()[..2], b"PK");

    let csv_path = tds.path().join("r.csv");
    let mut args = base.to_vec();
    args.extend([
        "--scope",
        "gateway",
        "--gateway",
        "aa:bb:cc:00:00:01",
        "--format",
        "csv",
        "--delimiter",
        "semicolon",
    ]);
    args.extend(["--out", csv_path.to_str().unwrap()]);
    tds.ok(&args);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 30, "a header and 30 days of two series:\n{csv}");
    assert!(csv.lines().nth(1).unwrap().contains(";2026-11-01;2026-11-01;143,5;"), "{csv}");

    let mut bad = base.to_vec();
    bad.extend(["--scope", "gateway", "--format", "pdf", "--out", "x.pdf"]);
    let refused = tds.run(&bad, "");
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("needs --gateway"), "{}", text(&refused.stderr));

    // Raw readings of one device and one local day, to standard output and as a workbook.
    let export =
        ["readings", "export", "--tenant", "Acme", "--gateway", "aa:bb:cc:00:00:01", "--device", "D02"];
    let mut args = export.to_vec();
    args.extend(["--from", "2026-11-02", "--to", "2026-11-02"]);
    let csv = tds.ok(&args);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 288);
    assert_eq!(lines[1], "aa:bb:cc:00:00:01,D02,2026-11-02T03:00:00Z,2026-11-02T00:00:00-03:00,288,kWh");
    let xlsx = tds.path().join("readings.xlsx");
    let mut args = export.to_vec();
    args.extend(["--from", "2026-11-02T03:00:00Z", "--to", "2026-11-02T04:00:00Z", "--format", "xlsx"]);
    args.extend(["--out", xlsx.to_str().unwrap()]);
    tds.ok(&args);
    assert_eq!(&std::fs::read(&xlsx).unwrap()[..2], b"PK");

    let audit = store.audit().list(tenant.id, &AuditFilter::default(), Page::new(1, 50)).await.unwrap();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "report.export").count(), 3, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "readings.export").count(), 2, "{actions:?}");
    let entry = audit.items.iter().find(|e| e.action == "readings.export").unwrap();
    assert_eq!(entry.actor, "cli");
    assert!(entry.detail.contains("\"rows\""), "{}", entry.detail);
}

per_backend!(reports_and_raw_exports_from_the_command_line_are_written_and_audited);
