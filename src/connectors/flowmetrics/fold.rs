//! Flow records into pod-level series: which records count, for which end, with which labels.
//!
//! Counting rules (each packet counted once per series, so a series equals an interface counter):
//! - Forwarded flows count where they were observed at a pod's interface. The pod behind the
//!   interface is the local end: traffic the host side received came from the pod (the pod
//!   transmits), traffic it transmitted goes to the pod (the pod receives). Flows observed at the
//!   uplink are the same packets seen again (or node traffic): they feed only the API-server
//!   latency metrics. TCP flags follow the same rule and carry no direction, as in Retina.
//! - Drops and retransmissions count once per record, with the record's direction.
//! - DNS messages count once each (the dns receiver copies a message once per node), for their
//!   client: a query for its source, a response for its destination (Retina's one sample per
//!   message in local context), with the question's type and name, and for responses the code,
//!   the answer count and the answers' addresses.
//! - Remote mode: one sample per record with both ends' labels; counted when either end's
//!   namespace is observed. Local mode: one sample per observed pod of this node among the ends,
//!   with its unprefixed labels and its own direction (the source transmits, the destination
//!   receives). Basic mode: the metric's own attributes only.
//! - Context labels that do not resolve are `unknown` (as in Retina), so every series of a metric
//!   has the same label names.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use std::fmt::Write as _;

use smol_str::{SmolStr, SmolStrBuilder, ToSmolStr};

use super::config::{LabelOption, MetricName, Mode};
use super::spec::{LabelSet, Spec};
use crate::model::dns::{question_type_name, response_code_name};
use crate::model::semconv::{attr, k8s};
use crate::model::{Attributes, Direction, FlowKind, FlowRecord, LatencySummary, ObservationPoint, TcpFlag};

/// The value of a context label that does not resolve.
const UNKNOWN: SmolStr = SmolStr::new_static("unknown");

/// Addresses rendered as text are kept for reuse; past this many the cache starts over.
const ADDRESS_CACHE: usize = 65_536;

/// The attribute names of one end: where its metadata is read from a record, or written to a point.
#[derive(Debug)]
pub struct EndKeys {
    address: &'static str,
    port: &'static str,
    namespace: &'static str,
    pod: &'static str,
    node: &'static str,
    workload_kind: &'static str,
    workload_name: &'static str,
    replicaset: &'static str,
    job: &'static str,
    service: &'static str,
}

/// A flow's source end.
pub const SOURCE: EndKeys = EndKeys {
    address: attr::SOURCE_ADDRESS,
    port: attr::SOURCE_PORT,
    namespace: k8s::NAMESPACE_NAME.source,
    pod: k8s::POD_NAME.source,
    node: k8s::NODE_NAME.source,
    workload_kind: k8s::WORKLOAD_KIND.source,
    workload_name: k8s::WORKLOAD_NAME.source,
    replicaset: k8s::REPLICASET_NAME.source,
    job: k8s::JOB_NAME.source,
    service: k8s::SERVICE_NAME.source,
};

/// A flow's destination end.
pub const DESTINATION: EndKeys = EndKeys {
    address: attr::DESTINATION_ADDRESS,
    port: attr::DESTINATION_PORT,
    namespace: k8s::NAMESPACE_NAME.destination,
    pod: k8s::POD_NAME.destination,
    node: k8s::NODE_NAME.destination,
    workload_kind: k8s::WORKLOAD_KIND.destination,
    workload_name: k8s::WORKLOAD_NAME.destination,
    replicaset: k8s::REPLICASET_NAME.destination,
    job: k8s::JOB_NAME.destination,
    service: k8s::SERVICE_NAME.destination,
};

/// A local endpoint in local mode (unprefixed, as on a resource).
pub const LOCAL: EndKeys = EndKeys {
    address: attr::K8S_POD_IP,
    port: attr::NETWORK_LOCAL_PORT,
    namespace: attr::K8S_NAMESPACE_NAME,
    pod: attr::K8S_POD_NAME,
    node: attr::K8S_NODE_NAME,
    workload_kind: attr::K8S_WORKLOAD_KIND,
    workload_name: attr::K8S_WORKLOAD_NAME,
    replicaset: attr::K8S_REPLICASET_NAME,
    job: attr::K8S_JOB_NAME,
    service: attr::K8S_SERVICE_NAME,
};

/// One end of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The source.
    Source,
    /// The destination.
    Destination,
}

impl End {
    fn keys(self) -> &'static EndKeys {
        match self {
            End::Source => &SOURCE,
            End::Destination => &DESTINATION,
        }
    }

    /// The end's address.
    pub fn address(self, r: &FlowRecord) -> IpAddr {
        match self {
            End::Source => r.source,
            End::Destination => r.destination,
        }
    }

    fn port(self, r: &FlowRecord) -> u16 {
        match self {
            End::Source => r.source_port,
            End::Destination => r.destination_port,
        }
    }

    /// The direction of this end's own traffic in the record: the source transmits, the
    /// destination receives.
    fn direction(self) -> Direction {
        match self {
            End::Source => Direction::Transmit,
            End::Destination => Direction::Receive,
        }
    }
}

/// Which ends of a record a sample belongs to in local mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// The pod behind the observing interface (forwarded packets): that end, whatever the
    /// node its metadata names.
    At(End),
    /// Every end that is a pod of this node (drops, retransmissions).
    Ends,
    /// This end, when it is a pod of this node (DNS: the client, Retina's one sample per
    /// message).
    Client(End),
}

/// One sample to fold: which metric, how much, and the attributes that are the metric's own.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The metric.
    pub metric: MetricName,
    /// The amount (packets, bytes, segments).
    pub amount: u64,
    /// `network.io.direction` from the observing end, when the metric has it.
    pub direction: Option<Direction>,
    /// `tcp.flag`, for TCP flag counts.
    pub flag: Option<TcpFlag>,
}

/// Which context labels a key has: the same for every sample of a record that counts for the
/// same ends with the same label sets, so they are read from the record once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Basic,
    Remote(LabelSet, LabelSet),
    Local(End, LabelSet),
}

/// Builds the attribute sets of samples, reusing its buffers.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    /// The attribute set being built (reused: no allocation for known sets).
    pub key: Attributes,
    addresses: HashMap<IpAddr, SmolStr>,
    /// The context labels of the current record, and for which ends and sets they were built.
    context: Attributes,
    built: Option<(u64, Context)>,
    record: u64,
}

impl KeyBuilder {
    /// Starts a new record: the context labels built for the previous one no longer apply.
    pub fn next_record(&mut self) {
        self.record = self.record.wrapping_add(1);
    }

    /// The key of sample `s` of `r`: the context labels `which` asks for (built once per record),
    /// then the sample's own attributes.
    fn build(&mut self, s: &Sample, r: &FlowRecord, which: Context) {
        if self.built == Some((self.record, which)) {
            self.key.copy_from(&self.context);
        } else {
            self.key.clear();
            match which {
                Context::Basic => {}
                Context::Remote(source, destination) => {
                    self.context(r, End::Source, source, &SOURCE);
                    self.context(r, End::Destination, destination, &DESTINATION);
                }
                Context::Local(end, set) => self.context(r, end, set, &LOCAL),
            }
            self.context.copy_from(&self.key);
            self.built = Some((self.record, which));
        }
        self.own(s, r);
    }

    fn address(&mut self, ip: IpAddr) -> SmolStr {
        if self.addresses.len() >= ADDRESS_CACHE {
            self.addresses.clear();
        }
        self.addresses.entry(ip).or_insert_with(|| ip.to_smolstr()).clone()
    }

    /// Adds the sample's own attributes, and the record's drop reason.
    fn own(&mut self, s: &Sample, r: &FlowRecord) {
        if let Some(direction) = s.direction {
            self.key.insert(attr::NETWORK_IO_DIRECTION, SmolStr::new_static(direction.as_str()));
        }
        if let Some(flag) = s.flag {
            self.key.insert(attr::TCP_FLAG, SmolStr::new_static(flag.as_str()));
        }
        if matches!(s.metric, MetricName::DropCount | MetricName::DropBytes) {
            let reason = r.drop_reason.clone().unwrap_or(UNKNOWN);
            self.key.insert(attr::DROP_REASON, reason);
        }
        if let Some(d) =
            r.dns.as_ref().filter(|_| matches!(s.metric, MetricName::DnsRequestCount | MetricName::DnsResponseCount))
        {
            // Retina's labels of its DNS metrics: type and name, and of responses the code,
            // the answer count and the answers' addresses.
            self.key.insert(attr::DNS_QUESTION_TYPE, SmolStr::new_static(question_type_name(d.question_type)));
            self.key.insert(attr::DNS_QUESTION_NAME, d.question_name.clone());
            if d.response {
                self.key.insert(attr::DNS_RESPONSE_CODE, SmolStr::new_static(response_code_name(d.response_code)));
                self.key.insert(attr::DNS_ANSWER_COUNT, i64::from(d.answer_count));
                if d.address_count > 0 {
                    // Short lists stay inline in the SmolStr: no allocation for one or two IPv4 answers.
                    let mut b = SmolStrBuilder::new();
                    for (i, a) in d.addresses().iter().enumerate() {
                        let _ = write!(b, "{}{a}", if i > 0 { "," } else { "" });
                    }
                    self.key.insert(attr::DNS_ANSWERS, b.finish());
                }
            }
        }
    }

    /// Adds the labels `set` of `end` of `r`, under the names of `to`.
    fn context(&mut self, r: &FlowRecord, end: End, set: LabelSet, to: &'static EndKeys) {
        let from = end.keys();
        let text = |key: &str| match r.attributes.get_str(key) {
            Some(v) => SmolStr::from(v),
            None => UNKNOWN,
        };
        for option in LabelOption::ALL {
            if !set.has(option) {
                continue;
            }
            match option {
                LabelOption::Ip => {
                    let address = self.address(end.address(r));
                    self.key.insert(to.address, address);
                }
                LabelOption::Namespace => self.key.insert(to.namespace, text(from.namespace)),
                LabelOption::Podname => self.key.insert(to.pod, text(from.pod)),
                LabelOption::Workload => {
                    self.key.insert(to.workload_kind, text(from.workload_kind));
                    self.key.insert(to.workload_name, text(from.workload_name));
                    // The first owner, when it is not the workload, for Retina's spelling of it.
                    for (read, write) in [(from.replicaset, to.replicaset), (from.job, to.job)] {
                        if let Some(v) = r.attributes.get_str(read) {
                            self.key.insert(write, SmolStr::from(v));
                        }
                    }
                }
                LabelOption::Service => self.key.insert(to.service, text(from.service)),
                LabelOption::Port => match r.protocol {
                    6 | 17 | 132 => self.key.insert(to.port, i64::from(end.port(r))),
                    _ => self.key.insert(to.port, UNKNOWN),
                },
            }
        }
    }
}

/// What a record is for the pod-level metrics, and where it counts.
pub fn samples(r: &FlowRecord, out: &mut Vec<(Sample, Local)>) {
    out.clear();
    let add = |out: &mut Vec<_>, metric, amount, direction, flag, local| {
        if amount > 0 {
            out.push((Sample { metric, amount, direction, flag }, local));
        }
    };
    match r.kind {
        FlowKind::Forward if r.observation_point == ObservationPoint::Pod => {
            // The pod behind the interface, and its own direction.
            let (end, direction) = match r.direction {
                Direction::Receive => (End::Source, Direction::Transmit),
                Direction::Transmit => (End::Destination, Direction::Receive),
                Direction::Unknown => return,
            };
            add(out, MetricName::ForwardCount, r.packets, Some(direction), None, Local::At(end));
            add(out, MetricName::ForwardBytes, r.bytes, Some(direction), None, Local::At(end));
            for flag in TcpFlag::ALL {
                let n = u64::from(r.tcp_flag_counts.get(flag));
                add(out, MetricName::TcpFlagGauges, n, None, Some(flag), Local::At(end));
            }
        }
        FlowKind::Drop => {
            add(out, MetricName::DropCount, r.packets, Some(r.direction), None, Local::Ends);
            add(out, MetricName::DropBytes, r.bytes, Some(r.direction), None, Local::Ends);
        }
        FlowKind::Retransmit => {
            add(out, MetricName::TcpRetransmissionCount, r.packets, Some(r.direction), None, Local::Ends);
        }
        // One message each, counted for its client: the source of a query, the destination of
        // a response.
        FlowKind::Dns => match &r.dns {
            Some(d) if d.response => {
                add(out, MetricName::DnsResponseCount, 1, None, None, Local::Client(End::Destination))
            }
            Some(_) => add(out, MetricName::DnsRequestCount, 1, None, None, Local::Client(End::Source)),
            None => {}
        },
        FlowKind::Forward => {}
    }
}

/// The namespace of `end` of `r`, when it resolved to a pod or Service.
pub fn namespace(r: &FlowRecord, end: End) -> Option<&str> {
    r.attributes.get_str(end.keys().namespace)
}

/// Whether a series (its attribute set) still has an observed pod under `spec`'s namespaces:
/// in local mode its own namespace, in remote mode either end's; a series without namespace
/// labels (or basic mode, or the overflow series) stays.
pub fn still_observed(spec: &Spec, key: &Attributes) -> bool {
    // `None`: the series has no such label, so it cannot tell.
    let admits =
        |name: &str| key.get_str(name).map(|ns| spec.namespaces.admits((ns != UNKNOWN.as_str()).then_some(ns)));
    match spec.mode {
        Mode::Basic => true,
        Mode::Local => admits(LOCAL.namespace).unwrap_or(true),
        Mode::Remote => match (admits(SOURCE.namespace), admits(DESTINATION.namespace)) {
            (Some(source), Some(destination)) => source || destination,
            _ => true,
        },
    }
}

/// Where one sample goes: calls `emit` with the finished attribute set once per series it
/// counts in; `observed(r, end)` says whether an end's pod is one the selection observes.
#[allow(clippy::too_many_arguments)]
pub fn place(
    spec: &Spec,
    node: &str,
    r: &FlowRecord,
    sample: &Sample,
    local: Local,
    observed: &dyn Fn(&FlowRecord, End) -> bool,
    keys: &mut KeyBuilder,
    mut emit: impl FnMut(&Attributes),
) {
    let Some(metric) = spec.metric(sample.metric) else { return };
    match spec.mode {
        Mode::Basic => {
            keys.build(sample, r, Context::Basic);
            emit(&keys.key);
        }
        Mode::Remote => {
            if !observed(r, End::Source) && !observed(r, End::Destination) {
                return;
            }
            keys.build(sample, r, Context::Remote(metric.source, metric.destination));
            emit(&keys.key);
        }
        Mode::Local => {
            // A flow at a pod's interface has that pod as its local end; drops and
            // retransmissions have every end that is a pod of this node; DNS its client.
            let ends: &[End] = match local {
                Local::At(End::Source) | Local::Client(End::Source) => &[End::Source],
                Local::At(End::Destination) | Local::Client(End::Destination) => &[End::Destination],
                Local::Ends => &[End::Source, End::Destination],
            };
            for &end in ends {
                let on_node = r.attributes.get_str(end.keys().node).is_some_and(|n| n == node);
                if (!matches!(local, Local::At(_)) && !on_node) || !observed(r, end) {
                    continue;
                }
                let own = Sample { direction: sample.direction.map(|_| end.direction()), ..*sample };
                keys.build(&own, r, Context::Local(end, metric.source));
                emit(&keys.key);
            }
        }
    }
}

/// What one record says about this node's connections to the Kubernetes API server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApiServerSample {
    /// Handshakes completed (SYN-ACKs from the API server arriving at the uplink).
    pub handshake: LatencySummary,
    /// Smoothed RTT of sockets to the API server.
    pub rtt: LatencySummary,
    /// SYNs sent to the API server through the uplink.
    pub syns: u64,
    /// SYN-ACKs from the API server arriving at the uplink.
    pub synacks: u64,
}

/// The API-server part of `r`: handshakes and answers are taken where the API server's
/// SYN-ACK enters the node (the uplink, after un-NAT nothing else sees the endpoint address),
/// SYNs where they leave it, and RTT from the record nearest the socket (the pod's interface
/// for pods, which address the Service ClusterIP; the uplink for the node's own sockets), so
/// each is counted once.
pub fn apiserver(r: &FlowRecord, addresses: &HashSet<IpAddr>) -> Option<ApiServerSample> {
    if r.kind != FlowKind::Forward || addresses.is_empty() {
        return None;
    }
    let from_server = addresses.contains(&r.source);
    let to_server = addresses.contains(&r.destination);
    if !from_server && !to_server {
        return None;
    }
    let mut s = ApiServerSample::default();
    let at = (r.observation_point, r.direction);
    if from_server && at == (ObservationPoint::Uplink, Direction::Receive) {
        s.handshake = r.handshake;
        s.synacks = u64::from(r.tcp_flag_counts.get(TcpFlag::SynAck));
    }
    if to_server && at == (ObservationPoint::Uplink, Direction::Transmit) {
        s.syns = u64::from(r.tcp_flag_counts.get(TcpFlag::Syn));
    }
    if to_server
        && matches!(at, (ObservationPoint::Uplink, Direction::Transmit) | (ObservationPoint::Pod, Direction::Receive))
    {
        s.rtt = r.rtt;
    }
    (s != ApiServerSample::default()).then_some(s)
}
