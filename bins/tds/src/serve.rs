//! `tds serve`: opens (and migrates) the database, binds the listeners and runs until a shutdown
//! signal, then drains in-flight requests and closes the database.
//!
//! For now the HTTP listener answers the health checks; the web UI, the API and the MQTT endpoint
//! are mounted here as their crates arrive.

use crate::config::Config;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use tds_store::Store;
use tokio::net::TcpListener;

/// A server whose listeners are bound (so the port is known, even when configured as `:0`) but
/// that does not serve yet.
#[derive(Debug)]
pub struct Server {
    pub http_addr: SocketAddr,
    pub store: Store,
    listener: TcpListener,
}

impl Server {
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let store = crate::open_store(config).await?;
        tracing::info!(
            database = %tds_store::redact_url(&config.database_url()),
            backend = store.db().backend(),
            "database ready"
        );
        let wanted = config.http_socket()?;
        let listener = TcpListener::bind(wanted).await.with_context(|| {
            format!("cannot listen on http_addr {wanted}: is another server running there?")
        })?;
        let http_addr = listener.local_addr()?;
        Ok(Self { http_addr, store, listener })
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and closes the database.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(http = %self.http_addr, "TDS is listening on http://{}", self.http_addr);
        let app = router(self.store.clone());
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
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

fn router(store: Store) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(store)
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
async fn readyz(State(store): State<Store>) -> impl IntoResponse {
    match store.db().ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready", "database": store.db().backend() }))),
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
