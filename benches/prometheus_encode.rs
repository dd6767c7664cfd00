//! The `prometheus` exporter's series store on one core: points folded in per second (known
//! series, the steady state, and new series), and series encoded per second (text, OpenMetrics,
//! Retina naming), for 10 000 series. Allocation counts are printed beside the times.
//!
//! Run: `cargo bench --bench prometheus_encode`.

use std::sync::Arc;

use divan::counter::ItemsCount;
use divan::{AllocProfiler, Bencher, black_box};
use fovea::exporters::prometheus::{Format, Naming, PrometheusConfig, SeriesStore};
use fovea::model::{
    Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, NumberPoint, Resource, Scope,
    Temporality,
};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const SERIES: usize = 10_000;

fn main() {
    divan::main();
}

/// 10 000 pod-level forward counters (100 source pods x 50 destination pods x 2 directions), the
/// shape the `context` processor produces in remote mode. `round` changes every value.
fn pod_batch(round: i64) -> MetricBatch {
    let resource = Arc::new(Resource {
        attributes: Attributes::from_pairs([
            ("service.name", "fovea"),
            ("service.instance.id", "node-1"),
            ("k8s.node.name", "node-1"),
            ("host.name", "node-1"),
        ]),
    });
    let scope = Arc::new(Scope { name: "fovea/context".into(), version: "0.1.0".into() });
    let mut points = Vec::with_capacity(SERIES);
    for src in 0..100 {
        for dst in 0..50 {
            for dir in ["receive", "transmit"] {
                let attributes = Attributes::from_pairs([
                    ("network.io.direction", dir.to_string()),
                    ("source.k8s.namespace.name", format!("ns-{}", src % 10)),
                    ("source.k8s.pod.name", format!("client-{src}")),
                    ("source.k8s.workload.kind", "Deployment".to_string()),
                    ("source.k8s.workload.name", format!("client-{}", src / 4)),
                    ("destination.k8s.namespace.name", format!("ns-{}", dst % 10)),
                    ("destination.k8s.pod.name", format!("server-{dst}")),
                ]);
                points.push(NumberPoint::int(attributes, 1, 2 + round as u64, 1000 * round + src * 50 + dst));
            }
        }
    }
    MetricBatch::single(resource, scope, vec![Metric::counter("network.forward.packets", "{packet}", "", points)])
}

/// 1 000 histograms with 10 buckets each.
fn histogram_batch() -> MetricBatch {
    let bounds: Arc<[f64]> = Arc::from(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]);
    let points = (0..1000)
        .map(|i| HistogramPoint {
            attributes: Attributes::from_pairs([("source.k8s.pod.name", format!("client-{i}"))]),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            count: 55,
            sum: 1.25,
            bucket_counts: (1..=10).collect(),
            explicit_bounds: bounds.clone(),
            min: None,
            max: None,
        })
        .collect();
    let metric = Metric {
        name: "network.tcp.rtt".into(),
        description: "".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData { points, temporality: Temporality::Cumulative }),
    };
    MetricBatch::single(Arc::new(Resource::default()), Arc::new(Scope::default()), vec![metric])
}

fn store(naming: Naming, batch: &MetricBatch) -> SeriesStore {
    let mut s = SeriesStore::new(&PrometheusConfig { naming, ..PrometheusConfig::default() });
    s.fold(batch);
    s
}

/// Steady state: every point updates a known series (no allocation expected).
#[divan::bench(args = [Naming::Otel, Naming::Retina])]
fn fold_known_series(bencher: Bencher, naming: Naming) {
    let first = pod_batch(1);
    let next = pod_batch(2);
    let mut s = store(naming, &first);
    bencher.counter(ItemsCount::new(SERIES)).bench_local(|| black_box(s.fold(black_box(&next))));
}

/// Every point is a new series: label rendering and placement.
#[divan::bench(args = [Naming::Otel, Naming::Retina])]
fn fold_new_series(bencher: Bencher, naming: Naming) {
    let batch = pod_batch(1);
    bencher
        .counter(ItemsCount::new(SERIES))
        .with_inputs(|| SeriesStore::new(&PrometheusConfig { naming, ..PrometheusConfig::default() }))
        .bench_local_values(|mut s| {
            s.fold(&batch);
            s
        });
}

/// A scrape: all 10 000 series encoded.
#[divan::bench(args = [(Naming::Otel, Format::Text), (Naming::Otel, Format::OpenMetrics), (Naming::Retina, Format::Text)])]
fn encode(bencher: Bencher, (naming, format): (Naming, Format)) {
    let s = store(naming, &pod_batch(1));
    let mut out = String::new();
    bencher.counter(ItemsCount::new(SERIES)).bench_local(|| {
        out.clear();
        s.encode(format, &mut out);
        black_box(out.len())
    });
}

/// 1 000 ten-bucket histograms: fold (known series) and encode.
#[divan::bench]
fn histograms_fold_and_encode(bencher: Bencher) {
    let batch = histogram_batch();
    let mut s = store(Naming::Otel, &batch);
    let mut out = String::new();
    bencher.counter(ItemsCount::new(1000usize)).bench_local(|| {
        s.fold(&batch);
        out.clear();
        s.encode(Format::Text, &mut out);
        black_box(out.len())
    });
}
