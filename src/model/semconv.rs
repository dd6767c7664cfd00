//! Every metric and attribute name fovea emits, in one place (OpenTelemetry semantic conventions
//! where they exist, `network.*` names of our own where they do not).
//!
//! Receivers build metrics from the [`MetricDef`]s here, the Prometheus translation maps them to
//! Retina's names, and `docs/metrics.md` is checked against the same table, so a name is written
//! once.

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// A monotonic sum (Prometheus counter).
    Counter,
    /// A last value.
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
}

impl Instrument {
    /// The word the docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Instrument::Counter => "counter",
            Instrument::Gauge => "gauge",
            Instrument::Histogram => "histogram",
        }
    }
}

/// The definition of one metric: the single source for its name, type, unit and attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// OpenTelemetry name.
    pub name: &'static str,
    /// Instrument kind.
    pub instrument: Instrument,
    /// UCUM unit.
    pub unit: &'static str,
    /// One-line description (becomes the OTLP description and the Prometheus HELP).
    pub description: &'static str,
    /// Attribute keys its points may carry.
    pub attributes: &'static [&'static str],
}

/// Attribute keys.
pub mod attr {
    /// `receive` or `transmit` (OpenTelemetry `network.io.direction`).
    pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";
    /// Interface name (`eth0`, `veth1a2b`).
    pub const NETWORK_INTERFACE_NAME: &str = "network.interface.name";
    /// TCP state (`established` ...).
    pub const NETWORK_CONNECTION_STATE: &str = "network.connection.state";
    /// `tcp`, `udp` ...
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    /// `ipv4` or `ipv6`.
    pub const NETWORK_TYPE: &str = "network.type";
    /// The kernel's drop reason without `SKB_DROP_REASON_`.
    pub const DROP_REASON: &str = "drop.reason";
    /// TCP flag name (`SYN`, `SYNACK` ...).
    pub const TCP_FLAG: &str = "tcp.flag";
    /// `/proc/net` group (`Tcp`, `TcpExt` ...).
    pub const NETSTAT_GROUP: &str = "netstat.group";
    /// `/proc/net` counter name.
    pub const NETSTAT_NAME: &str = "netstat.name";
    /// Interface statistic name (`rx_packets` ...).
    pub const STATISTIC: &str = "statistic";
    /// DNS question type (`A`, `AAAA` ...).
    pub const DNS_QUESTION_TYPE: &str = "dns.question.type";
    /// DNS question name.
    pub const DNS_QUESTION_NAME: &str = "dns.question.name";
    /// DNS response code as OpenTelemetry spells it (`NOERROR`, `NXDOMAIN` ...).
    pub const DNS_RESPONSE_CODE: &str = "dns.response.code";
    /// Source address of a flow.
    pub const SOURCE_ADDRESS: &str = "source.address";
    /// Source port of a flow.
    pub const SOURCE_PORT: &str = "source.port";
    /// Destination address of a flow.
    pub const DESTINATION_ADDRESS: &str = "destination.address";
    /// Destination port of a flow.
    pub const DESTINATION_PORT: &str = "destination.port";
    /// Kubernetes pod name.
    pub const K8S_POD_NAME: &str = "k8s.pod.name";
    /// Kubernetes pod uid.
    pub const K8S_POD_UID: &str = "k8s.pod.uid";
    /// Kubernetes pod IP (pod association).
    pub const K8S_POD_IP: &str = "k8s.pod.ip";
    /// Kubernetes namespace.
    pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
    /// Kubernetes node.
    pub const K8S_NODE_NAME: &str = "k8s.node.name";
    /// Kubernetes service.
    pub const K8S_SERVICE_NAME: &str = "k8s.service.name";
    /// Top owner kind (`Deployment`, `StatefulSet` ...).
    pub const K8S_WORKLOAD_KIND: &str = "k8s.workload.kind";
    /// Top owner name.
    pub const K8S_WORKLOAD_NAME: &str = "k8s.workload.name";
    /// Deployment owning the pod.
    pub const K8S_DEPLOYMENT_NAME: &str = "k8s.deployment.name";
    /// ReplicaSet owning the pod.
    pub const K8S_REPLICASET_NAME: &str = "k8s.replicaset.name";
    /// StatefulSet owning the pod.
    pub const K8S_STATEFULSET_NAME: &str = "k8s.statefulset.name";
    /// DaemonSet owning the pod.
    pub const K8S_DAEMONSET_NAME: &str = "k8s.daemonset.name";
    /// Job owning the pod.
    pub const K8S_JOB_NAME: &str = "k8s.job.name";
    /// CronJob owning the pod's Job.
    pub const K8S_CRONJOB_NAME: &str = "k8s.cronjob.name";
    /// Cluster name (resource attribute, when set).
    pub const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";
    /// Host name (resource attribute).
    pub const HOST_NAME: &str = "host.name";
    /// `fovea` (resource attribute).
    pub const SERVICE_NAME: &str = "service.name";
    /// The fovea version (resource attribute).
    pub const SERVICE_VERSION: &str = "service.version";
    /// Set on the series that collects points past a cardinality cap (as the OpenTelemetry SDKs do).
    pub const OTEL_METRIC_OVERFLOW: &str = "otel.metric.overflow";
    /// Prefix of the attributes of a flow's source end (`source.k8s.pod.name`).
    pub const SOURCE_PREFIX: &str = "source.";
    /// Prefix of the attributes of a flow's destination end.
    pub const DESTINATION_PREFIX: &str = "destination.";
}

use attr::*;

/// `network.forward.packets` (packetforward; pod level from flowmetrics).
pub const NETWORK_FORWARD_PACKETS: MetricDef = MetricDef {
    name: "network.forward.packets",
    instrument: Instrument::Counter,
    unit: "{packet}",
    description: "Packets received and transmitted per interface, counted in the kernel at TC/TCX",
    attributes: &[NETWORK_INTERFACE_NAME, NETWORK_IO_DIRECTION],
};

/// `network.forward.bytes`.
pub const NETWORK_FORWARD_BYTES: MetricDef = MetricDef {
    name: "network.forward.bytes",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Bytes (link-layer header included) received and transmitted per interface, counted at TC/TCX",
    attributes: &[NETWORK_INTERFACE_NAME, NETWORK_IO_DIRECTION],
};

/// `network.drop.packets` (dropreason).
pub const NETWORK_DROP_PACKETS: MetricDef = MetricDef {
    name: "network.drop.packets",
    instrument: Instrument::Counter,
    unit: "{packet}",
    description: "Packets dropped by the kernel, per drop reason and direction (skb:kfree_skb)",
    attributes: &[DROP_REASON, NETWORK_IO_DIRECTION],
};

/// `network.drop.bytes`.
pub const NETWORK_DROP_BYTES: MetricDef = MetricDef {
    name: "network.drop.bytes",
    instrument: Instrument::Counter,
    unit: "By",
    description: "Network-layer bytes of the packets dropped by the kernel, per drop reason and direction",
    attributes: &[DROP_REASON, NETWORK_IO_DIRECTION],
};

/// `network.tcp.retransmits` (tcpretrans).
pub const NETWORK_TCP_RETRANSMITS: MetricDef = MetricDef {
    name: "network.tcp.retransmits",
    instrument: Instrument::Counter,
    unit: "{segment}",
    description: "TCP segments retransmitted, as the kernel's TcpRetransSegs counts them (IPv4 and IPv6)",
    attributes: &[],
};

/// `network.netstat` (linuxutil).
pub const NETWORK_NETSTAT: MetricDef = MetricDef {
    name: "network.netstat",
    instrument: Instrument::Gauge,
    unit: "",
    description: "Kernel network stack counters from /proc/net/snmp and /proc/net/netstat",
    attributes: &[NETSTAT_GROUP, NETSTAT_NAME],
};

/// `network.interface.stats` (linuxutil).
pub const NETWORK_INTERFACE_STATS: MetricDef = MetricDef {
    name: "network.interface.stats",
    instrument: Instrument::Gauge,
    unit: "",
    description: "Interface statistics (packets, bytes, errors, drops) from netlink",
    attributes: &[NETWORK_INTERFACE_NAME, STATISTIC],
};

/// `network.tcp.connections` (linuxutil).
pub const NETWORK_TCP_CONNECTIONS: MetricDef = MetricDef {
    name: "network.tcp.connections",
    instrument: Instrument::Gauge,
    unit: "{connection}",
    description: "TCP sockets by state (IPv4 and IPv6), from netlink sock_diag",
    attributes: &[NETWORK_CONNECTION_STATE],
};

/// `network.udp.sockets` (linuxutil).
pub const NETWORK_UDP_SOCKETS: MetricDef = MetricDef {
    name: "network.udp.sockets",
    instrument: Instrument::Gauge,
    unit: "{socket}",
    description: "Open UDP sockets (IPv4 and IPv6), from netlink sock_diag",
    attributes: &[],
};
