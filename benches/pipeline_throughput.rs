//! Points per second through receiver -> batch -> prometheus exporter on one core (a
//! current-thread runtime), then the cost of encoding the resulting exposition.
//!
//! `cargo bench --bench pipeline_throughput` prints a table. Numbers are machine-dependent; this
//! is a measurement, never an assertion.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::Deserialize;

use fovea::config::{self, ComponentConfig, parse_component};
use fovea::exporters::prometheus::PrometheusConfig;
use fovea::model::{Attributes, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope, Signal};
use fovea::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, Registry};
use fovea::prometheus::{Format, Store};
use fovea::telemetry::{ComponentKind, StatsRegistry};

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
struct GenConfig {
    batches: u64,
    series: u64,
}
impl ComponentConfig for GenConfig {}

/// Emits `batches` batches, each one point per series (like a receiver's collection round).
struct Gen(GenConfig);

fn round(resource: &Arc<Resource>, scope: &Arc<Scope>, series: u64, n: u64) -> MetricBatch {
    let now = n * 1_000_000_000;
    let points = (0..series)
        .map(|i| {
            let attrs = Attributes::from_pairs([
                ("network.interface.name", format!("veth{:05}", i / 2)),
                ("network.io.direction", if i % 2 == 0 { "receive".to_string() } else { "transmit".to_string() }),
            ]);
            NumberPoint::int(attrs, 1, now, (n * 1000 + i) as i64)
        })
        .collect();
    MetricBatch::single(
        resource.clone(),
        scope.clone(),
        vec![Metric::counter("network.forward.packets", "{packet}", "", points)],
    )
}

#[async_trait]
impl Receiver for Gen {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let resource = Arc::new(Resource {
            attributes: Attributes::from_pairs([("service.name", "fovea"), ("host.name", "bench")]),
        });
        let scope = Arc::new(Scope::default());
        for n in 0..self.0.batches {
            ctx.output.send(Payload::from(round(&resource, &scope, self.0.series, n))).await?;
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
            description: "benchmark generator",
            metrics: &[],
            build: |ctx: &BuildContext<'_>| {
                let config: GenConfig = parse_component(ctx.node, ctx.path)?;
                Ok(Built::Receiver(Box::new(Gen(config))))
            },
        },
        fovea::processors::batch::factory(),
        fovea::exporters::prometheus::factory(),
    ])
}

fn main() {
    let series = 10_000u64;
    let batches = 200u64;
    let yaml = format!(
        "receivers: {{gen: {{batches: {batches}, series: {series}}}}}\n\
         processors: {{batch: {{}}}}\n\
         exporters: {{prometheus: {{endpoint: '127.0.0.1:0'}}}}\n\
         service: {{pipelines: {{metrics: {{receivers: [gen], processors: [batch], exporters: [prometheus]}}}}}}\n"
    );
    let doc = config::load_str("bench.yaml", &yaml).unwrap();
    let graph = fovea::pipeline::build(&doc, &registry(), Arc::new(Resource::default())).unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stats = Arc::new(StatsRegistry::default());
    let start = Instant::now();
    runtime.block_on(graph.run(stats.clone(), Default::default(), std::future::pending(), || {})).unwrap();
    let elapsed = start.elapsed();
    let points = series * batches;
    let exported: u64 =
        stats.components().iter().filter(|c| c.id() == "prometheus").map(|c| c.snapshot(Signal::Metrics).1).sum();
    assert_eq!(exported, points, "every point reached the exporter");

    // Encoding: the same store and encoder the scrape endpoint uses, holding `series` series.
    let mut store = Store::new(PrometheusConfig::default().store_options());
    let resource = Arc::new(Resource { attributes: Attributes::from_pairs([("service.name", "fovea")]) });
    store.fold(&round(&resource, &Arc::new(Scope::default()), series, 1), Instant::now());
    let mut out = String::new();
    let encodes = 200;
    let t = Instant::now();
    for _ in 0..encodes {
        out.clear();
        store.encode(Format::Text, false, &mut out);
    }
    let encode = t.elapsed() / encodes;

    println!("pipeline receiver -> batch -> prometheus (one core, {series} series x {batches} rounds)");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| points through the pipeline | {points} |");
    println!("| elapsed | {:.3} s |", elapsed.as_secs_f64());
    println!(
        "| points per second (incl. building the points in the receiver) | {:.0} |",
        points as f64 / elapsed.as_secs_f64()
    );
    println!("| exposition encode of {series} series | {:.3} ms ({} bytes) |", encode.as_secs_f64() * 1e3, out.len());
    println!("| series encoded per second | {:.0} |", series as f64 / encode.as_secs_f64());
}
