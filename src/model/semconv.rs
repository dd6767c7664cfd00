//! Every metric and attribute name fovea emits, in one place (OpenTelemetry semantic conventions
//! where they exist, `network.*` names of our own where they do not).
//!
//! Receivers build metrics from the [`MetricDef`]s here, the Prometheus translation maps them to
//! Retina's names, and `docs/metrics.md` is checked against the same table, so a name is written
//! once.
//!
//! A new metric: define it here, list it in its component's `Factory::metrics`, build it with
//! `Metric::from_def`, and run `FOVEA_BLESS=1 cargo test --test docs_metrics` to add it to the
//! docs (own metrics go in [`own::METRICS`]).

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
    /// The remote end's address of a connection (OpenTelemetry `network.peer.address`).
    pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
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
    /// The IPv4/IPv6 addresses of a DNS response's A/AAAA answers, comma-separated in answer
    /// order (OpenTelemetry `dns.answers`, joined as Retina's `response` label is).
    pub const DNS_ANSWERS: &str = "dns.answers";
    /// Resource records in a DNS response's answer section (the header's ANCOUNT; Retina's
    /// `num_response`).
    pub const DNS_ANSWER_COUNT: &str = "dns.answer.count";
    /// A DNS message's transaction id (flow records).
    pub const DNS_ID: &str = "dns.id";
    /// `query` or `response` (flow records).
    pub const DNS_MESSAGE_TYPE: &str = "dns.message.type";
    /// Query to response time of a DNS response's transaction (flow records, s).
    pub const DNS_DURATION: &str = "dns.duration";
    /// The local endpoint's port in local context (`flowmetrics` `mode: local`).
    pub const NETWORK_LOCAL_PORT: &str = "network.local.port";
    /// Source address of a flow.
    pub const SOURCE_ADDRESS: &str = "source.address";
    /// Source port of a flow.
    pub const SOURCE_PORT: &str = "source.port";
    /// Destination address of a flow.
    pub const DESTINATION_ADDRESS: &str = "destination.address";
    /// Destination port of a flow.
    pub const DESTINATION_PORT: &str = "destination.port";
    /// Kubernetes pod name.
    pub const K8S_POD_NAME: &str = super::k8s::POD_NAME.plain;
    /// Kubernetes pod uid.
    pub const K8S_POD_UID: &str = super::k8s::POD_UID.plain;
    /// Kubernetes pod IP (pod association).
    pub const K8S_POD_IP: &str = super::k8s::POD_IP.plain;
    /// When the kubelet started the pod (RFC 3339).
    pub const K8S_POD_START_TIME: &str = super::k8s::POD_START_TIME.plain;
    /// Kubernetes namespace.
    pub const K8S_NAMESPACE_NAME: &str = super::k8s::NAMESPACE_NAME.plain;
    /// Kubernetes node.
    pub const K8S_NODE_NAME: &str = super::k8s::NODE_NAME.plain;
    /// Kubernetes service.
    pub const K8S_SERVICE_NAME: &str = super::k8s::SERVICE_NAME.plain;
    /// Top owner kind (`Deployment`, `StatefulSet` ...).
    pub const K8S_WORKLOAD_KIND: &str = super::k8s::WORKLOAD_KIND.plain;
    /// Top owner name.
    pub const K8S_WORKLOAD_NAME: &str = super::k8s::WORKLOAD_NAME.plain;
    /// Deployment owning the pod.
    pub const K8S_DEPLOYMENT_NAME: &str = super::k8s::DEPLOYMENT_NAME.plain;
    /// ReplicaSet owning the pod.
    pub const K8S_REPLICASET_NAME: &str = super::k8s::REPLICASET_NAME.plain;
    /// StatefulSet owning the pod.
    pub const K8S_STATEFULSET_NAME: &str = super::k8s::STATEFULSET_NAME.plain;
    /// DaemonSet owning the pod.
    pub const K8S_DAEMONSET_NAME: &str = super::k8s::DAEMONSET_NAME.plain;
    /// Job owning the pod.
    pub const K8S_JOB_NAME: &str = super::k8s::JOB_NAME.plain;
    /// CronJob owning the pod's Job.
    pub const K8S_CRONJOB_NAME: &str = super::k8s::CRONJOB_NAME.plain;
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
    /// The agent's instance id (resource attribute; the node name).
    pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
    /// What kind of flow record a log record is (`drop`, `retransmit`).
    pub const FLOW_KIND: &str = "flow.kind";
    /// Packets a flow record covers.
    pub const FLOW_PACKETS: &str = "flow.packets";
    /// Bytes a flow record covers.
    pub const FLOW_BYTES: &str = "flow.bytes";
    /// The TCP flags seen in a flow, as the header's flag byte.
    pub const TCP_FLAGS: &str = "tcp.flags";
    /// The IP protocol number, where `network.transport` has no name for it.
    pub const NETWORK_PROTOCOL_NUMBER: &str = "network.protocol.number";
    /// Interface index a flow was seen on.
    pub const NETWORK_INTERFACE_INDEX: &str = "network.interface.index";
    /// When a flow was first seen (ns since the Unix epoch).
    pub const FLOW_START_TIME: &str = "flow.start_time_unix_nano";
    /// Where a flow was observed: `pod` (a pod's interface) or `uplink` (the node's uplink).
    pub const FLOW_OBSERVATION_POINT: &str = "flow.observation_point";
    /// Set (`true`) on the record that carries what did not fit in the kernel's flow table.
    pub const FLOW_OVERFLOW: &str = "flow.overflow";
    /// Handshakes completed in a flow record.
    pub const TCP_HANDSHAKE_COUNT: &str = "tcp.handshake.count";
    /// Their summed duration (s).
    pub const TCP_HANDSHAKE_SUM: &str = "tcp.handshake.duration.sum";
    /// Their shortest duration (s).
    pub const TCP_HANDSHAKE_MIN: &str = "tcp.handshake.duration.min";
    /// Their longest duration (s).
    pub const TCP_HANDSHAKE_MAX: &str = "tcp.handshake.duration.max";
    /// Sockets whose smoothed RTT a flow record carries.
    pub const TCP_RTT_COUNT: &str = "tcp.rtt.count";
    /// Their summed smoothed RTT (s).
    pub const TCP_RTT_SUM: &str = "tcp.rtt.sum";
    /// The smallest (s).
    pub const TCP_RTT_MIN: &str = "tcp.rtt.min";
    /// The largest (s).
    pub const TCP_RTT_MAX: &str = "tcp.rtt.max";
}

/// A Kubernetes attribute as it appears on a resource or a local-context point (`plain`) and on
/// the two ends of a flow (`source.` / `destination.` prefixed), all spelled here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndAttribute {
    /// Unprefixed (`k8s.pod.name`): resource attributes, local context.
    pub plain: &'static str,
    /// The flow's source end (`source.k8s.pod.name`).
    pub source: &'static str,
    /// The flow's destination end (`destination.k8s.pod.name`).
    pub destination: &'static str,
}

impl EndAttribute {
    /// The name for `end`.
    pub const fn at(&self, end: End) -> &'static str {
        match end {
            End::Plain => self.plain,
            End::Source => self.source,
            End::Destination => self.destination,
        }
    }
}

/// Which spelling of an [`EndAttribute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// Unprefixed (resource attributes).
    Plain,
    /// `source.` prefixed.
    Source,
    /// `destination.` prefixed.
    Destination,
}

impl End {
    /// The prefix this end puts before a plain name (`source.`), empty for [`End::Plain`].
    pub const fn prefix(self) -> &'static str {
        match self {
            End::Plain => "",
            End::Source => attr::SOURCE_PREFIX,
            End::Destination => attr::DESTINATION_PREFIX,
        }
    }
}

macro_rules! end_attributes {
    ($( $(#[$doc:meta])* $id:ident = $name:literal; )*) => {
        $( $(#[$doc])* pub const $id: EndAttribute = EndAttribute {
            plain: $name,
            source: concat!("source.", $name),
            destination: concat!("destination.", $name),
        }; )*
    };
}

/// The Kubernetes metadata the `k8sattributes` processor adds (OpenTelemetry semantic
/// conventions), in every spelling.
pub mod k8s {
    use super::EndAttribute;

    end_attributes! {
        /// `k8s.pod.name`.
        POD_NAME = "k8s.pod.name";
        /// `k8s.pod.uid`.
        POD_UID = "k8s.pod.uid";
        /// `k8s.pod.ip` (the pod's IP; for `pod_association`).
        POD_IP = "k8s.pod.ip";
        /// `k8s.pod.start_time` (RFC 3339).
        POD_START_TIME = "k8s.pod.start_time";
        /// `k8s.namespace.name`.
        NAMESPACE_NAME = "k8s.namespace.name";
        /// `k8s.node.name`.
        NODE_NAME = "k8s.node.name";
        /// `k8s.service.name` (an address that is a Service ClusterIP).
        SERVICE_NAME = "k8s.service.name";
        /// `k8s.workload.kind`: the kind of the pod's top owner (`Deployment`, not `ReplicaSet`).
        WORKLOAD_KIND = "k8s.workload.kind";
        /// `k8s.workload.name`: the name of the pod's top owner.
        WORKLOAD_NAME = "k8s.workload.name";
        /// `k8s.deployment.name`.
        DEPLOYMENT_NAME = "k8s.deployment.name";
        /// `k8s.replicaset.name`.
        REPLICASET_NAME = "k8s.replicaset.name";
        /// `k8s.statefulset.name`.
        STATEFULSET_NAME = "k8s.statefulset.name";
        /// `k8s.daemonset.name`.
        DAEMONSET_NAME = "k8s.daemonset.name";
        /// `k8s.job.name`.
        JOB_NAME = "k8s.job.name";
        /// `k8s.cronjob.name`.
        CRONJOB_NAME = "k8s.cronjob.name";
    }

    /// Every metadata name `extract.metadata` accepts, in the order the docs list them.
    pub const METADATA: &[EndAttribute] = &[
        NAMESPACE_NAME,
        POD_NAME,
        POD_UID,
        POD_IP,
        POD_START_TIME,
        NODE_NAME,
        WORKLOAD_KIND,
        WORKLOAD_NAME,
        DEPLOYMENT_NAME,
        REPLICASET_NAME,
        STATEFULSET_NAME,
        DAEMONSET_NAME,
        JOB_NAME,
        CRONJOB_NAME,
        SERVICE_NAME,
    ];

    /// Prefix of a pod label's attribute when `tag_name` is not given (`k8s.pod.label.app`).
    pub const POD_LABEL_PREFIX: &str = "k8s.pod.label.";
    /// Prefix of a pod annotation's attribute when `tag_name` is not given.
    pub const POD_ANNOTATION_PREFIX: &str = "k8s.pod.annotation.";
    /// Prefix of a namespace label's attribute when `tag_name` is not given.
    pub const NAMESPACE_LABEL_PREFIX: &str = "k8s.namespace.label.";
    /// Prefix of a namespace annotation's attribute when `tag_name` is not given.
    pub const NAMESPACE_ANNOTATION_PREFIX: &str = "k8s.namespace.annotation.";
    /// Prefix of a node label's attribute when `tag_name` is not given.
    pub const NODE_LABEL_PREFIX: &str = "k8s.node.label.";
    /// Prefix of a node annotation's attribute when `tag_name` is not given.
    pub const NODE_ANNOTATION_PREFIX: &str = "k8s.node.annotation.";
}
/// Explicit bucket bounds (seconds) of the latency histograms (`network.tcp.handshake.duration`,
/// `network.tcp.rtt`): 10 µs to 10 s, 1-2.5-5 steps. The kernel's handshake histogram uses the
/// same bounds in ns (`HANDSHAKE_BOUNDS_NS` in src/ebpf/flowtable.rs, ebpf/flows.bpf.h).
pub const LATENCY_BOUNDS_S: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// [`LATENCY_BOUNDS_S`] in ns, for bucketing integer durations exactly.
pub const LATENCY_BOUNDS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

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

/// `network.tcp.flags` (flows; pod level from flowmetrics).
pub const NETWORK_TCP_FLAGS: MetricDef = MetricDef {
    name: "network.tcp.flags",
    instrument: Instrument::Counter,
    unit: "{packet}",
    description: "TCP packets per flag on the interfaces flows watches (a SYN-ACK counts as SYNACK only)",
    attributes: &[TCP_FLAG],
};

/// `network.tcp.handshake.duration` (flows).
pub const NETWORK_TCP_HANDSHAKE_DURATION: MetricDef = MetricDef {
    name: "network.tcp.handshake.duration",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "TCP handshakes, SYN to SYN-ACK, where the SYN left towards the server (uplink or server pod): once per connection per node",
    attributes: &[],
};

/// `network.tcp.rtt` (flows).
pub const NETWORK_TCP_RTT: MetricDef = MetricDef {
    name: "network.tcp.rtt",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "The kernel's smoothed RTT of the node's TCP sockets: one sample per active socket per collection",
    attributes: &[],
};

/// `network.apiserver.handshake.duration` (flowmetrics).
pub const NETWORK_APISERVER_HANDSHAKE_DURATION: MetricDef = MetricDef {
    name: "network.apiserver.handshake.duration",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "TCP handshakes (SYN to SYN-ACK) of this node's connections to the Kubernetes API server",
    attributes: &[],
};

/// `network.apiserver.rtt` (flowmetrics).
pub const NETWORK_APISERVER_RTT: MetricDef = MetricDef {
    name: "network.apiserver.rtt",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "The kernel's smoothed RTT of this node's TCP sockets to the Kubernetes API server",
    attributes: &[],
};

/// `network.apiserver.no_response` (flowmetrics).
pub const NETWORK_APISERVER_NO_RESPONSE: MetricDef = MetricDef {
    name: "network.apiserver.no_response",
    instrument: Instrument::Counter,
    unit: "{packet}",
    description: "SYNs this node sent to the Kubernetes API server that no SYN-ACK answered within a collection",
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

/// `network.tcp.remote_connections` (linuxutil).
pub const NETWORK_TCP_REMOTE_CONNECTIONS: MetricDef = MetricDef {
    name: "network.tcp.remote_connections",
    instrument: Instrument::Gauge,
    unit: "{connection}",
    description: "Established TCP connections per remote address, for the addresses with the most (sockets.remote_addresses); the others summed in one point with otel.metric.overflow",
    attributes: &[NETWORK_PEER_ADDRESS, OTEL_METRIC_OVERFLOW],
};

/// `network.udp.sockets` (linuxutil).
pub const NETWORK_UDP_SOCKETS: MetricDef = MetricDef {
    name: "network.udp.sockets",
    instrument: Instrument::Gauge,
    unit: "{socket}",
    description: "Open UDP sockets (IPv4 and IPv6), from netlink sock_diag",
    attributes: &[],
};

/// `network.dns.requests` (dns).
pub const NETWORK_DNS_REQUESTS: MetricDef = MetricDef {
    name: "network.dns.requests",
    instrument: Instrument::Counter,
    unit: "{request}",
    description: "DNS queries seen, per question type (and name, with question_name)",
    attributes: &[DNS_QUESTION_TYPE, DNS_QUESTION_NAME],
};

/// `network.dns.responses` (dns).
pub const NETWORK_DNS_RESPONSES: MetricDef = MetricDef {
    name: "network.dns.responses",
    instrument: Instrument::Counter,
    unit: "{response}",
    description: "DNS responses seen, per question type, response code and answer count (and name and addresses, with question_name and answers)",
    attributes: &[DNS_QUESTION_TYPE, DNS_RESPONSE_CODE, DNS_ANSWER_COUNT, DNS_QUESTION_NAME, DNS_ANSWERS],
};

/// `network.dns.duration` (dns).
pub const NETWORK_DNS_DURATION: MetricDef = MetricDef {
    name: "network.dns.duration",
    instrument: Instrument::Histogram,
    unit: "s",
    description: "Time from a DNS query to its response, as the node saw them (matched by client address and port, protocol and transaction id)",
    attributes: &[DNS_QUESTION_TYPE, DNS_RESPONSE_CODE],
};

/// `network.dns.unanswered` (dns).
pub const NETWORK_DNS_UNANSWERED: MetricDef = MetricDef {
    name: "network.dns.unanswered",
    instrument: Instrument::Counter,
    unit: "{request}",
    description: "DNS queries without a response within response_timeout",
    attributes: &[DNS_QUESTION_TYPE, DNS_QUESTION_NAME],
};

/// Flow records as OTLP log records (`otlp`, `otlphttp` exporters).
pub mod flow_log {
    use super::attr::*;

    /// Event name of a flow's log record: this prefix and the flow kind (`network.flow.drop`).
    pub const EVENT_NAME_PREFIX: &str = "network.flow.";

    /// Every attribute a flow's log record may carry besides the record's own (Kubernetes ...)
    /// attributes, in the order they are written.
    pub const ATTRIBUTES: &[&str] = &[
        FLOW_KIND,
        SOURCE_ADDRESS,
        SOURCE_PORT,
        DESTINATION_ADDRESS,
        DESTINATION_PORT,
        NETWORK_TYPE,
        NETWORK_TRANSPORT,
        NETWORK_PROTOCOL_NUMBER,
        NETWORK_IO_DIRECTION,
        NETWORK_INTERFACE_INDEX,
        NETWORK_INTERFACE_NAME,
        FLOW_OBSERVATION_POINT,
        FLOW_START_TIME,
        FLOW_PACKETS,
        FLOW_BYTES,
        FLOW_OVERFLOW,
        TCP_FLAGS,
        FLOW_TCP_SYN,
        FLOW_TCP_SYNACK,
        FLOW_TCP_ACK,
        FLOW_TCP_FIN,
        FLOW_TCP_RST,
        FLOW_TCP_PSH,
        FLOW_TCP_URG,
        FLOW_TCP_ECE,
        FLOW_TCP_CWR,
        TCP_HANDSHAKE_COUNT,
        TCP_HANDSHAKE_SUM,
        TCP_HANDSHAKE_MIN,
        TCP_HANDSHAKE_MAX,
        TCP_RTT_COUNT,
        TCP_RTT_SUM,
        TCP_RTT_MIN,
        TCP_RTT_MAX,
        NETWORK_CONNECTION_STATE,
        DROP_REASON,
        DNS_MESSAGE_TYPE,
        DNS_ID,
        DNS_QUESTION_NAME,
        DNS_QUESTION_TYPE,
        DNS_RESPONSE_CODE,
        DNS_ANSWER_COUNT,
        DNS_ANSWERS,
        DNS_DURATION,
    ];

    /// `flow.tcp.<flag>`: packets per TCP flag, in the order of `TcpFlag::ALL`.
    pub const FLOW_TCP_FLAG_COUNTS: [&str; 9] = [
        FLOW_TCP_SYN,
        FLOW_TCP_SYNACK,
        FLOW_TCP_ACK,
        FLOW_TCP_FIN,
        FLOW_TCP_RST,
        FLOW_TCP_PSH,
        FLOW_TCP_URG,
        FLOW_TCP_ECE,
        FLOW_TCP_CWR,
    ];
    /// SYN packets of a flow.
    pub const FLOW_TCP_SYN: &str = "flow.tcp.syn";
    /// SYN-ACK packets.
    pub const FLOW_TCP_SYNACK: &str = "flow.tcp.synack";
    /// ACK packets (SYN-ACKs not included).
    pub const FLOW_TCP_ACK: &str = "flow.tcp.ack";
    /// FIN packets.
    pub const FLOW_TCP_FIN: &str = "flow.tcp.fin";
    /// RST packets.
    pub const FLOW_TCP_RST: &str = "flow.tcp.rst";
    /// PSH packets.
    pub const FLOW_TCP_PSH: &str = "flow.tcp.psh";
    /// URG packets.
    pub const FLOW_TCP_URG: &str = "flow.tcp.urg";
    /// ECE packets.
    pub const FLOW_TCP_ECE: &str = "flow.tcp.ece";
    /// CWR packets.
    pub const FLOW_TCP_CWR: &str = "flow.tcp.cwr";
}

/// The agent's own metrics (`service.telemetry.metrics`), documented from the same table.
pub mod own {
    use super::{Instrument, MetricDef};

    /// Attribute keys of the agent's own metrics.
    pub mod attr {
        /// The receiver's component id (also `ComponentKind::Receiver`'s name).
        pub const RECEIVER: &str = "receiver";
        /// The processor's component id.
        pub const PROCESSOR: &str = "processor";
        /// The exporter's component id.
        pub const EXPORTER: &str = "exporter";
        /// The connector's component id.
        pub const CONNECTOR: &str = "connector";
        /// The metric a `flowmetrics` figure is about (`network.forward.packets`).
        pub const METRIC: &str = "metric";
        /// The pipeline a processor instance belongs to.
        pub const PIPELINE: &str = "pipeline";
        /// `metrics` or `flows`.
        pub const SIGNAL: &str = "signal";
        /// eBPF program name.
        pub const PROGRAM: &str = "program";
        /// eBPF map name.
        pub const MAP: &str = "map";
        /// The fovea version.
        pub const VERSION: &str = "version";
        /// The compiler that built fovea.
        pub const RUSTC: &str = "rustc";
        /// Where a sending queue keeps its data (`memory`, `disk`).
        pub const STORAGE: &str = "storage";
        /// Kubernetes object kind a watch serves (`Pod`, `ReplicaSet` ...).
        pub const KIND: &str = "kind";
        /// What a watch event did (`listed`, `added`, `modified`, `deleted`).
        pub const EVENT: &str = "event";
        /// How a lookup ended (`hit`, `grace`, `miss`).
        pub const RESULT: &str = "result";
        /// A receiver's wire protocol (`grpc`, `http`).
        pub const PROTOCOL: &str = "protocol";
        /// Why a request was rejected (`header_timeout`, `body_timeout`, `malformed`, `too_large`,
        /// `unsupported_media_type`, `unknown_path`), or a flow log file deleted
        /// (`max_total_megabytes`, `unfinished`).
        pub const REASON: &str = "reason";
    }

    use attr::*;

    /// A counter of items (data points or flow records), otelcol style.
    const fn items(name: &'static str, description: &'static str, attributes: &'static [&'static str]) -> MetricDef {
        MetricDef { name, instrument: Instrument::Counter, unit: "{item}", description, attributes }
    }

    /// A gauge of batches in a component's queues.
    const fn batches(name: &'static str, description: &'static str, attributes: &'static [&'static str]) -> MetricDef {
        MetricDef { name, instrument: Instrument::Gauge, unit: "{batch}", description, attributes }
    }

    /// `fovea.build_info`.
    pub const BUILD_INFO: MetricDef = MetricDef {
        name: "fovea.build_info",
        instrument: Instrument::Gauge,
        unit: "",
        description: "Always 1; `version` is fovea's version, `rustc` the version of the Rust compiler that built it",
        attributes: &[VERSION, RUSTC],
    };
    /// `fovea.process.uptime`.
    pub const PROCESS_UPTIME: MetricDef = MetricDef {
        name: "fovea.process.uptime",
        instrument: Instrument::Gauge,
        unit: "s",
        description: "Seconds since the agent started",
        attributes: &[],
    };
    /// `fovea.process.cpu.time`.
    pub const PROCESS_CPU_TIME: MetricDef = MetricDef {
        name: "fovea.process.cpu.time",
        instrument: Instrument::Counter,
        unit: "s",
        description: "CPU time used by the agent (user + system)",
        attributes: &[],
    };
    /// `fovea.process.memory.rss`.
    pub const PROCESS_MEMORY_RSS: MetricDef = MetricDef {
        name: "fovea.process.memory.rss",
        instrument: Instrument::Gauge,
        unit: "By",
        description: "Resident set size of the agent",
        attributes: &[],
    };

    /// `fovea.receiver.received_items`.
    pub const RECEIVER_RECEIVED_ITEMS: MetricDef =
        items("fovea.receiver.received_items", "Items produced or received by the receiver", &[RECEIVER, SIGNAL]);
    /// `fovea.receiver.accepted_items`.
    pub const RECEIVER_ACCEPTED_ITEMS: MetricDef =
        items("fovea.receiver.accepted_items", "Items the receiver pushed into its pipelines", &[RECEIVER, SIGNAL]);
    /// `fovea.receiver.refused_items`.
    pub const RECEIVER_REFUSED_ITEMS: MetricDef = items(
        "fovea.receiver.refused_items",
        "Items the receiver could not push (pipelines stopped)",
        &[RECEIVER, SIGNAL],
    );
    /// `fovea.receiver.failed_items`.
    pub const RECEIVER_FAILED_ITEMS: MetricDef = items(
        "fovea.receiver.failed_items",
        "Items lost inside the receiver (e.g. kernel ring-buffer losses)",
        &[RECEIVER, SIGNAL],
    );
    /// `fovea.receiver.queue_size`.
    pub const RECEIVER_QUEUE_SIZE: MetricDef = batches(
        "fovea.receiver.queue_size",
        "Batches waiting in the component's input and sending queues",
        &[RECEIVER],
    );
    /// `fovea.receiver.queue_capacity`.
    pub const RECEIVER_QUEUE_CAPACITY: MetricDef =
        batches("fovea.receiver.queue_capacity", "Capacity of the component's queues", &[RECEIVER]);

    /// `fovea.processor.incoming_items`.
    pub const PROCESSOR_INCOMING_ITEMS: MetricDef =
        items("fovea.processor.incoming_items", "Items that entered the processor", &[PROCESSOR, PIPELINE, SIGNAL]);
    /// `fovea.processor.outgoing_items`.
    pub const PROCESSOR_OUTGOING_ITEMS: MetricDef =
        items("fovea.processor.outgoing_items", "Items the processor passed on", &[PROCESSOR, PIPELINE, SIGNAL]);
    /// `fovea.processor.dropped_items`.
    pub const PROCESSOR_DROPPED_ITEMS: MetricDef =
        items("fovea.processor.dropped_items", "Items the processor dropped", &[PROCESSOR, PIPELINE, SIGNAL]);
    /// `fovea.processor.failed_items`.
    pub const PROCESSOR_FAILED_ITEMS: MetricDef =
        items("fovea.processor.failed_items", "Items the processor failed to pass on", &[PROCESSOR, PIPELINE, SIGNAL]);
    /// `fovea.processor.queue_size`.
    pub const PROCESSOR_QUEUE_SIZE: MetricDef = batches(
        "fovea.processor.queue_size",
        "Batches waiting in the component's input and sending queues",
        &[PROCESSOR, PIPELINE],
    );
    /// `fovea.processor.queue_capacity`.
    pub const PROCESSOR_QUEUE_CAPACITY: MetricDef =
        batches("fovea.processor.queue_capacity", "Capacity of the component's queues", &[PROCESSOR, PIPELINE]);

    /// `fovea.exporter.received_items`.
    pub const EXPORTER_RECEIVED_ITEMS: MetricDef =
        items("fovea.exporter.received_items", "Items that reached the exporter", &[EXPORTER, SIGNAL]);
    /// `fovea.exporter.sent_items`.
    pub const EXPORTER_SENT_ITEMS: MetricDef =
        items("fovea.exporter.sent_items", "Items delivered to the destination", &[EXPORTER, SIGNAL]);
    /// `fovea.exporter.dropped_items`.
    pub const EXPORTER_DROPPED_ITEMS: MetricDef = items(
        "fovea.exporter.dropped_items",
        "Items given up: queue full, permanent error, retries exhausted, shutdown",
        &[EXPORTER, SIGNAL],
    );
    /// `fovea.exporter.send_failed_items`.
    pub const EXPORTER_SEND_FAILED_ITEMS: MetricDef = items(
        "fovea.exporter.send_failed_items",
        "Items of delivery attempts that failed (they may be retried)",
        &[EXPORTER, SIGNAL],
    );
    /// `fovea.exporter.queue_size`.
    pub const EXPORTER_QUEUE_SIZE: MetricDef = batches(
        "fovea.exporter.queue_size",
        "Batches waiting in the component's input and sending queues",
        &[EXPORTER],
    );
    /// `fovea.exporter.queue_capacity`.
    pub const EXPORTER_QUEUE_CAPACITY: MetricDef =
        batches("fovea.exporter.queue_capacity", "Capacity of the component's queues", &[EXPORTER]);
    /// `fovea.connector.received_items`.
    pub const CONNECTOR_RECEIVED_ITEMS: MetricDef = items(
        "fovea.connector.received_items",
        "Items that reached the connector from the pipelines that export to it",
        &[CONNECTOR, SIGNAL],
    );
    /// `fovea.connector.sent_items`.
    pub const CONNECTOR_SENT_ITEMS: MetricDef = items(
        "fovea.connector.sent_items",
        "Items the connector passed to the pipelines it feeds",
        &[CONNECTOR, SIGNAL],
    );
    /// `fovea.connector.dropped_items`.
    pub const CONNECTOR_DROPPED_ITEMS: MetricDef =
        items("fovea.connector.dropped_items", "Items the connector dropped", &[CONNECTOR, SIGNAL]);
    /// `fovea.connector.failed_items`.
    pub const CONNECTOR_FAILED_ITEMS: MetricDef = items(
        "fovea.connector.failed_items",
        "Items the connector could not pass on (the pipelines it feeds had stopped)",
        &[CONNECTOR, SIGNAL],
    );
    /// `fovea.connector.queue_size`.
    pub const CONNECTOR_QUEUE_SIZE: MetricDef =
        batches("fovea.connector.queue_size", "Batches waiting in the connector's input", &[CONNECTOR]);
    /// `fovea.connector.queue_capacity`.
    pub const CONNECTOR_QUEUE_CAPACITY: MetricDef =
        batches("fovea.connector.queue_capacity", "Capacity of the connector's input", &[CONNECTOR]);
    /// `fovea.exporter.retries` (push exporters' delivery layer).
    pub const EXPORTER_RETRIES: MetricDef = MetricDef {
        name: "fovea.exporter.retries",
        instrument: Instrument::Counter,
        unit: "{retry}",
        description: "Retries scheduled after retryable send failures",
        attributes: &[EXPORTER],
    };
    /// `fovea.exporter.queue.bytes`.
    pub const EXPORTER_QUEUE_BYTES: MetricDef = MetricDef {
        name: "fovea.exporter.queue.bytes",
        instrument: Instrument::Gauge,
        unit: "By",
        description: "Bytes held by the sending queue: request bodies in memory, or files on disk for the persistent queue",
        attributes: &[EXPORTER, STORAGE],
    };
    /// `fovea.exporter.queue.capacity_bytes` (persistent queues only).
    pub const EXPORTER_QUEUE_CAPACITY_BYTES: MetricDef = MetricDef {
        name: "fovea.exporter.queue.capacity_bytes",
        instrument: Instrument::Gauge,
        unit: "By",
        description: "Upper bound of the persistent queue on disk (max_size_mib)",
        attributes: &[EXPORTER, STORAGE],
    };

    /// `fovea.ebpf.program.run_time`.
    pub const EBPF_PROGRAM_RUN_TIME: MetricDef = MetricDef {
        name: "fovea.ebpf.program.run_time",
        instrument: Instrument::Counter,
        unit: "ns",
        description: "Kernel time spent in the program (counted while BPF statistics are enabled)",
        attributes: &[RECEIVER, PROGRAM],
    };
    /// `fovea.ebpf.program.run_count`.
    pub const EBPF_PROGRAM_RUN_COUNT: MetricDef = MetricDef {
        name: "fovea.ebpf.program.run_count",
        instrument: Instrument::Counter,
        unit: "{run}",
        description: "Program invocations (counted while BPF statistics are enabled)",
        attributes: &[RECEIVER, PROGRAM],
    };
    /// `fovea.ebpf.map.entries`.
    pub const EBPF_MAP_ENTRIES: MetricDef = MetricDef {
        name: "fovea.ebpf.map.entries",
        instrument: Instrument::Gauge,
        unit: "{entry}",
        description: "Entries in use (arrays: their size; ring buffers: 0)",
        attributes: &[RECEIVER, MAP],
    };
    /// `fovea.ebpf.map.max_entries`.
    pub const EBPF_MAP_MAX_ENTRIES: MetricDef = MetricDef {
        name: "fovea.ebpf.map.max_entries",
        instrument: Instrument::Gauge,
        unit: "{entry}",
        description: "Map capacity (ring buffers: bytes)",
        attributes: &[RECEIVER, MAP],
    };
    /// `fovea.ebpf.records.emitted`.
    pub const EBPF_RECORDS_EMITTED: MetricDef = MetricDef {
        name: "fovea.ebpf.records.emitted",
        instrument: Instrument::Counter,
        unit: "{record}",
        description: "Flow records the kernel wrote to the ring buffer",
        attributes: &[RECEIVER],
    };
    /// `fovea.ebpf.records.capped`.
    pub const EBPF_RECORDS_CAPPED: MetricDef = MetricDef {
        name: "fovea.ebpf.records.capped",
        instrument: Instrument::Counter,
        unit: "{record}",
        description: "Flow records not written because the per-second cap (flows.max_records_per_second) was reached",
        attributes: &[RECEIVER],
    };
    /// `fovea.ebpf.records.lost`.
    pub const EBPF_RECORDS_LOST: MetricDef = MetricDef {
        name: "fovea.ebpf.records.lost",
        instrument: Instrument::Counter,
        unit: "{record}",
        description: "Flow records lost because the ring buffer was full (the agent read too slowly)",
        attributes: &[RECEIVER],
    };
    /// `fovea.dns.malformed`.
    pub const DNS_MALFORMED: MetricDef = MetricDef {
        name: "fovea.dns.malformed",
        instrument: Instrument::Counter,
        unit: "{message}",
        description: "Messages on a DNS port that did not parse as DNS (truncated, bad counts, bad names, compression loops); not counted as requests or responses",
        attributes: &[RECEIVER],
    };
    /// `fovea.dns.transactions.evicted`.
    pub const DNS_TRANSACTIONS_EVICTED: MetricDef = MetricDef {
        name: "fovea.dns.transactions.evicted",
        instrument: Instrument::Counter,
        unit: "{request}",
        description: "Queries forgotten before their response or timeout because max_pending queries were waiting; counted as unanswered",
        attributes: &[RECEIVER],
    };
    /// `fovea.dns.series.overflow`.
    pub const DNS_SERIES_OVERFLOW: MetricDef = MetricDef {
        name: "fovea.dns.series.overflow",
        instrument: Instrument::Counter,
        unit: "{message}",
        description: "DNS messages counted in the otel.metric.overflow series because max_series was reached",
        attributes: &[RECEIVER],
    };
    /// `fovea.flows.overflow.packets`.
    pub const FLOWS_OVERFLOW_PACKETS: MetricDef = MetricDef {
        name: "fovea.flows.overflow.packets",
        instrument: Instrument::Counter,
        unit: "{packet}",
        description: "Packets counted without their flow because the kernel's flow table was full (max_flows); they are in the overflow flow records",
        attributes: &[RECEIVER, super::attr::NETWORK_INTERFACE_NAME, super::attr::NETWORK_IO_DIRECTION],
    };
    /// `fovea.flows.overflow.bytes`.
    pub const FLOWS_OVERFLOW_BYTES: MetricDef = MetricDef {
        name: "fovea.flows.overflow.bytes",
        instrument: Instrument::Counter,
        unit: "By",
        description: "Network-layer bytes of those packets",
        attributes: &[RECEIVER, super::attr::NETWORK_INTERFACE_NAME, super::attr::NETWORK_IO_DIRECTION],
    };
    /// `fovea.flows.drained`.
    pub const FLOWS_DRAINED: MetricDef = MetricDef {
        name: "fovea.flows.drained",
        instrument: Instrument::Counter,
        unit: "{flow}",
        description: "Flow table entries drained from the kernel (one per flow per collection)",
        attributes: &[RECEIVER],
    };

    /// `fovea.flowmetrics.series`.
    pub const FLOWMETRICS_SERIES: MetricDef = MetricDef {
        name: "fovea.flowmetrics.series",
        instrument: Instrument::Gauge,
        unit: "{series}",
        description: "Series a flowmetrics connector holds per metric (the overflow series not included)",
        attributes: &[CONNECTOR, METRIC],
    };
    /// `fovea.flowmetrics.overflow.points`.
    pub const FLOWMETRICS_OVERFLOW_POINTS: MetricDef = MetricDef {
        name: "fovea.flowmetrics.overflow.points",
        instrument: Instrument::Counter,
        unit: "{point}",
        description: "Samples folded into a metric's overflow series because it held max_series series",
        attributes: &[CONNECTOR, METRIC],
    };
    /// `fovea.flowmetrics.expired`.
    pub const FLOWMETRICS_EXPIRED: MetricDef = MetricDef {
        name: "fovea.flowmetrics.expired",
        instrument: Instrument::Counter,
        unit: "{series}",
        description: "Series removed because they were not updated within their expiration (Retina's ttl)",
        attributes: &[CONNECTOR, METRIC],
    };
    /// `fovea.flowmetrics.reconfigurations`.
    pub const FLOWMETRICS_RECONFIGURATIONS: MetricDef = MetricDef {
        name: "fovea.flowmetrics.reconfigurations",
        instrument: Instrument::Counter,
        unit: "{change}",
        description: "Changes of what a flowmetrics connector makes (MetricsConfiguration or annotations), applied without a restart",
        attributes: &[CONNECTOR],
    };
    /// `fovea.flowlog.files.completed`.
    pub const FLOWLOG_FILES_COMPLETED: MetricDef = MetricDef {
        name: "fovea.flowlog.files.completed",
        instrument: Instrument::Counter,
        unit: "{file}",
        description: "Flow log files finished and renamed to their final name",
        attributes: &[EXPORTER],
    };
    /// `fovea.flowlog.files.deleted`.
    pub const FLOWLOG_FILES_DELETED: MetricDef = MetricDef {
        name: "fovea.flowlog.files.deleted",
        instrument: Instrument::Counter,
        unit: "{file}",
        description: "Flow log files deleted: the oldest completed ones past max_total_megabytes, or unfinished ones an earlier run left",
        attributes: &[EXPORTER, REASON],
    };
    /// `fovea.flowlog.bytes.deleted`.
    pub const FLOWLOG_BYTES_DELETED: MetricDef = MetricDef {
        name: "fovea.flowlog.bytes.deleted",
        instrument: Instrument::Counter,
        unit: "By",
        description: "Bytes of completed flow log files deleted to stay within max_total_megabytes",
        attributes: &[EXPORTER],
    };
    /// `fovea.flowlog.disk.usage`.
    pub const FLOWLOG_DISK_USAGE: MetricDef = MetricDef {
        name: "fovea.flowlog.disk.usage",
        instrument: Instrument::Gauge,
        unit: "By",
        description: "Bytes of the flow log files on disk (completed and open)",
        attributes: &[EXPORTER],
    };

    /// `fovea.ebpf.counter_updates.lost`.
    pub const EBPF_COUNTER_UPDATES_LOST: MetricDef = MetricDef {
        name: "fovea.ebpf.counter_updates.lost",
        instrument: Instrument::Counter,
        unit: "{update}",
        description: "Counter updates lost because the in-kernel counter map was full",
        attributes: &[RECEIVER],
    };

    /// `fovea.k8s.objects`.
    pub const K8S_OBJECTS: MetricDef = MetricDef {
        name: "fovea.k8s.objects",
        instrument: Instrument::Gauge,
        unit: "{object}",
        description: "Objects in the Kubernetes metadata cache, per kind (deleted pods still in their grace period included)",
        attributes: &[KIND],
    };
    /// `fovea.k8s.watch.synced`.
    pub const K8S_WATCH_SYNCED: MetricDef = MetricDef {
        name: "fovea.k8s.watch.synced",
        instrument: Instrument::Gauge,
        unit: "",
        description: "1 once the kind's first list has been applied (the cache can answer), 0 before",
        attributes: &[KIND],
    };
    /// `fovea.k8s.watch.events`.
    pub const K8S_WATCH_EVENTS: MetricDef = MetricDef {
        name: "fovea.k8s.watch.events",
        instrument: Instrument::Counter,
        unit: "{event}",
        description: "Objects applied to the cache: listed (from a list), added, modified, deleted (from the watch)",
        attributes: &[KIND, EVENT],
    };
    /// `fovea.k8s.watch.relists`.
    pub const K8S_WATCH_RELISTS: MetricDef = MetricDef {
        name: "fovea.k8s.watch.relists",
        instrument: Instrument::Counter,
        unit: "{list}",
        description: "Full lists after the first (410 Gone, an expired list, a new processor needing more labels)",
        attributes: &[KIND],
    };
    /// `fovea.k8s.watch.restarts`.
    pub const K8S_WATCH_RESTARTS: MetricDef = MetricDef {
        name: "fovea.k8s.watch.restarts",
        instrument: Instrument::Counter,
        unit: "{watch}",
        description: "Watch requests after the first: resumes after a timeout, a dropped connection or an error",
        attributes: &[KIND],
    };
    /// `fovea.k8s.watch.errors`.
    pub const K8S_WATCH_ERRORS: MetricDef = MetricDef {
        name: "fovea.k8s.watch.errors",
        instrument: Instrument::Counter,
        unit: "{error}",
        description: "Failed lists and watches (unreachable, 401, 403, 410 Gone ...), each followed by a backoff",
        attributes: &[KIND],
    };
    /// `fovea.k8s.watch.last_event_age`.
    pub const K8S_WATCH_LAST_EVENT_AGE: MetricDef = MetricDef {
        name: "fovea.k8s.watch.last_event_age",
        instrument: Instrument::Gauge,
        unit: "s",
        description: "Seconds since the kind's list or watch last delivered data (an event or a bookmark); -1 before any",
        attributes: &[KIND],
    };
    /// `fovea.k8s.lookups`.
    pub const K8S_LOOKUPS: MetricDef = MetricDef {
        name: "fovea.k8s.lookups",
        instrument: Instrument::Counter,
        unit: "{lookup}",
        description: "Cache lookups by k8sattributes: hit (a live pod, service or node), grace (a pod deleted less than delete_grace_period ago), miss",
        attributes: &[RESULT],
    };
    /// `fovea.k8s.cache.bytes`.
    pub const K8S_CACHE_BYTES: MetricDef = MetricDef {
        name: "fovea.k8s.cache.bytes",
        instrument: Instrument::Gauge,
        unit: "By",
        description: "Estimated heap bytes held by the Kubernetes metadata cache (objects and indexes)",
        attributes: &[],
    };
    /// `fovea.receiver.connections`.
    pub const RECEIVER_CONNECTIONS: MetricDef = MetricDef {
        name: "fovea.receiver.connections",
        instrument: Instrument::Gauge,
        unit: "{connection}",
        description: "Connections open to a receiver's listener",
        attributes: &[RECEIVER, PROTOCOL],
    };
    /// `fovea.receiver.connections.refused`.
    pub const RECEIVER_CONNECTIONS_REFUSED: MetricDef = MetricDef {
        name: "fovea.receiver.connections.refused",
        instrument: Instrument::Counter,
        unit: "{connection}",
        description: "Connections closed as soon as accepted because the listener had max_connections open",
        attributes: &[RECEIVER, PROTOCOL],
    };
    /// `fovea.receiver.requests.rejected`.
    pub const RECEIVER_REQUESTS_REJECTED: MetricDef = MetricDef {
        name: "fovea.receiver.requests.rejected",
        instrument: Instrument::Counter,
        unit: "{request}",
        description: "Requests refused before reaching a pipeline: malformed, too large, wrong media type or path, or \
                      not sent in time (header_timeout, body_timeout; the connection is closed)",
        attributes: &[RECEIVER, PROTOCOL, REASON],
    };

    /// Every own metric, in the order the docs list them.
    pub const METRICS: &[MetricDef] = &[
        BUILD_INFO,
        PROCESS_UPTIME,
        PROCESS_CPU_TIME,
        PROCESS_MEMORY_RSS,
        RECEIVER_RECEIVED_ITEMS,
        RECEIVER_ACCEPTED_ITEMS,
        RECEIVER_REFUSED_ITEMS,
        RECEIVER_FAILED_ITEMS,
        RECEIVER_QUEUE_SIZE,
        RECEIVER_QUEUE_CAPACITY,
        RECEIVER_CONNECTIONS,
        RECEIVER_CONNECTIONS_REFUSED,
        RECEIVER_REQUESTS_REJECTED,
        PROCESSOR_INCOMING_ITEMS,
        PROCESSOR_OUTGOING_ITEMS,
        PROCESSOR_DROPPED_ITEMS,
        PROCESSOR_FAILED_ITEMS,
        PROCESSOR_QUEUE_SIZE,
        PROCESSOR_QUEUE_CAPACITY,
        EXPORTER_RECEIVED_ITEMS,
        EXPORTER_SENT_ITEMS,
        EXPORTER_DROPPED_ITEMS,
        EXPORTER_SEND_FAILED_ITEMS,
        EXPORTER_QUEUE_SIZE,
        EXPORTER_QUEUE_CAPACITY,
        EXPORTER_RETRIES,
        EXPORTER_QUEUE_BYTES,
        EXPORTER_QUEUE_CAPACITY_BYTES,
        CONNECTOR_RECEIVED_ITEMS,
        CONNECTOR_SENT_ITEMS,
        CONNECTOR_DROPPED_ITEMS,
        CONNECTOR_FAILED_ITEMS,
        CONNECTOR_QUEUE_SIZE,
        CONNECTOR_QUEUE_CAPACITY,
        EBPF_PROGRAM_RUN_TIME,
        EBPF_PROGRAM_RUN_COUNT,
        EBPF_MAP_ENTRIES,
        EBPF_MAP_MAX_ENTRIES,
        EBPF_RECORDS_EMITTED,
        EBPF_RECORDS_CAPPED,
        EBPF_RECORDS_LOST,
        EBPF_COUNTER_UPDATES_LOST,
        K8S_OBJECTS,
        K8S_WATCH_SYNCED,
        K8S_WATCH_EVENTS,
        K8S_WATCH_RELISTS,
        K8S_WATCH_RESTARTS,
        K8S_WATCH_ERRORS,
        K8S_WATCH_LAST_EVENT_AGE,
        K8S_LOOKUPS,
        K8S_CACHE_BYTES,
        FLOWS_DRAINED,
        FLOWMETRICS_SERIES,
        FLOWMETRICS_OVERFLOW_POINTS,
        FLOWMETRICS_EXPIRED,
        FLOWMETRICS_RECONFIGURATIONS,
        FLOWS_OVERFLOW_PACKETS,
        FLOWS_OVERFLOW_BYTES,
        DNS_MALFORMED,
        DNS_TRANSACTIONS_EVICTED,
        DNS_SERIES_OVERFLOW,
        FLOWLOG_FILES_COMPLETED,
        FLOWLOG_FILES_DELETED,
        FLOWLOG_BYTES_DELETED,
        FLOWLOG_DISK_USAGE,
    ];
}

/// Asserts that `batch` holds exactly the metrics `defs` lists, in that order, each with its
/// definition's unit and description, and every point with exactly its definition's attributes
/// (how a receiver's unit test ties its output to its `Factory::metrics` and so to the docs).
#[cfg(test)]
pub(crate) fn assert_as_defined(defs: &[MetricDef], batch: &super::MetricBatch) {
    use super::MetricData;
    let names: Vec<&str> = batch.iter_metrics().map(|(_, _, m)| m.name.as_str()).collect();
    assert_eq!(names, defs.iter().map(|d| d.name).collect::<Vec<_>>(), "the metrics emitted");
    for ((_, _, metric), def) in batch.iter_metrics().zip(defs) {
        assert_eq!((metric.unit.as_str(), metric.description.as_str()), (def.unit, def.description), "{}", def.name);
        let points: Vec<&super::Attributes> = match &metric.data {
            MetricData::Gauge(p) => p.iter().map(|p| &p.attributes).collect(),
            MetricData::Sum(s) => s.points.iter().map(|p| &p.attributes).collect(),
            MetricData::Histogram(h) => h.points.iter().map(|p| &p.attributes).collect(),
        };
        let mut want: Vec<&str> = def.attributes.iter().copied().filter(|a| *a != attr::OTEL_METRIC_OVERFLOW).collect();
        want.sort_unstable();
        for attributes in points {
            let mut keys: Vec<&str> = attributes.iter().map(|kv| kv.key.as_str()).collect();
            keys.sort_unstable();
            // An overflow point (past a cardinality cap) carries that mark alone, as in the SDKs.
            if keys == [attr::OTEL_METRIC_OVERFLOW] && def.attributes.contains(&attr::OTEL_METRIC_OVERFLOW) {
                continue;
            }
            assert_eq!(keys, want, "attributes of a {} point", def.name);
        }
    }
}
