//! OTLP encoding cost on one core: points per second from fovea's model to protobuf bytes (what
//! the `otlp`/`otlphttp` exporters do per batch), bytes per point uncompressed, gzip and zstd,
//! and the receiver's way back (bytes -> model). Prints a table; `cargo bench --bench otlp_encode`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;

use fovea::model::{AttrValue, Attributes, Metric, MetricBatch, NumberPoint, Resource, Scope};
use fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use fovea::otlp::{Compression, metrics_from_proto, metrics_to_proto};

/// A node batch: `series` counter series with 3 attributes each (interface, direction, pod).
fn node_batch(series: usize) -> MetricBatch {
    let resource = Arc::new(Resource {
        attributes: Attributes::from_pairs([
            ("k8s.node.name", "aks-nodepool1-12345678-vmss000001"),
            ("host.name", "aks-nodepool1-12345678-vmss000001"),
            ("service.name", "fovea"),
        ]),
    });
    let scope = Arc::new(Scope { name: "fovea/packetforward".into(), version: "0.1.0".into() });
    let points = (0..series)
        .map(|i| {
            let attrs = Attributes::from_pairs([
                ("network.interface.name", AttrValue::from(format!("veth{:08x}", i / 2))),
                ("network.io.direction", AttrValue::from(if i % 2 == 0 { "receive" } else { "transmit" })),
                ("k8s.pod.name", AttrValue::from(format!("checkout-7d4b9c8f6-{:05}", i / 2))),
            ]);
            let value = 1_000_000 + (i as i64) * 7_919;
            NumberPoint::int(attrs, 1_700_000_000_000_000_000, 1_700_000_060_000_000_000 + i as u64, value)
        })
        .collect();
    MetricBatch::single(
        resource,
        scope,
        vec![Metric::counter("network.forward.bytes", "By", "Bytes forwarded", points)],
    )
}

/// Runs `f` repeatedly for about `budget` and returns the mean time per run.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < budget {
        f();
        runs += 1;
    }
    start.elapsed() / runs
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let budget = if quick { Duration::from_millis(50) } else { Duration::from_secs(2) };
    println!("{:<28} {:>8} {:>14} {:>12} {:>10}", "step (1 core)", "points", "points/s", "us/batch", "B/point");
    for series in [1_000usize, 10_000] {
        let batch = node_batch(series);
        let n = batch.data_points() as f64;
        let body = metrics_to_proto(&batch).encode_to_vec();
        let row = |name: &str, t: Duration, bytes: Option<usize>| {
            let per_point = bytes.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / n));
            println!(
                "{:<28} {:>8} {:>14.0} {:>12.1} {:>10}",
                name,
                series,
                n / t.as_secs_f64(),
                t.as_secs_f64() * 1e6,
                per_point
            );
        };
        let t = time(budget, || {
            black_box(metrics_to_proto(black_box(&batch)).encode_to_vec());
        });
        row("encode model -> protobuf", t, Some(body.len()));
        for c in [Compression::Gzip, Compression::Zstd] {
            let packed = c.compress(&body).map(|p| p.len()).unwrap_or(0);
            let t = time(budget, || {
                black_box(c.compress(black_box(&body)).ok());
            });
            row(&format!("  + {} (fovea's level)", c.token().unwrap_or("none")), t, Some(packed));
        }
        let t = time(budget, || {
            let req = ExportMetricsServiceRequest::decode(black_box(body.as_slice())).ok();
            black_box(req.map(metrics_from_proto));
        });
        row("decode protobuf -> model", t, None);
    }
}
