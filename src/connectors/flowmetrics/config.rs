//! `connectors::flowmetrics` configuration: Retina's context modes and option names, otelcol's
//! connector shape.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};

/// Which labels pod traffic carries (Retina's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Node level: no Kubernetes context, only the metric's own attributes.
    Basic,
    /// Remote context: both ends of every flow (`source.*`, `destination.*`).
    #[default]
    Remote,
    /// Local context: one sample per selected pod of this node, unprefixed `k8s.*` attributes.
    Local,
}

/// A context label option, spelled as Retina's `sourceLabels` / `destinationLabels` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelOption {
    /// The end's address.
    Ip,
    /// Its namespace.
    Namespace,
    /// Its pod name.
    Podname,
    /// Its workload: kind and name.
    Workload,
    /// The Service it is the ClusterIP of.
    Service,
    /// Its port (0 for a collapsed client port; `unknown` for protocols without ports).
    Port,
}

impl LabelOption {
    /// Every option, in Retina's label order.
    pub const ALL: [LabelOption; 6] = [
        LabelOption::Ip,
        LabelOption::Namespace,
        LabelOption::Podname,
        LabelOption::Workload,
        LabelOption::Service,
        LabelOption::Port,
    ];

    /// Reads a Retina option string (case-insensitive, as Retina reads it); `None` for strings
    /// Retina ignores (`pod`, `source`, `zone` ...).
    pub fn parse(text: &str) -> Option<LabelOption> {
        match text.to_ascii_lowercase().as_str() {
            "ip" => Some(LabelOption::Ip),
            "namespace" => Some(LabelOption::Namespace),
            "podname" => Some(LabelOption::Podname),
            "workload" => Some(LabelOption::Workload),
            "service" => Some(LabelOption::Service),
            "port" => Some(LabelOption::Port),
            _ => None,
        }
    }
}

/// A pod-level metric, named as Retina's MetricsConfiguration `metricName` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// `network.forward.packets`.
    ForwardCount,
    /// `network.forward.bytes`.
    ForwardBytes,
    /// `network.drop.packets`.
    DropCount,
    /// `network.drop.bytes`.
    DropBytes,
    /// `network.tcp.flags`.
    TcpFlagGauges,
    /// `network.tcp.retransmits`.
    TcpRetransmissionCount,
    /// `network.dns.requests`.
    DnsRequestCount,
    /// `network.dns.responses`.
    DnsResponseCount,
    /// `network.apiserver.rtt`.
    NodeApiserverLatency,
    /// `network.apiserver.handshake.duration`.
    NodeApiserverHandshakeLatency,
    /// `network.apiserver.no_response`.
    NodeApiserverNoResponse,
}

impl MetricName {
    /// Every metric, in Retina's order.
    pub const ALL: [MetricName; 11] = [
        MetricName::ForwardCount,
        MetricName::ForwardBytes,
        MetricName::DropCount,
        MetricName::DropBytes,
        MetricName::TcpFlagGauges,
        MetricName::TcpRetransmissionCount,
        MetricName::DnsRequestCount,
        MetricName::DnsResponseCount,
        MetricName::NodeApiserverLatency,
        MetricName::NodeApiserverHandshakeLatency,
        MetricName::NodeApiserverNoResponse,
    ];

    /// Retina's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricName::ForwardCount => "forward_count",
            MetricName::ForwardBytes => "forward_bytes",
            MetricName::DropCount => "drop_count",
            MetricName::DropBytes => "drop_bytes",
            MetricName::TcpFlagGauges => "tcp_flag_gauges",
            MetricName::TcpRetransmissionCount => "tcp_retransmission_count",
            MetricName::DnsRequestCount => "dns_request_count",
            MetricName::DnsResponseCount => "dns_response_count",
            MetricName::NodeApiserverLatency => "node_apiserver_latency",
            MetricName::NodeApiserverHandshakeLatency => "node_apiserver_handshake_latency",
            MetricName::NodeApiserverNoResponse => "node_apiserver_no_response",
        }
    }

    /// Reads Retina's spelling.
    pub fn parse(text: &str) -> Option<MetricName> {
        MetricName::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// `labels:` per end.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelsConfig {
    /// Labels of the source end (remote mode), or of the local endpoint (local mode).
    pub source: Vec<LabelOption>,
    /// Labels of the destination end (remote mode; local mode ignores them, as Retina does).
    pub destination: Vec<LabelOption>,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig { source: LabelOption::ALL.to_vec(), destination: LabelOption::ALL.to_vec() }
    }
}

/// `namespaces:` (Retina's MetricsConfiguration `namespaces`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespacesConfig {
    /// Only pods of these namespaces (empty: every namespace, unless `exclude` is set).
    pub include: Vec<String>,
    /// Every namespace but these.
    pub exclude: Vec<String>,
}

/// Where the selection of pods and metrics comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// This config: `metrics`, `labels`, `namespaces`, `metric_expiration`.
    #[default]
    Config,
    /// Pods annotated `retina.sh: observe`, or in namespaces so annotated (Retina's
    /// `enableAnnotations`), with Retina's default labels (ip, namespace, podname, workload).
    Annotations,
    /// The cluster's `MetricsConfiguration` custom resource (`retina.sh/v1alpha1`), watched and
    /// applied without a restart; this config applies until one exists.
    MetricsConfiguration,
}

/// `connectors::flowmetrics` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowMetricsConfig {
    /// `basic`, `remote` or `local`.
    pub mode: Mode,
    /// Context labels per end.
    pub labels: LabelsConfig,
    /// Which pod-level metrics to make (Retina's `metricName`s; default all).
    pub metrics: Vec<MetricName>,
    /// Which namespaces' pods are observed.
    pub namespaces: NamespacesConfig,
    /// `config`, `annotations` or `metrics_configuration`.
    pub selection: Selection,
    /// Series not updated for this long are removed (Retina's `ttl`; `0` keeps them).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub metric_expiration: Duration,
    /// Series per metric; points of further attribute sets go to one overflow series.
    pub max_series: usize,
    /// How often the cumulative metrics are sent on (otelcol spanmetrics' key).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub metrics_flush_interval: Duration,
    /// The Kubernetes API server's addresses, for the `node_apiserver_*` metrics; empty: the
    /// `kubernetes` Service's ClusterIPs and endpoints from the Kubernetes cache.
    pub apiserver_addresses: Vec<IpAddr>,
}

impl Default for FlowMetricsConfig {
    fn default() -> Self {
        FlowMetricsConfig {
            mode: Mode::default(),
            labels: LabelsConfig::default(),
            metrics: MetricName::ALL.to_vec(),
            namespaces: NamespacesConfig::default(),
            selection: Selection::default(),
            metric_expiration: Duration::from_secs(300),
            max_series: 100_000,
            metrics_flush_interval: Duration::from_secs(10),
            apiserver_addresses: Vec::new(),
        }
    }
}

impl ComponentConfig for FlowMetricsConfig {
    fn validate(&self, checks: &mut Checks) {
        if !self.namespaces.include.is_empty() && !self.namespaces.exclude.is_empty() {
            checks
                .fail("namespaces", "set `include` or `exclude`, not both (as Retina's MetricsConfiguration requires)");
        }
        if self.max_series == 0 {
            checks.fail("max_series", "must be at least 1, e.g. 100000");
        }
        if self.metrics_flush_interval < Duration::from_millis(100) {
            checks.fail("metrics_flush_interval", "must be at least 100ms, e.g. 10s");
        }
        if self.metrics.is_empty() {
            checks.fail("metrics", "name at least one metric, e.g. [forward_count, drop_count]");
        }
    }
}
