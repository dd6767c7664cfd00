//! Shared pieces of the delivery tests: an exporter harness, an encoder of numbered points, a
//! scripted in-process transport, and a real HTTP/1.1 backend on loopback with a client transport.
#![allow(dead_code)]

#[path = "../support/fixtures.rs"]
mod fixtures;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use fovea::delivery::{
    DeliveryExporter, Encoder, Request, RetryConfig, SendError, SendingQueueConfig, Sent, StorageConfig, Transport,
};
use fovea::model::{
    AckWaiter, Acks, Attributes, Metric, MetricBatch, MetricData, Number, NumberPoint, Payload, Signal,
};
use fovea::pipeline::{Exporter, ExporterContext, Input, Link};
use fovea::telemetry::{ComponentKind, ComponentStats, StatsRegistry};

/// A retry policy with short waits and no jitter, for tests.
pub fn fast_retry(max_elapsed_ms: u64) -> RetryConfig {
    RetryConfig {
        enabled: true,
        initial_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(40),
        max_elapsed_time: Duration::from_millis(max_elapsed_ms),
        multiplier: 2.0,
        randomization_factor: 0.0,
    }
}

/// A memory queue of `queue_size` with `consumers` senders.
pub fn memory_queue(consumers: usize, queue_size: usize) -> SendingQueueConfig {
    SendingQueueConfig {
        enabled: true,
        num_consumers: consumers,
        queue_size,
        block_on_overflow: false,
        storage: None,
        ..SendingQueueConfig::default()
    }
}

/// A persistent queue in `dir`.
pub fn disk_queue(consumers: usize, queue_size: usize, dir: &Path, max_size_mib: u64) -> SendingQueueConfig {
    SendingQueueConfig {
        enabled: true,
        num_consumers: consumers,
        queue_size,
        block_on_overflow: false,
        storage: Some(StorageConfig { directory: dir.to_path_buf(), max_size_mib }),
        ..SendingQueueConfig::default()
    }
}

/// A batch of gauge points whose values are `ids`; each becomes one request.
pub fn payload(ids: impl IntoIterator<Item = i64>) -> MetricBatch {
    let points = ids.into_iter().map(|id| NumberPoint::int(Attributes::new(), 0, 1, id)).collect();
    MetricBatch::single(Default::default(), Default::default(), vec![Metric::gauge("id", "1", "", points)])
}

/// Encodes each point as one request whose body is the point's value in decimal; a negative value
/// cannot be encoded.
pub struct IdEncoder;

impl Encoder for IdEncoder {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        let Payload::Metrics(batch) = payload else { return Err("flows are not supported".into()) };
        for (_, _, metric) in batch.iter_metrics() {
            let MetricData::Gauge(points) = &metric.data else { continue };
            for p in points {
                let Number::Int(id) = p.value else { continue };
                if id < 0 {
                    return Err(format!("cannot encode negative id {id}"));
                }
                out.push(Request { signal: Signal::Metrics, items: 1, body: Bytes::from(id.to_string()) });
            }
        }
        Ok(())
    }
}

/// Encodes a whole batch as one request: the body is the first point's id, items the point count.
pub struct BatchEncoder;

impl Encoder for BatchEncoder {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        let mut ids = Vec::new();
        IdEncoder.encode(payload, &mut ids)?;
        if let Some(first) = ids.first() {
            out.push(Request { signal: Signal::Metrics, items: ids.len() as u64, body: first.body.clone() });
        }
        Ok(())
    }
}

/// Like [`IdEncoder`], with each body padded to 1 KiB (ids right-aligned in spaces).
pub struct PaddedEncoder;

impl Encoder for PaddedEncoder {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        let start = out.len();
        IdEncoder.encode(payload, out)?;
        for r in &mut out[start..] {
            r.body = Bytes::from(format!("{:>1024}", id_of(&r.body)));
        }
        Ok(())
    }
}

/// The id a request body carries.
pub fn id_of(body: &[u8]) -> u64 {
    std::str::from_utf8(body).ok().and_then(|s| s.trim().parse().ok()).expect("request body is an id")
}

/// A running exporter fed by the test.
pub struct Harness {
    pub link: Option<Link>,
    pub deadline: CancellationToken,
    pub stats: Arc<ComponentStats>,
    pub registry: Arc<StatsRegistry>,
    pub task: JoinHandle<Result<(), String>>,
}

/// Starts `exporter` as the pipeline would: `start`, then `run` on its own task.
pub async fn run(mut exporter: DeliveryExporter) -> Result<Harness, String> {
    let start = fixtures::start_context(ComponentKind::Exporter, "otlp");
    let (stats, registry) = (start.stats.clone(), start.telemetry.clone());
    let (link, input) = Input::channel(64, stats.clone());
    exporter.start(&start).await.map_err(|e| e.to_string())?;
    let deadline = CancellationToken::new();
    let ctx = ExporterContext { input, deadline: deadline.clone(), start };
    let task = tokio::spawn(async move { Box::new(exporter).run(ctx).await.map_err(|e| e.to_string()) });
    Ok(Harness { link: Some(link), deadline, stats, registry, task })
}

impl Harness {
    /// Sends a batch with the given ids, without acknowledgements.
    pub async fn send(&self, ids: impl IntoIterator<Item = i64>) {
        self.link.as_ref().unwrap().send(Payload::from(payload(ids))).await.unwrap();
    }

    /// Sends a batch with the given ids and acknowledgements; returns the waiter.
    pub async fn send_acked(&self, ids: impl IntoIterator<Item = i64>) -> AckWaiter {
        let (acks, waiter) = Acks::new_request();
        let mut batch = payload(ids);
        batch.acks = acks;
        self.link.as_ref().unwrap().send(Payload::from(batch)).await.unwrap();
        waiter
    }

    /// Closes the input and waits for the exporter to drain and return.
    pub async fn finish(mut self) -> Counts {
        self.link.take();
        (&mut self.task).await.unwrap().unwrap();
        self.counts()
    }

    /// Closes the input, cancels the deadline after `after`, and waits for the exporter to return.
    pub async fn finish_by(mut self, after: Duration) -> Counts {
        self.link.take();
        let deadline = self.deadline.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            deadline.cancel();
        });
        (&mut self.task).await.unwrap().unwrap();
        self.counts()
    }

    /// The exporter's counters so far.
    pub fn counts(&self) -> Counts {
        let (received, sent, dropped, failed) = self.stats.snapshot(Signal::Metrics);
        Counts { received, sent, dropped, failed }
    }

    /// The value of one of the exporter's own metrics (sum of its points).
    pub fn metric(&self, name: &str) -> Option<i64> {
        let mut out = Vec::new();
        self.registry.collect(0, 1, &mut out);
        let m = out.iter().find(|m| m.name == name)?;
        let points = match &m.data {
            MetricData::Gauge(p) => p,
            MetricData::Sum(s) => &s.points,
            MetricData::Histogram(_) => return None,
        };
        Some(points.iter().map(|p| p.value.as_f64() as i64).sum())
    }
}

/// Item counters of the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub received: u64,
    pub sent: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// What the scripted backend answers to one attempt.
#[derive(Debug, Clone)]
pub enum Step {
    /// Retryable failure, with an optional throttle.
    Retry(Option<Duration>),
    /// Permanent failure.
    Permanent(&'static str),
    /// Success with `n` items rejected.
    Partial(u64, &'static str),
    /// Never answers.
    Hang,
}

/// An in-process backend: answers each request id from a script (then success), records attempts
/// and deliveries. While `down` is set every attempt fails with a retryable error.
#[derive(Default)]
pub struct Scripted {
    pub script: Mutex<HashMap<u64, VecDeque<Step>>>,
    pub down: AtomicBool,
    pub attempts: Mutex<Vec<(u64, tokio::time::Instant)>>,
    pub delivered: Mutex<Vec<u64>>,
}

impl Scripted {
    /// Scripts the answers for request `id`.
    pub fn on(&self, id: u64, steps: impl IntoIterator<Item = Step>) -> &Self {
        self.script.lock().unwrap().entry(id).or_default().extend(steps);
        self
    }

    /// Ids delivered, in delivery order.
    pub fn delivered(&self) -> Vec<u64> {
        self.delivered.lock().unwrap().clone()
    }

    /// Attempts at `id`, with their times.
    pub fn attempts_at(&self, id: u64) -> Vec<tokio::time::Instant> {
        self.attempts.lock().unwrap().iter().filter(|(i, _)| *i == id).map(|(_, t)| *t).collect()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn send(&self, request: &Request) -> Result<Sent, SendError> {
        let id = id_of(&request.body);
        self.attempts.lock().unwrap().push((id, tokio::time::Instant::now()));
        if self.down.load(Ordering::SeqCst) {
            return Err(SendError::Retryable { reason: "backend down".into(), throttle: None });
        }
        let step = self.script.lock().unwrap().get_mut(&id).and_then(|s| s.pop_front());
        match step {
            None => {
                self.delivered.lock().unwrap().push(id);
                Ok(Sent::default())
            }
            Some(Step::Retry(throttle)) => {
                Err(SendError::Retryable { reason: "503 Service Unavailable".into(), throttle })
            }
            Some(Step::Permanent(reason)) => Err(SendError::Permanent { reason: reason.into() }),
            Some(Step::Partial(rejected, message)) => {
                self.delivered.lock().unwrap().push(id);
                Ok(Sent { rejected_items: rejected, message: message.into() })
            }
            Some(Step::Hang) => std::future::pending().await,
        }
    }
}

/// A real HTTP/1.1 server on loopback that records request bodies; it can answer with another
/// status, and be stopped (port closed, connection refused) and restarted on the same port.
pub struct HttpBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Bytes>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    acceptor: Option<JoinHandle<()>>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl HttpBackend {
    /// Starts on a free loopback port.
    pub async fn start() -> HttpBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut backend = HttpBackend {
            addr,
            received: Default::default(),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Default::default(),
            acceptor: None,
            connections: Default::default(),
        };
        backend.serve(listener);
        backend
    }

    fn serve(&mut self, listener: TcpListener) {
        let (received, status, connections) = (self.received.clone(), self.status.clone(), self.connections.clone());
        let delay = self.delay_ms.clone();
        self.acceptor = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (received, status) = (received.clone(), status.clone());
                let delay = Duration::from_millis(delay.load(Ordering::SeqCst));
                connections.lock().unwrap().spawn(handle(stream, received, status, delay));
            }
        }));
    }

    /// Stops accepting (new connections are refused) and lets requests in progress finish.
    pub async fn stop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
            let _ = a.await;
        }
        let mut connections = std::mem::take(&mut *self.connections.lock().unwrap());
        while connections.join_next().await.is_some() {}
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }

    /// Answers every request with `status` (bodies are recorded only for 2xx).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Takes `delay` to answer each request (a slow backend).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Ids of the bodies received with a 2xx answer, in arrival order.
    pub fn received_ids(&self) -> Vec<u64> {
        self.received.lock().unwrap().iter().map(|b| id_of(b)).collect()
    }
}

async fn handle(mut stream: TcpStream, received: Arc<Mutex<Vec<Bytes>>>, status: Arc<AtomicU16>, delay: Duration) {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&chunk[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while data.len() < head_end + length {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return; // The client went away mid-request: nothing was received.
        }
        data.extend_from_slice(&chunk[..n]);
    }
    tokio::time::sleep(delay).await;
    let code = status.load(Ordering::SeqCst);
    if (200..300).contains(&code) {
        received.lock().unwrap().push(Bytes::copy_from_slice(&data[head_end..head_end + length]));
    }
    let reason = if code == 200 { "OK" } else { "Service Unavailable" };
    let response = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Posts each request body to an [`HttpBackend`] with a hand-written HTTP/1.1 client, classifying
/// answers as otelcol's OTLP/HTTP exporter does (429/502/503/504 and network errors retryable).
pub struct HttpTransport {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: &Request) -> Result<Sent, SendError> {
        let attempt = async {
            let retryable = |e: std::io::Error| SendError::Retryable { reason: e.to_string(), throttle: None };
            let mut stream = TcpStream::connect(self.addr).await.map_err(retryable)?;
            let head = format!(
                "POST /write HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.addr,
                request.body.len()
            );
            stream.write_all(head.as_bytes()).await.map_err(retryable)?;
            stream.write_all(&request.body).await.map_err(retryable)?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.map_err(retryable)?;
            let status_line = String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_string();
            let code: u16 = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| {
                SendError::Retryable { reason: format!("malformed response `{status_line}`"), throttle: None }
            })?;
            match code {
                200..=299 => Ok(Sent::default()),
                429 | 502 | 503 | 504 => Err(SendError::Retryable { reason: status_line, throttle: None }),
                _ => Err(SendError::Permanent { reason: status_line }),
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(SendError::Retryable { reason: "timeout".into(), throttle: None }))
    }
}

/// A delivery exporter with the id encoder.
pub fn exporter(queue: SendingQueueConfig, retry: RetryConfig, transport: Arc<dyn Transport>) -> DeliveryExporter {
    DeliveryExporter::new("otlp".into(), queue, retry, Arc::new(IdEncoder), transport)
}

/// Counts how often each id occurs.
pub fn occurrences(ids: &[u64]) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for &id in ids {
        *m.entry(id).or_default() += 1;
    }
    m
}
