//! Scheduled reports on both databases, mailed through a real SMTP server (the testkit's
//! `MailSink`); the attachment is taken out of the message by Python's `email` package (an
//! independent MIME reader) and read as CSV. The clock is the `now` each round takes.

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use tds_domain::{Name, TimeZone};
use tds_jobs::Reporter;
use tds_jobs::{Next, Runner, RunnerOptions};
use tds_mail::Mailer;
use tds_store::DbOptions;
use tds_store::Store;
use tds_store::readings::NewReading;
use tds_store::report_defs::{NewDefinition, RunStatus, StoredSchedule};
use tds_store::tenants::NewTenant;
use tds_testkit::{MailSink, TestDb, fixtures, per_backend};

/// 2026-12-01 06:00 in São Paulo (UTC-3): the monthly schedule's first run.
fn due() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
}

/// A tenant in São Paulo with one energy counter read every hour from 2026-10-31 23:00 to
/// 2026-12-01 00:00 local, +1 kWh each: every day of November is 24 kWh, the month 720.
async fn tenant_with_november(store: &Store) -> tds_domain::TenantId {
    let zone = TimeZone::parse("America/Sao_Paulo").unwrap();
    let new =
        NewTenant { timezone: zone, ..NewTenant::named(Name::parse("name", "Condomínio Sol").unwrap()) };
    let t = store.tenants().staff_create(&new).await.unwrap();
    let g = fixtures::gateway(store, t.id, "aa:bb:cc:00:20:01", "GW-20").await;
    let d = fixtures::meter(store, t.id, &g, "D01").await;
    let first = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
    let rows: Vec<NewReading> = (0..=721)
        .map(|h| NewReading {
            device_id: d.id,
            time: first + Duration::hours(h),
            value: 1000.0 + h as f64,
            unit: "kWh".into(),
        })
        .collect();
    store.readings().insert(t.id, &rows).await.unwrap();
    while tds_jobs::rollups::drain(store).await.unwrap() > 0 {}
    t.id
}

fn definition(recipients: &[&str]) -> NewDefinition {
    NewDefinition {
        name: Name::parse("name", "Consumo mensal").unwrap(),
        spec: r#"{"scope":"tenant","period":"previous_month","bucket":"day"}"#.into(),
        format: "csv".into(),
        lang: "pt-BR".into(),
        recipients: recipients.iter().map(|s| (*s).to_owned()).collect(),
        schedule: Some(StoredSchedule { kind: "monthly".into(), day: 1, hour: 6 }),
        next_run_at: Some(due()),
        created_by: None,
    }
}

/// The attachments of a raw message, as Python's `email` package decodes them.
fn attachments(raw: &str) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, raw).unwrap();
    let script = "import email, sys\n\
        m = email.message_from_binary_file(open(sys.argv[1], 'rb'))\n\
        for p in m.walk():\n    if p.get_filename():\n        print(p.get_filename(), p.get_payload(decode=True).hex())\n";
    let out = std::process::Command::new("python3").arg("-c").arg(script).arg(&path).output().unwrap();
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, bytes) = l.split_once(' ').unwrap();
            (name.to_owned(), hex::decode(bytes).unwrap())
        })
        .collect()
}

async fn a_monthly_report_is_mailed_in_each_recipients_language_and_kept(db: TestDb) {
    let store = db.store.clone();
    let tenant = tenant_with_november(&store).await;
    // A recipient who is a user reading English gets the English report; others the definition's.
    let en = fixtures::user(&store, "owner@example.com").await;
    store.users().set_profile(en.id, &Name::parse("name", "Owner").unwrap(), "en").await.unwrap();
    let def = store
        .report_definitions()
        .create(tenant, &definition(&["sindico@example.com", "owner@example.com"]))
        .await
        .unwrap();
    let mail = MailSink::start();
    let reporter =
        Reporter::new(Mailer::smtp(&mail.url(), "TDS <tds@example.com>").unwrap(), "https://tds.example.com");

    assert_eq!(reporter.round(&store, due() - Duration::minutes(1)).await.unwrap(), 0, "not due yet");
    assert_eq!(reporter.round(&store, due()).await.unwrap(), 1);
    assert_eq!(reporter.round(&store, due() + Duration::minutes(1)).await.unwrap(), 0, "once per date");

    let runs = store.report_runs().list(tenant, Some(def.id), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.period_from.unwrap().to_string(), "2026-11-01");
    assert_eq!(run.period_to.unwrap().to_string(), "2026-11-30");
    let mut delivered = run.delivered.clone();
    delivered.sort();
    assert_eq!(delivered, ["owner@example.com", "sindico@example.com"]);
    let next = store.report_definitions().get(tenant, def.id).await.unwrap().next_run_at;
    assert_eq!(next, Some(Utc.with_ymd_and_hms(2027, 1, 1, 9, 0, 0).unwrap()), "January 1st, 06:00 local");

    let pt = mail.raw_messages().into_iter().find(|m| m.contains("To: sindico@example.com")).unwrap();
    let en_msg = mail.raw_messages().into_iter().find(|m| m.contains("To: owner@example.com")).unwrap();
    assert!(pt.contains("Subject: =?utf-8?") || pt.contains("Subject: Relat"), "{pt}");
    assert!(en_msg.contains("Subject: Report Consumo mensal"), "{en_msg}");
    assert!(
        mail.messages()
            .iter()
            .any(|m| m.contains(&format!("https://tds.example.com/reports/runs/{}/file", run.id)))
    );

    let files = attachments(&pt);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "consumo-2026-11-01-2026-11-30.csv");
    let (_, kept) = store.report_runs().file(tenant, run.id).await.unwrap();
    assert_eq!(files[0].1, kept, "the file kept is the one the definition's language mailed");
    let mut csv = csv::Reader::from_reader(kept.as_slice());
    let header = csv.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 30, "one row per day of November");
    assert_eq!(&rows[0][at("bucket_start")], "2026-11-01");
    let total: f64 = rows.iter().map(|r| r[at("consumption")].parse::<f64>().unwrap()).sum();
    assert!(rows.iter().all(|r| &r[at("consumption")] == "24"), "24 kWh every day");
    assert!((total - 720.0).abs() < 1e-9);
    let english = attachments(&en_msg);
    assert_eq!(english[0].0, "consumption-2026-11-01-2026-11-30.csv");

    let audit = store
        .audit()
        .list(tenant, &tds_store::audit::AuditFilter::default(), tds_store::Page::default())
        .await
        .unwrap();
    assert!(audit.items.iter().any(|e| e.action == "report.run"), "runs are audited");
}

async fn a_failing_run_is_retried_without_mailing_anyone_twice_then_fails(db: TestDb) {
    let store = db.store.clone();
    let tenant = tenant_with_november(&store).await;
    let def = store.report_definitions().create(tenant, &definition(&["sindico@example.com"])).await.unwrap();
    // Nothing listens on this port: every SMTP attempt fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let broken = Reporter::new(
        Mailer::smtp(&format!("smtp://127.0.0.1:{closed}"), "tds@example.com").unwrap(),
        "https://t",
    );
    broken.round(&store, due()).await.unwrap();
    let run = &store.report_runs().list(tenant, Some(def.id), 1).await.unwrap()[0];
    assert_eq!((run.status, run.attempts), (RunStatus::Pending, 1));
    assert!(run.error.as_deref().unwrap().contains("sindico@example.com"), "{:?}", run.error);
    assert_eq!(run.next_attempt_at, Some(due() + Duration::minutes(5)));
    assert_eq!(broken.round(&store, due() + Duration::minutes(4)).await.unwrap(), 0, "waits for its retry");

    // The SMTP server is back for the second attempt: mailed once, succeeded.
    let mail = MailSink::start();
    let working = Reporter::new(Mailer::smtp(&mail.url(), "tds@example.com").unwrap(), "https://t");
    assert_eq!(working.round(&store, due() + Duration::minutes(5)).await.unwrap(), 1);
    let run = store.report_runs().get(tenant, run.id).await.unwrap();
    assert_eq!((run.status, run.attempts), (RunStatus::Succeeded, 2));
    assert_eq!(mail.count_to("sindico@example.com"), 1);

    // A run that keeps failing gives up after four attempts, with its error.
    let id = store.report_runs().enqueue_manual(tenant, def.id).await.unwrap();
    let mut at = Utc::now() + Duration::seconds(1);
    for wait in [Duration::minutes(5), Duration::minutes(30), Duration::hours(2), Duration::zero()] {
        assert_eq!(broken.round(&store, at).await.unwrap(), 1);
        at += wait;
    }
    let run = store.report_runs().get(tenant, id).await.unwrap();
    assert_eq!((run.status, run.attempts), (RunStatus::Failed, 4));
    assert!(run.error.is_some() && run.next_attempt_at.is_none());
    let audit = store
        .audit()
        .list(tenant, &tds_store::audit::AuditFilter::default(), tds_store::Page::default())
        .await
        .unwrap();
    assert!(audit.items.iter().any(|e| e.action == "report.failed"));
}

/// Two instances (two job runners on two connection pools of one database, as two `tds serve`
/// processes share it) keep running the reports job past the scheduled time, the job's clock
/// advancing a second each round: the schedule starts one run, and each recipient gets one message.
async fn two_instances_mail_a_scheduled_report_once(db: TestDb) {
    let store = db.store.clone();
    let other =
        Store::open(&db.url, &DbOptions { max_connections: 4, ..DbOptions::default() }).await.unwrap();
    let tenant = tenant_with_november(&store).await;
    let def = store
        .report_definitions()
        .create(tenant, &definition(&["sindico@example.com", "zelador@example.com"]))
        .await
        .unwrap();
    let mail = MailSink::start();
    let clock = Arc::new(AtomicI64::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let instance = |store: Store, name: &'static str| {
        let reporter = Reporter::new(Mailer::smtp(&mail.url(), "tds@example.com").unwrap(), "https://t");
        let (clock, made) = (clock.clone(), made.clone());
        let options = RunnerOptions {
            lease: std::time::Duration::from_secs(30),
            poll: std::time::Duration::from_millis(10),
            max_retry: std::time::Duration::from_millis(100),
        };
        Runner::new(store, name, options).every(
            "reports",
            std::time::Duration::from_millis(20),
            std::time::Duration::ZERO,
            move |store| {
                let (reporter, clock, made) = (reporter.clone(), clock.clone(), made.clone());
                async move {
                    let now = due() + Duration::seconds(clock.fetch_add(1, Ordering::SeqCst));
                    made.fetch_add(reporter.round(&store, now).await?, Ordering::SeqCst);
                    Ok(Next::Period)
                }
            },
        )
    };
    let (a, b) = (instance(store.clone(), "a"), instance(other.clone(), "b"));
    a.register().await.unwrap();
    b.register().await.unwrap();
    let mut rounds = 0;
    let started = std::time::Instant::now();
    while rounds < 6 && started.elapsed() < std::time::Duration::from_secs(20) {
        let (x, y) = tokio::join!(a.try_run_once(), b.try_run_once());
        rounds += usize::from(x.unwrap().is_some()) + usize::from(y.unwrap().is_some());
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(rounds >= 6, "the job kept running: {rounds} rounds");
    assert_eq!(made.load(Ordering::SeqCst), 1, "one run made across both instances");
    let runs = store.report_runs().list(tenant, Some(def.id), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{:?}", runs[0].error);
    assert_eq!(mail.count_to("sindico@example.com"), 1);
    assert_eq!(mail.count_to("zelador@example.com"), 1);
    other.db().close().await;
}

per_backend!(
    a_monthly_report_is_mailed_in_each_recipients_language_and_kept,
    a_failing_run_is_retried_without_mailing_anyone_twice_then_fails,
    two_instances_mail_a_scheduled_report_once
);
