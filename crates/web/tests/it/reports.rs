//! Relatórios over stored readings, on both databases: the report in the page, the same report
//! downloaded as PDF (read back by `pdftotext`, poppler's) and CSV, raw readings streamed, a
//! definition saved with a schedule (bad fields named, nothing saved), "run now", a run's file
//! downloaded, and every export in the audit log. Roles and other tenants: `attack.rs`.

use crate::support::{Client, TestApp};
use chrono::{Duration, TimeZone as _, Utc};
use tds_domain::{Role, TimeZone};
use tds_store::readings::NewReading;
use tds_store::report_defs::{RunFile, RunStatus};
use tds_testkit::{TestDb, fixtures, per_backend};

/// Tenant *Condomínio Sol* (São Paulo) with energy counter D01 read every hour of November 2026
/// (local, from 31 October 23:00 to 1 December 00:00), +1 kWh each: 24 kWh a day, 720 the month.
async fn seeded(app: &TestApp) -> tds_store::tenants::Tenant {
    // São Paulo is every tenant's default zone.
    let t = app.tenant("Condomínio Sol").await;
    assert_eq!(t.timezone, TimeZone::parse("America/Sao_Paulo").unwrap());
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:30:01", "GW-30").await;
    let d = fixtures::meter(&app.store, t.id, &g, "D01").await;
    let first = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
    let rows: Vec<NewReading> = (0..=721)
        .map(|h| NewReading {
            device_id: d.id,
            time: first + Duration::hours(h),
            value: 500.0 + h as f64,
            unit: "kWh".into(),
        })
        .collect();
    app.store.readings().insert(t.id, &rows).await.unwrap();
    while tds_jobs::rollups::drain(&app.store).await.unwrap() > 0 {}
    app.store.tenants().get(t.id).await.unwrap()
}

const NOVEMBER: &str = "scope=gateway&gateway=aa%3Abb%3Acc%3A00%3A30%3A01&period=fixed&from=2026-11-01&to=2026-11-30&bucket=week&show=1";

async fn bytes(c: &Client, path: &str) -> (u16, String, Vec<u8>) {
    let resp = c.http.get(format!("{}{path}", c.base)).send().await.unwrap();
    let status = resp.status().as_u16();
    let disposition =
        resp.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, disposition, resp.bytes().await.unwrap().to_vec())
}

fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

async fn a_viewer_sees_the_report_in_the_page_and_downloads_it(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = seeded(&app).await;
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let c = app.login("vera@example.com").await;

    let first = c.get("/reports").await;
    assert_eq!(first.status, 200);
    assert!(
        first.text_of("report-form").is_some() && first.text_of("report").is_none(),
        "the form, no report yet"
    );
    assert!(first.text_of("no-definitions").is_some());

    let page = c.get(&format!("/reports?{NOVEMBER}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let period = page.text_of("report-period").unwrap();
    assert!(
        period.contains("01/11/2026")
            && period.contains("30/11/2026")
            && period.contains("America/Sao_Paulo"),
        "{period}"
    );
    let report = page.text_of("report").unwrap();
    // ISO weeks cut at the range: Sunday 1 November alone, four whole weeks, Monday 30 alone.
    assert!(report.contains("720,00"), "the month's total, in Brazilian format: {report}");
    assert!(
        report.contains("24,00") && report.contains("168,00"),
        "a one-day week and a whole week: {report}"
    );
    assert!(page.has("class=\"report-chart\""), "a chart");
    assert!(page.text_of("save-form").is_none(), "a viewer cannot save");

    let (status, disposition, pdf) =
        bytes(&c, &format!("/reports/export?{NOVEMBER}&format=pdf&lang=pt-BR")).await;
    assert_eq!(status, 200);
    assert!(disposition.contains("consumo-2026-11-01-2026-11-30.pdf"), "{disposition}");
    let text = pdftotext(&pdf);
    assert!(
        text.contains("Condomínio Sol") && text.contains("720,00") && text.contains("America/Sao_Paulo"),
        "{text}"
    );

    let (status, _, csv) = bytes(&c, &format!("/reports/export?{NOVEMBER}&format=csv")).await;
    assert_eq!(status, 200);
    let mut r = csv::Reader::from_reader(csv.as_slice());
    let at = r.headers().unwrap().iter().position(|h| h == "consumption").unwrap();
    let total: f64 = r.records().map(|x| x.unwrap()[at].parse::<f64>().unwrap()).sum();
    assert!((total - 720.0).abs() < 1e-9, "{total}");

    let (status, disposition, raw) = bytes(
        &c,
        "/reports/readings?gateway=aa:bb:cc:00:30:01&device=D01&from=2026-11-02&to=2026-11-02&format=csv",
    )
    .await;
    assert_eq!(status, 200);
    assert!(disposition.contains("readings-2026-11-02-2026-11-02.csv"));
    let mut r = csv::Reader::from_reader(raw.as_slice());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["gateway_mac", "device_code", "time_utc", "time_local", "value", "unit"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 24, "one reading an hour of the local day");
    assert_eq!(&rows[0][3], "2026-11-02T00:00:00-03:00", "the local time with its offset");
    let (status, _, _) = bytes(&c, "/reports/readings?from=2026-11-02&to=2026-11-01&format=csv").await;
    assert_eq!(status, 400, "a range backwards is refused");
    let (status, _, _) = bytes(&c, &format!("/reports/export?{NOVEMBER}&format=docx")).await;
    assert_eq!(status, 400);

    let bad =
        c.get("/reports?scope=devices&period=fixed&from=2026-11-30&to=2026-11-01&bucket=day&show=1").await;
    assert_eq!(bad.status, 422);
    assert!(bad.text_of("devices-error").is_some() && bad.text_of("report").is_none());

    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "report.export").count(), 2, "{actions:?}");
    assert!(actions.contains(&"readings.export"), "{actions:?}");
}

async fn an_editor_saves_a_scheduled_definition_runs_it_and_downloads_the_run(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = seeded(&app).await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let c = app.login("edu@example.com").await;
    let page = c.get(&format!("/reports?{NOVEMBER}")).await;
    assert!(page.text_of("save-form").is_some());
    let report: Vec<(String, String)> =
        url::form_urlencoded::parse(NOVEMBER.as_bytes()).into_owned().collect();
    let with = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut f = report.clone();
        f.extend(
            [
                ("format", "xlsx"),
                ("lang", "en"),
                ("schedule", "monthly"),
                ("schedule_hour", "6"),
                ("name", "Mensal"),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        f
    };
    let post = |f: Vec<(String, String)>| {
        let c = &c;
        async move {
            let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            c.post("/reports/definitions", &refs).await
        }
    };
    let refused = post(with(&[("recipients", "síndico@"), ("schedule_day", "1")])).await;
    assert_eq!(refused.status, 422);
    assert!(refused.text_of("recipients-error").is_some(), "{}", refused.body);
    let refused = post(with(&[("recipients", "ana@example.com"), ("schedule_day", "31")])).await;
    assert!(refused.text_of("schedule_day-error").is_some());
    assert!(app.store.report_definitions().list(t.id).await.unwrap().is_empty(), "nothing saved");

    let fields = with(&[("recipients", "ana@example.com\nbob@example.com"), ("schedule_day", "1")]);
    let saved = post(fields.clone()).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let defs = app.store.report_definitions().list(t.id).await.unwrap();
    assert_eq!(defs.len(), 1);
    let d = &defs[0];
    assert_eq!((d.format.as_str(), d.lang.as_str(), d.recipients.len()), ("xlsx", "en", 2));
    let next = d.next_run_at.expect("scheduled");
    let local = next.with_timezone(&chrono_tz::America::Sao_Paulo);
    assert_eq!(local.format("%d %H:%M").to_string(), "01 06:00", "the 1st, 06:00 local");
    assert!(next > Utc::now());
    assert!(saved.text_of("definition-name").unwrap().contains("Mensal"));
    assert!(
        saved.text_of(&format!("definition-{}", d.id)).unwrap().contains("dia 1"),
        "the schedule in words"
    );

    // The same name again is a conflict on the name, not a second definition.
    assert!(post(fields).await.text_of("name-error").is_some());

    let queued = c.post(&format!("/reports/definitions/{}/run", d.id), &[]).await;
    assert_eq!(queued.path(), "/reports");
    let runs = app.store.report_runs().list(t.id, Some(d.id), 10).await.unwrap();
    assert_eq!((runs.len(), runs[0].status), (1, RunStatus::Pending));
    assert!(queued.has(&format!("id=\"run-{}\"", runs[0].id)));

    let file = RunFile {
        period_from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        period_to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        file_name: "consumption-2026-11-01-2026-11-30.xlsx".into(),
        content_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".into(),
        bytes: b"PK-test".to_vec(),
    };
    app.store.report_runs().set_file(t.id, runs[0].id, &file).await.unwrap();
    let (status, disposition, body) = bytes(&c, &format!("/reports/runs/{}/file", runs[0].id)).await;
    assert_eq!((status, body.as_slice()), (200, &b"PK-test"[..]));
    assert!(disposition.contains("consumption-2026-11-01-2026-11-30.xlsx"));

    let deleted = c.post(&format!("/reports/definitions/{}/delete", d.id), &[]).await;
    assert_eq!(deleted.path(), "/reports");
    assert!(app.store.report_definitions().list(t.id).await.unwrap().is_empty());
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "report.definition_created",
        "report.run_requested",
        "report.downloaded",
        "report.definition_deleted",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

/// An admin sets the billing day on Conta; the page's months then run from it (a bad day is
/// refused on its field and changes nothing).
async fn months_follow_the_billing_day_set_on_the_account_page(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = seeded(&app).await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let c = app.login("adm@example.com").await;
    c.get("/account").await;
    let fields = |day: &'static str| {
        [("name", "Condomínio Sol"), ("cnpj", ""), ("timezone", "America/Sao_Paulo"), ("billing_day", day)]
    };
    let bad = c.post("/account", &fields("29")).await;
    assert_eq!(bad.status, 422);
    assert!(bad.text_of("billing_day-error").is_some());
    assert_eq!(app.store.tenants().get(t.id).await.unwrap().billing_day, None);
    let ok = c.post("/account", &fields("15")).await;
    assert_eq!(ok.path(), "/account");
    assert_eq!(app.store.tenants().get(t.id).await.unwrap().billing_day, Some(15));
    // Billing months from the 15th: 15 Oct..14 Nov holds 1..14 November (14 days × 24 kWh), then
    // 15..30 November (16 days).
    let page =
        c.get("/reports?scope=tenant&period=fixed&from=2026-11-01&to=2026-11-30&bucket=month&show=1").await;
    let report = page.text_of("report").unwrap();
    assert!(report.contains("336,00") && report.contains("384,00"), "{report}");
}

per_backend!(
    months_follow_the_billing_day_set_on_the_account_page,
    a_viewer_sees_the_report_in_the_page_and_downloads_it,
    an_editor_saves_a_scheduled_definition_runs_it_and_downloads_the_run
);
