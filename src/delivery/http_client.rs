//! What the HTTP push exporters (`otlphttp`, `prometheusremotewrite`) share when they talk to
//! their backend: the pooled client, the configured headers, `Retry-After`, and turning a failed
//! answer into a [`SendError`]. Which statuses are worth retrying is each exporter's rule
//! ([`RetryableStatuses`]); the rest is decided here.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::delivery::SendError;
use crate::tls::{ClientTls, TlsError};

/// A client builder with the settings of every HTTP exporter: `timeout` to connect, idle
/// connections kept for 90s, TCP_NODELAY, and `tls` when the backend is `https`.
pub fn client_builder(timeout: Duration, https: bool, tls: &ClientTls) -> Result<reqwest::ClientBuilder, TlsError> {
    // reqwest needs the process-wide rustls provider even for plain HTTP.
    crate::tls::install_default_provider();
    let builder = reqwest::Client::builder()
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true);
    if https { Ok(builder.tls_backend_preconfigured(tls.rustls_config(&[b"h2", b"http/1.1"])?)) } else { Ok(builder) }
}

/// The configured `headers` as a header map. The config's validation reports invalid names and
/// values; should one get here anyway, it is skipped rather than failing every send.
pub fn header_map(headers: &BTreeMap<String, String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            map.insert(k, v);
        }
    }
    map
}

/// Reads `Retry-After` as otelcol does: whole seconds, else an HTTP date (RFC 1123).
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Which failed answers an exporter sends again, and on which of those the answer's
/// `Retry-After` is the least wait before the next attempt.
#[derive(Debug, Clone, Copy)]
pub struct RetryableStatuses {
    /// Statuses worth retrying; every other failure is permanent.
    pub retry: fn(StatusCode) -> bool,
    /// Retried statuses whose `Retry-After` is honoured.
    pub retry_after: fn(StatusCode) -> bool,
}

/// `HTTP 503`, or `HTTP 503: <what the answer said>` when it said something.
pub fn answer_reason(status: StatusCode, said: &str) -> String {
    if said.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {said}") }
}

/// A failed answer as a [`SendError`]: retryable when `statuses` retries `status`, with the
/// answer's `Retry-After` (read at `now`) as the throttle where `statuses` honours it;
/// permanent otherwise.
pub fn failure(
    status: StatusCode,
    headers: &HeaderMap,
    reason: String,
    statuses: RetryableStatuses,
    now: SystemTime,
) -> SendError {
    if !(statuses.retry)(status) {
        return SendError::Permanent { reason };
    }
    let throttle = if (statuses.retry_after)(status) {
        headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| retry_after(v, now))
    } else {
        None
    };
    SendError::Retryable { reason, throttle }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_reads_what_httpdate_writes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("soon", now), None);
    }
}
