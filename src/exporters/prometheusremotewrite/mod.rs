//! The `prometheusremotewrite` exporter (alias `prometheus_remote_write`): Prometheus
//! remote-write 1.0 (snappy-compressed protobuf over HTTP) with otelcol's keys and defaults,
//! delivered through fovea's queue and retry layer so that an outage or a restart loses nothing
//! that was accepted, and the samples of every series reach Prometheus in timestamp order.
//!
//! - `config.rs`: the settings (otelcol's keys; `naming`, `retry_on_http_429` and
//!   `remote_write_queue::storage` are fovea's).
//! - `series.rs`: OpenTelemetry -> Prometheus series through the scrape exporter's series store
//!   (identical names and labels on both paths), one sample per point, in order per series.
//! - `request.rs`: packing series into requests of at most `max_batch_size_bytes`.
//! - `encoder.rs`: the delivery [`Encoder`]; `transport.rs`: the HTTP [`Transport`].
//! - `proto.rs`: the remote-write messages.
//!
//! Ordering: one sender drains the queue (whatever `num_consumers` says) and a failed request
//! is retried before the next one is sent, so requests reach Prometheus in the order they were
//! made; within and across requests each series' samples are in strictly increasing timestamp
//! order (see `series.rs`). With `remote_write_queue::storage` the queue is on disk: requests
//! are acknowledged to the pipeline only once written, retried without a time limit, and sent
//! after a restart. A request that was delivered just before a crash may be sent again: Prometheus
//! takes exact duplicates of a series' newest sample and refuses older ones with 400, so nothing is
//! stored twice. Prometheus refuses a request whole for one stale sample; the transport then sends
//! it again in halves until only the refused series are left out (reported as rejected items), so
//! stale data sent again by a client after a restart cannot take fresh data down with it.
//!
//! Items are OpenTelemetry data points (as otelcol counts), not samples. Points that cannot be
//! sent are counted as dropped by the encoder: refused by the translation, without a timestamp,
//! or not newer than the last sample of their series (including the same point received twice).
//! Prometheus keeps only recent data in its head block (about 1-3 hours): after a longer outage it
//! refuses the oldest queued samples as out of bounds, which no sender can avoid.

mod config;
mod encoder;
pub mod proto;
mod request;
mod series;
#[cfg(test)]
mod tests;
mod transport;

use std::sync::Arc;

use async_trait::async_trait;

pub use config::{DEFAULT_MAX_BATCH_SIZE_BYTES, RESERVED_HEADERS, RemoteWriteConfig, RemoteWriteQueue, TargetInfo};
pub use encoder::RemoteWriteEncoder;
pub use series::{EncodeOutcome, SERIES_TTL};
pub use transport::{RemoteWriteTransport, USER_AGENT, classify, compress, refuses_samples};

use crate::config::{ConfigError, parse_component};
use crate::delivery::{DeliveryExporter, Encoder};
use crate::model::Signal;
use crate::pipeline::{BuildContext, Built, ComponentError, Exporter, ExporterContext, Factory, StartContext};
use crate::telemetry::ComponentKind;
use crate::tls::TlsError;

/// Errors of the `prometheusremotewrite` exporter.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The `prometheusremotewrite` exporter factory.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Exporter,
        type_name: "prometheusremotewrite",
        aliases: &["prometheus_remote_write"],
        signals: &[Signal::Metrics],
        connects: &[],
        description: "pushes metrics with Prometheus remote-write 1.0, queued (optionally on disk) and retried in order",
        metrics: &[],
        build,
    }
}

fn build(ctx: &BuildContext<'_>) -> Result<Built, ConfigError> {
    let config: RemoteWriteConfig = parse_component(ctx.node, ctx.path)?;
    Ok(Built::Exporter(Box::new(RemoteWriteExporter::new(ctx.id.to_string(), &config))))
}

/// The exporter: the delivery layer with the remote-write encoder and transport.
pub struct RemoteWriteExporter {
    delivery: DeliveryExporter,
    encoder: Arc<RemoteWriteEncoder>,
}

impl RemoteWriteExporter {
    /// An exporter named `id` (for logs) with this config; nothing is opened until `start`.
    pub fn new(id: String, config: &RemoteWriteConfig) -> Self {
        let encoder = Arc::new(RemoteWriteEncoder::new(config));
        let delivery = DeliveryExporter::new(
            id,
            config.sending_queue(),
            config.retry_on_failure.clone(),
            encoder.clone() as Arc<dyn Encoder>,
            Arc::new(RemoteWriteTransport::new(config)),
        );
        RemoteWriteExporter { delivery, encoder }
    }
}

#[async_trait]
impl Exporter for RemoteWriteExporter {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        self.encoder.attach_stats(ctx.stats.clone());
        self.delivery.start(ctx).await
    }

    async fn run(self: Box<Self>, ctx: ExporterContext) -> Result<(), ComponentError> {
        self.encoder.attach_stats(ctx.start.stats.clone());
        Box::new(self.delivery).run(ctx).await
    }
}
