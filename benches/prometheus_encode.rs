//! The Prometheus series store (`src/prometheus`, the scrape exporter's) on one core: points folded in per second (known
//! series, the steady state, and new series), and series encoded per second (text, OpenMetrics,
//! Retina naming), for 10 000 series. Allocation counts are printed beside the times.
//!
//! Run: `cargo bench --bench prometheus_encode`.

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;
use std::time::Instant;

use divan::counter::ItemsCount;
use divan::{AllocProfiler, Bencher, black_box};
use fovea::model::{
    Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, Resource, Scope, Temporality,
};
use fovea::prometheus::{Format, Naming, Store, StoreOptions};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const SERIES: usize = 10_000;

fn main() {
    divan::main();
}

/// The pod-level counters of `fixtures::pod_batch`; `round` changes every value.
fn pod_batch(round: u64) -> MetricBatch {
    fixtures::pod_batch(round, 1, 2 + round)
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

/// A store named like the scrape exporter's defaults.
fn new_store(naming: Naming) -> Store {
    Store::new(StoreOptions { naming, ..StoreOptions::plain() })
}

fn store(naming: Naming, batch: &MetricBatch) -> Store {
    let mut s = new_store(naming);
    s.fold(batch, Instant::now());
    s
}

/// Steady state: every point updates a known series (no allocation expected).
#[divan::bench(args = [Naming::Otel, Naming::Retina])]
fn fold_known_series(bencher: Bencher, naming: Naming) {
    let first = pod_batch(1);
    let next = pod_batch(2);
    let mut s = store(naming, &first);
    bencher.counter(ItemsCount::new(SERIES)).bench_local(|| black_box(s.fold(black_box(&next), Instant::now())));
}

/// Every point is a new series: label rendering and placement.
#[divan::bench(args = [Naming::Otel, Naming::Retina])]
fn fold_new_series(bencher: Bencher, naming: Naming) {
    let batch = pod_batch(1);
    bencher.counter(ItemsCount::new(SERIES)).with_inputs(|| new_store(naming)).bench_local_values(|mut s| {
        s.fold(&batch, Instant::now());
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
        s.encode(format, false, &mut out);
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
        s.fold(&batch, Instant::now());
        out.clear();
        s.encode(Format::Text, false, &mut out);
        black_box(out.len())
    });
}
