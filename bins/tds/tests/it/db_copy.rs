//! `tds db copy` from the embedded SQLite to PostgreSQL, of an installation with every kind of
//! row and many readings (`TDS_TEST_COPY_READINGS`, default 1,000,000): counts equal, checked by
//! independent readers (Python's sqlite3 on the source, psql on the target), and what a gateway's
//! pages show and its consumption equal on the copy.

use crate::support::{Tds, text};
use chrono::{Duration, TimeZone, Utc};
use std::fmt::Write as _;
use std::process::Command;
use tds_domain::{Mac, Role};
use tds_store::readings::NewReading;
use tds_store::{DbOptions, Store};
use tds_testkit::TestDb;

const MAC: &str = "aa:bb:cc:00:03:01";
/// A gateway's default maximum of active devices.
const DEVICES: usize = 8;

fn readings_wanted() -> usize {
    std::env::var("TDS_TEST_COPY_READINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// Rows per table as Python's sqlite3 module counts them.
fn sqlite_counts(path: &std::path::Path) -> Vec<(String, u64)> {
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nfor t in sys.argv[2:]:\n print(t, c.execute(f'select count(*) from {t}').fetchone()[0])";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .args(tds_store::transfer::TABLES)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    parse_counts(&text(&out.stdout))
}

/// Rows per table as psql counts them.
fn pg_counts(url: &str) -> Vec<(String, u64)> {
    let sql: Vec<String> =
        tds_store::transfer::TABLES.iter().map(|t| format!("SELECT '{t}', count(*) FROM {t}")).collect();
    let out =
        Command::new("psql").args([url, "-At", "-F", " ", "-c", &sql.join(" UNION ALL ")]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    parse_counts(&text(&out.stdout))
}

fn parse_counts(s: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = s
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(t, n)| (t.to_owned(), n.trim().parse().unwrap())))
        .collect();
    v.sort();
    v
}

/// Rows for tables the test's installation does not fill through its commands (renewal log,
/// a renewal, its message and a campaign pause,
/// an alert rule, its alert and history, a channel, an outbox row, preferences, tokens),
/// straight into the SQLite file.
fn raw_rows(path: &std::path::Path) {
    let now = Utc::now().timestamp_micros();
    let script = format!(
        "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
c.execute(\"INSERT INTO renewal_log (tenant_id, gateway_id, certificate_id, step, detail, at) VALUES (1, 1, 1, 'offered', 'test', {now})\")\n\
c.execute(\"INSERT INTO renewals (tenant_id, gateway_id, old_certificate_id, mode, state, manual, detail, started_at, updated_at) VALUES (1, 1, 1, 'csr', 'offered', 1, 'test', {now}, {now})\")\n\
c.execute(\"INSERT INTO gateway_messages (tenant_id, gateway_id, mac, topic, payload, renewal_id, created_at) VALUES (1, 1, 'aa:bb:cc:dd:ee:01', 'tds_new/gateway/aa:bb:cc:dd:ee:01/cert_update', '{{\\\"csr_required\\\":true}}', 1, {now})\")\n\
c.execute(\"INSERT INTO renewal_pauses (tenant_id, paused_at) VALUES (1, {now})\")\n\
c.execute(\"INSERT INTO alert_rules (tenant_id, name, kind, severity, target_kind, target_id, params, hysteresis, enabled, source, created_at, updated_at) VALUES (1, 'Leak', 'night_flow', 'WARNING', 'device', 1, '{{\\\"level\\\": 0.5, \\\"nights\\\": 3}}', 0.5, 1, 'user', {now}, {now})\")\n\
c.execute(\"INSERT INTO alerts (tenant_id, rule_id, rule_name, rule_kind, target_kind, target_id, severity, message, value, raised_at, created_at, updated_at) VALUES (1, 1, 'Leak', 'night_flow', 'device', 1, 'WARNING', 'night flow', 12.5, {now}, {now}, {now})\")\n\
c.execute(\"INSERT INTO alert_events (tenant_id, alert_id, event, at, severity, value) VALUES (1, 1, 'raised', {now}, 'WARNING', 12.5)\")\n\
c.execute(\"INSERT INTO notification_channels (tenant_id, kind, name, config, secret, severities, enabled, created_at, updated_at) VALUES (1, 'webhook', 'ops', '{{}}', 's3cret', 6, 1, {now}, {now})\")\n\
c.execute(\"INSERT INTO notification_outbox (tenant_id, alert_id, channel_id, event, idempotency_key, payload, attempts, next_attempt_at, created_at) VALUES (1, 1, 1, 'raised', 'key-1', '{{}}', 0, {now}, {now})\")\n\
c.execute(\"INSERT INTO user_alert_prefs (tenant_id, user_id, email_severities, in_app_severities, updated_at) VALUES (1, (SELECT min(id) FROM users), 6, 7, {now})\")\n\
c.execute(\"INSERT INTO alarm_defaults (tenant_id, medium, alarm_daily, alarm_monthly, updated_at) VALUES (1, 'water', 2.5, NULL, {now})\")\n\
c.execute(\"INSERT INTO report_definitions (tenant_id, name, spec, format, lang, recipients, schedule_kind, schedule_day, schedule_hour, next_run_at, created_at, updated_at) VALUES (1, 'Mensal', '{{\\\"scope\\\":\\\"tenant\\\",\\\"period\\\":\\\"previous_month\\\",\\\"bucket\\\":\\\"day\\\"}}', 'pdf', 'pt-BR', 'ana@example.com', 'monthly', 1, 6, {now}, {now}, {now})\")\n\
c.execute(\"INSERT INTO report_runs (tenant_id, definition_id, name, trigger, scheduled_for, status, attempts, period_from, period_to, file_name, content_type, file, file_size, delivered, created_at, finished_at) VALUES (1, 1, 'Mensal', 'schedule', {now}, 'succeeded', 1, '2026-11-01', '2026-11-30', 'r.pdf', 'application/pdf', X'255044462d', 5, 'ana@example.com', {now}, {now})\")\n\
c.execute(\"INSERT INTO staff_api_tokens (name, token_hash, prefix, created_at) VALUES ('ops', 'def', 'tds_staff_de', {now})\")\n\
c.execute(\"INSERT INTO api_tokens (tenant_id, name, role, token_hash, prefix, expires_at, created_at, updated_at) VALUES (1, 'erp', 'viewer', 'abc', 'tds_ab', NULL, {now}, {now})\")\n\
c.commit()"
    );
    let out = Command::new("python3").arg("-c").arg(script).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Everything a gateway's pages show, read through the stores.
async fn gateway_view(store: &Store) -> String {
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let gw = store.gateways().staff_by_mac(Mac::parse(MAC).unwrap()).await.unwrap();
    let devices = store.devices().list_for_gateway(tenant.id, gw.id, true).await.unwrap();
    let events = store.gateway_events().recent(tenant.id, gw.id, 50).await.unwrap();
    let mut view = format!("{gw:?}\n{devices:?}\n{events:?}\n");
    let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for d in &devices {
        let last = store
            .readings()
            .for_device(tenant.id, d.id, from, from + Duration::days(400), 1_000)
            .await
            .unwrap();
        let daily = store
            .rollups()
            .for_device(tenant.id, d.id, tds_domain::Bucket::Day, from, from + Duration::days(400))
            .await
            .unwrap();
        writeln!(view, "{last:?}\n{daily:?}").unwrap();
    }
    view
}

#[tokio::test]
async fn a_copy_from_sqlite_to_postgres_is_the_same_installation() {
    let Some(target) = TestDb::postgres().await else { return };
    // The target database exists and is empty: `tds db copy` creates the schema.
    let target_url = tds_testkit::replace_database(&target.url, &format!("copy_{:08x}", rand_suffix()));
    let admin = std::env::var("TDS_TEST_DATABASE_URL").unwrap();
    let name = target_url.rsplit('/').next().unwrap().to_owned();
    assert!(
        Command::new("psql")
            .args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
            .status()
            .unwrap()
            .success()
    );

    let tds = Tds::new(None);
    tds.ok(&["ca", "init", "--algorithm", "ecdsa-p384"]);
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let out = tds.run(
        &["user", "create", "--email", "ana@example.com", "--tenant", "Acme", "--role", "admin"],
        "a-long-password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let devices: String = (1..=DEVICES)
        .map(|i| format!("{MAC},D{i:02},Medidor {i},MEDIDOR,water,counter,m3,{i},100\n"))
        .collect::<Vec<_>>()
        .concat();
    tds.ok(&[
        "gateway",
        "import",
        "--tenant",
        "Acme",
        tds.file("g.csv", &format!("{MAC},GW1,Bloco A\naa:bb:cc:00:03:02,GW2,Bloco B\n")).to_str().unwrap(),
    ]);
    tds.ok(&["device", "import", "--tenant", "Acme", tds.file("d.csv", &devices).to_str().unwrap()]);
    tds.ok(&["cert", "issue", "--mac", MAC, "--out", "bundles"]);
    tds.ok(&["cert", "issue", "--mac", "aa:bb:cc:00:03:02", "--out", "bundles"]);
    tds.ok(&["cert", "revoke", "--mac", "aa:bb:cc:00:03:02", "--reason", "keyCompromise"]);

    let source_path = tds.path().join("data/tds.db");
    let source_url = format!("sqlite://{}", source_path.display());
    let store = Store::open(&source_url, &DbOptions::default()).await.unwrap();
    let tenant = store.tenants().staff_by_name("Acme").await.unwrap();
    let gw = store.gateways().staff_by_mac(Mac::parse(MAC).unwrap()).await.unwrap();
    let user = store.users().by_email(&tds_domain::Email::parse("ana@example.com").unwrap()).await.unwrap();
    let devs = store.devices().list_for_gateway(tenant.id, gw.id, false).await.unwrap();

    // Readings: every 5 minutes per device, growing counters, in batches.
    let wanted = readings_wanted();
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let per_device = wanted / DEVICES;
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..per_device {
        for (k, d) in devs.iter().enumerate() {
            let value = (i as f64) * (1.0 + k as f64 / 10.0) + 0.125;
            batch.push(NewReading {
                device_id: d.id,
                time: start + Duration::minutes(5 * i as i64),
                value,
                unit: "m3".into(),
            });
        }
        if batch.len() >= 10_000 {
            store.readings().insert(tenant.id, &batch).await.unwrap();
            batch.clear();
        }
    }
    store.readings().insert(tenant.id, &batch).await.unwrap();
    tds_jobs::rollups::drain(&store).await.unwrap();
    // One late reading leaves its device marked for a rollup refresh (rollup_dirty has a row),
    // and another one's commit waits to be folded (rollup_pending has a row).
    let late = |d: usize| NewReading {
        device_id: devs[d].id,
        time: start - Duration::days(1),
        value: 0.0,
        unit: "m3".into(),
    };
    store.readings().insert(tenant.id, &[late(0)]).await.unwrap();
    store.rollups().staff_fold().await.unwrap();
    store.readings().insert(tenant.id, &[late(1)]).await.unwrap();

    store.gateway_events().record(tenant.id, gw.id, "connected", "127.0.0.1:5000", start).await.unwrap();
    store.login_failures().record("ana@example.com", "10.0.0.1", Utc::now()).await.unwrap();
    store
        .sessions()
        .create(&tds_store::sessions::NewSession {
            token_hash: "f".repeat(64),
            user_id: user.id,
            tenant_id: Some(tenant.id),
            csrf_token: "c".repeat(43),
            ip: None,
            user_agent: None,
            expires_at: Utc::now() + Duration::hours(1),
        })
        .await
        .unwrap();
    let email = tds_domain::Email::parse("novo@example.com").unwrap();
    store
        .user_tokens()
        .create_invite(tenant.id, &email, Role::Viewer, "hash", Utc::now() + Duration::days(7), Some(user.id))
        .await
        .unwrap();
    store
        .rejected()
        .record(&[tds_store::rejected::NewRejected {
            tenant_id: Some(tenant.id),
            gateway_id: Some(gw.id),
            mac: Some(Mac::parse(MAC).unwrap()),
            topic: format!("tds_new/gateway/{MAC}/telemetria"),
            payload: vec![0xff, 0x00, b'{'],
            payload_size: Some(3),
            reading_index: None,
            reason_code: "invalid_json".into(),
            reason: "not JSON".into(),
            received_at: Utc::now(),
        }])
        .await
        .unwrap();
    store.jobs().ensure_periodic("rollups", "rollups", Utc::now()).await.unwrap();
    let source_view = gateway_view(&store).await;
    store.db().close().await;
    raw_rows(&source_path);

    let source_counts = sqlite_counts(&source_path);
    for (table, n) in &source_counts {
        assert!(*n > 0, "the source has no {table} rows: the test must cover every kind of row");
    }

    let started = std::time::Instant::now();
    let out = tds.run(&["db", "copy", "--from", &source_url, "--to", &target_url], "");
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    eprintln!("{}", text(&out.stdout));
    eprintln!("tds db copy: {wanted} readings in {seconds:.1} s ({:.0} readings/s)", wanted as f64 / seconds);
    assert_eq!(
        pg_counts(&target_url),
        source_counts,
        "rows per table: psql on the copy, sqlite3 on the original"
    );

    // A copy into a database that has rows is refused, and changes nothing.
    let again = tds.run(&["db", "copy", "--from", &source_url, "--to", &target_url], "");
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("not empty"), "{}", text(&again.stderr));

    let copy = Store::open(&target_url, &DbOptions::default()).await.unwrap();
    assert_eq!(gateway_view(&copy).await, source_view, "the gateway's pages read the same rows");
    // New rows on the copy get new ids after the copied ones.
    let t2 = tds_testkit::fixtures::tenant(&copy, "Beta").await;
    assert!(t2.id.get() > tenant.id.get());
    copy.db().close().await;

    // Consumption per day, computed by `tds consumption` on each database, is the same.
    let consumption = |url: &str| {
        let out = tds
            .command()
            .env("TDS_DATABASE_URL", url)
            .args([
                "consumption",
                "--tenant",
                "Acme",
                "--gateway",
                MAC,
                "--from",
                "2026-03-01",
                "--to",
                "2026-03-31",
                "--bucket",
                "day",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let (a, b) = (consumption(&source_url), consumption(&target_url));
    assert!(a.lines().count() > 30, "{a}");
    assert_eq!(a, b);
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}
