//! Delivery layer benchmark: requests/s through the in-memory and the persistent sending queue
//! (end to end through the exporter, to a transport that answers at once), the cost of fsync with
//! and without group commit, the bytes each request costs on disk, and the memory a full in-memory
//! queue of 100k data points holds. Prints a table; run with `cargo bench --bench delivery_queue`.

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use fovea::delivery::{
    DeliveryExporter, Encoder, Request, RetryConfig, SendError, SendingQueueConfig, Sent, StorageConfig, Transport,
};
use fovea::model::{
    Acks, Attributes, Metric, MetricBatch, MetricData, Number, NumberPoint, Payload, Resource, Scope, Signal,
};
use fovea::pipeline::{Exporter, ExporterContext, Input, Link};
use fovea::telemetry::{ComponentKind, ComponentStats};

/// Counts bytes currently allocated, to measure what a full queue holds.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One request per batch, its body a shared buffer (no copy): measures the queue, not encoding.
struct SharedBody(Bytes);

impl Encoder for SharedBody {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        out.push(Request { signal: payload.signal(), items: payload.items(), body: self.0.clone() });
        Ok(())
    }
}

/// Encodes gauge points the way OTLP protobuf lays them out (name, attributes as key/value
/// strings, two fixed64 timestamps, a double), so bodies have a realistic size.
struct ProtoLike;

impl Encoder for ProtoLike {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        let Payload::Metrics(batch) = payload else { return Err("metrics only".into()) };
        let mut buf = BytesMut::new();
        for (_, _, metric) in batch.iter_metrics() {
            put_str(&mut buf, 1, &metric.name);
            let MetricData::Gauge(points) = &metric.data else { continue };
            for p in points {
                for kv in p.attributes.iter() {
                    put_str(&mut buf, 7, &kv.key);
                    put_str(&mut buf, 1, &kv.value.to_string());
                }
                buf.put_u8(0x11);
                buf.put_u64_le(p.start_time_unix_nano);
                buf.put_u8(0x19);
                buf.put_u64_le(p.time_unix_nano);
                buf.put_u8(0x21);
                buf.put_f64_le(p.value.as_f64());
            }
        }
        // Exact-size body, as protobuf encoders allocate (encoded_len first).
        out.push(Request { signal: Signal::Metrics, items: payload.items(), body: Bytes::copy_from_slice(&buf) });
        Ok(())
    }
}

fn put_str(buf: &mut BytesMut, field: u8, s: &str) {
    buf.put_u8(field << 3 | 2);
    buf.put_u8(s.len() as u8);
    buf.put_slice(s.as_bytes());
}

/// A backend that accepts at once, or never answers.
struct Backend {
    hang: bool,
    sent: AtomicU64,
}

#[async_trait]
impl Transport for Backend {
    async fn send(&self, _request: &Request) -> Result<Sent, SendError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(Sent::default())
    }
}

struct Running {
    link: Option<Link>,
    deadline: CancellationToken,
    stats: Arc<ComponentStats>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(queue: SendingQueueConfig, encoder: Arc<dyn Encoder>, backend: Arc<Backend>) -> Running {
    let retry = RetryConfig { enabled: false, ..RetryConfig::default() };
    let mut exporter = DeliveryExporter::new("bench".into(), queue, retry, encoder, backend);
    let start = fixtures::start_context(ComponentKind::Exporter, "bench");
    let stats = start.stats.clone();
    let (link, input) = Input::channel(1024, stats.clone());
    exporter.start(&start).await.expect("exporter starts");
    let deadline = CancellationToken::new();
    let ctx = ExporterContext { input, deadline: deadline.clone(), start };
    let task = tokio::spawn(async move {
        Box::new(exporter).run(ctx).await.expect("exporter runs");
    });
    Running { link: Some(link), deadline, stats, task }
}

impl Running {
    async fn send(&self, payload: Payload) {
        self.link.as_ref().expect("open").send(payload).await.expect("exporter alive");
    }

    async fn finish(mut self) {
        self.link.take();
        self.task.await.expect("exporter task");
    }
}

fn one_point_batch() -> Payload {
    let p = NumberPoint::int(Attributes::new(), 0, 1, 1);
    Payload::from(MetricBatch::single(
        Default::default(),
        Default::default(),
        vec![Metric::gauge("x", "1", "", vec![p])],
    ))
}

fn memory(consumers: usize, size: usize) -> SendingQueueConfig {
    SendingQueueConfig {
        enabled: true,
        num_consumers: consumers,
        queue_size: size,
        block_on_overflow: true,
        storage: None,
        ..SendingQueueConfig::default()
    }
}

fn disk(consumers: usize, dir: &std::path::Path) -> SendingQueueConfig {
    SendingQueueConfig {
        enabled: true,
        num_consumers: consumers,
        queue_size: 1_000_000,
        block_on_overflow: false,
        storage: Some(StorageConfig { directory: dir.to_path_buf(), max_size_mib: 4096 }),
        ..SendingQueueConfig::default()
    }
}

/// Requests per second for `n` one-request batches of `body` bytes, first send to last delivery.
async fn throughput(queue: SendingQueueConfig, n: u64, body: usize, acked: bool) -> f64 {
    let backend = Arc::new(Backend { hang: false, sent: AtomicU64::new(0) });
    let r = start(queue, Arc::new(SharedBody(Bytes::from(vec![0x5a; body]))), backend.clone()).await;
    let batch = one_point_batch();
    let begin = Instant::now();
    for _ in 0..n {
        if acked {
            // A client waiting for each acknowledgement: one fsync per batch, no grouping.
            let (acks, waiter) = Acks::new_request();
            let Payload::Metrics(m) = &batch else { unreachable!() };
            let mut m = (**m).clone();
            m.acks = acks;
            r.send(Payload::from(m)).await;
            assert!(waiter.wait().await);
        } else {
            r.send(batch.clone()).await;
        }
    }
    r.finish().await;
    let elapsed = begin.elapsed();
    assert_eq!(backend.sent.load(Ordering::Relaxed), n);
    n as f64 / elapsed.as_secs_f64()
}

/// Disk bytes per request beyond its body while it is queued (its record header), and per
/// delivered request until the done log is compacted (its done-log entry).
async fn disk_overhead(n: u64, body: usize) -> (f64, f64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let hang = Arc::new(Backend { hang: true, sent: AtomicU64::new(0) });
    let r = start(disk(1, dir.path()), Arc::new(SharedBody(Bytes::from(vec![1; body]))), hang).await;
    for _ in 0..n {
        r.send(one_point_batch()).await;
    }
    while r.stats.queue().0 < n as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued = dir_bytes(dir.path());
    r.deadline.cancel();
    r.finish().await;
    // Segment header (16 B) and done-log header (8 B) are per queue, not per request.
    let per_queued = (queued as f64 - 16.0 - 8.0) / n as f64 - body as f64;

    // Deliver them: the segments go, one done-log entry per request stays until compaction.
    let ok = Arc::new(Backend { hang: false, sent: AtomicU64::new(0) });
    let r = start(disk(1, dir.path()), Arc::new(SharedBody(Bytes::new())), ok.clone()).await;
    r.finish().await;
    assert_eq!(ok.sent.load(Ordering::Relaxed), n);
    let acks = std::fs::metadata(dir.path().join("acks")).expect("done log").len();
    let per_done = (acks as f64 - 8.0) / n as f64;
    // The next start compacts the log.
    let r = start(disk(1, dir.path()), Arc::new(SharedBody(Bytes::new())), ok).await;
    r.finish().await;
    (per_queued, per_done, dir_bytes(dir.path()))
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("queue dir")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name() != "lock")
        .map(|e| e.metadata().expect("metadata").len())
        .sum()
}

/// Memory held by a full in-memory queue of `points` data points, in batches of `per_batch`,
/// encoded OTLP-like: bytes held and the encoded body bytes among them.
async fn memory_held(points: u64, per_batch: u64) -> (isize, u64) {
    let hang = Arc::new(Backend { hang: true, sent: AtomicU64::new(0) });
    let batches = points / per_batch;
    let r = start(memory(1, batches as usize + 1), Arc::new(ProtoLike), hang).await;
    let resource = Arc::new(Resource::default());
    let scope = Arc::new(Scope::default());
    let make = |b: u64| {
        let points = (0..per_batch)
            .map(|i| {
                let attrs = Attributes::from_pairs([
                    ("source.k8s.namespace.name", format!("ns-{}", i % 7)),
                    ("source.k8s.pod.name", format!("pod-{b}-{i}")),
                    ("destination.k8s.namespace.name", format!("ns-{}", i % 5)),
                    ("destination.k8s.pod.name", format!("svc-{}", i % 11)),
                    ("network.io.direction", "transmit".to_string()),
                ]);
                NumberPoint {
                    attributes: attrs,
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    value: Number::Int(i as i64),
                }
            })
            .collect();
        Payload::from(MetricBatch::single(
            resource.clone(),
            scope.clone(),
            vec![Metric::gauge("network.forward.bytes", "By", "", points)],
        ))
    };
    // Warm up the runtime and the queue's first allocations.
    r.send(make(0)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = ALLOCATED.load(Ordering::Relaxed);
    for b in 1..batches {
        r.send(make(b)).await;
    }
    while r.stats.queue().0 < batches as usize - 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let held = ALLOCATED.load(Ordering::Relaxed) - before;
    let mut probe = Vec::new();
    ProtoLike.encode(&make(1), &mut probe).expect("encodes");
    let body = probe[0].body.len() as u64 * (batches - 1);
    r.deadline.cancel();
    r.finish().await;
    (held, body)
}

/// "median (min - max)" of three runs.
fn median(mut runs: Vec<f64>) -> String {
    runs.sort_by(f64::total_cmp);
    format!("{:.0} ({:.0} - {:.0})", runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("| measurement | value |");
        println!("|---|---|");
        for (consumers, n) in [(1, 200_000u64), (10, 200_000)] {
            let mut runs = Vec::new();
            for _ in 0..3 {
                runs.push(throughput(memory(consumers, 10_000), n, 1024, false).await);
            }
            println!("| memory queue, {consumers} consumer(s), 1 KiB bodies | {} requests/s |", median(runs));
        }
        for (consumers, n) in [(1, 100_000u64), (10, 100_000)] {
            let mut runs = Vec::new();
            for _ in 0..3 {
                let dir = tempfile::tempdir().expect("temp dir");
                runs.push(throughput(disk(consumers, dir.path()), n, 1024, false).await);
            }
            println!(
                "| persistent queue, {consumers} consumer(s), 1 KiB bodies, streaming (group commit) | {} requests/s |",
                median(runs)
            );
        }
        let mut runs = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            runs.push(throughput(disk(1, dir.path()), 2_000, 1024, true).await);
        }
        println!("| persistent queue, each batch waits for its ack (one fdatasync each) | {} requests/s |", median(runs));
        let (queued, done, compacted) = disk_overhead(3_000, 1024).await;
        println!("| disk bytes per queued request beyond its body | {queued:.1} B |");
        println!("| disk bytes per delivered request until the done log is compacted | {done:.1} B |");
        println!("| disk bytes left after delivering everything and restarting (compacted) | {compacted} B |");
        let (held, body) = memory_held(100_000, 100).await;
        let points = 99_900.0;
        println!(
            "| memory held by a full in-memory queue of ~100k points (999 batches of 100 queued) | {:.1} MiB ({:.0} B/point; encoded bodies {:.0} B/point) |",
            held as f64 / (1 << 20) as f64,
            held as f64 / points,
            body as f64 / points
        );
    });
}
