//! Relatórios in a real browser: the form shows only the fields of the chosen scope and period,
//! the report of stored readings draws its chart without a console error, and the save form is
//! there for an editor.

use super::DESKTOP;
use super::kit::Browser;
use crate::support::TestApp;
use chrono::{Duration, TimeZone as _, Utc};
use serde_json::json;
use tds_domain::Role;
use tds_store::readings::NewReading;
use tds_testkit::{TestDb, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_page_switches_its_fields_and_draws_the_chart() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let t = app.tenant("Condomínio Sol").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:31:01", "GW-31").await;
    let d = fixtures::meter(&app.store, t.id, &g, "D01").await;
    let first = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
    let rows: Vec<NewReading> = (0..=72)
        .map(|h| NewReading {
            device_id: d.id,
            time: first + Duration::hours(h),
            value: h as f64,
            unit: "kWh".into(),
        })
        .collect();
    app.store.readings().insert(t.id, &rows).await.unwrap();
    while tds_jobs::rollups::drain(&app.store).await.unwrap() > 0 {}

    let Some(b) = Browser::open(&app, DESKTOP).await else { return };
    b.login("edu@example.com").await;
    b.goto("/reports").await;
    b.find("#report-form").await;
    let hidden = |id: &str| {
        format!(
            "return document.getElementById('{id}').closest('[class*=col-]').classList.contains('d-none')"
        )
    };
    assert_eq!(b.js(&hidden("gateway")).await, json!(true), "the whole tenant needs no gateway");
    b.select("scope", "devices").await;
    assert_eq!(b.js(&hidden("devices")).await, json!(false));
    b.select("period", "fixed").await;
    assert_eq!(b.js(&hidden("from")).await, json!(false));
    assert_eq!(b.js(&hidden("days")).await, json!(true));

    b.goto("/reports?scope=devices&devices=aa%3Abb%3Acc%3A00%3A31%3A01%7CD01&period=fixed&from=2026-11-01&to=2026-11-03&bucket=day&show=1")
        .await;
    b.until(
        "the chart drawn",
        "return document.querySelector('canvas.report-chart')?.dataset.ready === 'true'",
    )
    .await;
    assert_eq!(b.js("return document.querySelectorAll('#report tbody tr').length > 0").await, json!(true));
    assert_eq!(b.js("return !!document.getElementById('save-form')").await, json!(true));
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    b.close().await;
}
