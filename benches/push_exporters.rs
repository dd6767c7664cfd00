//! Points per second encoded and sent by the push exporters (OTLP/gRPC, OTLP/HTTP,
//! Prometheus remote-write) on one core, against loopback sinks running on the other core, and
//! bytes per point on the wire.
//!
//! The exporter runs on a current-thread runtime on the main thread, so its CPU time is that
//! thread's (getrusage RUSAGE_THREAD); the sinks run on their own thread: fovea's own `otlp`
//! receiver for OTLP (a real server, acknowledging every request) and a minimal remote-write
//! endpoint that counts body bytes. `cargo bench --bench push_exporters` prints a table.

#[path = "../tests/support/otlp.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use tokio_util::sync::CancellationToken;

use fovea::exporters::otlp::{self, OtlpExporterConfig};
use fovea::exporters::otlphttp::{self, OtlpHttpExporterConfig};
use fovea::exporters::prometheusremotewrite::{RemoteWriteConfig, RemoteWriteExporter};
use fovea::model::{MetricBatch, Payload, Signal};
use fovea::pipeline::{Exporter, ExporterContext, Input};
use fovea::telemetry::ComponentKind;

const SERIES: usize = 1000;
const BATCHES: usize = 300;

fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// Batches of `SERIES` pod-level counters; each batch is one collection round (newer timestamps).
fn batches() -> Vec<MetricBatch> {
    (0..BATCHES)
        .map(|round| {
            let mut b = support::node_batch(SERIES);
            for m in &mut b.resource_metrics[0].scope_metrics[0].metrics {
                if let fovea::model::MetricData::Sum(s) = &mut m.data {
                    for p in &mut s.points {
                        p.time_unix_nano += round as u64 * 1_000_000_000;
                    }
                }
            }
            b
        })
        .collect()
}

struct Result {
    name: &'static str,
    points: u64,
    wall: Duration,
    cpu: Duration,
    wire_bytes: u64,
}

fn run_exporter(name: &'static str, exporter: Box<dyn Exporter>, wire: Arc<AtomicU64>) -> Result {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let input = batches();
    rt.block_on(async move {
        let mut exporter = exporter;
        let ctx = support::start_context(ComponentKind::Exporter, "bench");
        exporter.start(&ctx).await.unwrap();
        let (link, rx) = Input::channel(1024, ctx.stats.clone());
        let stats = ctx.stats.clone();
        let task =
            tokio::spawn(exporter.run(ExporterContext { input: rx, deadline: CancellationToken::new(), start: ctx }));
        let want = (SERIES * BATCHES) as u64;
        let (wall0, cpu0) = (Instant::now(), thread_cpu());
        for b in input {
            link.send(Payload::from(b)).await.unwrap();
        }
        while stats.snapshot(Signal::Metrics).1 < want {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let (wall, cpu) = (wall0.elapsed(), thread_cpu() - cpu0);
        drop(link);
        task.await.unwrap().unwrap();
        let (_, sent, dropped, _) = stats.snapshot(Signal::Metrics);
        assert_eq!((sent, dropped), (want, 0), "{name}: every point delivered");
        Result { name, points: want, wall, cpu, wire_bytes: wire.load(Ordering::Relaxed) }
    })
}

/// A remote-write endpoint that counts the (snappy-compressed) body bytes it receives.
fn remote_write_sink(sinks: &tokio::runtime::Runtime, wire: Arc<AtomicU64>) -> SocketAddr {
    sinks.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/api/v1/write",
            post(move |body: Bytes| {
                let wire = wire.clone();
                async move {
                    wire.fetch_add(body.len() as u64, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    })
}

fn main() {
    fovea::tls::install_default_provider();
    // Sinks on their own thread (the second core).
    let sinks = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let receiver = sinks.block_on(support::start_receiver(serde_json::json!({
        "protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    })));
    let (grpc, http) = (receiver.grpc.unwrap(), receiver.http.unwrap());
    // Drain and acknowledge what the receiver produces.
    let mut input = receiver.input;
    sinks.spawn(async move {
        while let Some(p) = input.recv().await {
            p.acks().accept();
        }
    });

    let mut results = Vec::new();
    for compression in ["gzip", "zstd", "none"] {
        let name: &'static str = Box::leak(format!("otlp (gRPC, {compression})").into_boxed_str());
        let config: OtlpExporterConfig = serde_json::from_value(serde_json::json!({
            "endpoint": grpc.to_string(), "tls": {"insecure": true}, "compression": compression,
        }))
        .unwrap();
        let wire = Arc::new(AtomicU64::new(0));
        results.push(run_exporter(name, Box::new(otlp::exporter(name.into(), &config).unwrap()), wire));
    }
    for compression in ["gzip", "zstd"] {
        let name: &'static str = Box::leak(format!("otlphttp (protobuf, {compression})").into_boxed_str());
        let config: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
            "endpoint": format!("http://{http}"), "compression": compression,
        }))
        .unwrap();
        results.push(run_exporter(
            name,
            Box::new(otlphttp::exporter(name.into(), &config)),
            Arc::new(AtomicU64::new(0)),
        ));
    }
    let wire = Arc::new(AtomicU64::new(0));
    let rw = remote_write_sink(&sinks, wire.clone());
    let config = RemoteWriteConfig::with_endpoint(format!("http://{rw}/api/v1/write"));
    results.push(run_exporter(
        "prometheusremotewrite (snappy)",
        Box::new(RemoteWriteExporter::new("prw".into(), &config)),
        wire,
    ));

    // Bytes per point on the wire for OTLP: the compressed request bodies of the same batches.
    let encoded = support::node_batch(SERIES);
    let body = {
        use prost::Message;
        fovea::otlp::metrics_to_proto(&encoded).encode_to_vec()
    };
    let gz = fovea::otlp::compression::Compression::Gzip.compress(&body).unwrap().len();
    let zs = fovea::otlp::compression::Compression::Zstd.compress(&body).unwrap().len();

    println!(
        "push exporters, {BATCHES} batches x {SERIES} series (3 attributes), exporter on one core, sinks on the other"
    );
    println!("| exporter | points/s (wall) | points per CPU-second of the exporter thread | bytes/point on the wire |");
    println!("|---|---|---|---|");
    for r in &results {
        let per_point = if r.wire_bytes > 0 {
            format!("{:.1}", r.wire_bytes as f64 / r.points as f64)
        } else if r.name.contains("gzip") {
            format!("{:.1}", gz as f64 / SERIES as f64)
        } else if r.name.contains("zstd") {
            format!("{:.1}", zs as f64 / SERIES as f64)
        } else {
            format!("{:.1}", body.len() as f64 / SERIES as f64)
        };
        println!(
            "| {} | {:.0} | {:.0} | {} |",
            r.name,
            r.points as f64 / r.wall.as_secs_f64(),
            r.points as f64 / r.cpu.as_secs_f64(),
            per_point
        );
    }
}
