//! `extensions::health_check` configuration (otelcol's healthcheckextension keys and defaults).

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::config::{Checks, ComponentConfig};
use crate::server::ListenAddress;
use crate::tls::ServerTls;

/// `health_check:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// `host:port` to serve on.
    pub endpoint: String,
    /// The path answered.
    pub path: String,
    /// Fixed bodies instead of otelcol's JSON status.
    pub response_body: Option<ResponseBody>,
    /// otelcol's deprecated exporter-failure check; only `enabled: false` is accepted.
    pub check_collector_pipeline: Option<CheckCollectorPipeline>,
    /// Serve HTTPS (confighttp's server `tls`, the same keys as the OTLP receiver's).
    pub tls: Option<ServerTls>,
    /// confighttp's `cors` (read to refuse it clearly: a probe endpoint has no browser clients).
    pub cors: Option<IgnoredAny>,
    /// confighttp's `auth` (read to refuse it clearly: fovea has no authenticator extensions).
    pub auth: Option<IgnoredAny>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: "localhost:13133".into(),
            path: "/".into(),
            response_body: None,
            check_collector_pipeline: None,
            tls: None,
            cors: None,
            auth: None,
        }
    }
}

/// `response_body:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseBody {
    /// Body of the 200 answer.
    pub healthy: String,
    /// Body of the 503 answer.
    pub unhealthy: String,
}

/// `check_collector_pipeline:` (read to refuse `enabled: true` clearly).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckCollectorPipeline {
    /// Whether exporter failures make the agent unhealthy.
    pub enabled: bool,
    /// otelcol's evaluation interval.
    pub interval: Option<String>,
    /// otelcol's failure threshold.
    pub exporter_failure_threshold: Option<u64>,
}

impl ComponentConfig for HealthCheckConfig {
    fn validate(&self, checks: &mut Checks) {
        if let Err(e) = ListenAddress::parse(&self.endpoint) {
            checks.fail("endpoint", e);
        }
        if !self.path.starts_with('/') {
            checks.fail("path", "must start with `/`, e.g. / or /health/status");
        }
        if let Some(tls) = &self.tls {
            tls.validate("tls", checks);
        }
        if self.cors.is_some() {
            checks.fail("cors", "not supported: the health endpoint is for probes, not browsers; remove the key");
        }
        if self.auth.is_some() {
            checks.fail(
                "auth",
                "not supported: fovea has no authenticator extensions; protect the endpoint with tls (client_ca_file for client certificates) or keep it on localhost",
            );
        }
        if self.check_collector_pipeline.as_ref().is_some_and(|c| c.enabled) {
            checks.fail(
                "check_collector_pipeline::enabled",
                "not supported (deprecated in otelcol too): exporter failures are in fovea_exporter_send_failed_items_total; set enabled: false or remove the key",
            );
        }
    }
}
