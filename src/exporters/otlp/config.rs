//! `exporters::otlp` configuration (otelcol's `otlp`/`otlp_grpc` keys and defaults).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};
use crate::delivery::{RetryConfig, SendingQueueConfig};
use crate::otlp::Compression;
use crate::tls::ClientTls;

/// `otlp:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// `host:port` of the OTLP/gRPC server (`http://`, `https://` and `dns:///` prefixes accepted;
    /// `https://` forces TLS). Required.
    pub endpoint: String,
    /// TLS; on by default with the system's roots (`insecure: true` for plain text).
    #[serde(default)]
    pub tls: ClientTls,
    /// gRPC metadata sent with every request (e.g. `authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Time limit of one attempt (default 5s).
    #[serde(default = "default_timeout", deserialize_with = "crate::config::duration::deserialize")]
    pub timeout: Duration,
    /// The sending queue (otelcol's exporterhelper keys).
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    /// Retries of retryable failures (otelcol's exporterhelper keys).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Where to connect and whether with TLS, from `endpoint` and `tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTarget {
    /// `host:port` (port 443 when none is written, as gRPC does).
    pub authority: String,
    /// Use TLS.
    pub tls: bool,
}

impl GrpcTarget {
    /// The URI tonic connects to.
    pub fn uri(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.authority)
    }
}

/// Parses an otelcol gRPC endpoint. As in otelcol, only `https://` changes the TLS decision
/// (forcing it on); `http://` is just stripped and TLS still follows `tls::insecure`.
pub fn grpc_target(endpoint: &str, insecure: bool) -> Result<GrpcTarget, String> {
    let endpoint = endpoint.trim();
    let (rest, force_tls) = if let Some(r) = endpoint.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = endpoint.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = endpoint.strip_prefix("dns:///") {
        (r, false)
    } else if let Some(r) = endpoint.strip_prefix("dns://") {
        // dns://resolver/host:port: the resolver is not configurable here; use the system's.
        (r.split_once('/').map(|(_, t)| t).unwrap_or(r), false)
    } else {
        (endpoint, false)
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() {
        return Err("must be host:port, e.g. collector:4317".into());
    }
    if authority.contains('/') {
        return Err(format!("`{endpoint}` has a path; a gRPC endpoint is host:port, e.g. collector:4317"));
    }
    let has_port = match authority.rsplit_once(':') {
        // `[::1]:4317` or `host:4317`; a bare IPv6 address without brackets has several colons.
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            port.parse::<u16>().map_err(|_| format!("`{port}` is not a port number in `{endpoint}`"))?;
            true
        }
        _ => false,
    };
    let authority = if has_port { authority.to_string() } else { format!("{authority}:443") };
    let uri = format!("http://{authority}");
    uri.parse::<http::Uri>().map_err(|e| format!("`{endpoint}` is not a valid host:port: {e}"))?;
    Ok(GrpcTarget { authority, tls: force_tls || !insecure })
}

impl ComponentConfig for OtlpExporterConfig {
    fn validate(&self, checks: &mut Checks) {
        if let Err(e) = grpc_target(&self.endpoint, self.tls.insecure) {
            checks.fail("endpoint", e);
        }
        self.tls.validate("tls", checks);
        for (key, value) in &self.headers {
            if tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()).is_err() || key.ends_with("-bin") {
                checks.fail(&format!("headers::{key}"), "not a valid gRPC metadata key (ASCII, no `-bin` suffix)");
            } else if tonic::metadata::AsciiMetadataValue::try_from(value.as_str()).is_err() {
                checks.fail(&format!("headers::{key}"), "not a valid gRPC metadata value (visible ASCII only)");
            }
        }
        if self.timeout.is_zero() {
            checks.fail("timeout", "must be above 0, e.g. 5s");
        }
        self.sending_queue.validate("sending_queue", checks);
        self.retry_on_failure.validate("retry_on_failure", checks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_otelcol_reads_them() {
        let t = |e: &str, insecure: bool| grpc_target(e, insecure).map(|t| t.uri());
        assert_eq!(t("collector:4317", false).unwrap(), "https://collector:4317");
        assert_eq!(t("collector:4317", true).unwrap(), "http://collector:4317");
        assert_eq!(t("https://collector:4317", true).unwrap(), "https://collector:4317");
        assert_eq!(t("http://collector:4317", false).unwrap(), "https://collector:4317");
        assert_eq!(t("http://127.0.0.1:4317/", true).unwrap(), "http://127.0.0.1:4317");
        assert_eq!(t("dns:///collector:4317", true).unwrap(), "http://collector:4317");
        assert_eq!(t("[::1]:4317", true).unwrap(), "http://[::1]:4317");
        assert_eq!(t("collector", false).unwrap(), "https://collector:443");
        assert!(t("collector:http", false).is_err());
        assert!(t("http://collector:4317/v1/metrics", false).is_err());
        assert!(t("", false).is_err());
    }
}
