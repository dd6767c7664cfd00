//! Posts encoded OTLP requests over HTTP and classifies the outcome with otelcol's rules
//! (`otlphttpexporter`): 429/502/503/504 retryable (with `Retry-After` on 429/503), other
//! failures permanent, and a 2xx body read for partial success.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::{HeaderMap, StatusCode, header};
use prost::Message as _;

use super::config::{Encoding, OtlpHttpExporterConfig};
use crate::delivery::http_client::{self, RetryableStatuses};
use crate::delivery::{Request, SendError, Sent, Transport};
use crate::model::Signal;
use crate::otlp::Compression;
use crate::otlp::proto::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use crate::otlp::proto::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use crate::otlp::status::RpcStatus;
use crate::pipeline::ComponentError;
use crate::tls::{ClientTls, TlsError};

/// Errors of setting up the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum HttpTransportError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// reqwest refused the settings.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Longest excerpt of an error body put into a reason.
const EXCERPT: usize = 256;

/// Largest response body read (responses are small; this only bounds a broken server).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// OTLP/HTTP transport: one pooled HTTP client shared by all concurrent sends.
pub struct HttpTransport {
    metrics_url: Option<String>,
    logs_url: Option<String>,
    tls: ClientTls,
    headers: HeaderMap,
    compression: Compression,
    encoding: Encoding,
    timeout: Duration,
    client: OnceLock<reqwest::Client>,
}

impl HttpTransport {
    /// A transport for `config`; nothing is read or connected until [`HttpTransport::connect`]
    /// or the first send.
    pub fn new(config: &OtlpHttpExporterConfig) -> Self {
        HttpTransport {
            metrics_url: config.metrics_url(),
            logs_url: config.logs_url(),
            tls: config.tls.clone(),
            headers: http_client::header_map(&config.headers),
            compression: config.compression,
            encoding: config.encoding,
            timeout: config.timeout,
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<reqwest::Client, HttpTransportError> {
        if let Some(c) = self.client.get() {
            return Ok(c.clone());
        }
        let https = [&self.metrics_url, &self.logs_url].into_iter().flatten().any(|u| u.starts_with("https://"));
        let client = http_client::client_builder(self.timeout, https, &self.tls)?
            .user_agent(crate::otlp::user_agent())
            .build()?;
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// The body in the configured encoding, and its content type.
    fn body(&self, request: &Request) -> Result<(Vec<u8>, &'static str), String> {
        match self.encoding {
            Encoding::Proto => Ok((request.body.to_vec(), "application/x-protobuf")),
            Encoding::Json => {
                let json = match request.signal {
                    Signal::Metrics => ExportMetricsServiceRequest::decode(request.body.as_ref())
                        .map_err(|e| e.to_string())
                        .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
                    Signal::Flows => ExportLogsServiceRequest::decode(request.body.as_ref())
                        .map_err(|e| e.to_string())
                        .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
                };
                json.map(|j| (j, "application/json")).map_err(|e| format!("cannot encode as OTLP/JSON: {e}"))
            }
        }
    }
}

/// otelcol's otlphttpexporter: 429, 502, 503 and 504 are retried; `Retry-After` is honoured on
/// 429 and 503.
const RETRYABLE: RetryableStatuses = RetryableStatuses {
    retry: |status| matches!(status.as_u16(), 429 | 502 | 503 | 504),
    retry_after: |status| matches!(status.as_u16(), 429 | 503),
};

/// What an error body says: the `google.rpc.Status` message (protobuf or JSON), else an excerpt.
pub fn error_message(content_type: &str, body: &[u8]) -> String {
    if content_type.contains("json") {
        #[derive(serde::Deserialize)]
        struct JsonStatus {
            message: String,
        }
        if let Ok(s) = serde_json::from_slice::<JsonStatus>(body)
            && !s.message.is_empty()
        {
            return s.message;
        }
    } else if let Ok(s) = RpcStatus::decode(body)
        && !s.message.is_empty()
    {
        return s.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Classifies an HTTP answer. `Ok` for 2xx with a readable (or non-OTLP) body.
pub fn classify(
    signal: Signal,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Sent, SendError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if status.is_success() {
        return partial_success(signal, content_type, body).map_err(|e| SendError::Permanent {
            reason: format!(
                "HTTP {status} with an unreadable OTLP response body ({e}); not retrying data the server took"
            ),
        });
    }
    let reason = http_client::answer_reason(status, &error_message(content_type, body));
    Err(http_client::failure(status, headers, reason, RETRYABLE, now))
}

fn partial_success(signal: Signal, content_type: &str, body: &[u8]) -> Result<Sent, String> {
    let proto = content_type.starts_with("application/x-protobuf") || content_type.starts_with("application/protobuf");
    let json = content_type.starts_with("application/json");
    if body.is_empty() || !(proto || json) {
        // As otelcol: a body of another type says nothing about partial success.
        return Ok(Sent::default());
    }
    let (rejected, message) = match signal {
        Signal::Metrics => {
            let r: ExportMetricsServiceResponse = if proto {
                ExportMetricsServiceResponse::decode(body).map_err(|e| e.to_string())?
            } else {
                serde_json::from_slice(body).map_err(|e| e.to_string())?
            };
            r.partial_success.map(|p| (p.rejected_data_points, p.error_message)).unwrap_or_default()
        }
        Signal::Flows => {
            let r: ExportLogsServiceResponse = if proto {
                ExportLogsServiceResponse::decode(body).map_err(|e| e.to_string())?
            } else {
                serde_json::from_slice(body).map_err(|e| e.to_string())?
            };
            r.partial_success.map(|p| (p.rejected_log_records, p.error_message)).unwrap_or_default()
        }
    };
    Ok(Sent { rejected_items: rejected.max(0) as u64, message })
}

#[async_trait]
impl Transport for HttpTransport {
    /// Loads the TLS material (for `https://` URLs) and builds the client.
    fn connect(&self) -> Result<(), ComponentError> {
        Ok(self.client().map(|_| ())?)
    }

    async fn send(&self, request: &Request) -> Result<Sent, SendError> {
        let url = match request.signal {
            Signal::Metrics => &self.metrics_url,
            Signal::Flows => &self.logs_url,
        };
        let Some(url) = url else {
            let key = if request.signal == Signal::Metrics { "metrics_endpoint" } else { "logs_endpoint" };
            return Err(SendError::Permanent {
                reason: format!("no URL for {}: set endpoint or {key}", request.signal),
            });
        };
        let client = self.client().map_err(|e| SendError::Permanent { reason: e.to_string() })?;
        let (body, content_type) = self.body(request).map_err(|reason| SendError::Permanent { reason })?;
        let mut post = client
            .post(url)
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header(header::CONTENT_TYPE, content_type);
        post = match self.compression.token() {
            Some(token) => {
                let packed =
                    self.compression.compress(&body).map_err(|e| SendError::Permanent { reason: e.to_string() })?;
                post.header(header::CONTENT_ENCODING, token).body(packed)
            }
            None => post.body(body),
        };
        let response = post
            .send()
            .await
            .map_err(|e| SendError::Retryable { reason: transport_reason(url, &e), throttle: None })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response).await.map_err(|e| SendError::Retryable {
            reason: format!("HTTP {status} from {url}, then the body failed: {}", transport_reason(url, &e)),
            throttle: None,
        })?;
        classify(request.signal, status, &headers, &body, SystemTime::now())
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(body)
}

fn transport_reason(url: &str, e: &reqwest::Error) -> String {
    let mut reason = if e.is_timeout() {
        format!("no answer from {url} in time")
    } else if e.is_connect() {
        format!("cannot connect to {url}")
    } else {
        format!("request to {url} failed")
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason
}
