//! Helpers for the `prometheusremotewrite` tests: configs from YAML (through the real config
//! path), the exporter running in-process fed through its input channel like the engine does,
//! and batches with known values and timestamps (from `fixtures.rs`).
//!
//! Include it with `#[path = "support/remote_write.rs"] mod remote_write;`.

#![allow(dead_code)]

#[path = "fixtures.rs"]
mod fixtures;

#[allow(unused_imports)] // each test binary uses a different subset
pub use fixtures::{SEC, attrs, batch, counter_point};

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fovea::config::{self};
use fovea::exporters::prometheusremotewrite::{RemoteWriteConfig, RemoteWriteExporter};
use fovea::model::{MetricBatch, Payload, Signal};
use fovea::pipeline::{ComponentError, Exporter, ExporterContext, Input, Link};
use fovea::telemetry::{ComponentKind, ComponentStats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Parses `exporters::prometheusremotewrite` from `body` (YAML lines, indented by 4 spaces).
pub fn config(body: &str) -> RemoteWriteConfig {
    let yaml = format!("exporters:\n  prometheusremotewrite:\n{body}");
    let doc = config::load_str("test.yaml", &yaml).expect("config loads");
    let path = "exporters::prometheusremotewrite";
    config::parse_component(doc.root.locate(path), path).unwrap_or_else(|e| panic!("invalid config: {e}\n{yaml}"))
}

/// The exporter started and running.
pub struct Running {
    /// Feeds the exporter.
    pub link: Link,
    /// Its counters.
    pub stats: Arc<ComponentStats>,
    /// Cancel to make it give up at shutdown.
    pub deadline: CancellationToken,
    task: JoinHandle<Result<(), ComponentError>>,
}

/// Starts an exporter with `config`, as the engine would.
pub async fn start(config: &RemoteWriteConfig) -> Running {
    let mut exporter = RemoteWriteExporter::new("prometheusremotewrite".into(), config);
    let start = fixtures::start_context(ComponentKind::Exporter, "prometheusremotewrite");
    let stats = start.stats.clone();
    exporter.start(&start).await.expect("exporter starts");
    let (link, input) = Input::channel(64, stats.clone());
    let deadline = CancellationToken::new();
    let ctx = ExporterContext { input, deadline: deadline.clone(), start };
    let task = tokio::spawn(Box::new(exporter).run(ctx));
    Running { link, stats, deadline, task }
}

impl Running {
    /// Sends a batch; returns once the exporter's input has it.
    pub async fn send(&self, batch: MetricBatch) {
        self.link.send(Payload::from(batch)).await.expect("exporter accepts the batch");
    }

    /// Sends a batch and waits until the exporter has durably taken it (its acknowledgement).
    pub async fn send_acked(&self, batch: MetricBatch) -> bool {
        let (batch, waiter) = fixtures::with_acks(batch);
        self.send(batch).await;
        waiter.wait().await
    }

    /// Closes the input and waits for the exporter to finish (or `deadline` later, to give up).
    pub async fn stop(self, grace: Duration) -> (u64, u64, u64, u64) {
        let Running { link, stats, deadline, task } = self;
        drop(link);
        let mut task = task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            deadline.cancel();
            let _ = task.await;
        }
        stats.snapshot(Signal::Metrics)
    }
}

/// Now, in whole seconds, as nanoseconds since the epoch.
pub fn now_whole_second() -> u64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    secs * SEC
}

/// Unix seconds of `nanos`, for PromQL `time=`.
pub fn unix_seconds(nanos: u64) -> f64 {
    nanos as f64 / SEC as f64
}
