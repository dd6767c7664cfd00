//! The own-telemetry endpoint: `/metrics` (the agent's own metrics in Prometheus text format),
//! `/healthz` (the process is alive) and `/readyz` (every component has started).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::StatsRegistry;
use crate::model::{Metric, now_unix_nano};
use crate::server::{GuardedListener, Limits, ListenAddress, ServerStats, serve_http};

/// Renders metrics in the Prometheus text format.
pub type Render = Arc<dyn Fn(&[Metric], &mut String) + Send + Sync>;

/// Errors of the telemetry server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is not `host:port` (`fovea validate` reports this before `run` gets here).
    #[error("service::telemetry::metrics::address: {0}")]
    Address(String),
    /// Binding failed.
    #[error(
        "cannot listen on {address} for own metrics: {source}; pick a free port with service::telemetry::metrics::address"
    )]
    Bind {
        /// The configured address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Whether the agent is ready (all components started), and since when.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    since: std::sync::Mutex<Option<std::time::SystemTime>>,
}

impl Health {
    /// Marks the agent ready or not.
    pub fn set_ready(&self, ready: bool) {
        if let Ok(mut since) = self.since.lock() {
            *since = ready.then(std::time::SystemTime::now);
        }
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// When the agent last became ready; `None` while it is not.
    pub fn ready_since(&self) -> Option<std::time::SystemTime> {
        self.since.lock().ok().and_then(|s| *s)
    }

    /// True once every component has started.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    stats: Arc<StatsRegistry>,
    health: Arc<Health>,
    render: Render,
    start: u64,
}

/// A bound, not yet serving, telemetry server.
pub struct TelemetryServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl TelemetryServer {
    /// Binds `address`; serving starts with [`TelemetryServer::serve`].
    pub async fn bind(
        address: &str,
        stats: Arc<StatsRegistry>,
        health: Arc<Health>,
        render: Render,
    ) -> Result<Self, ServerError> {
        let target = ListenAddress::parse(address).map_err(ServerError::Address)?.bind_target();
        let listener = tokio::net::TcpListener::bind(target)
            .await
            .map_err(|source| ServerError::Bind { address: address.to_string(), source })?;
        let state = AppState { stats, health, render, start: now_unix_nano() };
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(state);
        Ok(TelemetryServer { listener, router })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` is cancelled, within the limits of every internal endpoint, so it
    /// stays reachable while a receiver's port is flooded.
    pub async fn serve(self, stop: CancellationToken) {
        let name = match self.listener.local_addr() {
            Ok(a) => format!("own telemetry {a}"),
            Err(_) => "own telemetry".to_string(),
        };
        let listener = GuardedListener::new(self.listener, Limits::INTERNAL, Arc::new(ServerStats::new(name, None)));
        serve_http(listener, self.router, None, stop).await;
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut metrics = Vec::new();
    state.stats.collect(state.start, now_unix_nano(), &mut metrics);
    let mut body = String::new();
    (state.render)(&metrics, &mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting\n") }
}
