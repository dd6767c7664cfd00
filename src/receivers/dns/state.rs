//! What the receiver knows between messages: the interfaces it watches, the queries waiting,
//! TCP messages in flight, the counters and the flow records not sent yet.

use std::sync::{Arc, Mutex};

use hashbrown::HashMap;
use smol_str::SmolStr;

use super::counters::{Detail, DnsCounters};
use super::message;
use super::transactions::{Pending, TcpStreams, TransactionKey, Transactions};
use crate::ebpf::{self, DnsCapture};
use crate::model::{Direction, FlowKind, FlowRecord, LatencySummary, ObservationPoint};
use crate::receivers::probe::datapath::InterfaceEvent;

/// Counts for the agent's own metrics, shared with its collector.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsTotals {
    /// Messages that did not parse.
    pub malformed: u64,
    /// Queries given up because the transaction table was full.
    pub evicted: u64,
    /// Messages counted in an overflow series.
    pub overflowed: u64,
}

/// The receiver's state; only touched by its task.
pub struct DnsState {
    /// The interfaces this receiver watches: name and role.
    interfaces: HashMap<u32, (SmolStr, ObservationPoint)>,
    transactions: Transactions,
    tcp: TcpStreams,
    /// The metrics.
    pub counters: DnsCounters,
    /// Flow records since the last send (empty when no flows pipeline takes them).
    pub records: Vec<FlowRecord>,
    flows: bool,
    totals: DnsTotals,
    shared: Arc<Mutex<DnsTotals>>,
}

fn direction(d: ebpf::Direction) -> Direction {
    match d {
        ebpf::Direction::Ingress => Direction::Receive,
        ebpf::Direction::Egress => Direction::Transmit,
        ebpf::Direction::Unknown => Direction::Unknown,
    }
}

impl DnsState {
    /// Empty state: `flows` when records are wanted.
    pub fn new(
        detail: Detail,
        max_series: usize,
        max_pending: usize,
        flows: bool,
        shared: Arc<Mutex<DnsTotals>>,
    ) -> Self {
        DnsState {
            interfaces: HashMap::new(),
            transactions: Transactions::new(max_pending),
            tcp: TcpStreams::default(),
            counters: DnsCounters::new(detail, max_series),
            records: Vec::new(),
            flows,
            totals: DnsTotals::default(),
            shared,
        }
    }

    /// An interface came or went.
    pub fn interface_event(&mut self, e: InterfaceEvent) {
        match e {
            InterfaceEvent::Attached(i) => {
                self.interfaces.insert(i.ifindex, (i.name, i.role));
            }
            InterfaceEvent::Detached(i) => {
                self.interfaces.remove(&i.ifindex);
            }
        }
    }

    /// Names of the watched interfaces.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.interfaces.values().map(|(n, _)| n.as_str())
    }

    /// Counts one captured message (captures at interfaces other receivers asked for are
    /// skipped).
    pub fn capture(&mut self, c: &DnsCapture) {
        let Some((iface, role)) = self.interfaces.get(&c.ifindex) else {
            return;
        };
        if c.tuple.protocol == 6 && !self.tcp.starts_message(&c.tuple, c.seg_len, c.msg_len) {
            return;
        }
        let mut info = match message::parse(c.message(), c.truncated()) {
            Ok(info) => info,
            Err(_) => {
                self.totals.malformed += 1;
                return;
            }
        };
        let key = TransactionKey::new(&c.tuple, info.response, info.id);
        if info.response {
            let query = self.transactions.response(&key);
            let duration = query.map(|q| c.kernel_ns.saturating_sub(q.kernel_ns));
            self.counters.response(&info, duration);
            if let Some(ns) = duration {
                info.latency = LatencySummary::one(ns);
            }
        } else {
            self.counters.request(&info);
            let pending = Pending {
                kernel_ns: c.kernel_ns,
                question_type: info.question_type,
                question_name: info.question_name.clone(),
            };
            if let Some(evicted) = self.transactions.query(key, pending) {
                self.totals.evicted += 1;
                self.counters.unanswered(evicted.question_type, &evicted.question_name);
            }
        }
        if self.flows {
            let mut r = FlowRecord::new(FlowKind::Dns, c.tuple.src, c.tuple.dst);
            r.time_unix_nano = c.time_unix_nano;
            r.start_time_unix_nano = c.time_unix_nano;
            r.source_port = c.tuple.src_port;
            r.destination_port = c.tuple.dst_port;
            r.protocol = c.tuple.protocol;
            r.direction = direction(c.direction);
            r.ifindex = c.ifindex;
            r.interface = iface.clone();
            r.observation_point = *role;
            r.bytes = u64::from(c.seg_len);
            r.dns = Some(info);
            self.records.push(r);
        }
    }

    /// Gives up on queries older than `timeout_ns` at `now_ns` (CLOCK_BOOTTIME) and publishes the
    /// own counts.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64) {
        let counters = &mut self.counters;
        self.transactions.expire(now_ns.saturating_sub(timeout_ns), |p| {
            counters.unanswered(p.question_type, &p.question_name);
        });
        self.totals.overflowed = self.counters.overflowed;
        if let Ok(mut shared) = self.shared.lock() {
            *shared = self.totals;
        }
    }
}
