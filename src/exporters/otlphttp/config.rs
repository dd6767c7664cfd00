//! `exporters::otlphttp` configuration (otelcol's `otlphttp`/`otlp_http` keys and defaults).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};
use crate::delivery::{RetryConfig, SendingQueueConfig};
use crate::otlp::{Compression, LOGS_HTTP_PATH, METRICS_HTTP_PATH};
use crate::tls::ClientTls;

/// Body encoding of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf` (default).
    #[default]
    Proto,
    /// `application/json` (OTLP/JSON).
    Json,
}

/// `otlphttp:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL; `/v1/metrics` and `/v1/logs` are appended. `https://` means TLS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for metrics, used as-is (overrides `endpoint`).
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for flow records sent as logs, used as-is (overrides `endpoint`).
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// TLS for `https://` URLs (system roots by default).
    #[serde(default)]
    pub tls: ClientTls,
    /// HTTP headers sent with every request (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Time limit of one attempt (default 30s).
    #[serde(default = "default_timeout", deserialize_with = "crate::config::duration::deserialize")]
    pub timeout: Duration,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// The sending queue (otelcol's exporterhelper keys).
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    /// Retries of retryable failures (otelcol's exporterhelper keys).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `base` with a signal path appended the way otelcol does (no doubled `/`).
pub fn signal_url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("`{url}` needs an http:// or https:// scheme")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

impl OtlpHttpExporterConfig {
    /// The URL metrics are posted to, if any endpoint covers them.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_endpoint.clone().or_else(|| self.endpoint.as_deref().map(|e| signal_url(e, METRICS_HTTP_PATH)))
    }

    /// The URL flow records (as logs) are posted to, if any endpoint covers them.
    pub fn logs_url(&self) -> Option<String> {
        self.logs_endpoint.clone().or_else(|| self.endpoint.as_deref().map(|e| signal_url(e, LOGS_HTTP_PATH)))
    }
}

impl ComponentConfig for OtlpHttpExporterConfig {
    fn validate(&self, checks: &mut Checks) {
        if self.endpoint.is_none() && self.metrics_endpoint.is_none() && self.logs_endpoint.is_none() {
            checks.fail("endpoint", "at least one endpoint must be specified, e.g. endpoint: http://collector:4318");
        }
        for (field, url) in [
            ("endpoint", &self.endpoint),
            ("metrics_endpoint", &self.metrics_endpoint),
            ("logs_endpoint", &self.logs_endpoint),
        ] {
            if let Some(url) = url
                && let Err(e) = check_url(url)
            {
                checks.fail(field, e);
            }
        }
        self.tls.validate("tls", checks);
        for (key, value) in &self.headers {
            if http::HeaderName::from_bytes(key.as_bytes()).is_err() {
                checks.fail(&format!("headers::{key}"), "not a valid HTTP header name");
            } else if http::HeaderValue::from_str(value).is_err() {
                checks.fail(&format!("headers::{key}"), "not a valid HTTP header value (visible ASCII only)");
            }
        }
        if self.timeout.is_zero() {
            checks.fail("timeout", "must be above 0, e.g. 30s");
        }
        self.sending_queue.validate("sending_queue", checks);
        self.retry_on_failure.validate("retry_on_failure", checks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_urls_as_otelcol_builds_them() {
        let mut c: OtlpHttpExporterConfig = serde_json::from_str(r#"{"endpoint": "https://collector:4318/"}"#).unwrap();
        assert_eq!(c.metrics_url().unwrap(), "https://collector:4318/v1/metrics");
        assert_eq!(c.logs_url().unwrap(), "https://collector:4318/v1/logs");
        c.endpoint = Some("http://gw/otlp".into());
        c.metrics_endpoint = Some("http://other:9000/custom".into());
        assert_eq!(c.metrics_url().unwrap(), "http://other:9000/custom");
        assert_eq!(c.logs_url().unwrap(), "http://gw/otlp/v1/logs");
        assert_eq!(
            (c.timeout, c.compression, c.encoding),
            (Duration::from_secs(30), Compression::Gzip, Encoding::Proto)
        );
        assert!(check_url("collector:4318").is_err());
        assert!(check_url("ftp://collector").is_err());
    }
}
