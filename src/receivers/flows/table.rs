//! What user space remembers about flows between drains: when each was first seen, so a record
//! covering one interval still carries its flow's start, and when it was last seen, so flows
//! idle for `idle_timeout` are forgotten (their next packet starts a new flow).
//!
//! The kernel keeps nothing between drains (its tables are emptied every time), so this table is
//! the only per-flow state that lives longer than a collection interval.

use hashbrown::HashMap;
use smol_str::SmolStr;

use crate::ebpf::{self, FlowDelta, FlowKey, IfaceCount, KernelClock};
use crate::model::semconv::attr;
use crate::model::{Direction, FlowKind, FlowRecord, LatencySummary, ObservationPoint, TcpFlagCounts};

/// A watched interface, as records name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Name.
    pub name: SmolStr,
    /// Pod interface or uplink.
    pub role: ObservationPoint,
    /// Link-layer header bytes per packet (for frame bytes from network-layer bytes).
    pub l2_bytes: u64,
    /// When it was attached (ns since the epoch).
    pub since: u64,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    first_unix_nano: u64,
    last_mono_ns: u64,
}

/// First and last sight of every live flow.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: HashMap<FlowKey, Seen>,
}

/// The model's direction of a probe's.
pub fn direction(d: ebpf::Direction) -> Direction {
    match d {
        ebpf::Direction::Ingress => Direction::Receive,
        ebpf::Direction::Egress => Direction::Transmit,
        ebpf::Direction::Unknown => Direction::Unknown,
    }
}

impl FlowTable {
    /// Flows remembered now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Notes that `delta`'s flow was active and returns when it started (ns since the epoch).
    pub fn touch(&mut self, delta: &FlowDelta, clock: &KernelClock) -> u64 {
        let seen = self
            .flows
            .entry(delta.key)
            .or_insert_with(|| Seen { first_unix_nano: clock.to_unix_nano(delta.first_ns), last_mono_ns: 0 });
        seen.last_mono_ns = seen.last_mono_ns.max(delta.last_ns);
        seen.first_unix_nano
    }

    /// Forgets flows last seen before `now_mono_ns - idle_ns`; returns how many.
    pub fn evict_idle(&mut self, now_mono_ns: u64, idle_ns: u64) -> usize {
        let before = self.flows.len();
        let horizon = now_mono_ns.saturating_sub(idle_ns);
        self.flows.retain(|_, s| s.last_mono_ns >= horizon);
        before - self.flows.len()
    }

    /// Forgets the flows of an interface that went away.
    pub fn forget_interface(&mut self, ifindex: u32) {
        self.flows.retain(|k, _| k.ifindex != ifindex);
    }
}

/// A drained flow as a record (`kind: forward`, the interval's packets and bytes).
pub fn record(delta: &FlowDelta, start: u64, clock: &KernelClock, iface: Option<&Iface>) -> FlowRecord {
    let t = &delta.key.tuple;
    let mut r = FlowRecord::new(FlowKind::Forward, t.src, t.dst);
    r.time_unix_nano = clock.to_unix_nano(delta.last_ns);
    r.start_time_unix_nano = start.min(r.time_unix_nano);
    r.source_port = t.src_port;
    r.destination_port = t.dst_port;
    r.protocol = t.protocol;
    r.direction = direction(delta.key.direction);
    r.ifindex = delta.key.ifindex;
    if let Some(i) = iface {
        r.interface = i.name.clone();
        r.observation_point = i.role;
    }
    r.packets = delta.packets;
    r.bytes = delta.bytes;
    r.tcp_flag_counts = TcpFlagCounts(delta.tcp_flags);
    r.tcp_flags = r.tcp_flag_counts.header_bits();
    let h = &delta.handshake;
    if h.count > 0 {
        r.handshake = LatencySummary {
            count: h.count,
            sum_ns: h.sum_ns,
            min_ns: u64::from(h.min_ns),
            max_ns: u64::from(h.max_ns),
        };
    }
    r
}

/// The overflow record of one interface and direction: what did not fit in the flow table this
/// interval, so that forward records always add up to the interface's traffic. Addresses are
/// unspecified, protocol 0, and `flow.overflow` is true.
pub fn overflow_record(
    count: &IfaceCount,
    packets: u64,
    bytes: u64,
    now: u64,
    since: u64,
    iface: Option<&Iface>,
) -> FlowRecord {
    let unspecified = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let mut r = FlowRecord::new(FlowKind::Forward, unspecified, unspecified);
    r.time_unix_nano = now;
    r.start_time_unix_nano = since;
    r.direction = direction(count.direction);
    r.ifindex = count.ifindex;
    if let Some(i) = iface {
        r.interface = i.name.clone();
        r.observation_point = i.role;
    }
    r.packets = packets;
    r.bytes = bytes;
    r.attributes.insert(attr::FLOW_OVERFLOW, true);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::{FlowTuple, HandshakeSum};

    fn delta(src_port: u16, first_ns: u64, last_ns: u64) -> FlowDelta {
        FlowDelta {
            key: FlowKey {
                tuple: FlowTuple {
                    src: "198.18.0.1".parse().expect("ip"),
                    dst: "198.18.0.2".parse().expect("ip"),
                    src_port,
                    dst_port: 80,
                    protocol: 6,
                },
                ifindex: 7,
                direction: ebpf::Direction::Ingress,
            },
            packets: 2,
            bytes: 120,
            first_ns,
            last_ns,
            tcp_flags: [1, 0, 1, 0, 0, 0, 0, 0, 0],
            handshake: HandshakeSum { count: 1, sum_ns: 500, min_ns: 500, max_ns: 500 },
        }
    }

    #[test]
    fn a_flow_keeps_its_start_across_drains_until_it_idles_out() {
        let clock = KernelClock::monotonic();
        let mut table = FlowTable::default();
        let first = table.touch(&delta(0, 1_000, 2_000), &clock);
        assert_eq!(first, clock.to_unix_nano(1_000));
        assert_eq!(table.touch(&delta(0, 5_000, 6_000), &clock), first, "same flow, later interval");
        assert_eq!(table.evict_idle(6_500, 1_000), 0);
        assert_eq!(table.evict_idle(8_000, 1_000), 1, "idle for 2000 > 1000");
        assert_eq!(table.touch(&delta(0, 9_000, 9_500), &clock), clock.to_unix_nano(9_000), "a new flow");
        table.forget_interface(7);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn records_carry_the_interval_counts_and_the_interface() {
        let clock = KernelClock::monotonic();
        let iface = Iface { name: "veth1".into(), role: ObservationPoint::Pod, l2_bytes: 14, since: 0 };
        let r = record(&delta(0, 1_000, 2_000), 42, &clock, Some(&iface));
        assert_eq!((r.kind, r.packets, r.bytes, r.direction), (FlowKind::Forward, 2, 120, Direction::Receive));
        assert_eq!((r.interface.as_str(), r.observation_point), ("veth1", ObservationPoint::Pod));
        assert_eq!((r.start_time_unix_nano, r.time_unix_nano), (42, clock.to_unix_nano(2_000)));
        assert_eq!(r.tcp_flags, 0x02 | 0x10, "SYN and ACK seen");
        assert_eq!(r.handshake, LatencySummary::one(500));
    }
}
