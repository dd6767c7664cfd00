//! `receivers::otlp` configuration (otelcol's keys and defaults).

use serde::{Deserialize, Deserializer};

use crate::config::{Checks, ComponentConfig};
use crate::tls::ServerTls;

/// `otlp:` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// The protocols to serve; at least one.
    #[serde(default)]
    pub protocols: Protocols,
}

/// `protocols:`; a protocol written with an empty body (`grpc:`) is served with defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC.
    #[serde(default, deserialize_with = "present_means_defaults")]
    pub grpc: Option<GrpcProtocol>,
    /// OTLP/HTTP (protobuf and JSON).
    #[serde(default, deserialize_with = "present_means_defaults")]
    pub http: Option<HttpProtocol>,
}

/// A key that is present, even with a null body, enables the protocol with its defaults.
fn present_means_defaults<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `protocols::grpc:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcProtocol {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest accepted message in MiB (after decompression).
    pub max_recv_msg_size_mib: u64,
    /// Serve TLS with this certificate.
    pub tls: Option<ServerTls>,
}

impl Default for GrpcProtocol {
    fn default() -> Self {
        GrpcProtocol { endpoint: "127.0.0.1:4317".into(), max_recv_msg_size_mib: 4, tls: None }
    }
}

/// `protocols::http:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpProtocol {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest accepted request body in bytes, compressed and after decompression.
    pub max_request_body_size: usize,
    /// Path metrics are posted to.
    pub metrics_url_path: String,
    /// Serve TLS with this certificate.
    pub tls: Option<ServerTls>,
}

impl Default for HttpProtocol {
    fn default() -> Self {
        HttpProtocol {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            metrics_url_path: "/v1/metrics".into(),
            tls: None,
        }
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("`{endpoint}` is not host:port, e.g. 0.0.0.0:4317")),
    }
}

impl ComponentConfig for OtlpReceiverConfig {
    fn validate(&self, checks: &mut Checks) {
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            checks.fail(
                "protocols",
                "must specify at least one protocol: grpc, http or both (e.g. `protocols: {grpc: }`)",
            );
        }
        if let Some(g) = &p.grpc {
            if let Err(e) = check_endpoint(&g.endpoint) {
                checks.fail("protocols::grpc::endpoint", e);
            }
            if g.max_recv_msg_size_mib == 0 {
                checks.fail("protocols::grpc::max_recv_msg_size_mib", "must be at least 1");
            }
            if let Some(tls) = &g.tls {
                tls.validate("protocols::grpc::tls", checks);
            }
        }
        if let Some(h) = &p.http {
            if let Err(e) = check_endpoint(&h.endpoint) {
                checks.fail("protocols::http::endpoint", e);
            }
            if h.max_request_body_size == 0 {
                checks.fail("protocols::http::max_request_body_size", "must be at least 1");
            }
            if !h.metrics_url_path.starts_with('/') {
                checks.fail("protocols::http::metrics_url_path", "must start with `/`, e.g. /v1/metrics");
            }
            if let Some(tls) = &h.tls {
                tls.validate("protocols::http::tls", checks);
            }
        }
        if let (Some(g), Some(h)) = (&p.grpc, &p.http)
            && g.endpoint == h.endpoint
            && !g.endpoint.ends_with(":0")
        {
            checks.fail("protocols::http::endpoint", "grpc and http cannot listen on the same endpoint");
        }
    }
}
