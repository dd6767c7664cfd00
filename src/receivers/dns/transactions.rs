//! Queries waiting for their response, and TCP segments that continue a message.
//!
//! A response finds its query by the client's address and port, the protocol and the
//! transaction id. The server's address is left out on purpose: a query to a Service's cluster
//! IP is answered by a pod whose address the response carries (the node's DNAT rewrote it in
//! between), and both are one transaction. A query repeated with the same key while the first
//! waits (a client's retry) is one transaction: the duration is from the first.
//!
//! Bounded: at most `max_pending` queries wait; past that the oldest is given up as unanswered.

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;
use smol_str::SmolStr;

use crate::ebpf::FlowTuple;

/// What identifies a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    client: IpAddr,
    client_port: u16,
    protocol: u8,
    id: u16,
}

impl TransactionKey {
    /// The key of a message between `tuple`'s ends; `response` says which end is the client.
    pub fn new(tuple: &FlowTuple, response: bool, id: u16) -> Self {
        let (client, client_port) = if response { (tuple.dst, tuple.dst_port) } else { (tuple.src, tuple.src_port) };
        TransactionKey { client, client_port, protocol: tuple.protocol, id }
    }
}

/// A query waiting for its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// When the node saw it (CLOCK_BOOTTIME ns).
    pub kernel_ns: u64,
    /// Its question type.
    pub question_type: u16,
    /// Its question name (empty unless names are counted).
    pub question_name: SmolStr,
}

/// Queries waiting, oldest first.
#[derive(Debug)]
pub struct Transactions {
    pending: HashMap<TransactionKey, Pending>,
    order: VecDeque<(TransactionKey, u64)>,
    max: usize,
}

impl Transactions {
    /// A table of at most `max` waiting queries.
    pub fn new(max: usize) -> Self {
        Transactions { pending: HashMap::with_capacity(max.min(4096)), order: VecDeque::new(), max }
    }

    /// A query: waits for its response unless the same one already waits. Returns the query
    /// given up to make room (the oldest), if any.
    pub fn query(&mut self, key: TransactionKey, query: Pending) -> Option<Pending> {
        if self.pending.contains_key(&key) {
            return None;
        }
        let evicted = if self.pending.len() >= self.max { self.pop_oldest() } else { None };
        self.order.push_back((key, query.kernel_ns));
        self.pending.insert(key, query);
        evicted
    }

    /// A response: its query, if it was waiting.
    pub fn response(&mut self, key: &TransactionKey) -> Option<Pending> {
        // its `order` entry stays until it is old enough to be skipped by `expire`
        self.pending.remove(key)
    }

    /// Gives up on queries seen at or before `deadline_ns`; calls `f` on each.
    pub fn expire(&mut self, deadline_ns: u64, mut f: impl FnMut(Pending)) {
        while let Some(&(key, at)) = self.order.front() {
            if at > deadline_ns {
                break;
            }
            self.order.pop_front();
            if let Some(p) = self.take_if(&key, at) {
                f(p);
            }
        }
        // answered entries of the order queue are dropped as they reach the front; keep the
        // queue from growing without bound when nothing expires for a long time
        if self.order.len() > 2 * self.max.max(self.pending.len()) {
            let pending = &self.pending;
            self.order.retain(|(k, at)| pending.get(k).is_some_and(|p| p.kernel_ns == *at));
        }
    }

    fn pop_oldest(&mut self) -> Option<Pending> {
        while let Some((key, at)) = self.order.pop_front() {
            if let Some(p) = self.take_if(&key, at) {
                return Some(p);
            }
        }
        None
    }

    fn take_if(&mut self, key: &TransactionKey, at: u64) -> Option<Pending> {
        match self.pending.get(key) {
            Some(p) if p.kernel_ns == at => self.pending.remove(key),
            _ => None,
        }
    }

    /// Queries waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

/// Bytes still due of TCP messages whose first segment did not hold all of them, per direction
/// of a connection: their next segments continue the message and are not messages themselves.
#[derive(Debug, Default)]
pub struct TcpStreams {
    due: HashMap<FlowTuple, u32>,
}

/// The most connections with a message in flight that are tracked (beyond, the table is reset:
/// a continuation segment then counts as malformed, never as a message).
const MAX_STREAMS: usize = 4096;

impl TcpStreams {
    /// A segment of `seg_len` payload bytes on `tuple`, whose first two bytes (if it starts a
    /// message) say the message is `msg_len` long. True when it starts a message.
    pub fn starts_message(&mut self, tuple: &FlowTuple, seg_len: u16, msg_len: u16) -> bool {
        if let Some(due) = self.due.get_mut(tuple) {
            *due = due.saturating_sub(u32::from(seg_len));
            if *due == 0 {
                self.due.remove(tuple);
            }
            return false;
        }
        let carried = u32::from(seg_len).saturating_sub(2);
        if u32::from(msg_len) > carried && seg_len >= 2 {
            if self.due.len() >= MAX_STREAMS {
                self.due.clear();
            }
            self.due.insert(*tuple, u32::from(msg_len) - carried);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(sport: u16, dport: u16) -> FlowTuple {
        FlowTuple {
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            src_port: sport,
            dst_port: dport,
            protocol: 17,
        }
    }

    fn reversed(t: FlowTuple) -> FlowTuple {
        FlowTuple { src: t.dst, dst: t.src, src_port: t.dst_port, dst_port: t.src_port, protocol: t.protocol }
    }

    fn pending(ns: u64) -> Pending {
        Pending { kernel_ns: ns, question_type: 1, question_name: SmolStr::default() }
    }

    #[test]
    fn a_response_finds_its_query_whatever_the_server_address() {
        let mut t = Transactions::new(16);
        let q = tuple(40000, 53);
        t.query(TransactionKey::new(&q, false, 7), pending(100));
        t.query(TransactionKey::new(&q, false, 7), pending(150)); // a retry: still the first
        let mut r = reversed(q);
        r.src = "198.18.9.9".parse().unwrap(); // answered by the pod behind the Service address
        assert_eq!(t.response(&TransactionKey::new(&r, true, 7)).map(|p| p.kernel_ns), Some(100));
        assert_eq!(t.response(&TransactionKey::new(&r, true, 7)), None, "answered once");
        let mut expired = 0;
        t.expire(u64::MAX, |_| expired += 1);
        assert_eq!((expired, t.len()), (0, 0));
    }

    #[test]
    fn unanswered_queries_expire_and_the_table_is_bounded() {
        let mut t = Transactions::new(16);
        for id in 0..20u16 {
            let evicted = t.query(TransactionKey::new(&tuple(40000, 53), false, id), pending(u64::from(id)));
            assert_eq!(evicted.map(|p| p.kernel_ns), (id >= 16).then(|| u64::from(id - 16)));
        }
        let mut expired = Vec::new();
        t.expire(17, |p| expired.push(p.kernel_ns));
        assert_eq!(expired, vec![4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn tcp_segments_after_a_long_first_one_are_not_messages() {
        let mut s = TcpStreams::default();
        let t = tuple(53, 40000);
        assert!(s.starts_message(&t, 1000, 2000), "first segment: 998 of 2000 bytes");
        assert!(!s.starts_message(&t, 1000, 0));
        assert!(!s.starts_message(&t, 2, 0), "the last 2 bytes");
        assert!(s.starts_message(&t, 52, 50), "the next message, whole");
    }
}
