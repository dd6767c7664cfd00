//! The delivery layer's own metrics beyond the component counters: bytes held by the sending
//! queue (memory or disk) and retry attempts.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{Attributes, Metric, NumberPoint};
use crate::telemetry::Collector;

type BytesProbe = Box<dyn Fn() -> u64 + Send + Sync>;

/// Own metrics of one push exporter, collected at scrape time.
pub(crate) struct DeliveryTelemetry {
    exporter: String,
    retries: AtomicU64,
    storage: &'static str,
    queue_bytes: BytesProbe,
    capacity_bytes: Option<u64>,
}

impl DeliveryTelemetry {
    /// Metrics for exporter `exporter` whose queue keeps its data in `storage` (`memory` or
    /// `disk`); `queue_bytes` reads the current size, `capacity_bytes` is the bound when there is one.
    pub(crate) fn new(
        exporter: &str,
        storage: &'static str,
        queue_bytes: impl Fn() -> u64 + Send + Sync + 'static,
        capacity_bytes: Option<u64>,
    ) -> Self {
        DeliveryTelemetry {
            exporter: exporter.to_string(),
            retries: AtomicU64::new(0),
            storage,
            queue_bytes: Box::new(queue_bytes),
            capacity_bytes,
        }
    }

    /// One more retry was scheduled.
    pub(crate) fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries scheduled so far.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

impl Collector for DeliveryTelemetry {
    fn collect(&self, start: u64, now: u64, out: &mut Vec<Metric>) {
        let attrs = Attributes::from_pairs([("exporter", self.exporter.as_str())]);
        let mut with_storage = attrs.clone();
        with_storage.insert("storage", self.storage);
        out.push(Metric::counter(
            "fovea.exporter.retries",
            "{retry}",
            "Retries scheduled after retryable send failures",
            vec![NumberPoint::int(attrs, start, now, self.retries() as i64)],
        ));
        out.push(Metric::gauge(
            "fovea.exporter.queue.bytes",
            "By",
            "Bytes held by the sending queue: request bodies in memory, or files on disk for the persistent queue",
            vec![NumberPoint::int(with_storage.clone(), 0, now, (self.queue_bytes)() as i64)],
        ));
        if let Some(capacity) = self.capacity_bytes {
            out.push(Metric::gauge(
                "fovea.exporter.queue.capacity_bytes",
                "By",
                "Upper bound of the persistent queue on disk (max_size_mib)",
                vec![NumberPoint::int(with_storage, 0, now, capacity as i64)],
            ));
        }
    }
}

/// How often a repeated drop is logged at most.
const DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Sums drops of one kind and says when to log them: the first at once, then at most every 10 s,
/// so an overload or a long outage logs a few lines with counts instead of one per request.
#[derive(Debug, Default)]
pub(crate) struct DropSummary {
    last: Option<std::time::Instant>,
    requests: u64,
    items: u64,
}

impl DropSummary {
    /// Adds a drop; returns the `(requests, items)` to log now, if it is time to log.
    pub(crate) fn add(&mut self, requests: u64, items: u64) -> Option<(u64, u64)> {
        self.requests += requests;
        self.items += items;
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < DROP_LOG_INTERVAL) {
            return None;
        }
        self.last = Some(now);
        self.take()
    }

    /// The drops not logged yet, if any (at shutdown).
    pub(crate) fn take(&mut self) -> Option<(u64, u64)> {
        let counts = (self.requests, self.items);
        self.requests = 0;
        self.items = 0;
        (counts.0 > 0).then_some(counts)
    }
}
