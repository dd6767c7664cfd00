//! The `prometheus` exporter: a scrape endpoint serving the latest value of every series, with
//! otelcol's OpenTelemetry -> Prometheus translation (or Retina's names, `naming: retina`).
//!
//! - `config.rs`: the settings (otelcol's keys and defaults, plus `path` and `naming`).
//! - `server.rs`: the HTTP endpoint.
//!
//! Naming, the series store and the text exposition are the shared translation in
//! [`crate::prometheus`], which the remote-write exporter and the agent's own `/metrics` use too.

mod config;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use config::{DEFAULT_ENDPOINT, PrometheusConfig};

use crate::config::{ConfigError, parse_component};
use crate::model::{Payload, Signal};
use crate::pipeline::{BuildContext, Built, ComponentError, Exporter, ExporterContext, Factory, StartContext};
use crate::prometheus::Store;
use crate::server::ListenAddress;
use crate::telemetry::ComponentKind;

/// Errors of the `prometheus` exporter.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The scrape endpoint could not be bound.
    #[error("exporter `{id}` cannot listen on {endpoint}: {source}; {hint}")]
    Bind {
        /// The component id.
        id: String,
        /// The configured endpoint.
        endpoint: String,
        /// What to do about it.
        hint: &'static str,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("exporter `{id}`: the scrape server on {endpoint} failed: {source}")]
    Serve {
        /// The component id.
        id: String,
        /// The bound address.
        endpoint: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `run` was called without a successful `start`.
    #[error("exporter `{id}` was run before it was started; the engine must call start() first")]
    NotStarted {
        /// The component id.
        id: String,
    },
}

/// The `prometheus` exporter factory.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Exporter,
        type_name: "prometheus",
        aliases: &[],
        signals: &[Signal::Metrics],
        connects: &[],
        description: "serves metrics for Prometheus to scrape (OpenTelemetry or Retina names)",
        metrics: &[],
        build,
    }
}

fn build(ctx: &BuildContext<'_>) -> Result<Built, ConfigError> {
    let config: PrometheusConfig = parse_component(ctx.node, ctx.path)?;
    Ok(Built::Exporter(Box::new(PrometheusExporter::new(config))))
}

/// What the HTTP handler and the ingestion loop share.
pub(crate) struct Shared {
    pub store: RwLock<Store>,
    pub open_metrics: bool,
    pub send_timestamps: bool,
}

impl Shared {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        // A panic while holding the lock leaves a consistent store (updates are in place).
        self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The exporter: binds in `start`, serves scrapes and folds batches in `run`.
pub struct PrometheusExporter {
    config: PrometheusConfig,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    id: String,
}

impl PrometheusExporter {
    /// An exporter with this config; nothing is bound until `start`.
    pub fn new(config: PrometheusConfig) -> Self {
        let shared = Arc::new(Shared {
            store: RwLock::new(Store::new(config.store_options())),
            open_metrics: config.enable_open_metrics,
            send_timestamps: config.send_timestamps,
        });
        PrometheusExporter { config, shared, listener: None, id: "prometheus".to_string() }
    }

    /// The bound address, once started (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    fn sweep_interval(&self) -> Duration {
        match self.shared.read().options().expiration {
            Some(ttl) => (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(30)),
            None => Duration::from_secs(60),
        }
    }
}

fn bind_hint(kind: std::io::ErrorKind) -> &'static str {
    match kind {
        std::io::ErrorKind::AddrInUse => {
            "another process already listens there (Retina's agent also uses 10093); stop it or set `endpoint` to a free port"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need CAP_NET_BIND_SERVICE; use a higher port or grant the capability"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "that address is not on this host; use 0.0.0.0 (all addresses) or one of the host's addresses"
        }
        _ => "check `endpoint` (host:port)",
    }
}

#[async_trait]
impl Exporter for PrometheusExporter {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        self.id = ctx.id.to_string();
        let endpoint = ListenAddress::parse(&self.config.endpoint)
            .map(|a| a.bind_target())
            .unwrap_or_else(|_| self.config.endpoint.clone());
        let listener = TcpListener::bind(&endpoint).await.map_err(|source| PrometheusError::Bind {
            id: self.id.clone(),
            endpoint: self.config.endpoint.clone(),
            hint: bind_hint(source.kind()),
            source,
        })?;
        if let Ok(addr) = listener.local_addr() {
            info!(exporter = %self.id, address = %addr, path = %self.config.path, "serving metrics for scraping");
        }
        self.listener = Some(listener);
        Ok(())
    }

    async fn run(self: Box<Self>, mut ctx: ExporterContext) -> Result<(), ComponentError> {
        let sweep = self.sweep_interval();
        let PrometheusExporter { config, shared, listener, id } = *self;
        let listener = listener.ok_or_else(|| PrometheusError::NotStarted { id: id.clone() })?;
        let endpoint = listener.local_addr().map_err(|source| PrometheusError::Serve {
            id: id.clone(),
            endpoint: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let stop = CancellationToken::new();
        let mut server = tokio::spawn(server::serve(listener, config.path.clone(), shared.clone(), stop.clone()));

        let stats = ctx.start.stats.clone();
        let mut ticker = tokio::time::interval(sweep);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                payload = ctx.input.recv() => match payload {
                    Some(Payload::Metrics(batch)) => {
                        // Held in memory and served from now on: the data is taken.
                        batch.acks.accept();
                        let folded = shared.write().fold(&batch, Instant::now());
                        stats.add_sent(Signal::Metrics, folded.accepted);
                        if folded.dropped > 0 {
                            debug!(exporter = %id, points = folded.dropped, "points refused (older than stored, malformed or unnameable)");
                            stats.add_dropped(Signal::Metrics, folded.dropped);
                        }
                    }
                    Some(other) => {
                        other.acks().accept();
                        stats.add_dropped(other.signal(), other.items());
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    let removed = shared.write().expire(Instant::now());
                    if removed > 0 {
                        debug!(exporter = %id, series = removed, "expired series not updated within metric_expiration");
                    }
                }
            }
        }

        stop.cancel();
        match tokio::time::timeout(Duration::from_secs(2), &mut server).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(source))) => Err(PrometheusError::Serve { id, endpoint, source }.into()),
            Ok(Err(join)) => Err(join.into()),
            Err(_) => {
                server.abort();
                warn!(exporter = %id, "scrape server did not stop within 2s; abandoned");
                Ok(())
            }
        }
    }
}
