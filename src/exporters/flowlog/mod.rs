//! The `flowlog` exporter: flow records (after the pipeline's processors, so with Kubernetes
//! attributes when a `k8sattributes` processor ran) as Apache Parquet files or Arrow IPC streams
//! in a directory, zstd-compressed, rotated by size and age, completed atomically, within a disk
//! budget. The schema is in [`schema`] and docs/configuration.md.
//!
//! A batch is accepted (acknowledged) once it is in the open file; encoding and file work run on
//! a blocking thread. A file that cannot be written is logged and its batch counted as dropped;
//! the next batch starts a new file.

mod config;
mod files;
pub mod schema;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

pub use config::{Compression, FlowlogConfig, Format, RotationConfig};
pub use files::{FileError, SinkStats};

use self::files::FileSink;
use crate::config::parse_component;
use crate::model::semconv::own;
use crate::model::{Attributes, FlowBatch, Metric, NumberPoint, Payload, Signal};
use crate::pipeline::{BuildContext, Built, ComponentError, Exporter, ExporterContext, Factory, StartContext};
use crate::telemetry::{Collector, ComponentKind};

/// How often an idle exporter checks whether its open file is old enough to complete.
const AGE_CHECK: Duration = Duration::from_secs(1);

/// Errors of the flowlog exporter.
#[derive(Debug, thiserror::Error)]
pub enum FlowlogError {
    /// Opening the directory failed.
    #[error("flowlog: {0}")]
    Files(#[from] FileError),
    /// A blocking call panicked or was cancelled.
    #[error("the flowlog writer thread failed: {0}")]
    Worker(String),
    /// `run` without a successful `start`.
    #[error("the flowlog exporter was not started")]
    NotStarted,
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Exporter,
        type_name: "flowlog",
        aliases: &[],
        signals: &[Signal::Flows],
        connects: &[],
        description: "writes flow records as Parquet or Arrow IPC files (zstd), rotated by size and age within a disk budget",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: FlowlogConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Exporter(Box::new(FlowlogExporter::new(config))))
        },
    }
}

/// The exporter's own metrics.
struct FlowlogTelemetry {
    exporter: String,
    stats: Arc<Mutex<SinkStats>>,
}

impl Collector for FlowlogTelemetry {
    fn collect(&self, start: u64, now: u64, out: &mut Vec<Metric>) {
        let Ok(s) = self.stats.lock().map(|s| *s) else { return };
        let e = self.exporter.as_str();
        let attrs = || Attributes::from_pairs([(own::attr::EXPORTER, e)]);
        let deleted = |reason: &str, n: u64| {
            NumberPoint::count(
                Attributes::from_pairs([(own::attr::EXPORTER, e), (own::attr::REASON, reason)]),
                start,
                now,
                n,
            )
        };
        out.push(Metric::from_def(
            &own::FLOWLOG_FILES_COMPLETED,
            vec![NumberPoint::count(attrs(), start, now, s.files_completed)],
        ));
        out.push(Metric::from_def(
            &own::FLOWLOG_FILES_DELETED,
            vec![deleted("max_total_megabytes", s.files_deleted), deleted("unfinished", s.files_abandoned)],
        ));
        out.push(Metric::from_def(
            &own::FLOWLOG_BYTES_DELETED,
            vec![NumberPoint::count(attrs(), start, now, s.bytes_deleted)],
        ));
        out.push(Metric::from_def(
            &own::FLOWLOG_DISK_USAGE,
            vec![NumberPoint::int(attrs(), 0, now, i64::try_from(s.disk_bytes).unwrap_or(i64::MAX))],
        ));
    }
}

/// The exporter.
pub struct FlowlogExporter {
    config: FlowlogConfig,
    sink: Option<FileSink>,
    stats: Arc<Mutex<SinkStats>>,
}

impl FlowlogExporter {
    /// An exporter with the given settings.
    pub fn new(config: FlowlogConfig) -> Self {
        FlowlogExporter { config, sink: None, stats: Arc::default() }
    }
}

/// Runs `f` on the sink on a blocking thread and publishes its stats.
async fn on_sink<T: Send + 'static>(
    sink: FileSink,
    stats: &Arc<Mutex<SinkStats>>,
    f: impl FnOnce(&mut FileSink) -> T + Send + 'static,
) -> Result<(FileSink, T), FlowlogError> {
    let (sink, out) = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let out = f(&mut sink);
        (sink, out)
    })
    .await
    .map_err(|e| FlowlogError::Worker(e.to_string()))?;
    if let Ok(mut s) = stats.lock() {
        *s = sink.stats();
    }
    Ok((sink, out))
}

fn write(sink: &mut FileSink, batch: &FlowBatch) -> Result<(), FileError> {
    let schema = schema::schema(&batch.resource);
    let rb = schema::record_batch(&schema, &batch.records)?;
    sink.write(&rb)
}

#[async_trait]
impl Exporter for FlowlogExporter {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        let config = self.config.clone();
        let sink = tokio::task::spawn_blocking(move || FileSink::open(&config))
            .await
            .map_err(|e| FlowlogError::Worker(e.to_string()))?
            .map_err(FlowlogError::from)?;
        if let Ok(mut s) = self.stats.lock() {
            *s = sink.stats();
        }
        tracing::info!(directory = %self.config.directory.display(), format = ?self.config.format, "flow logs");
        ctx.telemetry.register(Arc::new(FlowlogTelemetry { exporter: ctx.id.to_string(), stats: self.stats.clone() }));
        self.sink = Some(sink);
        Ok(())
    }

    async fn run(mut self: Box<Self>, mut ctx: ExporterContext) -> Result<(), ComponentError> {
        let mut sink = self.sink.take().ok_or(FlowlogError::NotStarted)?;
        let mut age = tokio::time::interval(AGE_CHECK);
        age.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                payload = ctx.input.recv() => {
                    let Some(payload) = payload else { break };
                    let Payload::Flows(batch) = &payload else {
                        // the graph only routes flows here
                        payload.acks().fail();
                        continue;
                    };
                    let items = payload.items();
                    let batch = batch.clone();
                    let (s, result) = on_sink(sink, &self.stats, move |s| write(s, &batch)).await?;
                    sink = s;
                    match result {
                        Ok(()) => {
                            payload.acks().accept();
                            ctx.start.stats.add_sent(Signal::Flows, items);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, records = items, "cannot write flow records; they are dropped");
                            payload.acks().fail();
                            ctx.start.stats.add_dropped(Signal::Flows, items);
                        }
                    }
                }
                _ = age.tick() => {
                    let (s, result) = on_sink(sink, &self.stats, FileSink::rotate_if_old).await?;
                    sink = s;
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "cannot complete a flow log file");
                    }
                }
            }
        }
        let (_, result) = on_sink(sink, &self.stats, FileSink::complete).await?;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot complete the last flow log file");
        }
        Ok(())
    }
}
