//! The own-telemetry endpoint: `/metrics` (the agent's own metrics in Prometheus text format),
//! `/healthz` (the process is alive) and `/readyz` (every component has started and every
//! readiness check a component registered holds, e.g. the Kubernetes metadata cache is synced).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::StatsRegistry;
use crate::model::{Metric, now_unix_nano};

/// Renders metrics in the Prometheus text format.
pub type Render = Arc<dyn Fn(&[Metric], &mut String) + Send + Sync>;

/// Errors of the telemetry server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is not `host:port`.
    #[error("service::telemetry::metrics::address `{address}` is not host:port: {source}")]
    Address {
        /// The configured address.
        address: String,
        /// Why it does not parse.
        source: std::net::AddrParseError,
    },
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

/// A readiness condition a component adds: `Err(why)` while it does not hold.
pub type ReadinessCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Whether the agent is ready: every component started, and every registered check holds. The
/// engine only flips "started"; what else readiness needs is added by the components that know
/// (the telemetry server knows no component).
#[derive(Default)]
pub struct Health {
    started: AtomicBool,
    checks: Mutex<Vec<(String, ReadinessCheck)>>,
}

impl Health {
    /// Marks every component started (or, when stopping, not).
    pub fn set_ready(&self, ready: bool) {
        self.started.store(ready, Ordering::SeqCst);
    }

    /// Adds a condition `/readyz` also requires; `name` says what it is in the answer.
    pub fn add_check(&self, name: impl Into<String>, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.push((name.into(), Box::new(check)));
    }

    /// The registered checks that do not hold, as `name: why`.
    pub fn unmet(&self) -> Vec<String> {
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.iter().filter_map(|(name, check)| check().err().map(|why| format!("{name}: {why}"))).collect()
    }

    /// True once every component has started and every check holds.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::SeqCst) && self.unmet().is_empty()
    }

    /// The `/readyz` answer: 200 `ready`, or 503 with `starting` or what is not ready yet.
    fn answer(&self) -> (StatusCode, String) {
        if !self.started.load(Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into());
        }
        let unmet = self.unmet();
        if unmet.is_empty() {
            return (StatusCode::OK, "ready\n".into());
        }
        let mut body = String::from("started, not ready:\n");
        for line in unmet {
            body.push_str(&line);
            body.push('\n');
        }
        (StatusCode::SERVICE_UNAVAILABLE, body)
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
        let addr: SocketAddr =
            address.parse().map_err(|source| ServerError::Address { address: address.to_string(), source })?;
        let listener = tokio::net::TcpListener::bind(addr)
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

    /// Serves until `stop` is cancelled.
    pub async fn serve(self, stop: CancellationToken) {
        let result =
            axum::serve(self.listener, self.router).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        if let Err(e) = result {
            tracing::error!(error = %e, "own-telemetry server failed");
        }
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
    state.health.answer()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_started_and_every_check_holds() {
        let health = Health::default();
        assert_eq!(health.answer(), (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_string()));
        health.set_ready(true);
        assert_eq!(health.answer(), (StatusCode::OK, "ready\n".to_string()));
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        health.add_check("cache", move || if flag.load(Ordering::SeqCst) { Ok(()) } else { Err("not synced".into()) });
        assert!(!health.is_ready());
        assert_eq!(
            health.answer(),
            (StatusCode::SERVICE_UNAVAILABLE, "started, not ready:\ncache: not synced\n".into())
        );
        synced.store(true, Ordering::SeqCst);
        assert!(health.is_ready());
    }
}
