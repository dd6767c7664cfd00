//! Configuration of the `prometheus` exporter: otelcol's keys and defaults, plus fovea's `path`
//! and `naming`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};
use crate::prometheus::{Naming, ResourceToTelemetry, StoreOptions, is_valid_label_name};
use crate::server::ListenAddress;

/// Retina's metrics port, the default scrape endpoint.
pub const DEFAULT_ENDPOINT: &str = "0.0.0.0:10093";

/// `exporters::prometheus` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// `host:port` to serve scrapes on (default `0.0.0.0:10093`, Retina's port).
    pub endpoint: String,
    /// URL path of the metrics (default `/metrics`); other paths answer 404.
    pub path: String,
    /// Prefix for every OpenTelemetry-named metric and `target_info` (`namespace_metric_name`);
    /// Retina names are never prefixed.
    pub namespace: String,
    /// Labels added to every series (not to `target_info`, as in otelcol).
    pub const_labels: BTreeMap<String, String>,
    /// Write each sample's own timestamp (default false: Prometheus uses the scrape time).
    pub send_timestamps: bool,
    /// Series not updated for this long disappear (default 5m; `0` keeps them forever).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub metric_expiration: Duration,
    /// Copy resource attributes onto every series (Retina-named ones too) instead of exposing
    /// the `target_info` metric.
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Serve OpenMetrics text when the scraper asks for it (default false).
    pub enable_open_metrics: bool,
    /// Append unit words and `_total` / `_ratio` to names (default true).
    pub add_metric_suffixes: bool,
    /// Leave out the `otel_scope_name` / `otel_scope_version` labels (default false).
    pub without_scope_info: bool,
    /// `otel` (OpenTelemetry -> Prometheus translation) or `retina` (Retina's names and labels).
    pub naming: Naming,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            path: "/metrics".to_string(),
            namespace: String::new(),
            const_labels: BTreeMap::new(),
            send_timestamps: false,
            metric_expiration: Duration::from_secs(300),
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            enable_open_metrics: false,
            add_metric_suffixes: true,
            without_scope_info: false,
            naming: Naming::Otel,
        }
    }
}

impl PrometheusConfig {
    /// How the exporter's series store names and labels series.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            naming: self.naming,
            namespace: self.namespace.clone(),
            add_suffixes: self.add_metric_suffixes,
            resource_labels: self.resource_to_telemetry_conversion.enabled,
            scope_labels: !self.without_scope_info,
            const_labels: self.const_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            expiration: (!self.metric_expiration.is_zero()).then_some(self.metric_expiration),
            retina_target_labels: false,
        }
    }
}

impl ComponentConfig for PrometheusConfig {
    fn validate(&self, checks: &mut Checks) {
        if let Err(e) = ListenAddress::parse(&self.endpoint) {
            checks.fail("endpoint", e);
        }
        let path_chars = self.path.chars().all(|c| c.is_ascii_alphanumeric() || "/._~-".contains(c));
        if !self.path.starts_with('/') || !path_chars {
            checks.fail(
                "path",
                format!(
                    "`{}` is not a plain URL path (letters, digits, / . _ ~ -); write e.g. \"/metrics\"",
                    self.path
                ),
            );
        }
        for name in self.const_labels.keys() {
            if !is_valid_label_name(name) {
                checks.fail(
                    &format!("const_labels::{name}"),
                    "not a Prometheus label name: use letters, digits and `_`, not starting with a digit or `__`",
                );
            }
        }
    }
}
