//! Network flow records: what the kernel saw about one 5-tuple (a forwarded flow, a drop, a
//! retransmission, a DNS transaction ...), before or after Kubernetes labelling.

use std::net::IpAddr;
use std::sync::Arc;

use smol_str::SmolStr;

use super::attributes::Attributes;
use super::dns::DnsInfo;
use super::metrics::Resource;
use super::tcp_state::TcpState;

/// A batch of flow records from one resource (node).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowBatch {
    /// The producing node.
    pub resource: Arc<Resource>,
    /// The records.
    pub records: Vec<FlowRecord>,
    /// Delivery acknowledgements of the requests this batch came from (usually none).
    pub acks: super::Acks,
}

/// What kind of observation a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKind {
    /// Packets forwarded (counted) on an interface.
    Forward,
    /// A packet dropped by the kernel.
    Drop,
    /// A TCP segment retransmitted.
    Retransmit,
    /// A DNS query or response.
    Dns,
}

impl FlowKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::Forward => "forward",
            FlowKind::Drop => "drop",
            FlowKind::Retransmit => "retransmit",
            FlowKind::Dns => "dns",
        }
    }
}

/// Direction relative to the observing interface or host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received (ingress).
    Receive,
    /// Transmitted (egress).
    Transmit,
    /// Not knowable at the observation point.
    Unknown,
}

impl Direction {
    /// The OpenTelemetry `network.io.direction` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Receive => "receive",
            Direction::Transmit => "transmit",
            Direction::Unknown => "unknown",
        }
    }

    /// Retina's `direction` label value.
    pub fn retina(self) -> &'static str {
        match self {
            Direction::Receive => "ingress",
            Direction::Transmit => "egress",
            Direction::Unknown => "unknown",
        }
    }
}

/// Where a flow was observed on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ObservationPoint {
    /// Not at an interface, or not known.
    #[default]
    Unknown,
    /// The host side of a pod's interface: ingress is traffic from the pod, egress traffic to it.
    Pod,
    /// An uplink of the node (an interface of a default route): ingress is traffic from the
    /// network, egress traffic to it.
    Uplink,
}

impl ObservationPoint {
    /// Lower-case name (`pod`, `uplink`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObservationPoint::Unknown => "unknown",
            ObservationPoint::Pod => "pod",
            ObservationPoint::Uplink => "uplink",
        }
    }
}

/// A TCP flag as fovea counts it: a segment with SYN and ACK counts as `SynAck` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpFlag {
    /// SYN without ACK.
    Syn,
    /// SYN and ACK in one segment.
    SynAck,
    /// ACK (segments other than SYN-ACKs).
    Ack,
    /// FIN.
    Fin,
    /// RST.
    Rst,
    /// PSH.
    Psh,
    /// URG.
    Urg,
    /// ECE.
    Ece,
    /// CWR.
    Cwr,
}

impl TcpFlag {
    /// Every flag, in the order of [`TcpFlagCounts`].
    pub const ALL: [TcpFlag; 9] = [
        TcpFlag::Syn,
        TcpFlag::SynAck,
        TcpFlag::Ack,
        TcpFlag::Fin,
        TcpFlag::Rst,
        TcpFlag::Psh,
        TcpFlag::Urg,
        TcpFlag::Ece,
        TcpFlag::Cwr,
    ];

    /// The `tcp.flag` attribute value (Retina's spelling: `SYN`, `SYNACK` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TcpFlag::Syn => "SYN",
            TcpFlag::SynAck => "SYNACK",
            TcpFlag::Ack => "ACK",
            TcpFlag::Fin => "FIN",
            TcpFlag::Rst => "RST",
            TcpFlag::Psh => "PSH",
            TcpFlag::Urg => "URG",
            TcpFlag::Ece => "ECE",
            TcpFlag::Cwr => "CWR",
        }
    }

    /// The bit of this flag in the TCP header's flag byte (SYN-ACK: both bits).
    pub fn header_bits(self) -> u16 {
        match self {
            TcpFlag::Fin => 0x01,
            TcpFlag::Syn => 0x02,
            TcpFlag::SynAck => 0x12,
            TcpFlag::Rst => 0x04,
            TcpFlag::Psh => 0x08,
            TcpFlag::Ack => 0x10,
            TcpFlag::Urg => 0x20,
            TcpFlag::Ece => 0x40,
            TcpFlag::Cwr => 0x80,
        }
    }
}

/// Packets per TCP flag, indexed in the order of [`TcpFlag::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlagCounts(pub [u32; 9]);

impl TcpFlagCounts {
    /// Packets that carried `flag`.
    pub fn get(&self, flag: TcpFlag) -> u32 {
        self.0[flag as usize]
    }

    /// True when no flag was counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }

    /// The flags seen, as the header's flag bits OR-ed together.
    pub fn header_bits(&self) -> u16 {
        TcpFlag::ALL.iter().filter(|f| self.get(**f) > 0).fold(0, |bits, f| bits | f.header_bits())
    }
}

/// A summary of latency samples (TCP handshakes, RTT) of one flow: count, sum, extremes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Samples; 0 means none (the other fields are then 0).
    pub count: u32,
    /// Sum of the samples (ns).
    pub sum_ns: u64,
    /// Smallest sample (ns).
    pub min_ns: u64,
    /// Largest sample (ns).
    pub max_ns: u64,
}

impl LatencySummary {
    /// One sample.
    pub fn one(ns: u64) -> Self {
        LatencySummary { count: 1, sum_ns: ns, min_ns: ns, max_ns: ns }
    }

    /// Adds another summary's samples to this one.
    pub fn merge(&mut self, other: &LatencySummary) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The mean in ns, `None` without samples.
    pub fn mean_ns(&self) -> Option<u64> {
        (self.count > 0).then(|| self.sum_ns / u64::from(self.count))
    }
}

/// One flow record.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    /// When it was observed (ns since the Unix epoch); for forwarded flows, the last packet of
    /// the interval the record covers.
    pub time_unix_nano: u64,
    /// When the flow was first seen (ns since the Unix epoch; equals `time_unix_nano` for
    /// single events such as drops).
    pub start_time_unix_nano: u64,
    /// What kind of record.
    pub kind: FlowKind,
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// Source port (0 when the protocol has none).
    pub source_port: u16,
    /// Destination port (0 when the protocol has none).
    pub destination_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    /// Direction at the observation point.
    pub direction: Direction,
    /// Interface index where observed (0 when unknown).
    pub ifindex: u32,
    /// Interface name where observed (empty when unknown).
    pub interface: SmolStr,
    /// What kind of interface that is.
    pub observation_point: ObservationPoint,
    /// Packets this record stands for.
    pub packets: u64,
    /// Bytes this record stands for.
    pub bytes: u64,
    /// TCP flags seen (bitmask, FIN=0x01 ... CWR=0x80).
    pub tcp_flags: u16,
    /// Packets per TCP flag (forwarded flows with flag counting on; zero otherwise).
    pub tcp_flag_counts: TcpFlagCounts,
    /// TCP handshakes (SYN to SYN-ACK) completed in this record, on the flow that carried the SYN-ACK.
    pub handshake: LatencySummary,
    /// Smoothed RTT of the node's TCP sockets of this flow, one sample per socket per record.
    pub rtt: LatencySummary,
    /// TCP state of the socket, when known.
    pub tcp_state: Option<TcpState>,
    /// The kernel drop reason name (`NETFILTER_DROP`), for drops.
    pub drop_reason: Option<SmolStr>,
    /// What the message said, for DNS records (query or response, question, rcode, answers,
    /// latency).
    pub dns: Option<DnsInfo>,
    /// Extra attributes added by processors (Kubernetes context ...).
    pub attributes: Attributes,
}

impl FlowRecord {
    /// A record of `kind` between two endpoints with everything else empty.
    pub fn new(kind: FlowKind, source: IpAddr, destination: IpAddr) -> Self {
        FlowRecord {
            time_unix_nano: 0,
            start_time_unix_nano: 0,
            kind,
            source,
            destination,
            source_port: 0,
            destination_port: 0,
            protocol: 0,
            direction: Direction::Unknown,
            ifindex: 0,
            interface: SmolStr::default(),
            observation_point: ObservationPoint::Unknown,
            packets: 1,
            bytes: 0,
            tcp_flags: 0,
            tcp_flag_counts: TcpFlagCounts::default(),
            handshake: LatencySummary::default(),
            rtt: LatencySummary::default(),
            tcp_state: None,
            drop_reason: None,
            dns: None,
            attributes: Attributes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_counts_give_header_bits() {
        let mut c = TcpFlagCounts::default();
        c.0[TcpFlag::SynAck as usize] = 1;
        c.0[TcpFlag::Fin as usize] = 2;
        assert_eq!(c.header_bits(), 0x12 | 0x01);
        assert_eq!(c.get(TcpFlag::Fin), 2);
        assert!(TcpFlagCounts::default().is_empty());
    }

    #[test]
    fn latency_summaries_merge() {
        let mut a = LatencySummary::default();
        a.merge(&LatencySummary::one(30));
        a.merge(&LatencySummary::one(10));
        a.merge(&LatencySummary::default());
        assert_eq!(a, LatencySummary { count: 2, sum_ns: 40, min_ns: 10, max_ns: 30 });
        assert_eq!(a.mean_ns(), Some(20));
    }
}
