//! Test servers and wiring for the OTLP tests: a scripted OTLP/gRPC server (tonic) and a scripted
//! OTLP/HTTP server (axum) that answer a given sequence of replies and record what they got, and
//! helpers that run fovea's own `otlp` receiver and exporters in-process on 127.0.0.1. The metric
//! data they send comes from `fixtures.rs`.
#![allow(dead_code)]

#[path = "fixtures.rs"]
pub mod fixtures;

#[allow(unused_imports)] // each test binary uses a different subset
pub use fixtures::{every_kind_batch, node_batch, start_context, stats};

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

use fovea::model::{MetricBatch, Payload, Signal};
use fovea::otlp::proto::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use fovea::otlp::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use fovea::pipeline::{Exporter, ExporterContext, Input, Link, Output, Receiver, ReceiverContext};
use fovea::receivers::otlp::{OtlpReceiver, OtlpReceiverConfig};
use fovea::telemetry::{ComponentKind, ComponentStats};

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
    let output = Output::detached_receiver(ctx.stats.clone(), vec![(Signal::Metrics, link)]);
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
            // The receiver records where the data came from (the test clients are local); the
            // rest must be exactly what was sent.
            Payload::Metrics(m) => {
                assert!(m.client.is_some_and(|c| c.is_loopback()), "the client's address: {:?}", m.client);
                Arc::new(MetricBatch { client: None, ..Arc::unwrap_or_clone(m) })
            }
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
