//! The `prometheusremotewrite` exporter's encoding on one core: samples per second translated,
//! packed into `WriteRequest` bodies and snappy-compressed, for a batch of 10 000 pod-level
//! counters (OpenTelemetry and Retina naming) and 1 000 histograms; and bytes per sample on the
//! wire, printed before the table. Every iteration is a new round (newer timestamps, new values),
//! the steady state of an agent sending every interval. Allocation counts are beside the times.
//!
//! Run: `cargo bench --bench prw_encode`.

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::cell::Cell;
use std::sync::Arc;

use divan::counter::ItemsCount;
use divan::{AllocProfiler, Bencher, black_box};
use fixtures::{SEC, T0};
use fovea::delivery::Request;
use fovea::exporters::prometheusremotewrite::{RemoteWriteConfig, RemoteWriteEncoder, compress};
use fovea::model::{
    Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, Payload, Resource, Scope, Temporality,
};
use fovea::prometheus::Naming;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const SERIES: usize = 10_000;
const HISTOGRAMS: usize = 1_000;

fn main() {
    for (what, naming, batch, samples) in [
        ("pod counters, otel naming", Naming::Otel, pod_batch as fn(u64) -> MetricBatch, SERIES),
        ("pod counters, retina naming", Naming::Retina, pod_batch, SERIES),
        ("histograms (9 bounds)", Naming::Otel, histogram_batch, HISTOGRAMS * 12),
    ] {
        let encoder = RemoteWriteEncoder::new(&config(naming));
        let mut requests = Vec::new();
        encoder.encode_counted(&Payload::from(batch(0)), &mut requests).expect("encodes");
        requests.clear();
        encoder.encode_counted(&Payload::from(batch(1)), &mut requests).expect("encodes");
        let raw: usize = requests.iter().map(|r| r.body.len()).sum();
        let wire: usize = requests.iter().map(|r| compress(&r.body).map_or(0, |c| c.len())).sum();
        println!(
            "{what}: {samples} samples in {} request(s): {:.1} bytes/sample protobuf, {:.2} bytes/sample on the wire (snappy)",
            requests.len(),
            raw as f64 / samples as f64,
            wire as f64 / samples as f64
        );
    }
    divan::main();
}

fn config(naming: Naming) -> RemoteWriteConfig {
    let mut c = RemoteWriteConfig::with_endpoint("http://127.0.0.1:9090/api/v1/write");
    c.external_labels = [("cluster".to_string(), "prod-eu-1".to_string())].into_iter().collect();
    c.naming = naming;
    c
}

fn resource() -> Arc<Resource> {
    fixtures::node_resource("node-1")
}

/// The pod-level counters of `fixtures::pod_batch` at round `round` (one second apart).
fn pod_batch(round: u64) -> MetricBatch {
    fixtures::pod_batch(round, T0 - 3600 * SEC, T0 + round * SEC)
}

/// 1 000 cumulative histograms with 9 bounds (12 samples each: 10 buckets, sum, count).
fn histogram_batch(round: u64) -> MetricBatch {
    let scope = Arc::new(Scope { name: "fovea/flows".into(), version: "0.1.0".into() });
    let bounds: Arc<[f64]> = Arc::from(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]);
    let points = (0..HISTOGRAMS)
        .map(|i| {
            let n = round + 1;
            HistogramPoint {
                attributes: Attributes::from_pairs([("source.k8s.pod.name", format!("client-{i}"))]),
                start_time_unix_nano: T0 - 3600 * SEC,
                time_unix_nano: T0 + round * SEC,
                count: 10 * n,
                sum: 0.25 * n as f64,
                bucket_counts: vec![n; 10],
                explicit_bounds: bounds.clone(),
                min: None,
                max: None,
            }
        })
        .collect();
    let metric = Metric {
        name: "network.tcp.handshake.duration".into(),
        description: "TCP handshake time".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData { points, temporality: Temporality::Cumulative }),
    };
    MetricBatch::single(resource(), scope, vec![metric])
}

/// Encodes and compresses fresh rounds on a warm encoder (its series already known); making and
/// dropping the input batch is not timed.
fn run(bencher: Bencher, naming: Naming, make: fn(u64) -> MetricBatch, samples: usize) {
    let encoder = RemoteWriteEncoder::new(&config(naming));
    let mut warm = Vec::new();
    let _ = encoder.encode_counted(&Payload::from(make(0)), &mut warm);
    let round = Cell::new(1u64);
    let mut requests: Vec<Request> = Vec::new();
    bencher
        .counter(ItemsCount::new(samples))
        .with_inputs(|| {
            let r = round.get();
            round.set(r + 1);
            Payload::from(make(r))
        })
        .bench_local_refs(|payload| {
            requests.clear();
            let _ = encoder.encode_counted(payload, &mut requests);
            let wire: usize = requests.iter().map(|r| compress(&r.body).map_or(0, |c| c.len())).sum();
            black_box(wire)
        });
}

/// 10 000 counter samples per iteration, OpenTelemetry naming.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn pod_counters_otel(bencher: Bencher) {
    run(bencher, Naming::Otel, pod_batch, SERIES);
}

/// 10 000 counter points per iteration, Retina naming (counted as points: they become 10 000 series).
#[divan::bench(sample_count = 20, sample_size = 1)]
fn pod_counters_retina(bencher: Bencher) {
    run(bencher, Naming::Retina, pod_batch, SERIES);
}

/// 12 000 histogram samples (1 000 points) per iteration.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn histograms(bencher: Bencher) {
    run(bencher, Naming::Otel, histogram_batch, HISTOGRAMS * 12);
}
