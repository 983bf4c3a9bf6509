//! The HTTP server loop (SPEC §11: every input bounded), used by `tds serve` and by the tests so
//! that both run the same limits:
//!
//! - at most `max_connections` open connections: a connection beyond them is closed at once
//!   (counted), instead of queueing without end;
//! - the request head (line and headers) must arrive within `header_timeout`, for the first
//!   request and for every later one on a kept-alive connection, so a slow-loris client or an
//!   idle keep-alive connection does not hold its slot;
//! - a request body must arrive whole within `body_timeout` of its head, however slowly it
//!   trickles (the routes bound its size).
//!
//! Graceful shutdown: no new connections; those open finish their current request, and after
//! `shutdown_grace` the rest (server-sent event streams) are dropped.

use crate::WebConfig;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::timeout::DeadlineBody;

/// Gauge of open HTTP connections, and counter of connections closed because of the limit.
pub const METRIC_CONNECTIONS: &str = "tds_web_connections";
pub const METRIC_REFUSED: &str = "tds_web_connections_refused_total";

/// How long open connections may finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` completes, with the limits of `config`. The
/// client's address reaches handlers as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &WebConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let body_timeout = config.body_timeout;
    let app = app.layer(axum::middleware::map_request(move |request: Request<Body>| async move {
        request.map(|body| Body::new(DeadlineBody::new(body_timeout, body)))
    }));
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(METRIC_REFUSED).increment(1);
            crate::throttled_log::warn(
                "http_connections",
                "HTTP connection limit reached: new connections are being closed",
            );
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let service = app.clone().map_request(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(Body::new)
        });
        let connection = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        metrics::gauge!(METRIC_CONNECTIONS).increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            metrics::gauge!(METRIC_CONNECTIONS).decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::info!("HTTP connections still open after the shutdown grace (live streams): closing them");
    }
    Ok(())
}
