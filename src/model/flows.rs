//! Network flow records: what the kernel saw about one 5-tuple (a forwarded flow, a drop, a
//! retransmission, a DNS transaction ...), before or after Kubernetes labelling.

use std::net::IpAddr;
use std::sync::Arc;

use smol_str::SmolStr;

use super::attributes::Attributes;
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

/// One flow record.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    /// When it was observed (ns since the Unix epoch).
    pub time_unix_nano: u64,
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
    /// Packets this record stands for.
    pub packets: u64,
    /// Bytes this record stands for.
    pub bytes: u64,
    /// TCP flags seen (bitmask, FIN=0x01 ... CWR=0x80).
    pub tcp_flags: u16,
    /// TCP state of the socket, when known.
    pub tcp_state: Option<TcpState>,
    /// The kernel drop reason name (`NETFILTER_DROP`), for drops.
    pub drop_reason: Option<SmolStr>,
    /// Extra attributes added by processors (Kubernetes context ...).
    pub attributes: Attributes,
}

impl FlowRecord {
    /// A record of `kind` between two endpoints with everything else empty.
    pub fn new(kind: FlowKind, source: IpAddr, destination: IpAddr) -> Self {
        FlowRecord {
            time_unix_nano: 0,
            kind,
            source,
            destination,
            source_port: 0,
            destination_port: 0,
            protocol: 0,
            direction: Direction::Unknown,
            ifindex: 0,
            packets: 1,
            bytes: 0,
            tcp_flags: 0,
            tcp_state: None,
            drop_reason: None,
            attributes: Attributes::new(),
        }
    }
}
