//! A cumulative latency histogram kept in integer ns over [`LATENCY_BOUNDS_S`], shared by the
//! receivers that time things (TCP handshakes and RTT, DNS transactions).

use std::sync::Arc;

use super::semconv::{LATENCY_BOUNDS_NS, LATENCY_BOUNDS_S};
use super::{Attributes, HistogramPoint};

/// A cumulative explicit-bucket histogram over [`LATENCY_BOUNDS_S`], kept in ns (TCP handshakes
/// and RTT, DNS durations).
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    count: u64,
    sum_ns: u64,
    buckets: [u64; LATENCY_BOUNDS_S.len() + 1],
    min_ns: Option<u64>,
    max_ns: Option<u64>,
}

impl LatencyHistogram {
    /// Adds one observation.
    pub fn record(&mut self, ns: u64) {
        // integer bounds, exactly as the kernel buckets handshakes
        let i = LATENCY_BOUNDS_NS.iter().position(|&b| ns <= b).unwrap_or(LATENCY_BOUNDS_NS.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_ns += ns;
        self.min_ns = Some(self.min_ns.map_or(ns, |m| m.min(ns)));
        self.max_ns = Some(self.max_ns.map_or(ns, |m| m.max(ns)));
    }

    /// A histogram counted elsewhere (the kernel's handshakes: same bounds, no min/max).
    pub fn from_buckets(count: u64, sum_ns: u64, buckets: [u64; LATENCY_BOUNDS_S.len() + 1]) -> Self {
        LatencyHistogram { count, sum_ns, buckets, min_ns: None, max_ns: None }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// As a cumulative point in seconds.
    pub fn point(&self, bounds: &Arc<[f64]>, start: u64, now: u64) -> HistogramPoint {
        HistogramPoint {
            attributes: Attributes::new(),
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: self.sum_ns as f64 / 1e9,
            bucket_counts: self.buckets.to_vec(),
            explicit_bounds: bounds.clone(),
            min: self.min_ns.map(|n| n as f64 / 1e9),
            max: self.max_ns.map(|n| n as f64 / 1e9),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = LatencyHistogram::default();
        h.record(10_000); // exactly 10 µs: first bucket
        h.record(10_001);
        h.record(20_000_000_000); // 20 s: overflow bucket
        let p = h.point(&Arc::from(LATENCY_BOUNDS_S.as_slice()), 1, 2);
        assert_eq!(p.bucket_counts[0], 1);
        assert_eq!(p.bucket_counts[1], 1);
        assert_eq!(p.bucket_counts[LATENCY_BOUNDS_S.len()], 1);
        assert_eq!((p.count, p.min, p.max), (3, Some(0.00001), Some(20.0)));
    }

    #[test]
    fn the_ns_and_s_bounds_agree() {
        for (ns, s) in LATENCY_BOUNDS_NS.iter().zip(LATENCY_BOUNDS_S) {
            assert!((*ns as f64 / 1e9 - s).abs() < 1e-15, "{ns} vs {s}");
        }
    }
}
