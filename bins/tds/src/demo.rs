//! `tds demo`: `tds serve` plus everything needed to look around at once: a demo tenant with an
//! administrator and a viewer (their passwords are new at every start and printed), gateways
//! with water, energy and gas meters and sensors, a week of history, and those gateways
//! reporting live over real MQTT with mutual TLS from inside the process.
//!
//! The history is written through the same store call the device endpoint uses, so what the
//! pages show of it is what they would show of readings that came over MQTT.

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::simulate::{self, Plan};
use anyhow::Context;
use chrono::{Duration as Days, DurationRound, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tds_domain::{Email, Name, Role, TenantId};
use tds_gateway::sim::{self, Faults, GatewaySpec, Meter, Settings, Stats};
use tds_pki::DeviceKeyKind;
use tds_store::readings::NewReading;
use tds_store::users::NewUser;
use tds_store::{Store, StoreError};
use tokio::sync::watch;

/// Validity of the demo gateways' certificates: inside the renewal window (730 days).
const DEMO_CERT_DAYS: u32 = 600;
pub const TENANT: &str = "Demo";
pub const ADMIN_EMAIL: &str = "admin@demo.tds.localhost";
pub const VIEWER_EMAIL: &str = "viewer@demo.tds.localhost";

/// Spacing of the history's readings.
const HISTORY_STEP_MINUTES: i64 = 15;

pub async fn run(
    config: &Config,
    args: DemoArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = crate::serve::Server::bind(config).await?;
    let store = server.store.clone();
    // The demo's certificates expire in 600 days, inside the renewal campaign's 730-day window:
    // the campaign (from 02:00 in the demo tenant's zone, 10 a day) visibly renews them, and the
    // certificates page shows its backlog and progress.
    let mut pki = crate::pki::service(Arc::new(crate::pki::ensure_ca(config)?), config);
    pki.device_cert_days = DEMO_CERT_DAYS.min(config.device_cert_days);
    let plan = Plan {
        tenant: TENANT.into(),
        first: 0,
        gateways: args.gateways.max(1),
        devices: args.devices.clamp(1, 32),
        interval: Duration::from_secs(args.interval.max(1)),
        // The history's spacing: the week before the demo started reads as complete, and the live
        // gateways, reporting more often, as complete too.
        expected_interval: Duration::from_secs(HISTORY_STEP_MINUTES as u64 * 60),
        key: DeviceKeyKind::EcdsaP256,
    };
    let (tenant, mut fleet) =
        simulate::provision(&store, &pki, &simulate::simulator_dir(config), &plan).await?;
    let written = write_history(&store, tenant, &mut fleet, args.history_days).await?;
    let rules = ensure_rules(&store, tenant).await?;
    ensure_reports(&store, tenant).await?;
    let admin = ensure_user(&store, tenant, ADMIN_EMAIL, "Ana Demo", Role::Admin).await?;
    let viewer = ensure_user(&store, tenant, VIEWER_EMAIL, "Vitor Demo", Role::Viewer).await?;
    let banner = format!(
        "\n  TDS demo: http://{}\n    tenant:  {TENANT} ({} gateways x {} meters, {written} readings of history written, \
         {rules} alert rules)\n    \
         admin:   {ADMIN_EMAIL}  password: {admin}\n    viewer:  {VIEWER_EMAIL}  password: {viewer}\n  \
         The passwords are new at every start. Gateways report every {} s over mqtts://localhost:{}.\n",
        server.http_addr,
        fleet.len(),
        plan.devices,
        plan.interval.as_secs(),
        server.mqtt_addr.port(),
    );
    // Not `println!`: a reader that closed our standard output after the line it wanted (`| head`,
    // a script taking the password) must not make the demo panic on the broken pipe.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ =
            out.write_all(banner.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    }

    let settings = Settings {
        host: "localhost".into(),
        port: server.mqtt_addr.port(),
        interval: plan.interval,
        inflight: 10,
        keep_alive: Duration::from_mins(1),
        faults: Faults::FIELD,
        seed: rand::random(),
    };
    // Ctrl-C stops the gateways first (they say `offline`), then the server.
    let (fleet_stop, fleet_stopped) = watch::channel(false);
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let stats = Arc::new(Stats::default());
    let gateways = tokio::spawn(sim::run_fleet(fleet, settings, 50.0, stats, fleet_stopped));
    tokio::spawn(async move {
        shutdown.await;
        let _ = fleet_stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(8), gateways).await;
        let _ = server_stop.send(());
    });
    server
        .run(async {
            let _ = server_stopped.await;
        })
        .await
}

/// The demo's alert rules, made once (by name): ones that fire on the simulated data, so that a
/// newcomer sees alerts within the first minute: a night-flow leak on the first water meter (the
/// simulated households always draw a little water at night), a low daily threshold on the first
/// energy meter (crossed early each day), and a comfort band on the first temperature sensor
/// (which the simulated room is below except at its two daily peaks); plus the silence rules an operator would keep. Returns how
/// many rules the tenant has.
/// Two saved reports on Relatórios (once): last month by day for the whole tenant, and the
/// current month by week with the previous period. No schedule: the demo mails nobody.
async fn ensure_reports(store: &Store, tenant: TenantId) -> anyhow::Result<()> {
    let existing = store.report_definitions().list(tenant).await?;
    for (name, spec) in [
        ("Consumo do mês passado", r#"{"scope":"tenant","period":"previous_month","bucket":"day"}"#),
        (
            "Mês atual por semana",
            r#"{"scope":"tenant","period":"current_month","bucket":"week","compare":["previous"]}"#,
        ),
    ] {
        if existing.iter().any(|d| d.name == name) {
            continue;
        }
        let new = tds_store::report_defs::NewDefinition {
            name: tds_domain::Name::parse("name", name)?,
            spec: spec.to_owned(),
            format: "pdf".into(),
            lang: "pt-BR".into(),
            recipients: Vec::new(),
            schedule: None,
            next_run_at: None,
            created_by: None,
        };
        store.report_definitions().create(tenant, &new).await?;
    }
    Ok(())
}

async fn ensure_rules(store: &Store, tenant: TenantId) -> anyhow::Result<usize> {
    use tds_domain::alerts::{
        ConsumptionLimit, GaugeBand, NightFlow, Period, Rule, RuleKind, Severity, Target,
    };
    use tds_domain::{MeasurementKind, Medium};
    let existing = store.alert_rules().list(tenant, None).await?;
    let mut devices = store.devices().list(tenant).await?;
    devices.sort_by_key(|d| (d.gateway_id, d.code.to_string()));
    let first = |medium: Medium, kind: MeasurementKind, unit: &str| {
        devices
            .iter()
            .find(|d| d.medium == medium && d.kind == kind && d.unit.to_string() == unit)
            .map(|d| d.id)
    };
    let mut wanted: Vec<(&str, Severity, Target, RuleKind)> = vec![
        (
            "Gateway sem contato",
            Severity::Critical,
            Target::Tenant,
            RuleKind::GatewayOffline(Period::new(600)?),
        ),
        ("Medidor sem leituras", Severity::Warning, Target::Tenant, RuleKind::NoData(Period::new(3600)?)),
    ];
    if let Some(water) = first(Medium::Water, MeasurementKind::Counter, "m³") {
        let leak = RuleKind::NightFlow(NightFlow::new(0.005, 2)?);
        wanted.push(("Vazamento noturno", Severity::Critical, Target::Device(water), leak));
    }
    if let Some(energy) = first(Medium::Energy, MeasurementKind::Counter, "kWh") {
        let daily = RuleKind::DailyConsumption(ConsumptionLimit::new(0.2)?);
        wanted.push(("Consumo diário de energia", Severity::Warning, Target::Device(energy), daily));
    }
    if let Some(room) =
        devices.iter().find(|d| d.kind == MeasurementKind::Gauge && d.unit.to_string() == "°C")
    {
        let band = RuleKind::GaugeBand(GaugeBand::new(Some(22.0), Some(24.0))?);
        wanted.push(("Temperatura fora da faixa", Severity::Info, Target::Device(room.id), band));
    }
    for (name, severity, target, kind) in wanted {
        if existing.iter().any(|r| r.name == name) {
            continue;
        }
        let rule = Rule::new(severity, target, kind, None, None)?;
        let new = tds_store::alert_rules::NewAlertRule {
            name: Name::parse("name", name)?,
            rule,
            enabled: true,
            created_by: None,
        };
        store.alert_rules().create(tenant, &new).await?;
    }
    Ok(store.alert_rules().list(tenant, None).await?.len())
}

/// Creates the demo user, or gives the existing one a new password; returns the password.
async fn ensure_user(
    store: &Store,
    tenant: TenantId,
    email: &str,
    name: &str,
    role: Role,
) -> anyhow::Result<String> {
    let password = tds_web::session::new_token()[..16].to_owned();
    let hash = crate::admin::hash_password(&password)?;
    let email = Email::parse(email)?;
    let user = match store.users().by_email(&email).await {
        Ok(user) => {
            store.users().set_password(user.id, &hash).await?;
            user
        }
        Err(StoreError::NotFound) => {
            store
                .users()
                .create(&NewUser {
                    email,
                    display_name: Name::parse("name", name)?,
                    password_hash: Some(hash),
                    language: "pt-BR".into(),
                    is_staff: false,
                    created_by: None,
                })
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    if store.memberships().role(tenant, user.id).await? != Some(role) {
        match store.memberships().add(tenant, user.id, role, None).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => store.memberships().set_role(tenant, user.id, role).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(password)
}

/// Writes `days` of readings every 15 minutes for each meter of the fleet, ending a quarter of
/// an hour ago, unless the tenant already has readings in that period, and has the live meters
/// go on from where the history ends. Returns how many readings it wrote.
async fn write_history(
    store: &Store,
    tenant: TenantId,
    fleet: &mut [GatewaySpec],
    days: u32,
) -> anyhow::Result<u64> {
    if days == 0 {
        return Ok(0);
    }
    let now = Utc::now();
    let start = (now - Days::days(i64::from(days))).duration_trunc(Days::minutes(HISTORY_STEP_MINUTES))?;
    if store.readings().count_since(tenant, start).await? > 0 {
        return Ok(0);
    }
    let devices: std::collections::HashMap<(i64, String), tds_domain::DeviceId> = store
        .devices()
        .list(tenant)
        .await?
        .into_iter()
        .map(|d| ((d.gateway_id.get(), d.code.to_string()), d.id))
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    let mut written = 0u64;
    for spec in fleet {
        let gateway = store.gateways().staff_by_mac(spec.mac).await?;
        let mut rows = Vec::new();
        for meter_spec in &mut spec.meters {
            let device = *devices
                .get(&(gateway.id.get(), meter_spec.code.clone()))
                .with_context(|| format!("meter {} of {} is not registered", meter_spec.code, spec.mac))?;
            let mut meter = Meter::new(meter_spec.profile, &mut rng);
            let mut last = None;
            let mut at = start;
            while at < now - Days::minutes(HISTORY_STEP_MINUTES) {
                // No resets in the history: the demo's week should read cleanly.
                let value = meter.read(at, 0.0, &mut rng).value;
                last = Some(value);
                rows.push(NewReading {
                    device_id: device,
                    time: at,
                    value,
                    unit: meter_spec.profile.unit().into(),
                });
                at += Days::minutes(HISTORY_STEP_MINUTES);
            }
            if meter_spec.profile.kind() == tds_domain::MeasurementKind::Counter {
                meter_spec.start = last;
            }
        }
        for chunk in rows.chunks(10_000) {
            written += store.readings().insert(tenant, chunk).await?.inserted;
        }
    }
    Ok(written)
}
