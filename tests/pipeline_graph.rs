//! The engine's graph semantics, with small in-test components: fan-out shares batches, a receiver
//! shared by several pipelines feeds each of them, and a stop flushes everything accepted.

#[path = "support/snippet.rs"]
mod snippet;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use fovea::config::{ComponentConfig, parse_component};
use fovea::model::{Attributes, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope, Signal};
use fovea::pipeline::{
    BuildContext, Built, ComponentError, Exporter, ExporterContext, Factory, Receiver, ReceiverContext, Registry,
    StartContext,
};
use fovea::telemetry::{ComponentKind, StatsRegistry};

/// What a test exporter saw.
#[derive(Default)]
struct Sink {
    items: AtomicU64,
    batches: AtomicU64,
    pointers: Mutex<Vec<usize>>,
    started_at: Mutex<Option<std::time::Instant>>,
}

static SINKS: LazyLock<Mutex<HashMap<String, Arc<Sink>>>> = LazyLock::new(Default::default);
static RECEIVER_STARTS: LazyLock<Mutex<HashMap<String, std::time::Instant>>> = LazyLock::new(Default::default);

fn sink(name: &str) -> Arc<Sink> {
    SINKS.lock().unwrap().entry(name.to_string()).or_default().clone()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct GenConfig {
    /// Batches to emit; 0 = emit until stopped.
    batches: u64,
    /// Points per batch.
    points: u64,
    /// Pause between batches in ms.
    interval_ms: u64,
}
impl ComponentConfig for GenConfig {}

struct Gen {
    id: String,
    config: GenConfig,
}

#[async_trait]
impl Receiver for Gen {
    async fn start(&mut self, _ctx: &StartContext) -> Result<(), ComponentError> {
        RECEIVER_STARTS.lock().unwrap().insert(self.id.clone(), std::time::Instant::now());
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let resource = Arc::new(Resource::default());
        let scope = Arc::new(Scope::default());
        let mut n = 0;
        while self.config.batches == 0 || n < self.config.batches {
            if ctx.shutdown.is_cancelled() {
                break;
            }
            let points = (0..self.config.points)
                .map(|i| NumberPoint::int(Attributes::from_pairs([("i", i as i64)]), 0, 1, n as i64))
                .collect();
            let batch =
                MetricBatch::single(resource.clone(), scope.clone(), vec![Metric::counter("gen", "1", "", points)]);
            ctx.output.send(Payload::from(batch)).await?;
            n += 1;
            if self.config.interval_ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(self.config.interval_ms)) => {}
                    _ = ctx.shutdown.cancelled() => break,
                }
            }
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct CountConfig {
    /// Delay per batch in ms (a slow backend).
    delay_ms: u64,
    /// Never finish (to test the shutdown timeout).
    hang: bool,
    /// Fail to start.
    fail_start: bool,
}
impl ComponentConfig for CountConfig {}

struct Count {
    sink: Arc<Sink>,
    config: CountConfig,
}

#[async_trait]
impl Exporter for Count {
    async fn start(&mut self, _ctx: &StartContext) -> Result<(), ComponentError> {
        if self.config.fail_start {
            return Err("port already in use".into());
        }
        *self.sink.started_at.lock().unwrap() = Some(std::time::Instant::now());
        Ok(())
    }

    async fn run(self: Box<Self>, mut ctx: ExporterContext) -> Result<(), ComponentError> {
        while let Some(p) = ctx.input.recv().await {
            if self.config.hang {
                std::future::pending::<()>().await;
            }
            if self.config.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.config.delay_ms)).await;
            }
            if let Payload::Metrics(m) = &p {
                self.sink.pointers.lock().unwrap().push(Arc::as_ptr(m) as usize);
            }
            self.sink.items.fetch_add(p.items(), Ordering::SeqCst);
            self.sink.batches.fetch_add(1, Ordering::SeqCst);
            ctx.start.stats.add_sent(p.signal(), p.items());
        }
        Ok(())
    }
}

fn registry() -> Registry {
    Registry::new(vec![
        Factory {
            kind: ComponentKind::Receiver,
            type_name: "gen",
            aliases: &[],
            signals: &[Signal::Metrics],
            connects: &[],
            description: "test generator",
            metrics: &[],
            build: |ctx: &BuildContext<'_>| {
                let config: GenConfig = parse_component(ctx.node, ctx.path)?;
                Ok(Built::Receiver(Box::new(Gen { id: ctx.id.to_string(), config })))
            },
        },
        Factory {
            kind: ComponentKind::Exporter,
            type_name: "count",
            aliases: &[],
            signals: &[Signal::Metrics, Signal::Flows],
            connects: &[],
            description: "test counter",
            metrics: &[],
            build: |ctx: &BuildContext<'_>| {
                let config: CountConfig = parse_component(ctx.node, ctx.path)?;
                Ok(Built::Exporter(Box::new(Count { sink: sink(&ctx.id.to_string()), config })))
            },
        },
        fovea::processors::batch::factory(),
    ])
}

fn graph(yaml: &str) -> fovea::pipeline::Graph {
    snippet::build(yaml, &registry()).unwrap()
}

#[tokio::test]
async fn fan_out_delivers_every_batch_to_every_exporter_without_copying() {
    let g = graph(
        "receivers: {gen/fan: {batches: 50, points: 10}}\n\
         exporters: {count/fan_a: {}, count/fan_b: {delay_ms: 1}}\n\
         service: {pipelines: {metrics: {receivers: [gen/fan], exporters: [count/fan_a, count/fan_b]}}}\n",
    );
    let stats = Arc::new(StatsRegistry::default());
    let report = g.run(stats.clone(), Default::default(), std::future::pending(), || {}).await.unwrap();
    assert!(report.failed.is_empty());
    let (a, b) = (sink("count/fan_a"), sink("count/fan_b"));
    assert_eq!(a.items.load(Ordering::SeqCst), 500);
    assert_eq!(b.items.load(Ordering::SeqCst), 500);
    // Both exporters saw the very same allocations: fan-out shares, it does not copy.
    assert_eq!(*a.pointers.lock().unwrap(), *b.pointers.lock().unwrap());
    let receiver = stats.components().into_iter().find(|c| c.id() == "gen/fan").unwrap();
    assert_eq!(receiver.snapshot(Signal::Metrics).1, 500, "accepted items");
}

#[tokio::test]
async fn a_receiver_shared_by_pipelines_feeds_each_of_them() {
    let g = graph(
        "receivers: {gen/shared: {batches: 20, points: 7}}\n\
         processors: {batch: {send_batch_size: 30, timeout: 50ms}}\n\
         exporters: {count/only_a: {}, count/only_b: {}, count/both: {}}\n\
         service:\n  pipelines:\n\
         \x20   metrics/a: {receivers: [gen/shared], processors: [batch], exporters: [count/only_a, count/both]}\n\
         \x20   metrics/b: {receivers: [gen/shared], exporters: [count/only_b, count/both]}\n",
    );
    let stats = Arc::new(StatsRegistry::default());
    g.run(stats, Default::default(), std::future::pending(), || {}).await.unwrap();
    assert_eq!(sink("count/only_a").items.load(Ordering::SeqCst), 140);
    assert_eq!(sink("count/only_b").items.load(Ordering::SeqCst), 140);
    // An exporter listed by both pipelines receives the data of each.
    assert_eq!(sink("count/both").items.load(Ordering::SeqCst), 280);
    // The batch processor grouped 7-point batches into batches of at least 30 (last one flushed on stop).
    assert!(sink("count/only_a").batches.load(Ordering::SeqCst) <= 5);
}

#[tokio::test]
async fn stop_flushes_everything_accepted() {
    let g = graph(
        "receivers: {gen/flush: {points: 3, interval_ms: 1}}\n\
         processors: {batch: {send_batch_size: 100000, timeout: 1h}}\n\
         exporters: {count/flush: {delay_ms: 2}}\n\
         service: {shutdown_timeout: 30s, pipelines: {metrics: {receivers: [gen/flush], processors: [batch], exporters: [count/flush]}}}\n",
    );
    let stats = Arc::new(StatsRegistry::default());
    let stop = async { tokio::time::sleep(Duration::from_millis(500)).await };
    let report = g.run(stats.clone(), Default::default(), stop, || {}).await.unwrap();
    let receiver = stats.components().into_iter().find(|c| c.id() == "gen/flush").unwrap();
    let accepted = receiver.snapshot(Signal::Metrics).1;
    assert!(accepted > 100, "the generator ran ({accepted} items)");
    assert_eq!(report.dropped_at_shutdown, 0);
    // Count in = count out, although the batch processor held everything until the stop.
    assert_eq!(sink("count/flush").items.load(Ordering::SeqCst), accepted);
}

#[tokio::test]
async fn shutdown_timeout_reports_what_was_dropped() {
    let g = graph(
        "receivers: {gen/hang: {batches: 4, points: 5}}\n\
         exporters: {count/hang: {hang: true}}\n\
         service: {shutdown_timeout: 300ms, pipelines: {metrics: {receivers: [gen/hang], exporters: [count/hang]}}}\n",
    );
    let stats = Arc::new(StatsRegistry::default());
    let report = g.run(stats.clone(), Default::default(), std::future::pending(), || {}).await.unwrap();
    // One batch is stuck inside the exporter, three wait in its queue: 20 items, all counted.
    assert_eq!(report.dropped_at_shutdown, 20);
    let exporter = stats.components().into_iter().find(|c| c.id() == "count/hang").unwrap();
    assert_eq!(exporter.snapshot(Signal::Metrics).2, 20, "dropped counter");
}

#[tokio::test]
async fn exporters_start_before_receivers_and_a_failed_start_runs_nothing() {
    let g = graph(
        "receivers: {gen/order: {batches: 1, points: 1}}\n\
         exporters: {count/order: {}}\n\
         service: {pipelines: {metrics: {receivers: [gen/order], exporters: [count/order]}}}\n",
    );
    g.run(Arc::new(StatsRegistry::default()), Default::default(), std::future::pending(), || {}).await.unwrap();
    let exporter_start = sink("count/order").started_at.lock().unwrap().unwrap();
    let receiver_start = RECEIVER_STARTS.lock().unwrap()["gen/order"];
    assert!(exporter_start <= receiver_start);

    let g = graph(
        "receivers: {gen/nostart: {batches: 1, points: 1}}\n\
         exporters: {count/ok: {}, count/broken: {fail_start: true}}\n\
         service: {pipelines: {metrics: {receivers: [gen/nostart], exporters: [count/ok, count/broken]}}}\n",
    );
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    let err = g
        .run(Arc::new(StatsRegistry::default()), Default::default(), std::future::pending(), move || {
            r.store(true, Ordering::SeqCst)
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "exporter `count/broken` failed to start: port already in use");
    assert!(!ready.load(Ordering::SeqCst));
    assert!(!RECEIVER_STARTS.lock().unwrap().contains_key("gen/nostart"), "no receiver started");
    assert_eq!(sink("count/ok").items.load(Ordering::SeqCst), 0);
}
