//! What the flows receiver knows between drains, and how one drain becomes flow records and
//! metrics.
//!
//! A [`Reading`] is what one drain took from the kernel: the flows counted since the previous
//! drain, the cumulative per-interface overflow and non-IP counters, the handshake histogram and
//! the sockets' RTT. [`FlowState::begin`], [`FlowState::next_batch`] and [`FlowState::finish`]
//! turn it into
//!
//! * one `forward` record per flow (the interval's packets and bytes, per-flag counts,
//!   handshakes, RTT of the connection's sockets), plus one overflow record per interface and
//!   direction whose flows did not all fit in the kernel's table;
//! * `network.tcp.flags`, `network.tcp.handshake.duration`, `network.tcp.rtt` and, when
//!   configured, `network.forward.*` per interface, all cumulative since the receiver started
//!   (forward: since the interface was attached).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use smol_str::SmolStr;

use super::config::{FlowsConfig, ForwardMetrics};
use super::latency::{Histogram, SocketTracker};
use super::table::{self, FlowTable, Iface};
use crate::ebpf::clock::clock_ns;
use crate::ebpf::{self, FlowDelta, HandshakeHistogram, IfaceCount, IfaceCountKind, KernelClock, SocketRtt};
use crate::model::semconv::{self, LATENCY_BOUNDS_S, attr};
use crate::model::{
    Attributes, FlowBatch, FlowRecord, Metric, MetricBatch, NumberPoint, Resource, Scope, TcpFlag, now_unix_nano,
};
use crate::receivers::probe::datapath::{DatapathInterface, InterfaceEvent};

/// What one drain read from the kernel; the buffers are reused from drain to drain.
#[derive(Debug, Default)]
pub struct Reading {
    /// Flows counted since the previous drain.
    pub deltas: Vec<FlowDelta>,
    /// Cumulative overflow and non-IP counters.
    pub ifaces: Vec<IfaceCount>,
    /// The kernel's handshake histogram (cumulative).
    pub handshakes: HandshakeHistogram,
    /// Sockets and their RTT.
    pub sockets: Vec<SocketRtt>,
}

/// Cumulative overflow per interface and direction, for the agent's own metrics.
#[derive(Debug, Default)]
pub struct OverflowTotals {
    /// (interface, direction) -> (packets, bytes).
    pub by_interface: BTreeMap<(SmolStr, &'static str), (u64, u64)>,
    /// Flow entries drained so far.
    pub drained: u64,
}

/// One interface and what has been reported about it.
#[derive(Debug)]
struct IfaceState {
    iface: Iface,
    /// Detached: report it once more, then forget it.
    retired: bool,
    /// Frames and frame bytes seen, [ingress, egress], since attach (network.forward.*).
    forward: [(u64, u64); 2],
    /// The kernel's cumulative counters at the last drain, per (direction, kind).
    last: BTreeMap<(ebpf::Direction, IfaceCountKind), (u64, u64)>,
}

fn direction_index(d: ebpf::Direction) -> Option<usize> {
    match d {
        ebpf::Direction::Ingress => Some(0),
        ebpf::Direction::Egress => Some(1),
        ebpf::Direction::Unknown => None,
    }
}

/// Flow records per batch sent down the pipeline (as otelcol's batch processor's default
/// send_batch_size): a drain of 50 000 flows goes out in 7 batches, each sent before the next is
/// made, which bounds the memory records take.
pub const RECORDS_PER_BATCH: usize = 8192;

/// Where one drain's processing is.
#[derive(Debug)]
pub struct Drain {
    clock: KernelClock,
    now: u64,
    now_mono: u64,
    idle_ns: u64,
    /// The first flow not yet accounted for.
    next: usize,
}

/// What a drain asks the kernel to forget afterwards.
#[derive(Debug, Default)]
pub struct Forget {
    /// Sockets quiet for longer than idle_timeout.
    pub sockets: Vec<u64>,
    /// Interfaces detached and now fully reported.
    pub interfaces: Vec<u32>,
}

/// The receiver's state between drains.
pub struct FlowState {
    config: Arc<FlowsConfig>,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    collapse: Option<(u16, u16)>,
    /// When the receiver started (ns since the epoch): the start of its cumulative metrics.
    start: u64,
    /// When the previous drain ran: the start of this interval's overflow records.
    last_drain: u64,
    flows: bool,
    metrics: bool,
    table: FlowTable,
    sockets: SocketTracker,
    ifaces: BTreeMap<u32, IfaceState>,
    flag_totals: [u64; 9],
    bounds: Arc<[f64]>,
    overflow: Arc<Mutex<OverflowTotals>>,
}

impl FlowState {
    /// State for a receiver that sends `flows` records and/or `metrics`.
    pub fn new(
        config: Arc<FlowsConfig>,
        resource: Arc<Resource>,
        scope: Arc<Scope>,
        flows: bool,
        metrics: bool,
        overflow: Arc<Mutex<OverflowTotals>>,
    ) -> Self {
        let now = now_unix_nano();
        FlowState {
            collapse: config.collapse_range(),
            config,
            resource,
            scope,
            start: now,
            last_drain: now,
            flows,
            metrics,
            table: FlowTable::default(),
            sockets: SocketTracker::default(),
            ifaces: BTreeMap::new(),
            flag_totals: [0; 9],
            bounds: Arc::from(LATENCY_BOUNDS_S.as_slice()),
            overflow,
        }
    }

    /// The port collapsing in force (`None`: ports kept).
    pub fn collapse(&self) -> Option<(u16, u16)> {
        self.collapse
    }

    /// Interfaces watched now (retired ones included until their last report).
    pub fn interfaces(&self) -> impl Iterator<Item = &SmolStr> {
        self.ifaces.values().map(|s| &s.iface.name)
    }

    /// Applies an interface event. Detached interfaces stay until the next drain reported them.
    pub fn interface_event(&mut self, event: InterfaceEvent) {
        match event {
            InterfaceEvent::Attached(DatapathInterface { ifindex, name, role, link, since }) => {
                tracing::info!(interface = %name, ifindex, role = role.as_str(), "counting flows");
                let iface = Iface { name, role, l2_bytes: link.header_bytes(), since };
                self.ifaces
                    .insert(ifindex, IfaceState { iface, retired: false, forward: [(0, 0); 2], last: BTreeMap::new() });
            }
            InterfaceEvent::Detached(i) => {
                if let Some(s) = self.ifaces.get_mut(&i.ifindex) {
                    tracing::info!(interface = %i.name, ifindex = i.ifindex, "stopped counting flows");
                    s.retired = true;
                }
            }
        }
    }

    /// Starts turning a drain into records and metrics: takes the sockets' RTT (quiet sockets go
    /// to `forget`). Then [`FlowState::next_batch`] until it says done, then [`FlowState::finish`].
    pub fn begin(&mut self, r: &Reading, forget: &mut Forget) -> Drain {
        let drain = Drain {
            clock: KernelClock::monotonic(),
            now: now_unix_nano(),
            now_mono: u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0),
            idle_ns: u64::try_from(self.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
            next: 0,
        };
        if self.config.latency {
            self.sockets.update(&r.sockets, self.collapse, drain.now_mono, drain.idle_ns, &mut forget.sockets);
        }
        drain
    }

    /// Accounts for the next `RECORDS_PER_BATCH` flows of the drain and, when a flows pipeline
    /// wants them, returns them as one batch; `None` once every flow is done. Batches are sent one
    /// at a time, so 50 000 flows never sit in memory as records all at once.
    pub fn next_batch(&mut self, r: &Reading, drain: &mut Drain) -> Option<Option<FlowBatch>> {
        if drain.next >= r.deltas.len() {
            return None;
        }
        let end = (drain.next + RECORDS_PER_BATCH).min(r.deltas.len());
        let mut records = Vec::with_capacity(if self.flows { end - drain.next } else { 0 });
        for d in &r.deltas[drain.next..end] {
            let start = self.table.touch(d, &drain.clock);
            for (total, n) in self.flag_totals.iter_mut().zip(d.tcp_flags) {
                *total += u64::from(n);
            }
            if let (Some(s), Some(i)) = (self.ifaces.get_mut(&d.key.ifindex), direction_index(d.key.direction)) {
                s.forward[i].0 += d.packets;
                s.forward[i].1 += d.bytes + d.packets * s.iface.l2_bytes;
            }
            if self.flows {
                let iface = self.ifaces.get(&d.key.ifindex).map(|s| &s.iface);
                let mut record = table::record(d, start, &drain.clock, iface);
                if d.key.tuple.protocol == 6
                    && let Some(rtt) = self.sockets.rtt_of(&d.key.tuple, self.collapse)
                {
                    record.rtt = *rtt;
                }
                records.push(record);
            }
        }
        drain.next = end;
        Some(self.batch(records))
    }

    /// Finishes a drain: the overflow records, the metrics, and the interfaces the kernel can
    /// forget now (detached and fully reported) in `forget`.
    pub fn finish(
        &mut self,
        r: &Reading,
        drain: Drain,
        forget: &mut Forget,
    ) -> (Option<FlowBatch>, Option<MetricBatch>) {
        let mut records = Vec::new();
        self.interface_counts(&r.ifaces, drain.now, &mut records);
        let evicted = self.table.evict_idle(drain.now_mono, drain.idle_ns);
        tracing::debug!(
            drained = r.deltas.len(),
            live_flows = self.table.len(),
            evicted,
            sockets = self.sockets.len(),
            "flows drained"
        );
        if let Ok(mut o) = self.overflow.lock() {
            o.drained += r.deltas.len() as u64;
        }
        let metrics = self.metrics.then(|| self.metrics(&r.handshakes, drain.now));
        for (&ifindex, s) in &self.ifaces {
            if s.retired {
                forget.interfaces.push(ifindex);
            }
        }
        for ifindex in &forget.interfaces {
            if let Some(s) = self.ifaces.remove(ifindex)
                && let Ok(mut o) = self.overflow.lock()
            {
                o.by_interface.retain(|(name, _), _| *name != s.iface.name);
            }
            self.table.forget_interface(*ifindex);
        }
        self.last_drain = drain.now;
        (self.batch(records), metrics)
    }

    /// `records` as a batch, when there are any and a flows pipeline wants them.
    fn batch(&self, records: Vec<FlowRecord>) -> Option<FlowBatch> {
        (self.flows && !records.is_empty()).then(|| FlowBatch {
            resource: self.resource.clone(),
            records,
            acks: Default::default(),
        })
    }

    /// Turns the cumulative per-interface counters into this interval's overflow records and
    /// forward counts.
    fn interface_counts(&mut self, counts: &[IfaceCount], now: u64, records: &mut Vec<FlowRecord>) {
        for c in counts {
            let Some(state) = self.ifaces.get_mut(&c.ifindex) else { continue };
            let Some(i) = direction_index(c.direction) else { continue };
            let (p0, b0) = state.last.insert((c.direction, c.kind), (c.packets, c.bytes)).unwrap_or((0, 0));
            let (packets, bytes) = (c.packets.saturating_sub(p0), c.bytes.saturating_sub(b0));
            if packets == 0 {
                continue;
            }
            match c.kind {
                IfaceCountKind::Overflow => {
                    state.forward[i].0 += packets;
                    state.forward[i].1 += bytes + packets * state.iface.l2_bytes;
                    if let Ok(mut o) = self.overflow.lock() {
                        let dir = table::direction(c.direction).as_str();
                        let total = o.by_interface.entry((state.iface.name.clone(), dir)).or_default();
                        total.0 += packets;
                        total.1 += bytes;
                    }
                    if self.flows {
                        records.push(table::overflow_record(
                            c,
                            packets,
                            bytes,
                            now,
                            self.last_drain,
                            Some(&state.iface),
                        ));
                    }
                }
                IfaceCountKind::NotIp => {
                    state.forward[i].0 += packets;
                    state.forward[i].1 += bytes;
                }
            }
        }
    }

    fn metrics(&self, handshakes: &HandshakeHistogram, now: u64) -> MetricBatch {
        let mut metrics = Vec::new();
        if self.config.tcp_flags {
            let points = TcpFlag::ALL
                .iter()
                .zip(self.flag_totals)
                .map(|(flag, n)| {
                    NumberPoint::count(Attributes::from_pairs([(attr::TCP_FLAG, flag.as_str())]), self.start, now, n)
                })
                .collect();
            metrics.push(Metric::from_def(&semconv::NETWORK_TCP_FLAGS, points));
        }
        if self.config.latency {
            let handshake = Histogram::from_buckets(handshakes.count, handshakes.sum_ns, handshakes.buckets).point(
                &self.bounds,
                self.start,
                now,
            );
            metrics.push(Metric::histogram_from_def(&semconv::NETWORK_TCP_HANDSHAKE_DURATION, vec![handshake]));
            let rtt = self.sockets.histogram.point(&self.bounds, self.start, now);
            metrics.push(Metric::histogram_from_def(&semconv::NETWORK_TCP_RTT, vec![rtt]));
        }
        if self.config.forward_metrics != ForwardMetrics::Off {
            let mut packets = Vec::with_capacity(self.ifaces.len() * 2);
            let mut bytes = Vec::with_capacity(self.ifaces.len() * 2);
            for s in self.ifaces.values().filter(|s| self.config.forward_metrics.covers(s.iface.role)) {
                for (i, direction) in ["receive", "transmit"].into_iter().enumerate() {
                    let attrs = Attributes::from_pairs([
                        (attr::NETWORK_INTERFACE_NAME, s.iface.name.clone()),
                        (attr::NETWORK_IO_DIRECTION, SmolStr::new_static(direction)),
                    ]);
                    let (p, b) = s.forward[i];
                    packets.push(NumberPoint::count(attrs.clone(), s.iface.since, now, p));
                    bytes.push(NumberPoint::count(attrs, s.iface.since, now, b));
                }
            }
            metrics.push(Metric::from_def(&semconv::NETWORK_FORWARD_PACKETS, packets));
            metrics.push(Metric::from_def(&semconv::NETWORK_FORWARD_BYTES, bytes));
        }
        MetricBatch::single(self.resource.clone(), self.scope.clone(), metrics)
    }
}
