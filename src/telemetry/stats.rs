//! Per-component counters (items received, sent, dropped, failed) and the registry of
//! collectors that make up the agent's own metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::service::MetricsLevel;
use crate::model::semconv::own;
use crate::model::{Attributes, Metric, MetricDef, NumberPoint, Signal};

/// Produces some of the agent's own metrics on demand (at scrape time).
pub trait Collector: Send + Sync {
    /// Appends current values; `start` is the agent's start time (ns) for cumulative sums.
    fn collect(&self, start: u64, now: u64, out: &mut Vec<Metric>);
}

/// What kind of component a set of counters belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// A receiver.
    Receiver,
    /// A processor.
    Processor,
    /// An exporter.
    Exporter,
    /// A connector: the exporter of one pipeline and the receiver of another.
    Connector,
    /// An extension: a service next to the pipelines (health check, profiler ...).
    Extension,
}

impl ComponentKind {
    /// Every kind, in the order the config file lists its sections.
    pub const ALL: [ComponentKind; 5] = [
        ComponentKind::Receiver,
        ComponentKind::Processor,
        ComponentKind::Exporter,
        ComponentKind::Connector,
        ComponentKind::Extension,
    ];

    /// Lower-case name (`receiver`, `processor`, `exporter`, `connector`, `extension`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Connector => "connector",
            ComponentKind::Extension => "extension",
        }
    }

    /// The config section that configures components of this kind (`receivers`).
    pub fn section(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receivers",
            ComponentKind::Processor => "processors",
            ComponentKind::Exporter => "exporters",
            ComponentKind::Connector => "connectors",
            ComponentKind::Extension => "extensions",
        }
    }
}

#[derive(Debug, Default)]
struct PerSignal([AtomicU64; Signal::COUNT]);

impl PerSignal {
    fn add(&self, signal: Signal, n: u64) {
        self.0[signal as usize].fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self, signal: Signal) -> u64 {
        self.0[signal as usize].load(Ordering::Relaxed)
    }
}

/// Item counters of one component instance. Cheap to share; updates are relaxed atomics.
pub struct ComponentStats {
    kind: ComponentKind,
    id: String,
    pipeline: Option<String>,
    received: PerSignal,
    sent: PerSignal,
    dropped: PerSignal,
    failed: PerSignal,
    queued_items: PerSignal,
    queue: Mutex<Vec<QueueProbe>>,
}

impl std::fmt::Debug for ComponentStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentStats").field("kind", &self.kind).field("id", &self.id).finish_non_exhaustive()
    }
}

type QueueProbe = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

impl ComponentStats {
    /// Counters for component `id` of `kind` (processors also name their pipeline).
    pub fn new(kind: ComponentKind, id: impl Into<String>, pipeline: Option<String>) -> Self {
        ComponentStats {
            kind,
            id: id.into(),
            pipeline,
            received: PerSignal::default(),
            sent: PerSignal::default(),
            dropped: PerSignal::default(),
            failed: PerSignal::default(),
            queued_items: PerSignal::default(),
            queue: Mutex::new(Vec::new()),
        }
    }

    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Items that arrived at the component.
    pub fn add_received(&self, signal: Signal, n: u64) {
        self.received.add(signal, n);
    }

    /// Items the component passed on (receivers: accepted into pipelines; exporters: delivered).
    pub fn add_sent(&self, signal: Signal, n: u64) {
        self.sent.add(signal, n);
    }

    /// Items given up on purpose or for lack of room (full queue, shutdown timeout, permanent error).
    pub fn add_dropped(&self, signal: Signal, n: u64) {
        self.dropped.add(signal, n);
    }

    /// Items whose delivery attempt failed (may be retried later).
    pub fn add_failed(&self, signal: Signal, n: u64) {
        self.failed.add(signal, n);
    }

    /// Items sent towards this component's input channel and not yet taken out of it.
    pub fn queued_items(&self, signal: Signal) -> u64 {
        self.queued_items.get(signal)
    }

    pub(crate) fn enqueue(&self, signal: Signal, n: u64) {
        self.queued_items.add(signal, n);
    }

    pub(crate) fn dequeue(&self, signal: Signal, n: u64) {
        self.queued_items.0[signal as usize].fetch_sub(n, Ordering::Relaxed);
    }

    /// Current counts `(received, sent, dropped, failed)` for a signal.
    pub fn snapshot(&self, signal: Signal) -> (u64, u64, u64, u64) {
        (self.received.get(signal), self.sent.get(signal), self.dropped.get(signal), self.failed.get(signal))
    }

    /// Registers a probe returning `(queued, capacity)` of one of this component's queues.
    pub fn add_queue_probe(&self, probe: impl Fn() -> (usize, usize) + Send + Sync + 'static) {
        if let Ok(mut q) = self.queue.lock() {
            q.push(Box::new(probe));
        }
    }

    /// Sum of `(queued, capacity)` over this component's queues.
    pub fn queue(&self) -> (usize, usize) {
        match self.queue.lock() {
            Ok(q) => q.iter().map(|p| p()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
            Err(_) => (0, 0),
        }
    }

    fn attributes(&self, signal: Option<Signal>) -> Attributes {
        let mut a = Attributes::new();
        a.insert(self.kind.as_str(), self.id.as_str());
        if let Some(p) = &self.pipeline {
            a.insert(own::attr::PIPELINE, p.as_str());
        }
        if let Some(s) = signal {
            a.insert(own::attr::SIGNAL, s.as_str());
        }
        a
    }
}

/// A kind's four counters (received, sent, dropped, failed in [`ComponentStats`] terms), otelcol
/// style, and its two queue gauges (size, capacity); `None` for extensions, which carry no data.
fn metric_defs(kind: ComponentKind) -> Option<([&'static MetricDef; 4], [&'static MetricDef; 2])> {
    Some(match kind {
        ComponentKind::Receiver => (
            [
                &own::RECEIVER_RECEIVED_ITEMS,
                &own::RECEIVER_ACCEPTED_ITEMS,
                &own::RECEIVER_REFUSED_ITEMS,
                &own::RECEIVER_FAILED_ITEMS,
            ],
            [&own::RECEIVER_QUEUE_SIZE, &own::RECEIVER_QUEUE_CAPACITY],
        ),
        ComponentKind::Processor => (
            [
                &own::PROCESSOR_INCOMING_ITEMS,
                &own::PROCESSOR_OUTGOING_ITEMS,
                &own::PROCESSOR_DROPPED_ITEMS,
                &own::PROCESSOR_FAILED_ITEMS,
            ],
            [&own::PROCESSOR_QUEUE_SIZE, &own::PROCESSOR_QUEUE_CAPACITY],
        ),
        ComponentKind::Exporter => (
            [
                &own::EXPORTER_RECEIVED_ITEMS,
                &own::EXPORTER_SENT_ITEMS,
                &own::EXPORTER_DROPPED_ITEMS,
                &own::EXPORTER_SEND_FAILED_ITEMS,
            ],
            [&own::EXPORTER_QUEUE_SIZE, &own::EXPORTER_QUEUE_CAPACITY],
        ),
        ComponentKind::Connector => (
            [
                &own::CONNECTOR_RECEIVED_ITEMS,
                &own::CONNECTOR_SENT_ITEMS,
                &own::CONNECTOR_DROPPED_ITEMS,
                &own::CONNECTOR_FAILED_ITEMS,
            ],
            [&own::CONNECTOR_QUEUE_SIZE, &own::CONNECTOR_QUEUE_CAPACITY],
        ),
        // Extensions carry no data, so they have no item counters.
        ComponentKind::Extension => return None,
    })
}

/// All registered collectors plus the component counters.
#[derive(Default)]
pub struct StatsRegistry {
    components: Mutex<Vec<Arc<ComponentStats>>>,
    collectors: Mutex<Vec<Arc<dyn Collector>>>,
    level: OnceLock<MetricsLevel>,
}

impl StatsRegistry {
    /// Creates and registers counters for one component.
    pub fn component(&self, kind: ComponentKind, id: &str, pipeline: Option<String>) -> Arc<ComponentStats> {
        let stats = Arc::new(ComponentStats::new(kind, id, pipeline));
        if let Ok(mut c) = self.components.lock() {
            c.push(stats.clone());
        }
        stats
    }

    /// Registers an extra collector (eBPF program stats, exporter queues, ...).
    pub fn register(&self, collector: Arc<dyn Collector>) {
        if let Ok(mut c) = self.collectors.lock() {
            c.push(collector);
        }
    }

    /// Records `service.telemetry.metrics.level` (once, before components start), so components
    /// can decide how much detail to measure (eBPF run-time statistics only at `detailed`).
    pub fn set_level(&self, level: MetricsLevel) {
        let _ = self.level.set(level);
    }

    /// The own-metrics level (`normal` unless [`StatsRegistry::set_level`] said otherwise).
    pub fn level(&self) -> MetricsLevel {
        self.level.get().copied().unwrap_or_default()
    }

    /// All component counters registered so far.
    pub fn components(&self) -> Vec<Arc<ComponentStats>> {
        self.components.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Collects every metric.
    pub fn collect(&self, start: u64, now: u64, out: &mut Vec<Metric>) {
        let components = self.components();
        for kind in ComponentKind::ALL {
            let of_kind: Vec<_> = components.iter().filter(|c| c.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let Some((counters, [queue_size, queue_capacity])) = metric_defs(kind) else { continue };
            for (i, def) in counters.into_iter().enumerate() {
                let mut points = Vec::new();
                for c in &of_kind {
                    for signal in Signal::ALL {
                        let v = match i {
                            0 => c.received.get(signal),
                            1 => c.sent.get(signal),
                            2 => c.dropped.get(signal),
                            _ => c.failed.get(signal),
                        };
                        if v > 0 || signal == Signal::Metrics {
                            points.push(NumberPoint::int(c.attributes(Some(signal)), start, now, v as i64));
                        }
                    }
                }
                out.push(Metric::from_def(def, points));
            }
            let mut size = Vec::new();
            let mut capacity = Vec::new();
            for c in &of_kind {
                let (len, cap) = c.queue();
                if cap > 0 {
                    size.push(NumberPoint::int(c.attributes(None), 0, now, len as i64));
                    capacity.push(NumberPoint::int(c.attributes(None), 0, now, cap as i64));
                }
            }
            if !size.is_empty() {
                out.push(Metric::from_def(queue_size, size));
                out.push(Metric::from_def(queue_capacity, capacity));
            }
        }
        let collectors = self.collectors.lock().map(|c| c.clone()).unwrap_or_default();
        for c in collectors {
            c.collect(start, now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kinds_metrics_carry_the_kinds_name_as_they_are_collected() {
        for kind in [ComponentKind::Receiver, ComponentKind::Processor, ComponentKind::Exporter] {
            let (counters, queues) = metric_defs(kind).unwrap();
            for def in counters.iter().chain(&queues) {
                assert!(def.name.starts_with(&format!("fovea.{}.", kind.as_str())), "{}", def.name);
                // `ComponentStats::attributes` keys the component id by the kind's name.
                assert_eq!(def.attributes[0], kind.as_str(), "{}", def.name);
            }
        }
    }
}
