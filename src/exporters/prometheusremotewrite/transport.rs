//! Posts remote-write requests: snappy block compression, the four protocol headers, and the
//! outcome classified as otelcol's exporter does: 2xx delivered; 5xx, timeouts and connection
//! errors retryable; 429 retryable only with `retry_on_http_429` (with `Retry-After` honoured);
//! every other status permanent, with an excerpt of the answer as the reason.
//!
//! Prometheus refuses a whole request when some of its samples are older than what it holds
//! (possible after a restart, when a client sent data again, or when two writers share a series).
//! Such a request is sent again in halves until only the refused series are left out, so one
//! stale series does not take the rest of the request with it.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::RemoteWriteError;
use super::config::RemoteWriteConfig;
use super::proto::WriteRequest;
use crate::delivery::http_client::{self, RetryableStatuses};
use crate::delivery::{Request, SendError, Sent, Transport};
use crate::pipeline::ComponentError;
use crate::tls::ClientTls;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("fovea/", env!("CARGO_PKG_VERSION"));

/// Longest excerpt of an answer put into an error reason.
const EXCERPT: usize = 256;

/// Most of an answer read (answers are short; this only bounds a broken server).
const MAX_ANSWER: usize = 64 * 1024;

/// Compresses a request body with snappy's block format (not the framed format, which
/// remote-write receivers refuse).
pub fn compress(body: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(body)
}

/// otelcol's remote-write exporter: 5xx and (with `retry_on_http_429`) 429 are retried,
/// honouring `Retry-After`.
const RETRYABLE: RetryableStatuses = RetryableStatuses {
    retry: |status| status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
    retry_after: |_| true,
};

/// Classifies an HTTP answer; `body` is (the start of) the answer's body.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], retry_on_429: bool) -> Result<Sent, SendError> {
    if status.is_success() {
        return Ok(Sent::default());
    }
    let reason = http_client::answer_reason(status, &excerpt(body));
    if status == StatusCode::TOO_MANY_REQUESTS && !retry_on_429 {
        return Err(SendError::Permanent {
            reason: format!("{reason} (set retry_on_http_429: true to retry throttled requests)"),
        });
    }
    Err(http_client::failure(status, headers, reason, RETRYABLE, SystemTime::now()))
}

/// The first [`EXCERPT`] characters of an answer, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(EXCERPT).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > EXCERPT {
        out.push_str("...");
    }
    out
}

/// Remote-write over HTTP(S): one pooled client shared by every send.
pub struct RemoteWriteTransport {
    url: String,
    headers: HeaderMap,
    tls: ClientTls,
    timeout: Duration,
    retry_on_429: bool,
    client: OnceLock<reqwest::Client>,
}

impl RemoteWriteTransport {
    /// A transport for `config`; nothing is read or connected until [`RemoteWriteTransport::connect`].
    pub fn new(config: &RemoteWriteConfig) -> Self {
        let mut headers = http_client::header_map(&config.headers);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        headers.insert(HeaderName::from_static("x-prometheus-remote-write-version"), HeaderValue::from_static("0.1.0"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        RemoteWriteTransport {
            url: config.endpoint.clone(),
            headers,
            tls: config.tls.clone(),
            timeout: config.timeout,
            retry_on_429: config.retry_on_http_429,
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<reqwest::Client, RemoteWriteError> {
        if let Some(c) = self.client.get() {
            return Ok(c.clone());
        }
        let client = http_client::client_builder(self.timeout, self.url.starts_with("https://"), &self.tls)?
            .build()
            .map_err(|e| RemoteWriteError::Client(e.to_string()))?;
        Ok(self.client.get_or_init(|| client).clone())
    }
}

/// Reads up to [`MAX_ANSWER`] bytes of an answer's body.
async fn read_answer(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER - body.len())]),
            _ => break,
        }
    }
    body
}

impl RemoteWriteTransport {
    /// Posts one uncompressed `WriteRequest` body once and classifies the answer; also says
    /// whether a 400 blames some of the samples (see [`refuses_samples`]).
    async fn post(&self, uncompressed: &[u8]) -> (Result<Sent, SendError>, bool) {
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return (Err(SendError::Permanent { reason: e.to_string() }), false),
        };
        let body = match compress(uncompressed) {
            Ok(b) => b,
            Err(e) => {
                let reason = format!("cannot snappy-compress the request: {e}");
                return (Err(SendError::Permanent { reason }), false);
            }
        };
        let sent = client.post(&self.url).headers(self.headers.clone()).timeout(self.timeout).body(body).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return (Err(SendError::Permanent { reason: format!("cannot build the request: {e}") }), false);
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("no answer within {:?}", self.timeout)
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    "request failed".to_string()
                };
                let reason = format!("{what}: {}", error_chain(&e));
                return (Err(SendError::Retryable { reason, throttle: None }), false);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        // Read even a success's answer, so the connection can be reused.
        let body = read_answer(response).await;
        (classify(status, &headers, &body, self.retry_on_429), refuses_samples(status, &body))
    }

    /// Sends a request Prometheus refused whole for some of its samples again in halves, and
    /// halves of halves, until only the series it refuses are left out: they are reported as
    /// rejected, everything else is delivered. Halves go in order, so no series' samples are
    /// reordered. A retryable failure on the way fails the whole request (sending it again is
    /// safe: what was delivered is then refused as old, or taken as an exact duplicate).
    async fn bisect(&self, request: &Request, reason: String) -> Result<Sent, SendError> {
        let Ok(whole) = WriteRequest::decode(request.body.as_ref()) else {
            return Err(SendError::Permanent { reason });
        };
        if whole.timeseries.len() < 2 {
            return Err(SendError::Permanent { reason });
        }
        let samples = |w: &WriteRequest| w.timeseries.iter().map(|t| t.samples.len()).sum::<usize>();
        let (total_series, total_samples) = (whole.timeseries.len(), samples(&whole));
        let (mut refused_series, mut refused_samples) = (0usize, 0usize);
        let mut parts = vec![whole];
        while let Some(mut part) = parts.pop() {
            let (result, blames_samples) = self.post(&part.encode_to_vec()).await;
            match result {
                Ok(_) => {}
                Err(e @ SendError::Retryable { .. }) => return Err(e),
                Err(SendError::Permanent { .. }) if blames_samples && part.timeseries.len() > 1 => {
                    let second = WriteRequest {
                        timeseries: part.timeseries.split_off(part.timeseries.len() / 2),
                        metadata: Vec::new(),
                    };
                    // A stack: the first half is sent first.
                    parts.push(second);
                    parts.push(part);
                }
                Err(SendError::Permanent { .. }) => {
                    refused_series += part.timeseries.len();
                    refused_samples += samples(&part);
                }
            }
        }
        if refused_series == total_series {
            return Err(SendError::Permanent { reason });
        }
        // Items are data points, which the wire does not show: estimated from the samples.
        let rejected_items = (request.items as u128 * refused_samples as u128).div_ceil(total_samples.max(1) as u128);
        Ok(Sent {
            rejected_items: (rejected_items as u64).min(request.items),
            message: format!(
                "the backend refused {refused_series} of {total_series} series ({reason}); the others were delivered"
            ),
        })
    }
}

/// True when a 400 answer blames samples rather than the request (Prometheus and compatible
/// receivers: out of order, duplicate timestamp, out of bounds, too old), so the rest of the
/// request can still be delivered without them.
pub fn refuses_samples(status: StatusCode, body: &[u8]) -> bool {
    if status != StatusCode::BAD_REQUEST {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    ["out of order sample", "duplicate sample for timestamp", "out of bounds", "too old"]
        .iter()
        .any(|m| text.contains(m))
}

#[async_trait]
impl Transport for RemoteWriteTransport {
    /// Loads the TLS material (for `https://` URLs) and builds the HTTP client.
    fn connect(&self) -> Result<(), ComponentError> {
        Ok(self.client().map(|_| ())?)
    }

    async fn send(&self, request: &Request) -> Result<Sent, SendError> {
        match self.post(&request.body).await {
            (Err(SendError::Permanent { reason }), true) => self.bisect(request, reason).await,
            (result, _) => result,
        }
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
