//! `naming: retina`: Microsoft Retina's metric names and label sets, so Retina's Grafana
//! dashboards work unchanged on fovea's data.
//!
//! The mapping is the table [`ROWS`]: one row per (OpenTelemetry metric, level) with the Retina
//! name and the labels taken from attributes. A point is *pod-level* when it carries Kubernetes
//! context (`source.*`, `destination.*` or unprefixed `k8s.*` attributes) and then maps to the
//! `networkobservability_adv_*` row, with Retina's context labels appended ([`CONTEXT`]);
//! otherwise it maps to the node-level row. Attributes that are not in the row are dropped, and
//! points whose labels then coincide are summed (Retina's node-level forward counts have no
//! interface label, so the interfaces of one direction add up). Metrics without a row keep the
//! OpenTelemetry translation.
//!
//! Types follow our data: monotonic sums are exposed as `counter` (Retina exposes most of them as
//! gauges), gauges stay gauges. Deliberate differences from Retina: the TCP state `closed` is
//! `CLOSE` (Retina writes an empty value), `interface_stats` keeps the real interface names
//! (Retina aggregates to `all_interfaces`), and the node-level DNS counters carry the labels
//! Retina's "Standard DNS" dashboard groups by (`query_type`, `query`, `return_code`, `response`,
//! `num_response`; Retina's own have none since its PR #877), with `return_code="NoError"` for
//! successful answers, the spelling that dashboard filters on (Retina's pod-level counters, and
//! ours, say `NOERROR`). `query` is the name with a trailing dot, as Retina writes it; `query`
//! and `response` are there when the dns receiver counts names and answers (`question_name`,
//! `answers`).

use super::naming::attr_text;
use crate::model::semconv::{self, End, attr, k8s};
use crate::model::{Attributes, TcpState};

/// How an attribute value becomes Retina's label value.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// Unchanged.
    Same,
    /// `receive` -> `ingress`, `transmit` -> `egress`.
    Direction,
    /// `established` -> `ESTABLISHED`, `syn_received` -> `SYN_RECV` ... (Linux `ss` names).
    TcpState,
    /// Lower case (`SYNACK` -> `synack`).
    Lower,
    /// Unchanged; `other` for the overflow point that lacks the attribute.
    OrOther,
    /// A DNS name with Retina's trailing dot (`kubernetes.default.svc.cluster.local.`).
    Fqdn,
    /// A response code as the Standard DNS dashboard filters on it: `NOERROR` -> `NoError`.
    DashboardRcode,
}

/// One Retina label and the attribute it is read from.
#[derive(Debug)]
struct Label {
    retina: &'static str,
    attribute: &'static str,
    values: Values,
}

/// Node-level (no Kubernetes context) or pod-level (`adv_*`) points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Node,
    Pod,
}

/// Which context a pod-level point carries, which decides how Retina spells its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// No Kubernetes context.
    None,
    /// Both ends, prefixed (`source.*`, `destination.*`): Retina's remote context, whose
    /// `direction` is the flow's traffic direction (`INGRESS`, `EGRESS`).
    Remote,
    /// The local endpoint, unprefixed (`k8s.*`): Retina's local context (`ingress`, `egress`).
    Local,
}

/// One mapping: which points of which OpenTelemetry metric become which Retina metric.
#[derive(Debug)]
struct Row {
    otel: &'static str,
    level: Level,
    /// Only points whose attribute has one of these values (`netstat.group` picks the family).
    only: Option<(&'static str, &'static [&'static str])>,
    name: &'static str,
    labels: &'static [Label],
    /// Labels with a fixed value (`no_response="no_response"`).
    fixed: &'static [(&'static str, &'static str)],
    /// Values are multiplied by this (Retina's API-server histograms are in milliseconds).
    scale: f64,
    /// Second series in another spelling ([`Alias`]); empty for most rows.
    aliases: &'static [Alias],
}

/// A second series for Retina's "Clusters" dashboard, which spells some values otherwise than
/// Retina's agent emits them (retina-compat.md §1.4): a point whose `label` has the value `from`
/// (any value when `None`) also counts in a series where that label is `to`, so queries written
/// against either spelling find it. `AllIPs` is Retina's own total of `tcp_connection_remote`,
/// the sum over every address (the overflow point's included).
#[derive(Debug)]
struct Alias {
    label: &'static str,
    from: Option<&'static str>,
    to: &'static str,
}

impl Row {
    const fn with_aliases(mut self, aliases: &'static [Alias]) -> Row {
        self.aliases = aliases;
        self
    }

    const fn with_fixed(mut self, fixed: &'static [(&'static str, &'static str)]) -> Row {
        self.fixed = fixed;
        self
    }
}

const TCP_STATS_ALIASES: &[Alias] = &[
    Alias { label: "statistic_name", from: Some("TCPTimeouts"), to: "tcptimeouts" },
    Alias { label: "statistic_name", from: Some("TCPTSReorder"), to: "tcptsreorder" },
    Alias { label: "statistic_name", from: Some("EstabResets"), to: "resetcount" },
];
const UDP_ALIASES: &[Alias] = &[Alias { label: "statistic_name", from: Some("ACTIVE"), to: "active" }];
const ALL_IPS: &[Alias] = &[Alias { label: "address", from: None, to: "AllIPs" }];

const DIRECTION: Label =
    Label { retina: "direction", attribute: attr::NETWORK_IO_DIRECTION, values: Values::Direction };
const REASON: Label = Label { retina: "reason", attribute: attr::DROP_REASON, values: Values::Same };
const STATE: Label = Label { retina: "state", attribute: attr::NETWORK_CONNECTION_STATE, values: Values::TcpState };
const NETSTAT_NAME: Label = Label { retina: "statistic_name", attribute: attr::NETSTAT_NAME, values: Values::Same };
const INTERFACE: Label =
    Label { retina: "interface_name", attribute: attr::NETWORK_INTERFACE_NAME, values: Values::Same };
const STATISTIC: Label = Label { retina: "statistic_name", attribute: attr::STATISTIC, values: Values::Same };
const FLAG: Label = Label { retina: "flag", attribute: attr::TCP_FLAG, values: Values::Same };
const QUERY_TYPE: Label = Label { retina: "query_type", attribute: attr::DNS_QUESTION_TYPE, values: Values::Same };
const QUERY: Label = Label { retina: "query", attribute: attr::DNS_QUESTION_NAME, values: Values::Fqdn };
const RESPONSE: Label = Label { retina: "response", attribute: attr::DNS_ANSWERS, values: Values::Same };
const NUM_RESPONSE: Label = Label { retina: "num_response", attribute: attr::DNS_ANSWER_COUNT, values: Values::Same };
const DASHBOARD_RETURN_CODE: Label =
    Label { retina: "return_code", attribute: attr::DNS_RESPONSE_CODE, values: Values::DashboardRcode };
const FLAG_LOWER: Label = Label { retina: "flag", attribute: attr::TCP_FLAG, values: Values::Lower };
const ADDRESS: Label = Label { retina: "address", attribute: attr::NETWORK_PEER_ADDRESS, values: Values::OrOther };
const RETURN_CODE: Label = Label { retina: "return_code", attribute: attr::DNS_RESPONSE_CODE, values: Values::Same };

const fn node(otel: semconv::MetricDef, name: &'static str, labels: &'static [Label]) -> Row {
    Row { otel: otel.name, level: Level::Node, only: None, name, labels, fixed: &[], scale: 1.0, aliases: &[] }
}

const fn pod(otel: semconv::MetricDef, name: &'static str, labels: &'static [Label]) -> Row {
    Row { otel: otel.name, level: Level::Pod, only: None, name, labels, fixed: &[], scale: 1.0, aliases: &[] }
}

/// A histogram in seconds that Retina has in milliseconds.
const fn milliseconds(otel: semconv::MetricDef, name: &'static str) -> Row {
    Row { otel: otel.name, level: Level::Node, only: None, name, labels: &[], fixed: &[], scale: 1000.0, aliases: &[] }
}

const fn netstat(groups: &'static [&'static str], name: &'static str) -> Row {
    Row {
        otel: semconv::NETWORK_NETSTAT.name,
        level: Level::Node,
        only: Some((attr::NETSTAT_GROUP, groups)),
        name,
        labels: &[NETSTAT_NAME],
        fixed: &[],
        scale: 1.0,
        aliases: &[],
    }
}

use semconv::{
    NETWORK_APISERVER_HANDSHAKE_DURATION, NETWORK_APISERVER_NO_RESPONSE, NETWORK_APISERVER_RTT, NETWORK_DNS_REQUESTS,
    NETWORK_DNS_RESPONSES, NETWORK_DROP_BYTES, NETWORK_DROP_PACKETS, NETWORK_FORWARD_BYTES, NETWORK_FORWARD_PACKETS,
    NETWORK_INTERFACE_STATS, NETWORK_TCP_CONNECTIONS, NETWORK_TCP_FLAGS, NETWORK_TCP_REMOTE_CONNECTIONS,
    NETWORK_TCP_RETRANSMITS, NETWORK_UDP_SOCKETS,
};

/// The mapping table (retina.md §3.2-3.4).
static ROWS: &[Row] = &[
    // Node level (Retina "basic" metrics).
    node(NETWORK_FORWARD_PACKETS, "networkobservability_forward_count", &[DIRECTION]),
    node(NETWORK_FORWARD_BYTES, "networkobservability_forward_bytes", &[DIRECTION]),
    node(NETWORK_DROP_PACKETS, "networkobservability_drop_count", &[REASON, DIRECTION]),
    node(NETWORK_DROP_BYTES, "networkobservability_drop_bytes", &[REASON, DIRECTION]),
    node(NETWORK_TCP_RETRANSMITS, "networkobservability_tcp_retransmission_count", &[]),
    node(NETWORK_TCP_CONNECTIONS, "networkobservability_tcp_state", &[STATE]),
    netstat(&["Tcp", "TcpExt", "MPTcpExt"], "networkobservability_tcp_connection_stats")
        .with_aliases(TCP_STATS_ALIASES),
    netstat(&["Ip", "IpExt"], "networkobservability_ip_connection_stats"),
    netstat(&["Udp"], "networkobservability_udp_connection_stats").with_aliases(UDP_ALIASES),
    node(NETWORK_INTERFACE_STATS, "networkobservability_interface_stats", &[INTERFACE, STATISTIC]),
    node(NETWORK_DNS_REQUESTS, "networkobservability_dns_request_count", &[QUERY_TYPE, QUERY]),
    node(
        NETWORK_DNS_RESPONSES,
        "networkobservability_dns_response_count",
        &[DASHBOARD_RETURN_CODE, QUERY_TYPE, QUERY, RESPONSE, NUM_RESPONSE],
    ),
    // Pod level (Retina "advanced" metrics), plus the context labels.
    pod(NETWORK_FORWARD_PACKETS, "networkobservability_adv_forward_count", &[DIRECTION]),
    pod(NETWORK_FORWARD_BYTES, "networkobservability_adv_forward_bytes", &[DIRECTION]),
    pod(NETWORK_DROP_PACKETS, "networkobservability_adv_drop_count", &[REASON, DIRECTION]),
    pod(NETWORK_DROP_BYTES, "networkobservability_adv_drop_bytes", &[REASON, DIRECTION]),
    pod(NETWORK_TCP_FLAGS, "networkobservability_adv_tcpflags_count", &[FLAG]),
    pod(NETWORK_TCP_RETRANSMITS, "networkobservability_adv_tcpretrans_count", &[DIRECTION]),
    pod(NETWORK_DNS_REQUESTS, "networkobservability_adv_dns_request_count", &[QUERY_TYPE, QUERY]),
    pod(
        NETWORK_DNS_RESPONSES,
        "networkobservability_adv_dns_response_count",
        &[RETURN_CODE, QUERY_TYPE, QUERY, RESPONSE, NUM_RESPONSE],
    ),
    // The API server as seen from this node (no context labels). The handshake histogram takes
    // the name Retina's Pod Traffic dashboard queries; Retina's own agent never registers it.
    milliseconds(NETWORK_APISERVER_HANDSHAKE_DURATION, "networkobservability_node_apiserver_handshake_latency_ms"),
    milliseconds(NETWORK_APISERVER_RTT, "networkobservability_adv_node_apiserver_latency"),
    Row {
        otel: NETWORK_APISERVER_NO_RESPONSE.name,
        level: Level::Node,
        only: None,
        name: "networkobservability_adv_node_apiserver_no_response",
        labels: &[],
        fixed: &[("no_response", "no_response")],
        scale: 1.0,
        aliases: &[],
    },
    // Node level, after the pod rows: a new pod-level series is placed without comparing
    // against these (what Retina's Clusters dashboard reads beyond Retina's own emission).
    node(NETWORK_UDP_SOCKETS, "networkobservability_udp_connection_stats", &[])
        .with_fixed(&[("statistic_name", "ACTIVE")])
        .with_aliases(UDP_ALIASES),
    node(NETWORK_TCP_REMOTE_CONNECTIONS, "networkobservability_tcp_connection_remote", &[ADDRESS])
        .with_aliases(ALL_IPS),
    // Retina's Linux agent counts no flags per node; its Clusters dashboard reads this name.
    node(NETWORK_TCP_FLAGS, "networkobservability_tcp_flag_counters", &[FLAG_LOWER]),
];

/// Context attributes (after the `source.` / `destination.` prefix, or unprefixed for Retina's
/// local context) and Retina's label for each (`source_podname`, or `podname` in local context).
/// `address` and `port` are what `source.address` / `source.port` leave after the prefix.
const CONTEXT: &[(&str, &str)] = &[
    (attr::K8S_NAMESPACE_NAME, "namespace"),
    (attr::K8S_POD_NAME, "podname"),
    (attr::K8S_WORKLOAD_KIND, "workload_kind"),
    (attr::K8S_WORKLOAD_NAME, "workload_name"),
    (attr::K8S_SERVICE_NAME, "service"),
    (attr::K8S_POD_IP, "ip"),
    ("address", "ip"),
    ("port", "port"),
    (attr::NETWORK_LOCAL_PORT, "port"),
];

/// Where a point goes under Retina naming.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Placement {
    /// The Retina metric name.
    pub name: &'static str,
    /// Label names and values, not yet sorted.
    pub labels: Vec<(String, String)>,
    /// Values are multiplied by this when exposed.
    pub scale: f64,
    /// The labels of the dashboard spelling's series the point also counts in ([`Alias`]).
    pub alias: Option<Vec<(String, String)>>,
}

/// The context a point carries. A `flowmetrics` overflow series (`otel.metric.overflow`) stands
/// for pod-level points whose labels are gone.
fn context(attributes: &Attributes) -> Context {
    let prefixed = |key: &str| key.starts_with(attr::SOURCE_PREFIX) || key.starts_with(attr::DESTINATION_PREFIX);
    if attributes.iter().any(|kv| prefixed(&kv.key) || kv.key == attr::OTEL_METRIC_OVERFLOW) {
        Context::Remote
    } else if attributes.iter().any(|kv| kv.key.starts_with("k8s.")) {
        Context::Local
    } else {
        Context::None
    }
}

fn map_value(values: Values, context: Context, text: String) -> String {
    match values {
        Values::Same => text,
        // Retina's remote context spells the traffic direction as Hubble does.
        Values::Direction if context == Context::Remote => match text.as_str() {
            "receive" => "INGRESS".into(),
            "transmit" => "EGRESS".into(),
            _ => "TRAFFIC_DIRECTION_UNKNOWN".into(),
        },
        Values::Direction => match text.as_str() {
            "receive" => "ingress".into(),
            "transmit" => "egress".into(),
            _ => text,
        },
        // Retina counts request sockets as SYN_RECV, like `ss`; values fovea does not know are
        // upper-cased.
        Values::TcpState => match TcpState::from_otel(&text) {
            Some(state) => state.rfc().kernel_name().into(),
            None => text.to_ascii_uppercase(),
        },
        Values::Lower => text.to_ascii_lowercase(),
        Values::OrOther => text,
        Values::Fqdn if text.is_empty() || text.ends_with('.') => text,
        Values::Fqdn => text + ".",
        Values::DashboardRcode if text == "NOERROR" => "NoError".into(),
        Values::DashboardRcode => text,
    }
}

/// The Retina metric and labels for a point of `metric`, or `None` when Retina has no equivalent.
pub(super) fn place(metric: &str, attributes: &Attributes) -> Option<Placement> {
    let context = context(attributes);
    let level = if context == Context::None { Level::Node } else { Level::Pod };
    let find = |level: Level| {
        ROWS.iter().find(|r| {
            r.otel == metric
                && r.level == level
                && r.only.is_none_or(|(key, accepted)| attributes.get_str(key).is_some_and(|v| accepted.contains(&v)))
        })
    };
    // An overflow point of a node-level metric (linuxutil's remote addresses) has no pod row.
    let (row, level) = match find(level) {
        Some(row) => (row, level),
        None if level == Level::Pod && attributes.get(attr::OTEL_METRIC_OVERFLOW).is_some() => {
            (find(Level::Node)?, Level::Node)
        }
        None => return None,
    };
    let mut labels = Vec::with_capacity(row.labels.len() + 8);
    for label in row.labels {
        match attributes.get(label.attribute) {
            Some(value) => {
                let mut text = String::new();
                attr_text(value, &mut text);
                labels.push((label.retina.to_string(), map_value(label.values, context, text)));
            }
            None if matches!(label.values, Values::OrOther) => {
                labels.push((label.retina.to_string(), "other".to_string()));
            }
            None => {}
        }
    }
    labels.extend(row.fixed.iter().map(|(name, value)| (name.to_string(), value.to_string())));
    if attributes.get(attr::OTEL_METRIC_OVERFLOW).is_some() {
        labels.push(("otel_metric_overflow".to_string(), "true".to_string()));
    }
    if level == Level::Pod {
        for kv in attributes {
            let (prefix, rest, end) = if let Some(rest) = kv.key.strip_prefix(attr::SOURCE_PREFIX) {
                ("source_", rest, End::Source)
            } else if let Some(rest) = kv.key.strip_prefix(attr::DESTINATION_PREFIX) {
                ("destination_", rest, End::Destination)
            } else {
                ("", kv.key.as_str(), End::Plain)
            };
            if let Some((_, label)) = CONTEXT.iter().find(|(attribute, _)| *attribute == rest) {
                let name = format!("{prefix}{label}");
                if labels.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let mut text = String::new();
                match first_owner(attributes, end) {
                    Some((kind, _)) if rest == k8s::WORKLOAD_KIND.plain => text.push_str(kind),
                    Some((_, owner)) if rest == k8s::WORKLOAD_NAME.plain => text.push_str(owner),
                    _ => attr_text(&kv.value, &mut text),
                }
                labels.push((name, text));
            }
        }
    }
    let alias = row.aliases.iter().find_map(|a| {
        let i = labels.iter().position(|(n, v)| n == a.label && a.from.is_none_or(|f| f == v))?;
        // The alias is a total: the overflow mark of one member does not split it.
        let mut alias: Vec<(String, String)> =
            labels.iter().filter(|(n, _)| n != "otel_metric_overflow").cloned().collect();
        let i = alias.iter().position(|(n, _)| *n == labels[i].0).unwrap_or(i);
        alias[i].1 = a.to.to_string();
        Some(alias)
    });
    Some(Placement { name: row.name, labels, scale: row.scale, alias })
}

/// Retina's workload: the pod's first owner, so a Deployment's pod shows its ReplicaSet and a
/// CronJob's pod its Job (fovea's `k8s.workload.*` name the top owner instead).
fn first_owner(attributes: &Attributes, end: End) -> Option<(&'static str, &str)> {
    if let Some(rs) = attributes.get_str(k8s::REPLICASET_NAME.at(end)) {
        return Some(("ReplicaSet", rs));
    }
    attributes.get_str(k8s::JOB_NAME.at(end)).map(|job| ("Job", job))
}

/// Every Retina metric name this mapping can produce (for docs and tests).
pub fn metric_names() -> impl Iterator<Item = &'static str> {
    ROWS.iter().map(|r| r.name)
}

/// The Retina names of OpenTelemetry metric `otel`: node level (no Kubernetes context) and pod
/// level (`networkobservability_adv_*`), several where Retina splits one metric into families
/// (`network.netstat`).
pub fn metric_name(otel: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    let of = |level| ROWS.iter().filter(|r| r.otel == otel && r.level == level).map(|r| r.name).collect();
    (of(Level::Node), of(Level::Pod))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_dns_counters_carry_the_standard_dns_dashboard_labels() {
        let attributes = Attributes::from_pairs([
            (attr::DNS_QUESTION_TYPE, "A"),
            (attr::DNS_RESPONSE_CODE, "NOERROR"),
            (attr::DNS_QUESTION_NAME, "web.shop.svc"),
            (attr::DNS_ANSWERS, "198.18.0.1,198.18.0.2"),
        ]);
        let mut attributes = attributes;
        attributes.insert(attr::DNS_ANSWER_COUNT, 2i64);
        let placed = place("network.dns.responses", &attributes).unwrap();
        assert_eq!(placed.name, "networkobservability_dns_response_count");
        let mut labels = placed.labels.clone();
        labels.sort();
        let expected = [
            ("num_response", "2"),
            ("query", "web.shop.svc."),
            ("query_type", "A"),
            ("response", "198.18.0.1,198.18.0.2"),
            ("return_code", "NoError"),
        ];
        assert_eq!(labels, expected.map(|(n, v)| (n.to_string(), v.to_string())));
        // pod level keeps Retina's own spelling
        attributes.insert("source.k8s.pod.name", "web-0");
        let adv = place("network.dns.responses", &attributes).unwrap();
        assert_eq!(adv.name, "networkobservability_adv_dns_response_count");
        assert!(adv.labels.contains(&("return_code".to_string(), "NOERROR".to_string())));
    }

    #[test]
    fn retina_names_the_first_owner_as_the_workload() {
        let attributes = Attributes::from_pairs([
            ("network.io.direction", "transmit"),
            ("source.k8s.pod.name", "cart-7d9-x"),
            ("source.k8s.workload.kind", "Deployment"),
            ("source.k8s.workload.name", "cart"),
            ("source.k8s.replicaset.name", "cart-7d9"),
            ("destination.k8s.workload.kind", "CronJob"),
            ("destination.k8s.workload.name", "report"),
            ("destination.k8s.job.name", "report-2901"),
        ]);
        let placed = place("network.forward.packets", &attributes).unwrap();
        let label = |name: &str| placed.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(
            (label("source_workload_kind"), label("source_workload_name")),
            (Some("ReplicaSet"), Some("cart-7d9"))
        );
        assert_eq!(
            (label("destination_workload_kind"), label("destination_workload_name")),
            (Some("Job"), Some("report-2901"))
        );
    }
}
