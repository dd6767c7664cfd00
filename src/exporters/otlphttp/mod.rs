//! The `otlphttp` exporter (alias `otlp_http`): OTLP over HTTP (protobuf or JSON), with otelcol's
//! keys, defaults and retry rules. Metrics go to `<endpoint>/v1/metrics`; flow records, as OTLP
//! logs, to `<endpoint>/v1/logs`. Queueing and retrying are delivery's.

mod config;
mod transport;

use std::sync::Arc;

pub use config::{Encoding, OtlpHttpExporterConfig, signal_url};
pub use transport::{HttpTransport, HttpTransportError, classify, error_message};

use crate::config::parse_component;
use crate::delivery::DeliveryExporter;
use crate::model::Signal;
use crate::otlp::OtlpEncoder;
use crate::pipeline::{BuildContext, Built, Factory};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Exporter,
        type_name: "otlphttp",
        aliases: &["otlp_http"],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "sends metrics (and flow records as logs) over OTLP/HTTP, with a sending queue and retries",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: OtlpHttpExporterConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Exporter(Box::new(exporter(ctx.id.to_string(), &config))))
        },
    }
}

/// The `otlphttp` exporter named `name` for `config`: delivery with the OTLP encoder and the HTTP
/// transport (no side effects until started).
pub fn exporter(name: String, config: &OtlpHttpExporterConfig) -> DeliveryExporter {
    DeliveryExporter::new(
        name,
        config.sending_queue.clone(),
        config.retry_on_failure.clone(),
        Arc::new(OtlpEncoder::default()),
        Arc::new(HttpTransport::new(config)),
    )
}
