//! The `service` section: pipelines, the agent's own telemetry, shutdown and resource settings.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The keys of `service:`.
pub const SERVICE_FIELDS: [&str; 5] = ["extensions", "pipelines", "telemetry", "resource", "shutdown_timeout"];

/// `service:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Ids of the extensions to run (configured under `extensions:`), in start order.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Pipelines by id (`metrics`, `metrics/node`, `flows`).
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// The agent's own logs and metrics.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Extra resource attributes on everything fovea produces (e.g. `k8s.cluster.name`).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// How long a graceful stop may take before queued data is dropped (and logged).
    #[serde(default = "default_shutdown_timeout", deserialize_with = "super::duration::deserialize")]
    pub shutdown_timeout: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            extensions: Vec::new(),
            pipelines: BTreeMap::new(),
            telemetry: TelemetryConfig::default(),
            resource: BTreeMap::new(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(20)
}

/// One pipeline: receivers -> processors (in order) -> exporters.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Receiver ids feeding the pipeline.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Processor ids, applied in order.
    #[serde(default)]
    pub processors: Vec<String>,
    /// Exporter ids receiving the pipeline's output.
    #[serde(default)]
    pub exporters: Vec<String>,
}

/// `service.telemetry`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Log settings.
    pub logs: LogsConfig,
    /// Own-metrics settings.
    pub metrics: OwnMetricsConfig,
}

/// Log level.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Problems that do not lose data.
    Warn,
    /// Problems that do.
    Error,
}

impl LogLevel {
    /// The tracing filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Log encoding.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    /// Human-readable lines.
    #[default]
    Console,
    /// One JSON object per line.
    Json,
}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Minimum level (`debug`, `info`, `warn`, `error`); `RUST_LOG` overrides it.
    pub level: LogLevel,
    /// `console` or `json`.
    pub encoding: LogEncoding,
}

/// Own-metrics detail level, as otelcol's `service.telemetry.metrics.level`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// No own-metrics endpoint at all.
    None,
    /// Build info, health and process metrics only.
    Basic,
    /// Plus per-component counters and queues.
    #[default]
    Normal,
    /// Plus per-program eBPF details.
    Detailed,
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnMetricsConfig {
    /// Listen address of `/metrics`, `/healthz`, `/readyz` (otelcol's older key; a `pull`
    /// reader is the newer way to say the same). [`DEFAULT_OWN_ADDRESS`] when neither is set.
    pub address: Option<String>,
    /// Detail level.
    pub level: MetricsLevel,
    /// otelcol's metric readers: `pull` (a Prometheus endpoint) and `periodic` (OTLP push).
    pub readers: Vec<MetricReader>,
}

/// Where own metrics are served when neither `address` nor a `pull` reader says.
pub const DEFAULT_OWN_ADDRESS: &str = "127.0.0.1:8888";

/// One of `service.telemetry.metrics.readers` (OpenTelemetry's declarative configuration).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricReader {
    /// Serve the own metrics for scraping.
    Pull(PullReader),
    /// Push the own metrics every `interval`.
    Periodic(PeriodicReader),
}

/// `pull:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    /// `exporter:`.
    pub exporter: PullExporter,
}

/// `pull::exporter:`: only `prometheus`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    /// `prometheus:`.
    pub prometheus: PrometheusPull,
}

/// `pull::exporter::prometheus:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrometheusPull {
    /// Host to listen on.
    #[serde(default = "default_pull_host")]
    pub host: String,
    /// Port to listen on.
    pub port: u16,
    /// Leave out `otel_scope_name` / `otel_scope_version`.
    #[serde(default)]
    pub without_scope_info: bool,
    /// Leave out unit words (`_seconds`, `_bytes`); only together with `without_type_suffix`.
    #[serde(default)]
    pub without_units: bool,
    /// Leave out `_total`; only together with `without_units`.
    #[serde(default)]
    pub without_type_suffix: bool,
}

fn default_pull_host() -> String {
    "localhost".into()
}

impl PrometheusPull {
    /// `host:port`, IPv6 hosts in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `periodic:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeriodicReader {
    /// Milliseconds between pushes.
    #[serde(default = "default_interval_ms")]
    pub interval: u64,
    /// Milliseconds one push may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout: u64,
    /// `exporter:`.
    pub exporter: PeriodicExporter,
}

fn default_interval_ms() -> u64 {
    60_000
}

fn default_timeout_ms() -> u64 {
    30_000
}

/// `periodic::exporter:`: only `otlp`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeriodicExporter {
    /// `otlp:`.
    pub otlp: OtlpPush,
}

/// `periodic::exporter::otlp:` (OpenTelemetry's declarative OTLP exporter keys).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpPush {
    /// `http/protobuf` (default) or `grpc`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// `http/protobuf`: the full URL (`http://collector:4318/v1/metrics`); `grpc`: `host:port`
    /// or a URL (`https://` forces TLS).
    pub endpoint: String,
    /// Extra headers (gRPC metadata).
    #[serde(default)]
    pub headers: Vec<PushHeader>,
    /// `gzip` (default) or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Milliseconds one request may take.
    #[serde(default = "default_push_timeout_ms")]
    pub timeout: u64,
    /// gRPC: plain text instead of TLS.
    #[serde(default)]
    pub insecure: bool,
    /// CA certificate file to verify the server with.
    pub certificate: Option<String>,
    /// Client certificate file (mTLS).
    pub client_certificate: Option<String>,
    /// Client key file (mTLS).
    pub client_key: Option<String>,
    /// Only `cumulative`: fovea's own counters are cumulative.
    #[serde(default = "default_temporality")]
    pub temporality_preference: String,
}

/// One `headers:` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

fn default_protocol() -> String {
    "http/protobuf".into()
}

fn default_compression() -> String {
    "gzip".into()
}

fn default_push_timeout_ms() -> u64 {
    10_000
}

fn default_temporality() -> String {
    "cumulative".into()
}

impl OwnMetricsConfig {
    /// Where own metrics are served for scraping: every `pull` reader, else `address`, else
    /// [`DEFAULT_OWN_ADDRESS`]; with the reader's options when there is one.
    pub fn pull_endpoints(&self) -> Vec<(String, Option<&PrometheusPull>)> {
        let pulls: Vec<_> = self
            .readers
            .iter()
            .filter_map(|r| match r {
                MetricReader::Pull(p) => Some((p.exporter.prometheus.address(), Some(&p.exporter.prometheus))),
                MetricReader::Periodic(_) => None,
            })
            .collect();
        if !pulls.is_empty() {
            return pulls;
        }
        vec![(self.address.clone().unwrap_or_else(|| DEFAULT_OWN_ADDRESS.to_string()), None)]
    }

    /// The `periodic` readers.
    pub fn periodic(&self) -> impl Iterator<Item = &PeriodicReader> {
        self.readers.iter().filter_map(|r| match r {
            MetricReader::Periodic(p) => Some(p),
            MetricReader::Pull(_) => None,
        })
    }

    /// Cross-field checks, as `(path under service::telemetry::metrics, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let pulls = self.readers.iter().filter(|r| matches!(r, MetricReader::Pull(_))).count();
        if pulls > 0 && self.address.is_some() {
            out.push((
                "address".to_string(),
                "set either address (otelcol's older key) or a pull reader in readers, not both".to_string(),
            ));
        }
        for (i, reader) in self.readers.iter().enumerate() {
            match reader {
                MetricReader::Pull(p) => {
                    let at = format!("readers::{i}::pull::exporter::prometheus");
                    if let Err(e) = crate::server::ListenAddress::parse(&p.exporter.prometheus.address()) {
                        out.push((format!("{at}::host"), e));
                    }
                    let prom = &p.exporter.prometheus;
                    if prom.without_units != prom.without_type_suffix {
                        out.push((
                            format!("{at}::without_units"),
                            "fovea leaves out units and type suffixes together: set without_units and without_type_suffix alike".into(),
                        ));
                    }
                }
                MetricReader::Periodic(p) => {
                    let at = format!("readers::{i}::periodic");
                    if p.interval == 0 {
                        out.push((format!("{at}::interval"), "must be above 0 (milliseconds)".into()));
                    }
                    if p.timeout == 0 {
                        out.push((format!("{at}::timeout"), "must be above 0 (milliseconds)".into()));
                    }
                    let otlp = &p.exporter.otlp;
                    let at = format!("{at}::exporter::otlp");
                    if !matches!(otlp.protocol.as_str(), "http/protobuf" | "grpc") {
                        out.push((format!("{at}::protocol"), "valid values: http/protobuf, grpc".into()));
                    }
                    if otlp.protocol == "http/protobuf"
                        && !(otlp.endpoint.starts_with("http://") || otlp.endpoint.starts_with("https://"))
                    {
                        out.push((
                            format!("{at}::endpoint"),
                            "http/protobuf needs the full URL, e.g. http://collector:4318/v1/metrics".into(),
                        ));
                    }
                    if !matches!(otlp.compression.as_str(), "gzip" | "none") {
                        out.push((format!("{at}::compression"), "valid values: gzip, none".into()));
                    }
                    if otlp.timeout == 0 {
                        out.push((format!("{at}::timeout"), "must be above 0 (milliseconds)".into()));
                    }
                    if otlp.temporality_preference != "cumulative" {
                        out.push((
                            format!("{at}::temporality_preference"),
                            "only cumulative: fovea's own counters are cumulative".into(),
                        ));
                    }
                    for (field, file) in [
                        ("certificate", &otlp.certificate),
                        ("client_certificate", &otlp.client_certificate),
                        ("client_key", &otlp.client_key),
                    ] {
                        if let Some(f) = file
                            && let Err(e) = std::fs::File::open(f)
                        {
                            out.push((format!("{at}::{field}"), format!("cannot read {f}: {e}")));
                        }
                    }
                    if otlp.client_certificate.is_some() != otlp.client_key.is_some() {
                        out.push((format!("{at}::client_key"), "client_certificate and client_key go together".into()));
                    }
                }
            }
        }
        out
    }
}
