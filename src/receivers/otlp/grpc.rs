//! OTLP/gRPC: `MetricsService/Export`, gzip and zstd accepted, requests decoded here so a
//! malformed one gets `InvalidArgument` and an oversized one `ResourceExhausted` (grpc-go's
//! codes, which otelcol clients expect).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tonic::codec::CompressionEncoding;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};

use super::ingest::{Ingest, IngestError};
use crate::otlp::METRICS_GRPC_PATH;
use crate::otlp::grpc::ServerCodec;
use crate::otlp::proto::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use crate::server::{BodyError, ConnInfo, DeadlineBody, Rejection, ServerStats};

/// The tonic service answering OTLP metrics exports.
#[derive(Clone)]
pub struct MetricsGrpcService {
    ingest: Arc<Ingest>,
    max_recv: usize,
    stats: Option<Arc<ServerStats>>,
}

impl MetricsGrpcService {
    /// A service delivering into `ingest`, refusing messages above `max_recv` bytes.
    pub fn new(ingest: Arc<Ingest>, max_recv: usize) -> Self {
        MetricsGrpcService { ingest, max_recv, stats: None }
    }

    /// Counts refused requests into `stats` (the listener's).
    pub fn with_stats(mut self, stats: Arc<ServerStats>) -> Self {
        self.stats = Some(stats);
        self
    }
}

/// The error a request message that is late ends with (`read_timeout`).
fn message_late() -> BodyError {
    Box::new(Status::deadline_exceeded(
        "the request message did not arrive within read_timeout; the client is too slow",
    ))
}

/// The rejection a gRPC status answers, if it is one the listener counts.
fn rejection(code: &[u8]) -> Option<Rejection> {
    match code {
        b"3" => Some(Rejection::Malformed),
        b"4" => Some(Rejection::BodyTimeout),
        b"8" | b"11" => Some(Rejection::TooLarge),
        b"12" => Some(Rejection::UnknownPath),
        _ => None,
    }
}

impl NamedService for MetricsGrpcService {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

struct Export(Arc<Ingest>);

impl UnaryService<Bytes> for Export {
    type Response = ExportMetricsServiceResponse;
    type Future = BoxFuture<tonic::Response<ExportMetricsServiceResponse>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.0.clone();
        Box::pin(async move {
            let deadline = request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(grpc_timeout);
            // The client's address travels with its data (`k8sattributes` `pod_association: connection`).
            let client = request.extensions().get::<ConnInfo>().map(|c| c.peer().ip());
            let body = request.into_inner();
            let decoded = ExportMetricsServiceRequest::decode(body)
                .map_err(|e| Status::invalid_argument(format!("malformed ExportMetricsServiceRequest: {e}")))?;
            match ingest.metrics(decoded, deadline, client).await {
                Ok(a) => {
                    let response = a.into_response();
                    Ok(tonic::Response::new(response))
                }
                Err(IngestError::Unavailable(why)) => Err(Status::unavailable(why)),
            }
        })
    }
}

/// Parses a `grpc-timeout` header value (`5S`, `100m`, `250000u` ...).
pub fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<B> Service<http::Request<B>> for MetricsGrpcService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The listener's connection: the request is in flight on it (no idle deadline) until
        // answered, and its message must arrive within `read_timeout`.
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let guard = conn.as_ref().map(ConnInfo::begin_request);
        let peer = conn.as_ref().map(ConnInfo::peer);
        let stats = self.stats.clone();
        let count = move |headers: &http::HeaderMap| {
            let code = headers.get(Status::GRPC_STATUS).map(|v| v.as_bytes());
            if let (Some(stats), Some(reason)) = (&stats, code.and_then(rejection)) {
                let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
                stats.reject(reason, peer, message);
            }
        };
        if request.uri().path() != METRICS_GRPC_PATH {
            let status =
                Status::unimplemented(format!("{} is not served; fovea receives metrics", request.uri().path()));
            let response = status.into_http();
            count(response.headers());
            return Box::pin(async move { Ok(response) });
        }
        let deadline = conn.as_ref().and_then(ConnInfo::body_deadline);
        let request = request.map(|body| DeadlineBody::new(body, deadline, message_late));
        let export = Export(self.ingest.clone());
        let max_recv = self.max_recv;
        Box::pin(async move {
            let _in_flight = guard;
            let mut grpc = tonic::server::Grpc::new(ServerCodec::<ExportMetricsServiceResponse>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max_recv);
            let mut response = grpc.unary(export, request).await;
            // tonic answers OutOfRange (which clients retry forever) for an oversized message;
            // grpc-go, and so otelcol's clients, expect ResourceExhausted (not retried without RetryInfo).
            let headers = response.headers_mut();
            if headers.get(Status::GRPC_STATUS).is_some_and(|v| v.as_bytes() == b"11") {
                headers.insert(Status::GRPC_STATUS, http::HeaderValue::from(Code::ResourceExhausted as i32));
            }
            count(response.headers());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout("S"), None);
        assert_eq!(grpc_timeout(""), None);
        assert_eq!(grpc_timeout("5x"), None);
    }
}
