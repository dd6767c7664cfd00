//! `receivers::otlp` configuration (otelcol's keys and defaults).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::{Checks, ComponentConfig};
use crate::server::{Limits, ListenAddress};
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
    #[serde(default, deserialize_with = "crate::config::de::present_means_defaults")]
    pub grpc: Option<GrpcProtocol>,
    /// OTLP/HTTP (protobuf and JSON).
    #[serde(default, deserialize_with = "crate::config::de::present_means_defaults")]
    pub http: Option<HttpProtocol>,
}

/// Connections a listener keeps open at once by default (a fovea key).
const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// otelcol's `read_header_timeout` default (confighttp), also used for gRPC's first request.
const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// The time a request body may take (otelcol's `read_timeout` is 0, "none"; fovea bounds it).
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

fn duration_or<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    crate::config::duration::deserialize(d)
}

/// `protocols::grpc:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcProtocol {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest accepted message in MiB (after decompression).
    pub max_recv_msg_size_mib: u64,
    /// Concurrent streams (requests) per HTTP/2 connection; 0 = the server's default (200).
    pub max_concurrent_streams: u32,
    /// otelcol's keepalive settings.
    pub keepalive: GrpcKeepalive,
    /// Connections open at once (fovea key); one more is closed as soon as accepted.
    pub max_connections: usize,
    /// Time from connecting until the first request's headers are in, TLS handshake included
    /// (fovea key; `0` = none).
    #[serde(deserialize_with = "duration_or")]
    pub read_header_timeout: Duration,
    /// Time for a request's message to arrive once its headers are in (fovea key; `0` = none).
    #[serde(deserialize_with = "duration_or")]
    pub read_timeout: Duration,
    /// Serve TLS with this certificate.
    pub tls: Option<ServerTls>,
}

impl Default for GrpcProtocol {
    fn default() -> Self {
        GrpcProtocol {
            endpoint: "127.0.0.1:4317".into(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 0,
            keepalive: GrpcKeepalive::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            tls: None,
        }
    }
}

/// `protocols::grpc::keepalive:` (otelcol's configgrpc).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepalive {
    /// `server_parameters:`.
    pub server_parameters: KeepaliveServerParameters,
    /// `enforcement_policy:` is refused: the HTTP/2 server does not police client pings.
    pub enforcement_policy: Option<EnforcementPolicy>,
}

/// `keepalive::server_parameters:`; durations of `0` mean "none".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    /// Close a connection that has had no request in flight for this long.
    #[serde(deserialize_with = "duration_or")]
    pub max_connection_idle: Duration,
    /// Close a connection (gracefully) once it is this old.
    #[serde(deserialize_with = "duration_or")]
    pub max_connection_age: Duration,
    /// How long requests in flight may still take after `max_connection_age`.
    #[serde(deserialize_with = "duration_or")]
    pub max_connection_age_grace: Duration,
    /// Ping a connection that has been quiet this long.
    #[serde(deserialize_with = "duration_or")]
    pub time: Duration,
    /// Close the connection when a ping is not answered within this.
    #[serde(deserialize_with = "duration_or")]
    pub timeout: Duration,
}

impl Default for KeepaliveServerParameters {
    fn default() -> Self {
        KeepaliveServerParameters {
            // grpc-go never closes idle connections; with a connection cap, idle ones must go
            // eventually or they would hold the cap.
            max_connection_idle: Duration::from_secs(300),
            max_connection_age: Duration::ZERO,
            max_connection_age_grace: Duration::ZERO,
            time: Duration::from_secs(2 * 3600),
            timeout: Duration::from_secs(20),
        }
    }
}

/// `keepalive::enforcement_policy:` (read so it can be refused with a clear message).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcementPolicy {
    /// Shortest time between client pings.
    #[serde(default, deserialize_with = "crate::config::duration::deserialize_option")]
    pub min_time: Option<Duration>,
    /// Allow pings without requests in flight.
    #[serde(default)]
    pub permit_without_stream: bool,
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
    /// Time for a request's headers to arrive (otelcol's key; `0` = none).
    #[serde(deserialize_with = "duration_or")]
    pub read_header_timeout: Duration,
    /// Time for a request's body to arrive once its headers are in (`0` = none).
    #[serde(deserialize_with = "duration_or")]
    pub read_timeout: Duration,
    /// How long a kept-alive connection with no request stays open (otelcol's key; `0` = none).
    #[serde(deserialize_with = "duration_or")]
    pub idle_timeout: Duration,
    /// Connections open at once (fovea key); one more is closed as soon as accepted.
    pub max_connections: usize,
    /// Serve TLS with this certificate.
    pub tls: Option<ServerTls>,
}

impl Default for HttpProtocol {
    fn default() -> Self {
        HttpProtocol {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            metrics_url_path: "/v1/metrics".into(),
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

impl GrpcProtocol {
    /// The listener's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            read_header_timeout: self.read_header_timeout,
            read_timeout: self.read_timeout,
            idle_timeout: self.keepalive.server_parameters.max_connection_idle,
            http2: true,
        }
    }
}

impl HttpProtocol {
    /// The listener's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            read_header_timeout: self.read_header_timeout,
            read_timeout: self.read_timeout,
            idle_timeout: self.idle_timeout,
            http2: false,
        }
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    ListenAddress::parse(endpoint).map(|_| ())
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
            if g.max_connections == 0 {
                checks.fail("protocols::grpc::max_connections", "must be at least 1");
            }
            if g.keepalive.enforcement_policy.is_some() {
                checks.fail(
                    "protocols::grpc::keepalive::enforcement_policy",
                    "not supported: fovea's HTTP/2 server does not police client pings; remove it",
                );
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
            if h.max_connections == 0 {
                checks.fail("protocols::http::max_connections", "must be at least 1");
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
