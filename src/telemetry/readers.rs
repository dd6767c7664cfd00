//! `service.telemetry.metrics.readers`: how the agent's own metrics leave it. A `pull` reader
//! is a Prometheus endpoint (with `/healthz` and `/readyz`, like `address`); a `periodic`
//! reader pushes them over OTLP every `interval` through the same exporter and delivery layer
//! (queue, retries) the `otlp` and `otlphttp` exporters use.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ComponentKind, ComponentStats, Render, StatsRegistry};
use crate::config::ComponentId;
use crate::config::service::{PeriodicReader, PrometheusPull};
use crate::exporters::{otlp, otlphttp};
use crate::model::{MetricBatch, Payload, Resource, Scope, Signal, now_unix_nano};
use crate::pipeline::{ComponentError, Exporter, ExporterContext, Input, StartContext};
use crate::prometheus::StoreOptions;

/// How a `pull` reader renders: the reader's scope-info and suffix choices, or fovea's naming.
pub fn pull_render(options: Option<&PrometheusPull>) -> Render {
    let mut store = StoreOptions::plain();
    if let Some(p) = options {
        store.scope_labels = !p.without_scope_info;
        store.add_suffixes = !(p.without_units && p.without_type_suffix);
    }
    Arc::new(move |metrics, out| crate::prometheus::encode_metrics_with(metrics, store.clone(), out))
}

/// The exporter a `periodic` reader pushes with: `otlphttp` for `http/protobuf`, `otlp` for
/// `grpc`, with a small queue and otelcol's retry defaults.
fn exporter(reader: &PeriodicReader, name: &str) -> Result<Box<dyn Exporter>, String> {
    let otlp = &reader.exporter.otlp;
    let headers: serde_json::Map<String, serde_json::Value> =
        otlp.headers.iter().map(|h| (h.name.clone(), serde_json::Value::from(h.value.clone()))).collect();
    let mut tls = serde_json::json!({"insecure": otlp.insecure});
    for (key, file) in
        [("ca_file", &otlp.certificate), ("cert_file", &otlp.client_certificate), ("key_file", &otlp.client_key)]
    {
        if let Some(f) = file {
            tls[key] = serde_json::Value::from(f.clone());
        }
    }
    let common = serde_json::json!({
        "tls": tls,
        "headers": headers,
        "compression": otlp.compression,
        "timeout": format!("{}ms", otlp.timeout),
        "sending_queue": {"num_consumers": 1, "queue_size": 10},
    });
    let mut config = common;
    if otlp.protocol == "grpc" {
        config["endpoint"] = serde_json::Value::from(otlp.endpoint.clone());
        let config: otlp::OtlpExporterConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        Ok(Box::new(otlp::exporter(name.to_string(), &config).map_err(|e| e.to_string())?))
    } else {
        config["metrics_endpoint"] = serde_json::Value::from(otlp.endpoint.clone());
        let config: otlphttp::OtlpHttpExporterConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        Ok(Box::new(otlphttp::exporter(name.to_string(), &config)))
    }
}

/// Pushes the own metrics of `registry` every `interval` until `stop`, then once more, and lets
/// the exporter flush within the reader's `timeout`.
pub async fn push(
    reader: PeriodicReader,
    index: usize,
    registry: Arc<StatsRegistry>,
    resource: Arc<Resource>,
    stop: CancellationToken,
) -> Result<(), ComponentError> {
    let name = format!("service::telemetry::metrics::readers::{index}");
    let mut exporter = exporter(&reader, &name)?;
    // Its counters stay out of the own metrics it pushes: they would describe themselves.
    let stats = Arc::new(ComponentStats::new(ComponentKind::Exporter, name.clone(), None));
    let start = StartContext {
        id: ComponentId::of_type("otlp"),
        signals: vec![Signal::Metrics],
        stats: stats.clone(),
        telemetry: Arc::new(StatsRegistry::default()),
        services: Default::default(),
    };
    exporter.start(&start).await?;
    let (link, input) = Input::channel(4, stats);
    let deadline = CancellationToken::new();
    let task = tokio::spawn(exporter.run(ExporterContext { input, deadline: deadline.clone(), start }));
    tracing::info!(reader = index, endpoint = %reader.exporter.otlp.endpoint, interval_ms = reader.interval, "pushing own metrics over OTLP");
    let scope = Arc::new(Scope { name: "fovea".into(), version: env!("CARGO_PKG_VERSION").into() });
    let started = now_unix_nano();
    let mut ticker = tokio::time::interval(Duration::from_millis(reader.interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let last = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.cancelled() => true,
        };
        let mut metrics = Vec::new();
        registry.collect(started, now_unix_nano(), &mut metrics);
        let batch = MetricBatch::single(resource.clone(), scope.clone(), metrics);
        if link.send(Payload::from(batch)).await.is_err() || last {
            break;
        }
    }
    drop(link);
    let timeout = Duration::from_millis(reader.timeout);
    let deadline_at = tokio::time::sleep(timeout);
    tokio::pin!(deadline_at);
    tokio::pin!(task);
    tokio::select! {
        result = &mut task => { result??; }
        _ = &mut deadline_at => {
            deadline.cancel();
            task.await??;
        }
    }
    Ok(())
}
