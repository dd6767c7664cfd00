//! The `otlp` exporter (alias `otlp_grpc`): OTLP over gRPC, with otelcol's keys, defaults and
//! retry rules. Metrics go to `MetricsService/Export`; flow records, as OTLP logs, to
//! `LogsService/Export`. Queueing and retrying are delivery's; this module encodes and sends.

mod config;
mod transport;

use std::sync::Arc;

pub use config::{GrpcTarget, OtlpExporterConfig, grpc_target};
pub use transport::{GrpcTransport, GrpcTransportError, classify};

use crate::config::{ConfigError, Problem, parse_component};
use crate::delivery::DeliveryExporter;
use crate::model::Signal;
use crate::otlp::OtlpEncoder;
use crate::pipeline::{BuildContext, Built, Factory};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Exporter,
        type_name: "otlp",
        aliases: &["otlp_grpc"],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "sends metrics (and flow records as logs) over OTLP/gRPC, with a sending queue and retries",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: OtlpExporterConfig = parse_component(ctx.node, ctx.path)?;
            let exporter = exporter(ctx.id.to_string(), &config).map_err(|e| {
                ConfigError::Invalid(vec![Problem::new(Some(ctx.node.origin.clone()), ctx.path, e.to_string())])
            })?;
            Ok(Built::Exporter(Box::new(exporter)))
        },
    }
}

/// The `otlp` exporter named `name` for `config`: delivery with the OTLP encoder and the gRPC
/// transport (no side effects until started).
pub fn exporter(name: String, config: &OtlpExporterConfig) -> Result<DeliveryExporter, GrpcTransportError> {
    Ok(DeliveryExporter::new(
        name,
        config.sending_queue.clone(),
        config.retry_on_failure.clone(),
        Arc::new(OtlpEncoder::default()),
        Arc::new(GrpcTransport::new(config)?),
    ))
}
