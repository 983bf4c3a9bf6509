//! `tds serve`: opens (and migrates) the database, binds the listeners (web and the MQTT device
//! endpoint, or, in broker mode, the consumer of an external broker instead of the endpoint) and
//! runs until a shutdown signal, then drains in-flight requests, lets the device sessions (or the
//! consumer) acknowledge what was committed, and closes the database.
//!
//! On first start it creates the platform CA and the MQTT server certificate (under
//! `{data_dir}/pki`) and a first CRL. The HTTP listener answers the health checks and serves the
//! CRL at `/pki/crl.pem` and `/pki/crl.der` (no login: brokers and gateways fetch it); the web UI,
//! the API and the MQTT endpoint are mounted here as their crates arrive.

use crate::config::{Config, MqttMode};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tds_pki::CaFiles;
use tds_store::Store;
use tokio::net::TcpListener;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
struct AppState {
    store: Store,
    metrics: Option<PrometheusHandle>,
    /// `/metrics` on the public web listener: only local requests that no proxy relayed.
    metrics_local_only: bool,
}

/// The process's Prometheus recorder, installed on first use (one per process).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Seconds, from 1 ms to 10 s, for commit and acknowledgement latencies; readings per
            // commit for batch sizes, up to the largest commit (`mqtt_commit_max_readings`).
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full(tds_ingest::metrics::BATCH_READINGS.into()),
                    &[
                        1.0, 10.0, 100.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0,
                        100_000.0,
                    ],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

/// Prometheus metrics of the process: ingest rate, latencies, dead letters, connections. On the
/// web listener (no `metrics_addr`), a request from another host or relayed by a proxy is told
/// there is nothing here (SPEC §11: metrics are not for the public).
async fn metrics(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let relayed = ["x-forwarded-for", "forwarded", "x-real-ip"].iter().any(|h| headers.contains_key(*h));
    if state.metrics_local_only && (!peer.ip().to_canonical().is_loopback() || relayed) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = state.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// A server whose listeners are bound (so the port is known, even when configured as `:0`) but
/// that does not serve yet.
#[derive(Debug)]
pub struct Server {
    pub http_addr: SocketAddr,
    /// The device endpoint's address (the unspecified address in broker mode, where TDS does not
    /// listen for gateways).
    pub mqtt_addr: SocketAddr,
    /// The plain development listener's address, when enabled.
    pub mqtt_plain_addr: Option<SocketAddr>,
    pub store: Store,
    pki: Arc<CaFiles>,
    config: Config,
    listener: TcpListener,
    /// The separate `/metrics` listener (`metrics_addr`), when configured.
    metrics_listener: Option<TcpListener>,
    devices: Devices,
    events: crate::live::LiveBus,
}

/// Who takes the gateways' messages: TDS's own endpoint, or the consumer of an external broker.
#[derive(Debug)]
enum Devices {
    Endpoint(tds_ingest::Endpoint),
    Broker(tds_ingest::BrokerConsumer),
}

impl Server {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let store = crate::open_store(config).await?;
        tracing::info!(
            database = %tds_store::redact_url(&config.database_url()),
            backend = store.db().backend(),
            "database ready"
        );
        let pki = Arc::new(crate::pki::ensure_ca(config)?);
        let crl = crate::pki::current_crl(&store, &pki, config).await?;
        crate::admin::ensure_first_admin(&store, config).await?;
        tracing::info!(number = crl.number, next_update = %crl.next_update, "CRL ready at /pki/crl.pem");
        let wanted = config.http_socket()?;
        let listener = TcpListener::bind(wanted).await.with_context(|| {
            format!("cannot listen on http_addr {wanted}: is another server running there?")
        })?;
        let http_addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_socket()? {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on metrics_addr {addr}"))?,
            ),
            None => None,
        };
        let mqtt = config.mqtt_addr.parse().with_context(|| {
            format!("mqtt_addr {:?} is not an address like 0.0.0.0:8883", config.mqtt_addr)
        })?;
        // The live-event bus (SPEC §4, §7): the device side announces, the web side streams,
        // and on PostgreSQL the other instances hear it too.
        let events = crate::live::start(&store).await?;
        let mut ingest = tds_ingest::IngestConfig::new(mqtt);
        config.apply_ingest_limits(&mut ingest);
        ingest.events = Some(events.local.clone());
        // Renewal CSRs (`cert_csr`) are signed where they arrive, with the device validity.
        ingest.csr_ca = Some(pki.clone());
        ingest.device_cert_days = config.device_cert_days;
        ingest.plain = config.mqtt_plain()?.map(|(addr, password)| tds_ingest::PlainListener {
            addr,
            password: tds_ingest::DevPassword::new(password),
        });
        let (devices, mqtt_addr, mqtt_plain_addr) = if config.mqtt_mode == MqttMode::Broker {
            let consumer =
                tds_ingest::BrokerConsumer::new(broker_options(config, &pki)?, &ingest, store.clone());
            (Devices::Broker(consumer), SocketAddr::from(([0, 0, 0, 0], 0)), None)
        } else {
            let endpoint =
                tds_ingest::Endpoint::bind(ingest, store.clone(), &pki).await.with_context(|| {
                    format!("cannot start the device endpoint on mqtt_addr {mqtt} (or mqtt_plain_addr)")
                })?;
            let (addr, plain) = (endpoint.local_addr()?, endpoint.plain_addr());
            (Devices::Endpoint(endpoint), addr, plain)
        };
        Ok(Self {
            http_addr,
            mqtt_addr,
            mqtt_plain_addr,
            store,
            pki,
            config: config.clone(),
            listener,
            metrics_listener,
            devices,
            events,
        })
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and closes the database.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(http = %self.http_addr, "TDS is listening on http://{}", self.http_addr);
        let web_config = self.config.web_config()?;
        let web = tds_web::AppState::with_buses(
            self.store.clone(),
            web_config.clone(),
            mailer(&self.config)?,
            crate::pki::service(self.pki.clone(), &self.config),
            self.events.pages.clone(),
            self.events.local.clone(),
        );
        let ops = AppState {
            store: self.store.clone(),
            metrics: metrics_handle(),
            metrics_local_only: self.metrics_listener.is_none(),
        };
        let app = router(ops.clone(), self.metrics_listener.is_none()).merge(tds_web::router(web));
        let metrics_task = self.metrics_listener.map(|listener| {
            let app = router(AppState { metrics_local_only: false, ..ops }, true);
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics and health checks on http://{addr}/metrics");
            }
            let config = web_config.clone();
            tokio::spawn(async move {
                tds_web::server::serve(listener, app, &config, std::future::pending()).await
            })
        });
        let crl_task = tokio::spawn(keep_crl_current(
            self.store.clone(),
            self.pki.clone(),
            self.config.clone(),
            self.config.broker_crl_file.clone(),
        ));
        // The recorder keeps histogram samples until upkeep folds them into buckets.
        let upkeep_task = tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Some(h) = metrics_handle() {
                    h.run_upkeep();
                }
            }
        });
        // One shutdown signal for the listeners and the job runner.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let runner = crate::jobs::runner(
            self.store.clone(),
            self.pki.clone(),
            crate::jobs::Outgoing {
                notifier: notifier(&self.config)?,
                reporter: tds_jobs::Reporter::new(mailer(&self.config)?, self.config.public_url()?.as_str()),
            },
            &self.config,
            crate::jobs::worker_name(),
            self.config.runner_options(),
            Some(self.events.local.clone()),
        );
        tracing::info!(worker = runner.worker(), "job runner started");
        let jobs_task = tokio::spawn(runner.run(stopped(stop_rx.clone())));
        let devices = match self.devices {
            Devices::Endpoint(endpoint) => {
                tracing::info!(mqtt = %self.mqtt_addr, "device endpoint on mqtts://{}", self.mqtt_addr);
                tokio::spawn(endpoint.run(stopped(stop_rx.clone())))
            }
            Devices::Broker(consumer) => tokio::spawn(consumer.run(stopped(stop_rx.clone()))),
        };
        let served = tds_web::server::serve(self.listener, app, &web_config, stopped(stop_rx)).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), devices).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), jobs_task).await;
        crl_task.abort();
        upkeep_task.abort();
        if let Some(task) = metrics_task {
            task.abort();
        }
        self.events.stop();
        served.context("HTTP server failed")?;
        self.store.db().close().await;
        tracing::info!("TDS stopped");
        Ok(())
    }
}

pub async fn serve(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::bind(config).await?.run(shutdown).await
}

/// How the broker consumer reaches the external broker: `broker_url`, this instance's client id,
/// and TLS with the consumer certificate (CN `tds-ingest`, issued into `{data_dir}/pki` on first
/// use) against the platform CA or `broker_ca_file`.
fn broker_options(config: &Config, pki: &CaFiles) -> anyhow::Result<tds_ingest::BrokerOptions> {
    let (host, port) = config.broker_address()?;
    let (cert, key) = pki
        .consumer_certificate(crate::broker::CONSUMER_IDENTITY)
        .context("cannot issue or read the broker consumer's certificate")?;
    let ca = match &config.broker_ca_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read broker_ca_file {}", path.display()))?,
        None => pki.ca.cert_pem().to_owned(),
    };
    let tls = tds_pki::service_client_config(&ca, &cert, &key).context("broker TLS configuration")?;
    Ok(tds_ingest::BrokerOptions::new(host, port, config.broker_client_id(), tls))
}

/// Keeps the stored CRL (served at `/pki/crl.pem`) listing every revoked certificate, and
/// `path`, the external broker's `crlfile` when there is one, equal to it: every 2 s it compares
/// the revoked serials with the stored CRL's, re-issues the CRL when they still differ on the next
/// look (the device endpoint retiring a certificate when a renewal is confirmed or rolled back, a
/// revocation made straight in the database; the web and the CLI re-issue it at once and must
/// not lose that race), and rewrites the file (through a temporary file and a rename) when it
/// differs from the stored CRL. Mosquitto reads its `crlfile` at start and on SIGHUP only: send it
/// SIGHUP after a change (the log says when).
async fn keep_crl_current(store: Store, pki: Arc<CaFiles>, config: Config, path: Option<std::path::PathBuf>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stale = false;
    loop {
        tick.tick().await;
        match sync_crl(&store, &pki, &config, path.as_deref(), stale).await {
            Ok(still_stale) => stale = still_stale,
            Err(e) => {
                tracing::warn!(file = ?path, error = format!("{e:#}"), "cannot bring the CRL up to date; will retry");
            }
        }
    }
}

/// One look: re-issues the CRL if it misses revocations and `reissue`, writes the broker's file
/// (if any) if it changed; returns whether the stored CRL misses revocations (and was not
/// re-issued).
async fn sync_crl(
    store: &Store,
    pki: &Arc<CaFiles>,
    config: &Config,
    path: Option<&std::path::Path>,
    reissue: bool,
) -> anyhow::Result<bool> {
    let mut revoked: Vec<String> = store
        .certificates()
        .staff_revoked()
        .await?
        .into_iter()
        .filter(|r| {
            tds_pki::RevocationReason::parse(&r.reason).ok() != Some(tds_pki::RevocationReason::RemoveFromCrl)
        })
        .filter_map(|r| tds_pki::normalize_serial_hex(&r.serial).ok())
        .collect();
    revoked.sort();
    let mut crl = crate::pki::current_crl(store, pki, config).await?;
    let mut stale = tds_pki::crl_serials(&crl.der)? != revoked;
    if stale && reissue {
        crl = crate::pki::refresh_crl(store, pki, config).await?;
        stale = false;
    }
    let Some(path) = path else { return Ok(stale) };
    if std::fs::read_to_string(path).ok().as_deref() != Some(crl.pem.as_str()) {
        let tmp = path.with_extension("pem.tmp");
        crate::pki::write_public(&tmp, crl.pem.as_bytes())?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        tracing::info!(file = %path.display(), number = crl.number, "wrote the broker's CRL file; send SIGHUP to the broker (Mosquitto) so that it reloads it");
    }
    Ok(stale)
}

fn mailer(config: &Config) -> anyhow::Result<tds_mail::Mailer> {
    Ok(if let Some(url) = &config.smtp_url {
        tds_mail::Mailer::smtp(url.expose(), &config.mail_from)?
    } else {
        let outbox = config.data_dir.join("outbox");
        tracing::warn!(outbox = %outbox.display(), "no smtp_url configured: emails (invitations, password resets, alerts) are written as files to the outbox, not sent");
        tds_mail::Mailer::outbox(outbox, &config.mail_from)?
    })
}

/// The alert notifier: the same mailer as the web's, `public_url` for links.
pub fn notifier(config: &Config) -> anyhow::Result<tds_jobs::Notifier> {
    let mut options = tds_jobs::NotifierOptions::new(config.public_url()?.as_str());
    options.send_timeout = Duration::from_secs(config.alert_send_timeout_secs);
    options.parallel = config.alert_send_parallel as usize;
    // A destination's rows go one after another: the lease outlasts a round's worst case.
    options.lease = options.send_timeout * (options.per_destination as u32 + 2);
    Ok(tds_jobs::Notifier::new(mailer(config)?, options)?)
}

/// The health checks and the CRL, and `/metrics` when `with_metrics` (on the web listener only
/// when there is no `metrics_addr`).
fn router(state: AppState, with_metrics: bool) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/pki/crl.pem", get(crl_pem))
        .route("/pki/crl.der", get(crl_der));
    let router = if with_metrics { router.route("/metrics", get(metrics)) } else { router };
    router.with_state(state)
}

async fn crl_pem(State(state): State<AppState>) -> axum::response::Response {
    match state.store.certificates().crl().await {
        Ok(Some(crl)) => {
            ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], crl.pem).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the CRL");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn crl_der(State(state): State<AppState>) -> axum::response::Response {
    match state.store.certificates().crl().await {
        Ok(Some(crl)) => {
            ([(axum::http::header::CONTENT_TYPE, "application/pkix-crl")], crl.der).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the CRL");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.db().ping().await {
        Ok(()) => {
            (StatusCode::OK, Json(json!({ "status": "ready", "database": state.store.db().backend() })))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unreachable" })),
            )
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight work");
}
