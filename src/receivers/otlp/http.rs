//! OTLP/HTTP: `POST /v1/metrics` with `application/x-protobuf` or `application/json` bodies,
//! optionally gzip/zstd/deflate encoded. Answers follow otelcol: 400 malformed, 413 too large,
//! 415 unknown media type, 404/405 wrong path/method, 503 (retryable) when the pipelines did
//! not take the data; error bodies are `google.rpc.Status` in the request's encoding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::config::HttpProtocol;
use super::ingest::{Ingest, IngestError};
use crate::otlp::compression::{CompressionError, decompress};
use crate::otlp::json::{metrics_request_from_json, metrics_response_to_json};
use crate::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::otlp::status::RpcStatus;

/// The two OTLP/HTTP body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
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
}

/// The OTLP/HTTP routes for `config`, delivering into `ingest`.
pub fn router(ingest: Arc<Ingest>, config: &HttpProtocol) -> Router {
    let limit = config.max_request_body_size;
    Router::new()
        .route(&config.metrics_url_path, post(export_metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(HttpState { ingest, limit })
}

/// gRPC code -> HTTP status as otelcol's receiver maps them.
fn error(format: Format, status: StatusCode, code: tonic::Code, message: String) -> Response {
    let body = match format {
        Format::Protobuf => RpcStatus::new(code as i32, message, None).encode_to_vec(),
        Format::Json => serde_json::json!({"code": code as i32, "message": message}).to_string().into_bytes(),
    };
    (status, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn export_metrics(
    State(state): State<HttpState>,
    client: Option<Extension<ConnectInfo<ClientAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(format) = Format::from_headers(&headers) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            "unsupported media type; supported: application/x-protobuf, application/json\n",
        )
            .into_response();
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("request body exceeds max_request_body_size ({} bytes)", state.limit);
            return error(format, StatusCode::PAYLOAD_TOO_LARGE, tonic::Code::ResourceExhausted, message);
        }
        Err(rejection) => {
            return error(format, StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, rejection.body_text());
        }
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let raw = match decompress(encoding, &body, state.limit) {
        Ok(raw) => raw,
        Err(e @ CompressionError::TooLarge { .. }) => {
            return error(format, StatusCode::PAYLOAD_TOO_LARGE, tonic::Code::ResourceExhausted, e.to_string());
        }
        Err(e) => return error(format, StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, e.to_string()),
    };
    let request = match format {
        Format::Protobuf => ExportMetricsServiceRequest::decode(raw.as_slice())
            .map_err(|e| format!("malformed ExportMetricsServiceRequest: {e}")),
        Format::Json => metrics_request_from_json(&raw).map_err(|e| e.to_string()),
    };
    let request = match request {
        Ok(r) => r,
        Err(message) => return error(format, StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, message),
    };
    // Absent when the router is served without connect info.
    let client = client.map(|Extension(ConnectInfo(ClientAddr(addr)))| addr.ip());
    match state.ingest.metrics(request, None, client).await {
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

/// The address of a connection's client, plain or TLS (the data's request context).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener handing axum connections whose TLS handshake is done; handshakes run
/// concurrently so a slow client cannot hold up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "OTLP/HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "OTLP/HTTP TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "OTLP/HTTP TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task is gone (only when dropped): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
