//! The flows feature's kernel state (ebpf/flows.bpf.h) as user space reads it: the double-buffered
//! flow tables, the per-interface overflow and non-IP counters, and the node-wide handshake
//! histogram.
//!
//! [`FlowMaps::drain`] swaps the active table (updating the `flow_tables` map-of-maps waits for
//! an RCU grace period, so no program still writes to the old one when it returns), then reads
//! and empties the old one in batches. Each drain therefore yields exactly the packets counted
//! since the previous drain, none twice and none lost.

use std::os::fd::AsFd;

use aya::Pod;
use aya::maps::{ArrayOfMaps, Map, MapData, MapError, PerCpuArray, PerCpuHashMap};
use aya::programs::ProgramFd;

use super::batch::BatchBuffers;
use super::counters::RawCount;
use super::flowcache::FlowCaches;
use super::records::addresses;
use super::rtt::{self, MAP_RTT, SocketRtt};
use super::telemetry::MapFill;
use super::tick::{MAP_TICK, Tick};
use super::{Direction, FlowTuple};

/// The map-of-maps whose slot 0 is the active table.
pub(crate) const MAP_FLOW_TABLES: &str = "flow_tables";
/// The two halves of the double buffer.
pub(crate) const MAP_FLOWS: [&str; 2] = ["flows_a", "flows_b"];
/// Per-interface overflow and non-IP counters.
pub(crate) const MAP_IFACE_COUNTS: &str = "iface_counts";
/// SYNs waiting for their SYN-ACK.
pub(crate) const MAP_HANDSHAKES: &str = "handshakes";
/// The node-wide handshake histogram.
pub(crate) const MAP_HANDSHAKE_HIST: &str = "handshake_hist";

/// TCP flags counted per flow, in the kernel's order (`enum dp_flag`).
pub const TCP_FLAG_COUNT: usize = 9;

/// Upper bounds (inclusive, ns) of the handshake histogram's buckets, as `dp_hist_bounds` in
/// ebpf/flows.bpf.h; a last bucket counts everything above.
pub const HANDSHAKE_BOUNDS_NS: [u64; 19] = crate::model::semconv::LATENCY_BOUNDS_NS;

/// Mirror of `struct flow_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RawFlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub ifindex: u32,
    pub family: u8,
    pub protocol: u8,
    pub direction: u8,
    pub pad: u8,
}
const _: () = assert!(size_of::<RawFlowKey>() == 44);
// SAFETY: #[repr(C)] integers and byte arrays without implicit padding (44 = 16+16+2+2+4+4).
unsafe impl Pod for RawFlowKey {}

/// Mirror of `struct flow_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RawFlowValue {
    pub packets: u64,
    pub bytes: u64,
    pub first_jiffies: u64,
    pub last_jiffies: u64,
    pub flags: [u32; TCP_FLAG_COUNT],
    pub handshakes: u32,
    pub handshake_sum_ns: u64,
    pub handshake_min_ns: u32,
    pub handshake_max_ns: u32,
}
const _: () = assert!(size_of::<RawFlowValue>() == 88);
// SAFETY: #[repr(C)] integers laid out without implicit padding (checked size 88).
unsafe impl Pod for RawFlowValue {}

/// Mirror of `struct iface_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawIfaceKey {
    ifindex: u32,
    direction: u8,
    kind: u8,
    pad: u16,
}
const _: () = assert!(size_of::<RawIfaceKey>() == 8);
// SAFETY: #[repr(C)] integers without padding.
unsafe impl Pod for RawIfaceKey {}

/// Mirror of `struct dp_hist`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawHist {
    count: u64,
    sum_ns: u64,
    buckets: [u64; HANDSHAKE_BOUNDS_NS.len() + 1],
}
const _: () = assert!(size_of::<RawHist>() == 176);
// SAFETY: #[repr(C)] u64s.
unsafe impl Pod for RawHist {}

/// A flow as one observation point sees it: packet source and destination, interface, direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Addresses, ports (0 when collapsed or absent; ICMP: type << 8 | code in `dst_port`) and
    /// protocol.
    pub tuple: FlowTuple,
    /// Interface index.
    pub ifindex: u32,
    /// Ingress (the interface received it) or egress (the interface sent it).
    pub direction: Direction,
}

/// TCP handshakes one flow completed: SYN seen here to its SYN-ACK seen here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeSum {
    /// Handshakes.
    pub count: u32,
    /// Sum of their durations (ns).
    pub sum_ns: u64,
    /// Shortest (ns).
    pub min_ns: u32,
    /// Longest (ns).
    pub max_ns: u32,
}

/// What one flow did between two drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowDelta {
    /// The flow.
    pub key: FlowKey,
    /// Packets (skbs; a GSO/GRO skb is one).
    pub packets: u64,
    /// Network-layer bytes (IP header included).
    pub bytes: u64,
    /// CLOCK_MONOTONIC ns of the first packet of the interval (tick resolution).
    pub first_ns: u64,
    /// Of the last packet (tick resolution).
    pub last_ns: u64,
    /// Packets per TCP flag: SYN, SYN-ACK, ACK, FIN, RST, PSH, URG, ECE, CWR (a SYN-ACK counts
    /// only as SYN-ACK). Zero unless TCP flag counting is on.
    pub tcp_flags: [u32; TCP_FLAG_COUNT],
    /// Handshakes whose SYN-ACK belongs to this flow.
    pub handshake: HandshakeSum,
}

impl FlowDelta {
    /// `to_ns`: jiffies to CLOCK_MONOTONIC ns (the tick's conversion).
    fn decode(key: &RawFlowKey, value: &RawFlowValue, to_ns: impl Fn(u64) -> u64) -> Option<Self> {
        let tuple = decode_tuple(key)?;
        Some(FlowDelta {
            key: FlowKey { tuple, ifindex: key.ifindex, direction: Direction::from_code(u32::from(key.direction)) },
            packets: value.packets,
            bytes: value.bytes,
            first_ns: to_ns(value.first_jiffies),
            last_ns: to_ns(value.last_jiffies),
            tcp_flags: value.flags,
            handshake: HandshakeSum {
                count: value.handshakes,
                sum_ns: value.handshake_sum_ns,
                min_ns: value.handshake_min_ns,
                max_ns: value.handshake_max_ns,
            },
        })
    }
}

fn decode_tuple(k: &RawFlowKey) -> Option<FlowTuple> {
    let (src, dst) = addresses(k.family, &k.saddr, &k.daddr)?;
    Some(FlowTuple { src, dst, src_port: k.sport, dst_port: k.dport, protocol: k.protocol })
}

/// What a per-interface counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IfaceCountKind {
    /// IP packets whose flow did not fit in the table (network-layer bytes).
    Overflow,
    /// Frames without a readable IPv4/IPv6 header: ARP, LLDP ... (frame bytes).
    NotIp,
}

/// A cumulative per-interface counter (since the interface was first seen by the probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceCount {
    /// Interface index.
    pub ifindex: u32,
    /// Direction.
    pub direction: Direction,
    /// Overflow or non-IP.
    pub kind: IfaceCountKind,
    /// Packets.
    pub packets: u64,
    /// Bytes (see [`IfaceCountKind`]).
    pub bytes: u64,
}

/// The node-wide handshake histogram, cumulative since load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeHistogram {
    /// Handshakes.
    pub count: u64,
    /// Sum of durations (ns).
    pub sum_ns: u64,
    /// Counts per bucket of [`HANDSHAKE_BOUNDS_NS`], plus the overflow bucket.
    pub buckets: [u64; HANDSHAKE_BOUNDS_NS.len() + 1],
}

/// The flows feature's maps, taken out of the loaded object so that draining them never waits
/// for (or blocks) attaching programs to new interfaces.
pub struct FlowMaps {
    outer: ArrayOfMaps<MapData, MapData>,
    tables: [MapData; 2],
    /// Index into `tables` (and the caches) of the table programs count into.
    active: usize,
    caches: FlowCaches,
    iface_counts: PerCpuHashMap<MapData, RawIfaceKey, RawCount>,
    handshakes: MapData,
    hist: PerCpuArray<MapData, RawHist>,
    rtt: MapData,
    tick: Tick,
    buffers: BatchBuffers,
    /// Entries read by the last drain (the table's fill, without walking it).
    last_drained: usize,
    max_flows: u32,
}

pub(crate) fn take(ebpf: &mut aya::Ebpf, name: &str) -> Result<Map, MapError> {
    ebpf.take_map(name).ok_or_else(|| MapError::InvalidName { name: name.into() })
}

fn hash_data(map: Map, name: &str) -> Result<MapData, MapError> {
    match map {
        Map::HashMap(d) | Map::PerCpuHashMap(d) | Map::LruHashMap(d) => Ok(d),
        _ => Err(MapError::InvalidName { name: name.into() }),
    }
}

pub(crate) fn batch_error(call: &'static str) -> impl FnOnce(std::io::Error) -> MapError {
    move |io_error| MapError::SyscallError(aya::sys::SyscallError { call, io_error })
}

impl FlowMaps {
    /// Takes the maps out of a loaded object and makes table 0 active; `tick` is the loaded tick
    /// program (calibrating it takes 100 ms).
    pub(crate) fn take(ebpf: &mut aya::Ebpf, max_flows: u32, tick: ProgramFd) -> Result<Self, MapError> {
        let tick_map = match take(ebpf, MAP_TICK)? {
            Map::Array(d) => d,
            _ => return Err(MapError::InvalidName { name: MAP_TICK.into() }),
        };
        let a = hash_data(take(ebpf, MAP_FLOWS[0])?, MAP_FLOWS[0])?;
        let b = hash_data(take(ebpf, MAP_FLOWS[1])?, MAP_FLOWS[1])?;
        let mut outer: ArrayOfMaps<MapData, MapData> = take(ebpf, MAP_FLOW_TABLES)?.try_into()?;
        outer.set(0, &a, 0)?;
        Ok(FlowMaps {
            outer,
            tables: [a, b],
            active: 0,
            caches: FlowCaches::take(ebpf)?,
            iface_counts: take(ebpf, MAP_IFACE_COUNTS)?.try_into()?,
            handshakes: hash_data(take(ebpf, MAP_HANDSHAKES)?, MAP_HANDSHAKES)?,
            hist: take(ebpf, MAP_HANDSHAKE_HIST)?.try_into()?,
            rtt: hash_data(take(ebpf, MAP_RTT)?, MAP_RTT)?,
            tick: Tick::new(tick, tick_map)?,
            buffers: BatchBuffers::default(),
            last_drained: 0,
            max_flows,
        })
    }

    /// Makes the other table and cache active, then reads and empties the ones that were; `each`
    /// gets every flow they held (a flow in both, merged). Returns how many flows were drained.
    pub fn drain(&mut self, mut each: impl FnMut(FlowDelta)) -> Result<usize, MapError> {
        let old = self.active;
        let new = 1 - old;
        // Each returns after an RCU grace period: the table first, so that a program that still
        // holds the old cache moves its entries into the new table, never the old one; after the
        // second no program holds either.
        self.outer.set(0, &self.tables[new], 0)?;
        self.caches.swap(new)?;
        self.active = new;
        self.caches.take_old(old)?;
        self.tick.refresh()?;
        let (tick, caches) = (&self.tick, &mut self.caches);
        let mut emit = |key: &RawFlowKey, value: &RawFlowValue| {
            if let Some(delta) = FlowDelta::decode(key, value, |j| tick.to_mono_ns(j)) {
                each(delta);
            }
        };
        let n = self
            .buffers
            .visit(self.tables[old].fd().as_fd(), size_of::<RawFlowKey>(), size_of::<RawFlowValue>(), true, |k, v| {
                let key = read_pod::<RawFlowKey>(k);
                let mut value = read_pod::<RawFlowValue>(v);
                caches.merge_into(&key, &mut value);
                emit(&key, &value);
            })
            .map_err(batch_error("bpf_map_lookup_and_delete_batch"))?;
        self.last_drained = n;
        let mut cached = 0;
        for (key, value) in caches.rest() {
            emit(&key, &value);
            cached += 1;
        }
        Ok(n + cached)
    }

    /// Cumulative overflow and non-IP counters per interface and direction, summed over CPUs.
    pub fn interface_counts(&self) -> Result<Vec<IfaceCount>, MapError> {
        let mut out = Vec::new();
        for entry in self.iface_counts.iter() {
            let (key, per_cpu) = match entry {
                Ok(e) => e,
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(e),
            };
            let kind = match key.kind {
                1 => IfaceCountKind::Overflow,
                2 => IfaceCountKind::NotIp,
                _ => continue,
            };
            let (packets, bytes) = per_cpu.iter().fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes));
            out.push(IfaceCount {
                ifindex: key.ifindex,
                direction: Direction::from_code(u32::from(key.direction)),
                kind,
                packets,
                bytes,
            });
        }
        out.sort_by_key(|c| (c.ifindex, c.direction, c.kind));
        Ok(out)
    }

    /// The node-wide handshake histogram (cumulative since load), summed over CPUs.
    pub fn handshake_histogram(&self) -> Result<HandshakeHistogram, MapError> {
        let mut out = HandshakeHistogram::default();
        for h in self.hist.get(&0, 0)?.iter() {
            out.count += h.count;
            out.sum_ns += h.sum_ns;
            for (o, b) in out.buckets.iter_mut().zip(h.buckets) {
                *o += b;
            }
        }
        Ok(out)
    }

    /// Every socket the RTT program tracks (none unless it was loaded).
    pub fn sockets(&mut self, each: impl FnMut(SocketRtt)) -> Result<(), MapError> {
        self.tick.refresh()?;
        let tick = &self.tick;
        rtt::read(&self.rtt, &mut self.buffers, |j| tick.to_mono_ns(j), each)
    }

    /// `d` in whole kernel ticks (at least one).
    pub(crate) fn jiffies(&self, d: std::time::Duration) -> u32 {
        self.tick.jiffies(d)
    }

    /// Stops tracking these sockets (they went quiet); a socket that speaks again is tracked anew.
    pub fn forget_sockets(&mut self, cookies: &[u64]) -> Result<(), MapError> {
        rtt::forget(&self.rtt, &mut self.buffers, cookies)
    }

    /// Deletes the per-interface counters and waiting SYNs of `ifindex`; call once it is detached
    /// and drained (its flows leave the tables with the next drain by themselves).
    pub fn forget_interface(&mut self, ifindex: u32) -> Result<(), MapError> {
        for direction in [1u8, 2] {
            for kind in [1u8, 2] {
                match self.iface_counts.remove(&RawIfaceKey { ifindex, direction, kind, pad: 0 }) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // one batch read and one batch delete instead of a syscall per waiting SYN
        let mut doomed = Vec::new();
        let key_size = size_of::<RawFlowKey>();
        let fd = self.handshakes.fd().as_fd();
        self.buffers
            .visit(fd, key_size, size_of::<u64>(), false, |k, _| {
                if read_pod::<RawFlowKey>(k).ifindex == ifindex {
                    doomed.extend_from_slice(k);
                }
            })
            .and_then(|_| self.buffers.delete(fd, key_size, &doomed))
            .map_err(batch_error("bpf_map_delete_batch"))
    }

    /// Entries of `ifindex` left in the maps keyed by interface (flow tables and caches, waiting
    /// SYNs, per-interface counters): 0 once an interface is detached, drained and forgotten.
    pub fn interface_entries(&mut self, ifindex: u32) -> Result<usize, MapError> {
        let mut n = 0;
        let maps = [
            (self.tables[0].fd().as_fd(), size_of::<RawFlowValue>()),
            (self.tables[1].fd().as_fd(), size_of::<RawFlowValue>()),
            (self.handshakes.fd().as_fd(), size_of::<u64>()),
        ];
        for (fd, value_size) in maps {
            self.buffers
                .visit(fd, size_of::<RawFlowKey>(), value_size, false, |k, _| {
                    n += usize::from(read_pod::<RawFlowKey>(k).ifindex == ifindex);
                })
                .map_err(batch_error("bpf_map_lookup_batch"))?;
        }
        n += self.iface_counts.keys().filter_map(Result::ok).filter(|k| k.ifindex == ifindex).count();
        Ok(n + self.caches.entries_of(ifindex)?)
    }

    /// Fill of the flows maps: the tables as the last drain found them, the rest counted in batches.
    pub fn fill(&mut self) -> Vec<MapFill> {
        let mut out: Vec<MapFill> = MAP_FLOWS
            .iter()
            .map(|name| MapFill {
                name: (*name).into(),
                entries: u32::try_from(self.last_drained).unwrap_or(u32::MAX),
                max_entries: self.max_flows,
            })
            .collect();
        for (name, map, value_size) in
            [(MAP_HANDSHAKES, &self.handshakes, size_of::<u64>()), (MAP_RTT, &self.rtt, size_of::<rtt::RawRtt>())]
        {
            let key_size = map.info().map(|i| i.key_size() as usize).unwrap_or(0);
            let entries = self.buffers.visit(map.fd().as_fd(), key_size, value_size, false, |_, _| {}).unwrap_or(0);
            let max_entries = map.info().map(|i| i.max_entries()).unwrap_or(0);
            out.push(MapFill { name: name.into(), entries: u32::try_from(entries).unwrap_or(u32::MAX), max_entries });
        }
        out
    }
}

/// Copies a `T` out of a byte slice of exactly its size (batch buffers are not aligned for it).
pub(crate) fn read_pod<T: Pod>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), size_of::<T>(), "batch entry size");
    // SAFETY: the length equals size_of::<T>() (asserted) and T is Pod, valid for any bytes.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;

    #[test]
    fn keys_decode_v4_v6_and_reject_other_families() {
        let mut k = RawFlowKey {
            saddr: [0; 16],
            daddr: [0; 16],
            sport: 40000,
            dport: 80,
            ifindex: 7,
            family: 2,
            protocol: 6,
            direction: 1,
            pad: 0,
        };
        k.saddr[..4].copy_from_slice(&[198, 18, 0, 1]);
        k.daddr[..4].copy_from_slice(&[198, 18, 0, 2]);
        let v = RawFlowValue { packets: 3, bytes: 180, handshakes: 1, handshake_sum_ns: 42_000, ..Default::default() };
        let d = FlowDelta::decode(&k, &v, |j| j).expect("v4");
        assert_eq!(d.key.tuple.src, "198.18.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!((d.key.ifindex, d.key.direction, d.packets, d.bytes), (7, Direction::Ingress, 3, 180));
        assert_eq!(d.handshake.sum_ns, 42_000);
        k.family = 10;
        k.saddr = "2001:db8::1".parse::<Ipv6Addr>().expect("ip").octets();
        assert_eq!(
            FlowDelta::decode(&k, &v, |j| j).expect("v6").key.tuple.src,
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
        k.family = 0;
        assert!(FlowDelta::decode(&k, &v, |j| j).is_none());
    }
}
