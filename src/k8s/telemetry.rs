//! The cache's own metrics: objects per kind, sync state, events applied, relists, watch
//! restarts and errors, last event age, lookups, and an estimate of the bytes held.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Kind;
use super::Shared;
use crate::model::semconv::own;
use crate::model::{Attributes, Metric, NumberPoint, now_unix_nano};
use crate::telemetry::Collector;

/// Shortest time between two watch requests of one kind: a watch the server ends at once (a
/// proxy timing out, a server restarting) is not retried in a busy loop.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What a watch event did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An object from a list.
    Listed,
    /// A new object from the watch.
    Added,
    /// A changed object from the watch.
    Modified,
    /// A deleted object from the watch.
    Deleted,
}

impl EventKind {
    const ALL: [EventKind; 4] = [EventKind::Listed, EventKind::Added, EventKind::Modified, EventKind::Deleted];

    fn as_str(self) -> &'static str {
        match self {
            EventKind::Listed => "listed",
            EventKind::Added => "added",
            EventKind::Modified => "modified",
            EventKind::Deleted => "deleted",
        }
    }
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    /// A live pod, a Service or a node.
    Hit,
    /// A pod deleted less than `delete_grace_period` ago.
    Grace,
    /// Nothing.
    Miss,
}

impl LookupResult {
    const ALL: [LookupResult; 3] = [LookupResult::Hit, LookupResult::Grace, LookupResult::Miss];

    fn as_str(self) -> &'static str {
        match self {
            LookupResult::Hit => "hit",
            LookupResult::Grace => "grace",
            LookupResult::Miss => "miss",
        }
    }
}

/// Counters of one watched kind.
#[derive(Debug, Default)]
pub struct KindStats {
    synced: AtomicBool,
    events: [AtomicU64; 4],
    lists: AtomicU64,
    watches: AtomicU64,
    errors: AtomicU64,
    /// Unix ns of the last data the kind's list or watch delivered (0: never).
    last_activity: AtomicU64,
    last_watch: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
}

impl KindStats {
    /// True once the kind's first list has been applied.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    pub(crate) fn set_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }

    pub(crate) fn event(&self, kind: EventKind) {
        self.events[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Events applied of `kind`.
    pub fn events(&self, kind: EventKind) -> u64 {
        self.events[kind as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn list_started(&self) {
        self.lists.fetch_add(1, Ordering::Relaxed);
    }

    /// Full lists so far (the first one included).
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    /// Records a watch request and returns how long it must wait so two watch requests of one
    /// kind are at least [`MIN_WATCH_INTERVAL`] apart.
    pub(crate) fn watch_started(&self) -> Duration {
        self.watches.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let Ok(mut last) = self.last_watch.lock() else { return Duration::ZERO };
        let at = match *last {
            Some(previous) => (previous + MIN_WATCH_INTERVAL).max(now),
            None => now,
        };
        *last = Some(at);
        at - now
    }

    /// Watch requests so far.
    pub fn watches(&self) -> u64 {
        self.watches.load(Ordering::Relaxed)
    }

    pub(crate) fn error(&self, message: String) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let Ok(mut last) = self.last_error.lock() else { return true };
        let changed = last.as_deref() != Some(message.as_str());
        *last = Some(message);
        changed
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The last error since the kind last synced.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub(crate) fn activity(&self) {
        self.last_activity.store(now_unix_nano(), Ordering::Relaxed);
    }
}

/// Counters of the whole cache.
#[derive(Debug, Default)]
pub struct CacheStats {
    kinds: [KindStats; Kind::ALL.len()],
    lookups: [AtomicU64; 3],
}

impl CacheStats {
    /// The counters of `kind`.
    pub fn kind(&self, kind: Kind) -> &KindStats {
        &self.kinds[kind as usize]
    }

    /// Adds a batch's lookups.
    pub fn add_lookups(&self, hit: u64, grace: u64, miss: u64) {
        for (result, n) in [(LookupResult::Hit, hit), (LookupResult::Grace, grace), (LookupResult::Miss, miss)] {
            if n > 0 {
                self.lookups[result as usize].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Lookups so far that ended with `result`.
    pub fn lookups(&self, result: LookupResult) -> u64 {
        self.lookups[result as usize].load(Ordering::Relaxed)
    }
}

/// The `fovea.k8s.*` metrics, read at scrape time.
pub(crate) struct CacheCollector(pub(crate) Arc<Shared>);

impl Collector for CacheCollector {
    fn collect(&self, start: u64, now: u64, out: &mut Vec<Metric>) {
        let stats = &self.0.stats;
        let kind_attrs = |k: Kind| Attributes::from_pairs([(own::attr::KIND, k.name())]);
        let (counts, bytes) = {
            let index = self.0.index.read().unwrap_or_else(|p| p.into_inner());
            (Kind::ALL.map(|k| index.count(k)), index.estimate_bytes())
        };
        let gauge = |def, f: &dyn Fn(Kind) -> i64| {
            Metric::from_def(def, Kind::ALL.iter().map(|k| NumberPoint::int(kind_attrs(*k), 0, now, f(*k))).collect())
        };
        let counter = |def, f: &dyn Fn(Kind) -> u64| {
            Metric::from_def(
                def,
                Kind::ALL.iter().map(|k| NumberPoint::count(kind_attrs(*k), start, now, f(*k))).collect(),
            )
        };
        out.push(gauge(&own::K8S_OBJECTS, &|k| counts[k as usize] as i64));
        out.push(gauge(&own::K8S_WATCH_SYNCED, &|k| i64::from(stats.kind(k).synced())));
        let mut events = Vec::new();
        for k in Kind::ALL {
            for e in EventKind::ALL {
                let attrs = Attributes::from_pairs([(own::attr::KIND, k.name()), (own::attr::EVENT, e.as_str())]);
                events.push(NumberPoint::count(attrs, start, now, stats.kind(k).events(e)));
            }
        }
        out.push(Metric::from_def(&own::K8S_WATCH_EVENTS, events));
        out.push(counter(&own::K8S_WATCH_RELISTS, &|k| stats.kind(k).lists().saturating_sub(1)));
        out.push(counter(&own::K8S_WATCH_RESTARTS, &|k| stats.kind(k).watches().saturating_sub(1)));
        out.push(counter(&own::K8S_WATCH_ERRORS, &|k| stats.kind(k).errors()));
        let age = |k: Kind| {
            let last = stats.kind(k).last_activity.load(Ordering::Relaxed);
            if last == 0 { -1.0 } else { now.saturating_sub(last) as f64 / 1e9 }
        };
        let ages = Kind::ALL.iter().map(|k| NumberPoint::double(kind_attrs(*k), 0, now, age(*k))).collect();
        out.push(Metric::from_def(&own::K8S_WATCH_LAST_EVENT_AGE, ages));
        let lookups = LookupResult::ALL
            .iter()
            .map(|r| {
                let attrs = Attributes::from_pairs([(own::attr::RESULT, r.as_str())]);
                NumberPoint::count(attrs, start, now, stats.lookups(*r))
            })
            .collect();
        out.push(Metric::from_def(&own::K8S_LOOKUPS, lookups));
        out.push(Metric::from_def(
            &own::K8S_CACHE_BYTES,
            vec![NumberPoint::count(Attributes::new(), 0, now, bytes as u64)],
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_requests_of_a_kind_are_spaced() {
        let stats = KindStats::default();
        assert_eq!(stats.watch_started(), Duration::ZERO);
        let second = stats.watch_started();
        assert!(second > MIN_WATCH_INTERVAL - Duration::from_millis(100) && second <= MIN_WATCH_INTERVAL);
        let third = stats.watch_started();
        assert!(third > second, "each waits for the one before");
        assert_eq!(stats.watches(), 3);
    }
}
