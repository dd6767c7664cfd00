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

/// A readiness condition a component adds: `Err(why)` while it does not hold.
pub type ReadinessCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Whether the agent is ready: every component started (since when), and every readiness check
/// a component registered holds. The engine only flips "started"; what else `/readyz` needs is
/// added by the components that know (the telemetry server knows no component).
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    since: Mutex<Option<std::time::SystemTime>>,
    checks: Mutex<Vec<(String, ReadinessCheck)>>,
}

impl Health {
    /// Marks every component started (or, when stopping, not).
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

    /// True once every component has started (the `health_check` extension's status, as
    /// otelcol's; `/readyz` also requires the readiness checks, see [`Health::unmet`]).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
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

    /// The `/readyz` answer: 200 `ready`, or 503 with `starting` or what is not ready yet.
    fn answer(&self) -> (StatusCode, String) {
        if !self.is_ready() {
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
        assert!(health.is_ready(), "started, which is what the health_check extension reports");
        assert_eq!(
            health.answer(),
            (StatusCode::SERVICE_UNAVAILABLE, "started, not ready:\ncache: not synced\n".into())
        );
        synced.store(true, Ordering::SeqCst);
        assert_eq!(health.answer(), (StatusCode::OK, "ready\n".to_string()));
    }
}
