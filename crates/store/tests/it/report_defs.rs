//! Saved reports and their runs: names unique per tenant, a schedule that runs once per date
//! even when two rounds race, the run lifecycle (retries, success, failure), files kept 90 days,
//! and another tenant unable to read, change or run what is not theirs.

use chrono::{Duration, TimeZone as _, Utc};
use tds_domain::{Name, TenantId};
use tds_store::report_defs::{NewDefinition, RunFile, RunStatus, RunTrigger, StoredSchedule};
use tds_store::{Store, StoreError};
use tds_testkit::{conformance, fixtures};

fn monthly(name: &str, next: Option<chrono::DateTime<Utc>>) -> NewDefinition {
    NewDefinition {
        name: Name::parse("name", name).unwrap(),
        spec: r#"{"scope":"tenant","period":"previous_month","bucket":"day"}"#.into(),
        format: "pdf".into(),
        lang: "pt-BR".into(),
        recipients: vec!["ana@example.com".into(), "bob@example.com".into()],
        schedule: Some(StoredSchedule { kind: "monthly".into(), day: 1, hour: 6 }),
        next_run_at: next,
        created_by: None,
    }
}

async fn definitions_are_named_once_per_tenant_and_checked(store: Store) {
    let a = fixtures::tenant(&store, "Acme").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let defs = store.report_definitions();
    let d = defs.create(a.id, &monthly("Mensal", None)).await.unwrap();
    assert_eq!(d.recipients, ["ana@example.com", "bob@example.com"]);
    assert_eq!(d.schedule, Some(StoredSchedule { kind: "monthly".into(), day: 1, hour: 6 }));
    assert!(matches!(defs.create(a.id, &monthly("Mensal", None)).await, Err(StoreError::Conflict(_))));
    defs.create(b.id, &monthly("Mensal", None)).await.unwrap();

    let mut bad = monthly("Ruim", None);
    bad.schedule = Some(StoredSchedule { kind: "monthly".into(), day: 29, hour: 6 });
    assert!(defs.create(a.id, &bad).await.is_err(), "day 29 is not in every month");
    let mut bad = monthly("Ruim", None);
    bad.recipients.clear();
    assert!(defs.create(a.id, &bad).await.is_err(), "a schedule needs recipients");
    let mut bad = monthly("Ruim", None);
    bad.format = "docx".into();
    assert!(defs.create(a.id, &bad).await.is_err());

    let mut changed = monthly("Semanal", None);
    changed.schedule = Some(StoredSchedule { kind: "weekly".into(), day: 1, hour: 7 });
    let u = defs.update(a.id, d.id, &changed).await.unwrap();
    assert_eq!((u.name.as_str(), u.schedule.unwrap().kind.as_str()), ("Semanal", "weekly"));
    assert_eq!(defs.list(a.id).await.unwrap().len(), 1);
}

async fn a_due_schedule_starts_one_run_per_date(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let due = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
    let next = Utc.with_ymd_and_hms(2027, 1, 1, 9, 0, 0).unwrap();
    let d = store.report_definitions().create(t.id, &monthly("Mensal", Some(due))).await.unwrap();
    assert!(store.report_definitions().staff_due(due - Duration::seconds(1), 10).await.unwrap().is_empty());
    let found = store.report_definitions().staff_due(due, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    // Two rounds that read the same due definition: only the first starts a run.
    let first = store.report_definitions().start_scheduled(&found[0], due, next).await.unwrap();
    let second = store.report_definitions().start_scheduled(&found[0], due, next).await.unwrap();
    assert!(first.is_some() && second.is_none());
    assert_eq!(store.report_definitions().get(t.id, d.id).await.unwrap().next_run_at, Some(next));
    let runs = store.report_runs().list(t.id, Some(d.id), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].trigger, runs[0].status, runs[0].scheduled_for),
        (RunTrigger::Schedule, RunStatus::Pending, due)
    );
}

async fn a_run_is_retried_then_succeeds_or_fails_and_its_file_is_kept_90_days(store: Store) {
    let t = fixtures::tenant(&store, "Acme").await;
    let d = store.report_definitions().create(t.id, &monthly("Mensal", None)).await.unwrap();
    let runs = store.report_runs();
    let id = runs.enqueue_manual(t.id, d.id).await.unwrap();
    let now = Utc::now();
    assert_eq!(runs.staff_due(now + Duration::seconds(1), 10).await.unwrap().len(), 1);

    runs.fail_attempt(t.id, id, "SMTP refused", Some(now + Duration::minutes(5))).await.unwrap();
    let r = runs.get(t.id, id).await.unwrap();
    assert_eq!((r.status, r.attempts, r.error.as_deref()), (RunStatus::Pending, 1, Some("SMTP refused")));
    assert!(runs.staff_due(now + Duration::minutes(4), 10).await.unwrap().is_empty(), "waits for its retry");

    let file = RunFile {
        period_from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
        period_to: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        file_name: "consumo-2026-11-01-2026-11-30.pdf".into(),
        content_type: "application/pdf".into(),
        bytes: b"%PDF-1.7 test".to_vec(),
    };
    runs.set_file(t.id, id, &file).await.unwrap();
    runs.add_delivered(t.id, id, "ana@example.com").await.unwrap();
    runs.add_delivered(t.id, id, "ana@example.com").await.unwrap();
    runs.succeed(t.id, id).await.unwrap();
    let r = runs.get(t.id, id).await.unwrap();
    assert_eq!((r.status, r.attempts, r.error), (RunStatus::Succeeded, 2, None));
    assert_eq!(r.delivered, ["ana@example.com"]);
    assert_eq!(r.file_size, Some(13));
    assert_eq!(runs.file(t.id, id).await.unwrap().1, b"%PDF-1.7 test");

    let other = runs.enqueue_manual(t.id, d.id).await.unwrap();
    runs.fail_attempt(t.id, other, "gave up", None).await.unwrap();
    assert_eq!(runs.get(t.id, other).await.unwrap().status, RunStatus::Failed);

    assert_eq!(runs.staff_drop_files_before(now - Duration::days(1)).await.unwrap(), 0);
    assert_eq!(runs.staff_drop_files_before(now + Duration::days(1)).await.unwrap(), 1);
    assert!(matches!(runs.file(t.id, id).await, Err(StoreError::NotFound)), "past its 90 days");
    assert_eq!(runs.get(t.id, id).await.unwrap().file_size, None, "the record stays");

    // Deleting the definition keeps its runs as the record.
    store.report_definitions().delete(t.id, d.id).await.unwrap();
    let left = runs.list(t.id, None, 10).await.unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|r| r.definition_id.is_none()));
}

async fn another_tenant_cannot_read_change_run_or_download(store: Store) {
    let a = fixtures::tenant(&store, "Acme").await;
    let b = fixtures::tenant(&store, "Beta").await;
    let d = store.report_definitions().create(a.id, &monthly("Mensal", None)).await.unwrap();
    let run = store.report_runs().enqueue_manual(a.id, d.id).await.unwrap();
    let theirs: TenantId = b.id;
    assert!(matches!(store.report_definitions().get(theirs, d.id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.report_definitions().update(theirs, d.id, &monthly("X", None)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(store.report_definitions().delete(theirs, d.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.report_runs().enqueue_manual(theirs, d.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.report_runs().get(theirs, run).await, Err(StoreError::NotFound)));
    assert!(matches!(store.report_runs().file(theirs, run).await, Err(StoreError::NotFound)));
    assert!(store.report_definitions().list(theirs).await.unwrap().is_empty());
    assert!(store.report_runs().list(theirs, None, 10).await.unwrap().is_empty());
    assert_eq!(store.report_definitions().get(a.id, d.id).await.unwrap().name, "Mensal");
}

conformance!(
    definitions_are_named_once_per_tenant_and_checked,
    a_due_schedule_starts_one_run_per_date,
    a_run_is_retried_then_succeeds_or_fails_and_its_file_is_kept_90_days,
    another_tenant_cannot_read_change_run_or_download
);
