//! Test servers and wiring for the OTLP tests: a scripted OTLP/gRPC server (tonic) and a scripted
//! OTLP/HTTP server (axum) that answer a given sequence of replies and record what they got, and
//! helpers that run fovea's own `otlp` receiver and exporters in-process on 127.0.0.1.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use fovea::config::ComponentId;
use fovea::model::{
    AttrValue, Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, NumberPoint, Payload,
    Resource, ResourceMetrics, Scope, ScopeMetrics, Signal, SumData, Temporality,
};
use fovea::otlp::proto::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use fovea::otlp::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use fovea::pipeline::{Exporter, ExporterContext, Input, Link, Output, Receiver, ReceiverContext, StartContext};
use fovea::receivers::otlp::{OtlpReceiver, OtlpReceiverConfig};
use fovea::telemetry::{ComponentKind, ComponentStats, StatsRegistry};

/// One answer of the scripted gRPC server.
#[derive(Clone)]
pub enum GrpcReply {
    /// Success, optionally a partial success `(rejected, message)`.
    Ok(Option<(i64, String)>),
    /// Fail with this status.
    Status(tonic::Status),
    /// Wait this long, then succeed.
    Delay(Duration),
}

/// What the scripted gRPC server saw.
#[derive(Default)]
pub struct GrpcSeen {
    /// Requests in arrival order.
    pub requests: Vec<ExportMetricsServiceRequest>,
    /// Metadata of each request.
    pub metadata: Vec<tonic::metadata::MetadataMap>,
}

struct ScriptedGrpc {
    replies: Mutex<VecDeque<GrpcReply>>,
    seen: Arc<Mutex<GrpcSeen>>,
}

#[tonic::async_trait]
impl MetricsService for ScriptedGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        {
            let mut seen = self.seen.lock().unwrap();
            seen.metadata.push(request.metadata().clone());
            seen.requests.push(request.get_ref().clone());
        }
        let reply = self.replies.lock().unwrap().pop_front().unwrap_or(GrpcReply::Ok(None));
        match reply {
            GrpcReply::Ok(partial) => Ok(tonic::Response::new(ExportMetricsServiceResponse {
                partial_success: partial.map(|(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }),
            })),
            GrpcReply::Status(s) => Err(s),
            GrpcReply::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
            }
        }
    }
}

/// Starts a gRPC server on 127.0.0.1 answering `replies` in turn (then plain success).
pub async fn scripted_grpc(replies: Vec<GrpcReply>) -> (SocketAddr, Arc<Mutex<GrpcSeen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(GrpcSeen::default()));
    let service = ScriptedGrpc { replies: Mutex::new(replies.into()), seen: seen.clone() };
    let server = MetricsServiceServer::new(service)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, seen)
}

/// One answer of the scripted HTTP server.
#[derive(Clone, Debug)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// A reply with a status, headers and body.
    pub fn new(status: u16, headers: &[(&'static str, &str)], body: impl Into<Vec<u8>>) -> Self {
        HttpReply { status, headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(), body: body.into() }
    }
}

/// A request the scripted HTTP server got.
#[derive(Clone, Debug)]
pub struct HttpSeen {
    /// The path.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Vec<u8>,
}

#[derive(Clone)]
struct HttpScript {
    replies: Arc<Mutex<VecDeque<HttpReply>>>,
    seen: Arc<Mutex<Vec<HttpSeen>>>,
}

async fn scripted_handler(
    State(script): State<HttpScript>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    script.seen.lock().unwrap().push(HttpSeen { path: uri.path().to_string(), headers, body: body.to_vec() });
    let reply = script.replies.lock().unwrap().pop_front().unwrap_or_else(|| HttpReply::new(200, &[], Vec::new()));
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

/// Starts an HTTP server on 127.0.0.1 answering any POST with `replies` in turn (then 200).
pub async fn scripted_http(replies: Vec<HttpReply>) -> (SocketAddr, Arc<Mutex<Vec<HttpSeen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = HttpScript { replies: Arc::new(Mutex::new(replies.into())), seen: Arc::new(Mutex::new(Vec::new())) };
    let seen = script.seen.clone();
    let app = Router::new().fallback(axum::routing::post(scripted_handler)).with_state(script);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// Counters for a test component.
pub fn stats(kind: ComponentKind, id: &str) -> Arc<ComponentStats> {
    Arc::new(ComponentStats::new(kind, id, None))
}

/// A start context for component `id`.
pub fn start_context(kind: ComponentKind, id: &str) -> StartContext {
    StartContext {
        id: ComponentId::parse(id).unwrap(),
        signals: vec![Signal::Metrics],
        stats: stats(kind, id),
        telemetry: Arc::new(StatsRegistry::default()),
        services: Default::default(),
    }
}

/// fovea's `otlp` receiver running in-process, with its output in a channel the test reads.
pub struct RunningReceiver {
    /// Bound gRPC address.
    pub grpc: Option<SocketAddr>,
    /// Bound HTTP address.
    pub http: Option<SocketAddr>,
    /// What the receiver pushed into its pipeline.
    pub input: Input,
    /// The receiver's counters.
    pub stats: Arc<ComponentStats>,
    /// Stops the receiver.
    pub shutdown: CancellationToken,
    /// The receiver task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts fovea's `otlp` receiver from a YAML-ish JSON config body (ports 0 = ephemeral).
pub async fn start_receiver(config: serde_json::Value) -> RunningReceiver {
    let config: OtlpReceiverConfig = serde_json::from_value(config).unwrap();
    let mut receiver = OtlpReceiver::new("otlp/test".into(), config);
    let ctx = start_context(ComponentKind::Receiver, "otlp/test");
    receiver.start(&ctx).await.unwrap();
    let (grpc, http) = (receiver.grpc_addr(), receiver.http_addr());
    let (link, input) = Input::channel(64, stats(ComponentKind::Exporter, "sink"));
    let output = Output::detached(ctx.stats.clone(), vec![(Signal::Metrics, link)]);
    let shutdown = CancellationToken::new();
    let run_ctx = ReceiverContext { output, shutdown: shutdown.clone(), start: ctx.clone() };
    let task = tokio::spawn(async move { Box::new(receiver).run(run_ctx).await.unwrap() });
    RunningReceiver { grpc, http, input, stats: ctx.stats, shutdown, task }
}

impl RunningReceiver {
    /// The next batch the receiver produced, acknowledged (as an exporter that took it would).
    pub async fn next_batch(&mut self) -> Arc<MetricBatch> {
        let payload = tokio::time::timeout(Duration::from_secs(10), self.input.recv())
            .await
            .expect("the receiver produced nothing within 10s")
            .expect("the receiver's output closed");
        payload.acks().accept();
        match payload {
            Payload::Metrics(m) => m,
            Payload::Flows(_) => panic!("the OTLP receiver produced flows"),
        }
    }
}

/// fovea's exporter running in-process, fed through a link the test writes to.
pub struct RunningExporter {
    /// Where to send batches.
    pub link: Link,
    /// The exporter's counters.
    pub stats: Arc<ComponentStats>,
    /// The exporter task; ends when `link` is dropped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts an exporter component in-process.
pub async fn start_exporter(mut exporter: Box<dyn Exporter>) -> RunningExporter {
    let ctx = start_context(ComponentKind::Exporter, "otlp/out");
    exporter.start(&ctx).await.unwrap();
    let (link, input) = Input::channel(64, ctx.stats.clone());
    let run_ctx = ExporterContext { input, deadline: CancellationToken::new(), start: ctx.clone() };
    let task = tokio::spawn(async move { exporter.run(run_ctx).await.unwrap() });
    RunningExporter { link, stats: ctx.stats, task }
}

/// Attributes of every value type.
pub fn every_attribute_type() -> Attributes {
    let mut a = Attributes::new();
    a.insert("network.interface.name", "eth0");
    a.insert("network.io.direction", "receive");
    a.insert("port", AttrValue::Int(-8080));
    a.insert("ratio", AttrValue::Double(0.25));
    a.insert("ipv6", AttrValue::Bool(true));
    a.insert("empty", "");
    a
}

/// A batch with every metric kind (int and double sums, delta and cumulative, monotonic and
/// not, gauges, histograms with min/max and without), two resources and two scopes.
pub fn every_kind_batch() -> MetricBatch {
    let node = Arc::new(Resource {
        attributes: Attributes::from_pairs([
            ("k8s.node.name", AttrValue::from("node-1")),
            ("host.name", AttrValue::from("node-1.example")),
            ("service.name", AttrValue::from("fovea")),
        ]),
    });
    let other = Arc::new(Resource { attributes: Attributes::from_pairs([("service.name", "other")]) });
    let probes = Arc::new(Scope { name: "fovea/packetforward".into(), version: "0.1.0".into() });
    let util = Arc::new(Scope { name: "fovea/linuxutil".into(), version: "".into() });
    let attrs = every_attribute_type();
    let (start, now) = (1_700_000_000_000_000_000u64, 1_700_000_060_123_456_789u64);
    let bounds: Arc<[f64]> = Arc::from(vec![0.0005, 0.001, 0.01, 0.1, 1.0]);
    let forward = Metric {
        name: "network.forward.packets".into(),
        description: "Packets forwarded".into(),
        unit: "{packet}".into(),
        data: MetricData::Sum(SumData {
            points: vec![
                NumberPoint::int(attrs.clone(), start, now, i64::MAX),
                NumberPoint::int(Attributes::from_pairs([("network.io.direction", "transmit")]), start, now, 0),
            ],
            temporality: Temporality::Cumulative,
            monotonic: true,
        }),
    };
    let delta = Metric {
        name: "network.drop.bytes".into(),
        description: "".into(),
        unit: "By".into(),
        data: MetricData::Sum(SumData {
            points: vec![NumberPoint::double(attrs.clone(), now - 10, now, 1536.5)],
            temporality: Temporality::Delta,
            monotonic: false,
        }),
    };
    let gauge = Metric::gauge(
        "network.tcp.connections",
        "{connection}",
        "Sockets by state",
        vec![
            NumberPoint::int(Attributes::from_pairs([("network.connection.state", "established")]), 0, now, -3),
            NumberPoint::double(Attributes::new(), 0, now, f64::MIN_POSITIVE),
        ],
    );
    let histogram = Metric {
        name: "network.tcp.handshake.duration".into(),
        description: "TCP handshake duration".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData {
            points: vec![
                HistogramPoint {
                    attributes: attrs.clone(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: 10,
                    sum: 0.123,
                    bucket_counts: vec![1, 2, 3, 4, 0, 0],
                    explicit_bounds: bounds.clone(),
                    min: Some(0.0001),
                    max: Some(0.09),
                },
                HistogramPoint {
                    attributes: Attributes::new(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: 0,
                    sum: 0.0,
                    bucket_counts: vec![0; 6],
                    explicit_bounds: bounds,
                    min: None,
                    max: None,
                },
            ],
            temporality: Temporality::Cumulative,
        }),
    };
    let delta_hist = Metric {
        name: "network.dns.duration".into(),
        description: "".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData {
            points: vec![HistogramPoint {
                attributes: Attributes::from_pairs([("dns.question.type", "AAAA")]),
                start_time_unix_nano: now - 10,
                time_unix_nano: now,
                count: 2,
                sum: 3.0,
                bucket_counts: vec![2],
                explicit_bounds: Arc::from(Vec::new()),
                min: Some(1.0),
                max: Some(2.0),
            }],
            temporality: Temporality::Delta,
        }),
    };
    MetricBatch {
        resource_metrics: vec![
            ResourceMetrics {
                resource: node,
                scope_metrics: vec![
                    ScopeMetrics { scope: probes, metrics: vec![forward, delta, histogram, delta_hist] },
                    ScopeMetrics { scope: util, metrics: vec![gauge] },
                ],
            },
            ResourceMetrics {
                resource: other,
                scope_metrics: vec![ScopeMetrics {
                    scope: Arc::new(Scope::default()),
                    metrics: vec![Metric::counter(
                        "other.total",
                        "1",
                        "",
                        vec![NumberPoint::int(Attributes::new(), 1, 2, 42)],
                    )],
                }],
            },
        ],
        acks: Default::default(),
    }
}

/// A realistic node batch: `series` counter series with 3 attributes each.
pub fn node_batch(series: usize) -> MetricBatch {
    let resource = Arc::new(Resource {
        attributes: Attributes::from_pairs([("k8s.node.name", "node-1"), ("service.name", "fovea")]),
    });
    let scope = Arc::new(Scope { name: "fovea/packetforward".into(), version: "0.1.0".into() });
    let points = (0..series)
        .map(|i| {
            let attrs = Attributes::from_pairs([
                ("network.interface.name", AttrValue::from(format!("veth{:05}", i / 2))),
                ("network.io.direction", AttrValue::from(if i % 2 == 0 { "receive" } else { "transmit" })),
                ("k8s.pod.name", AttrValue::from(format!("web-{}-7d4b9c8f6-x2k{:03}", i / 2, i % 1000))),
            ]);
            NumberPoint::int(attrs, 1_700_000_000_000_000_000, 1_700_000_060_000_000_000, (i as i64) * 1_000 + 7)
        })
        .collect();
    MetricBatch::single(
        resource,
        scope,
        vec![Metric::counter("network.forward.bytes", "By", "Bytes forwarded", points)],
    )
}
