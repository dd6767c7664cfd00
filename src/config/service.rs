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
    /// Extensions to enable. fovea has none; the key exists so otelcol configs fail clearly.
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnMetricsConfig {
    /// Listen address of `/metrics`, `/healthz`, `/readyz`.
    pub address: String,
    /// Detail level.
    pub level: MetricsLevel,
}

impl Default for OwnMetricsConfig {
    fn default() -> Self {
        OwnMetricsConfig { address: "127.0.0.1:8888".into(), level: MetricsLevel::Normal }
    }
}
