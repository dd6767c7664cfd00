//! OTLP/HTTP: `POST /v1/metrics` with `application/x-protobuf` or `application/json` bodies,
//! optionally gzip/zstd/deflate encoded. Answers follow otelcol: 400 malformed, 413 too large
//! (at once when the declared length is over the limit), 415 unknown media type, 404/405 wrong
//! path/method, 408 when the body does not arrive within `read_timeout`, 503 (retryable) when
//! the pipelines did not take the data; error bodies are `google.rpc.Status` in the request's
//! encoding. Every refusal is counted in `fovea_receiver_requests_rejected_total`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use prost::Message as _;

use super::config::HttpProtocol;
use super::ingest::{Ingest, IngestError};
use crate::otlp::compression::{CompressionError, decompress};
use crate::otlp::json::{metrics_request_from_json, metrics_response_to_json};
use crate::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::status::RpcStatus;
use crate::server::{BodyDeadline, ConnInfo, Rejection, ServerStats};

/// The two OTLP/HTTP body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

impl Format {
    fn from_headers(headers: &HeaderMap) -> Option<Format> {
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") || media.eq_ignore_ascii_case("application/protobuf") {
            Some(Format::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        })
    }
}

#[derive(Clone)]
struct HttpState {
    ingest: Arc<Ingest>,
    limit: usize,
    stats: Arc<ServerStats>,
}

/// The OTLP/HTTP routes for `config`, delivering into `ingest` and counting what they refuse
/// into `stats`.
pub fn router(ingest: Arc<Ingest>, config: &HttpProtocol, stats: Arc<ServerStats>) -> Router {
    let limit = config.max_request_body_size;
    Router::new()
        .route(&config.metrics_url_path, post(export_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(HttpState { ingest, limit, stats })
}

/// gRPC code -> HTTP status as otelcol's receiver maps them.
fn error(format: Format, status: StatusCode, code: tonic::Code, message: String) -> Response {
    let body = match format {
        Format::Protobuf => RpcStatus::new(code as i32, message, None).encode_to_vec(),
        Format::Json => serde_json::json!({"code": code as i32, "message": message}).to_string().into_bytes(),
    };
    (status, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// A path that is not served: 404, counted.
async fn not_found(State(state): State<HttpState>, request: Request) -> StatusCode {
    not_served(&state, &request, StatusCode::NOT_FOUND)
}

/// The metrics path with another method than POST: 405, counted.
async fn method_not_allowed(State(state): State<HttpState>, request: Request) -> StatusCode {
    not_served(&state, &request, StatusCode::METHOD_NOT_ALLOWED)
}

fn not_served(state: &HttpState, request: &Request, status: StatusCode) -> StatusCode {
    let peer = request.extensions().get::<ConnInfo>().map(ConnInfo::peer);
    state.stats.reject(Rejection::UnknownPath, peer, &format!("{} {}", request.method(), request.uri().path()));
    status
}

/// Why reading a request body ended early.
enum BodyFailure {
    Late(std::time::Duration),
    TooLarge,
    Broken(String),
}

/// Reads the whole body: at most `limit` bytes, before the request's [`BodyDeadline`].
async fn read_body(body: Body, limit: usize, extensions: &http::Extensions) -> Result<Bytes, BodyFailure> {
    let collect = http_body_util::Limited::new(body, limit).collect();
    let collected = match extensions.get::<BodyDeadline>() {
        Some(BodyDeadline(deadline)) => {
            let timeout = extensions.get::<ConnInfo>().map(ConnInfo::read_timeout).unwrap_or_default();
            tokio::time::timeout_at(*deadline, collect).await.map_err(|_| BodyFailure::Late(timeout))?
        }
        None => collect.await,
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyFailure::TooLarge),
        Err(e) => Err(BodyFailure::Broken(e.to_string())),
    }
}

async fn export_metrics(State(state): State<HttpState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<ConnInfo>().map(ConnInfo::peer);
    let reject = |reason: Rejection, message: &str| state.stats.reject(reason, peer, message);
    let Some(format) = Format::from_headers(&parts.headers) else {
        let message = "unsupported media type; supported: application/x-protobuf, application/json\n";
        reject(Rejection::UnsupportedMediaType, message.trim_end());
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            message,
        )
            .into_response();
    };
    let too_large = || {
        let message = format!("request body exceeds max_request_body_size ({} bytes)", state.limit);
        reject(Rejection::TooLarge, &message);
        error(format, StatusCode::PAYLOAD_TOO_LARGE, tonic::Code::ResourceExhausted, message)
    };
    // A declared length over the limit is refused before waiting for any of it.
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.limit as u64) {
        return close(too_large());
    }
    let body = match read_body(body, state.limit, &parts.extensions).await {
        Ok(b) => b,
        Err(BodyFailure::TooLarge) => return close(too_large()),
        Err(BodyFailure::Late(timeout)) => {
            let message = format!("request body not received within read_timeout ({timeout:?})");
            reject(Rejection::BodyTimeout, &message);
            return close(error(format, StatusCode::REQUEST_TIMEOUT, tonic::Code::DeadlineExceeded, message));
        }
        Err(BodyFailure::Broken(why)) => {
            let message = format!("cannot read the request body: {why}");
            reject(Rejection::Malformed, &message);
            return close(error(format, StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, message));
        }
    };
    let encoding = parts.headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let request = match decode_body(format, encoding, &body, state.limit) {
        Ok(r) => r,
        Err(refusal) => {
            reject(refusal.rejection, &refusal.message);
            return error(format, refusal.status, refusal.code, refusal.message);
        }
    };
    // The client's address travels with its data (`k8sattributes` `pod_association: connection`).
    match state.ingest.metrics(request, None, peer.map(|p| p.ip())).await {
        Ok(a) => {
            let response = a.into_response();
            let body = match format {
                Format::Protobuf => response.encode_to_vec(),
                Format::Json => metrics_response_to_json(&response),
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
        Err(IngestError::Unavailable(why)) => {
            error(format, StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable, why)
        }
    }
}

/// Why a request body was refused: the answer and how it is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRefusal {
    /// The HTTP status (400 or 413).
    pub status: StatusCode,
    /// The gRPC code of the `google.rpc.Status` body.
    pub code: tonic::Code,
    /// How it is counted.
    pub rejection: Rejection,
    /// What is wrong.
    pub message: String,
}

/// Decodes an OTLP/HTTP request body as the receiver does: `encoding` is the
/// `Content-Encoding` (gzip, zstd, deflate, none), at most `limit` bytes after decompression.
pub fn decode_body(
    format: Format,
    encoding: &str,
    body: &[u8],
    limit: usize,
) -> Result<ExportMetricsServiceRequest, BodyRefusal> {
    let malformed = |message: String| BodyRefusal {
        status: StatusCode::BAD_REQUEST,
        code: tonic::Code::InvalidArgument,
        rejection: Rejection::Malformed,
        message,
    };
    let raw = decompress(encoding, body, limit).map_err(|e| match e {
        CompressionError::TooLarge { .. } => BodyRefusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: tonic::Code::ResourceExhausted,
            rejection: Rejection::TooLarge,
            message: format!("request body exceeds max_request_body_size ({limit} bytes)"),
        },
        e => malformed(e.to_string()),
    })?;
    match format {
        Format::Protobuf => ExportMetricsServiceRequest::decode(raw.as_slice())
            .map_err(|e| malformed(format!("malformed ExportMetricsServiceRequest: {e}"))),
        Format::Json => metrics_request_from_json(&raw).map_err(|e| malformed(e.to_string())),
    }
}

/// Asks for the connection to be closed after `response`: the rest of an unread body would
/// otherwise be taken for the next request.
fn close(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
