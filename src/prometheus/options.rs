//! How series are named and labelled: the settings both Prometheus exporters share.

use std::time::Duration;

use serde::Deserialize;

/// Which metric names and labels are exposed (`naming` on both Prometheus exporters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// The OpenTelemetry -> Prometheus translation (`network_forward_packets_total`).
    #[default]
    Otel,
    /// Retina's names and labels (`networkobservability_forward_count{direction}`) where Retina
    /// has an equivalent; the OpenTelemetry translation otherwise.
    Retina,
}

/// `resource_to_telemetry_conversion` settings (otelcol's key on both Prometheus exporters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceToTelemetry {
    /// When true, every resource attribute becomes a label on every series.
    pub enabled: bool,
}

/// How a [`Store`](super::Store) names and labels series; each exporter derives it from its config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// OpenTelemetry or Retina names.
    pub naming: Naming,
    /// Prefix of OpenTelemetry-named metrics and `target_info` (empty: none).
    pub namespace: String,
    /// Append unit words and `_total` / `_ratio`.
    pub add_suffixes: bool,
    /// Copy resource attributes onto every series (instead of `target_info`).
    pub resource_labels: bool,
    /// Add `otel_scope_name` / `otel_scope_version`.
    pub scope_labels: bool,
    /// Labels added to every series, sorted by name.
    pub const_labels: Vec<(String, String)>,
    /// Series not updated for this long are removed by [`Store::expire`](super::Store::expire).
    pub expiration: Option<Duration>,
    /// Give Retina-named series `job` and `instance` from the resource too. A scrape gets them
    /// from Prometheus's target labels; a push (remote-write) must carry them itself.
    pub retina_target_labels: bool,
}

impl StoreOptions {
    /// OpenTelemetry naming with suffixes, nothing added, nothing expiring.
    pub fn plain() -> Self {
        StoreOptions {
            naming: Naming::Otel,
            namespace: String::new(),
            add_suffixes: true,
            resource_labels: false,
            scope_labels: true,
            const_labels: Vec::new(),
            expiration: None,
            retina_target_labels: false,
        }
    }
}
