//! TCP latency in user space: the sockets' smoothed RTT (one sample per socket that was active in
//! a collection interval), joined to the flows of the same connection, and the histograms of
//! `network.tcp.rtt` and `network.tcp.handshake.duration`.

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};

use crate::ebpf::{FlowTuple, SocketRtt};
pub use crate::model::LatencyHistogram as Histogram;
use crate::model::LatencySummary;

/// A connection's endpoints in a fixed order, so both directions of a flow (and the sockets at
/// either end) find the same entry; ports collapsed like the kernel collapses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    a: (IpAddr, u16),
    b: (IpAddr, u16),
}

impl ConnKey {
    /// The key of `t` with the client port zeroed when `collapse` is the ephemeral range.
    pub fn new(t: &FlowTuple, collapse: Option<(u16, u16)>) -> Self {
        let (mut sp, mut dp) = (t.src_port, t.dst_port);
        if let Some((lo, hi)) = collapse {
            let (s, d) = ((lo..=hi).contains(&sp), (lo..=hi).contains(&dp));
            if s && !d {
                sp = 0;
            } else if d && !s {
                dp = 0;
            }
        }
        let (x, y) = ((t.src, sp), (t.dst, dp));
        if x <= y { ConnKey { a: x, b: y } } else { ConnKey { a: y, b: x } }
    }
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    samples: u32,
}

/// The sockets seen so far and the RTT histogram they feed.
#[derive(Debug, Default)]
pub struct SocketTracker {
    tracked: HashMap<u64, Tracked>,
    /// `network.tcp.rtt`, cumulative.
    pub histogram: Histogram,
    /// This interval's RTT per connection, for the flow records.
    by_conn: HashMap<ConnKey, LatencySummary>,
}

impl SocketTracker {
    /// Takes this interval's reading of the kernel's sockets: every socket that received since
    /// the last reading adds its smoothed RTT to the histogram and to its connection's summary.
    /// Returns the cookies of sockets quiet for longer than `idle_ns`, for the kernel to forget.
    pub fn update(
        &mut self,
        sockets: &[SocketRtt],
        collapse: Option<(u16, u16)>,
        now_mono_ns: u64,
        idle_ns: u64,
        forget: &mut Vec<u64>,
    ) {
        self.by_conn.clear();
        let mut present = HashSet::with_capacity(sockets.len());
        for s in sockets {
            present.insert(s.cookie);
            let quiet = now_mono_ns.saturating_sub(s.updated_ns) > idle_ns;
            let fresh = match self.tracked.get(&s.cookie) {
                Some(t) => t.samples != s.samples,
                None => true,
            };
            self.tracked.insert(s.cookie, Tracked { samples: s.samples });
            if fresh {
                let ns = u64::from(s.srtt_us) * 1000;
                self.histogram.record(ns);
                self.by_conn.entry(ConnKey::new(&s.tuple, collapse)).or_default().merge(&LatencySummary::one(ns));
            }
            if quiet {
                forget.push(s.cookie);
            }
        }
        // sockets the kernel no longer has (LRU eviction, or forgotten last time)
        self.tracked.retain(|cookie, _| present.contains(cookie));
        for cookie in forget.iter() {
            self.tracked.remove(cookie);
        }
    }

    /// This interval's RTT of the connection `t` belongs to.
    pub fn rtt_of(&self, t: &FlowTuple, collapse: Option<(u16, u16)>) -> Option<&LatencySummary> {
        if self.by_conn.is_empty() {
            return None;
        }
        self.by_conn.get(&ConnKey::new(t, collapse))
    }

    /// Sockets tracked now.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::flowtable::HANDSHAKE_BOUNDS_NS;
    use crate::model::semconv::LATENCY_BOUNDS_S;

    fn tuple(src: &str, sp: u16, dst: &str, dp: u16) -> FlowTuple {
        FlowTuple {
            src: src.parse().expect("ip"),
            dst: dst.parse().expect("ip"),
            src_port: sp,
            dst_port: dp,
            protocol: 6,
        }
    }

    fn socket(cookie: u64, t: FlowTuple, srtt_us: u32, samples: u32, updated_ns: u64) -> SocketRtt {
        SocketRtt { cookie, tuple: t, srtt_us, rttvar_us: 0, samples, updated_ns }
    }

    #[test]
    fn both_directions_and_collapsed_ports_meet() {
        let c = tuple("198.18.0.1", 40000, "198.18.0.2", 80);
        let s = tuple("198.18.0.2", 80, "198.18.0.1", 40000);
        assert_eq!(ConnKey::new(&c, None), ConnKey::new(&s, None));
        let collapsed = tuple("198.18.0.1", 0, "198.18.0.2", 80);
        assert_eq!(ConnKey::new(&c, Some((32768, 60999))), ConnKey::new(&collapsed, Some((32768, 60999))));
        assert_ne!(ConnKey::new(&c, None), ConnKey::new(&collapsed, None));
    }

    #[test]
    fn a_socket_counts_once_per_interval_it_was_active() {
        let mut t = SocketTracker::default();
        let conn = tuple("198.18.0.1", 40000, "198.18.0.2", 80);
        let mut forget = Vec::new();
        t.update(&[socket(1, conn, 250, 3, 1_000)], None, 2_000, 10_000, &mut forget);
        assert_eq!(t.histogram.count(), 1);
        assert_eq!(t.rtt_of(&tuple("198.18.0.2", 80, "198.18.0.1", 40000), None), Some(&LatencySummary::one(250_000)));
        t.update(&[socket(1, conn, 250, 3, 1_000)], None, 3_000, 10_000, &mut forget);
        assert_eq!(t.histogram.count(), 1, "no new segment: no new sample");
        assert!(t.rtt_of(&conn, None).is_none());
        t.update(&[socket(1, conn, 300, 9, 1_000)], None, 20_000, 10_000, &mut forget);
        assert_eq!(t.histogram.count(), 2);
        assert_eq!(forget, vec![1], "quiet for 19 µs > 10 µs");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_kernel_and_the_metric_use_the_same_bounds() {
        let ns: Vec<f64> = HANDSHAKE_BOUNDS_NS.iter().map(|&n| n as f64 / 1e9).collect();
        for (a, b) in ns.iter().zip(LATENCY_BOUNDS_S) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        assert_eq!(ns.len(), LATENCY_BOUNDS_S.len());
    }
}
