//! The series one metric of the connector holds: a cumulative counter or histogram per attribute
//! set, at most `max_series` of them. Points of further attribute sets are folded into one
//! overflow series (`otel.metric.overflow=true`, as the OpenTelemetry SDKs do) and counted, so
//! the sum over all series stays equal to what was folded in. Series not updated within the
//! expiration are removed; one that comes back starts again from zero with a new start time.
//!
//! Hot path: an attribute set already held is found by hash and compared in place; nothing is
//! allocated. A new series copies its attributes once.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::model::semconv::attr;
use crate::model::{Attributes, HistogramPoint, LatencySummary, Metric, MetricDef, NumberPoint};

/// What a series accumulates.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// A monotonic count.
    Count(u64),
    /// Observations per bucket (one more than the bounds), their count and sum.
    Histogram { count: u64, sum: f64, buckets: Vec<u64> },
}

#[derive(Debug)]
struct Series {
    hash: u64,
    attributes: Attributes,
    start: u64,
    updated: u64,
    value: Value,
}

/// The series of one metric.
#[derive(Debug)]
pub struct SeriesTable {
    def: &'static MetricDef,
    /// Histogram bucket bounds; `None` for counters.
    bounds: Option<Arc<[f64]>>,
    max_series: usize,
    hasher: DefaultHashBuilder,
    slots: Vec<Option<Series>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    overflow: Option<Series>,
    /// Points folded into the overflow series since the start.
    overflowed: u64,
}

impl SeriesTable {
    /// An empty table of counters (`bounds: None`) or histograms of `def`.
    pub fn new(def: &'static MetricDef, bounds: Option<Arc<[f64]>>, max_series: usize) -> Self {
        SeriesTable {
            def,
            bounds,
            max_series: max_series.max(1),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            overflow: None,
            overflowed: 0,
        }
    }

    /// The metric these series belong to.
    pub fn def(&self) -> &'static MetricDef {
        self.def
    }

    /// Series held, the overflow series not included.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Points folded into the overflow series so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Adds `n` to the counter of `key` (a counter table).
    pub fn add(&mut self, key: &Attributes, n: u64, now: u64) {
        if let Value::Count(total) = &mut self.series_mut(key, now).value {
            *total += n;
        }
    }

    /// Records the samples `summary` stands for (a histogram table, values in ns, recorded in
    /// seconds). A summary of one sample is exact; of several, its smallest and largest go to
    /// their buckets and the others to the bucket of their mean (count and sum stay exact).
    pub fn observe(&mut self, key: &Attributes, summary: &LatencySummary, now: u64) {
        if summary.count == 0 {
            return;
        }
        let seconds = |ns: u64| ns as f64 / 1e9;
        let mut places: [(f64, u64); 3] = [(seconds(summary.min_ns), 1), (seconds(summary.max_ns), 0), (0.0, 0)];
        if summary.count == 1 {
            places[0].0 = seconds(summary.sum_ns);
        } else {
            places[1].1 = 1;
            let rest = u64::from(summary.count) - 2;
            let rest_ns = summary.sum_ns.saturating_sub(summary.min_ns + summary.max_ns);
            places[2] = (seconds(rest_ns.checked_div(rest).unwrap_or(0)), rest);
        }
        let bounds = self.bounds.clone();
        if let Value::Histogram { count, sum, buckets } = &mut self.series_mut(key, now).value {
            for (value, n) in places.into_iter().filter(|(_, n)| *n > 0) {
                let bucket = bounds.as_ref().map_or(0, |b| b.partition_point(|bound| *bound < value));
                if let Some(slot) = buckets.get_mut(bucket) {
                    *slot += n;
                }
            }
            *count += u64::from(summary.count);
            *sum += seconds(summary.sum_ns);
        }
    }

    /// The series of `key`, created (or the overflow series, when the table is full).
    fn series_mut(&mut self, key: &Attributes, now: u64) -> &mut Series {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let found =
            self.index.find(hash, |&i| slots[i as usize].as_ref().is_some_and(|s| s.attributes == *key)).copied();
        let i = match found {
            Some(i) => i,
            None if self.len() < self.max_series => self.insert(hash, key.clone(), now),
            None => {
                self.overflowed += 1;
                let fresh = self.fresh_value();
                let overflow = self.overflow.get_or_insert_with(|| Series {
                    hash: 0,
                    attributes: Attributes::from_pairs([(attr::OTEL_METRIC_OVERFLOW, true)]),
                    start: now,
                    updated: now,
                    value: fresh,
                });
                overflow.updated = now;
                return overflow;
            }
        };
        // `i` came from the index or was just inserted, so the slot holds a series.
        let series = self.slots[i as usize].as_mut().expect("indexed slot holds a series");
        series.updated = now;
        series
    }

    fn fresh_value(&self) -> Value {
        match &self.bounds {
            None => Value::Count(0),
            Some(b) => Value::Histogram { count: 0, sum: 0.0, buckets: vec![0; b.len() + 1] },
        }
    }

    fn insert(&mut self, hash: u64, attributes: Attributes, now: u64) -> u32 {
        let series = Series { hash, attributes, start: now, updated: now, value: self.fresh_value() };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(series);
                i
            }
            None => {
                self.slots.push(Some(series));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, i, |&j| slots[j as usize].as_ref().map_or(0, |s| s.hash));
        i
    }

    /// Removes the series `keep` refuses (the overflow series is judged by its attributes too).
    /// Returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&Attributes, u64) -> bool) -> usize {
        let mut removed = 0;
        for i in 0..self.slots.len() {
            let Some(s) = &self.slots[i] else { continue };
            if keep(&s.attributes, s.updated) {
                continue;
            }
            let hash = s.hash;
            if let Ok(entry) = self.index.find_entry(hash, |&j| j as usize == i) {
                entry.remove();
            }
            self.slots[i] = None;
            self.free.push(i as u32);
            removed += 1;
        }
        if self.overflow.as_ref().is_some_and(|o| !keep(&o.attributes, o.updated)) {
            self.overflow = None;
        }
        removed
    }

    /// Removes series not updated since `before` (ns); returns how many.
    pub fn expire(&mut self, before: u64) -> usize {
        self.retain(|_, updated| updated >= before)
    }

    /// Every series as one cumulative metric at `now`; `None` when there is none.
    pub fn metric(&self, now: u64) -> Option<Metric> {
        let all = self.slots.iter().flatten().chain(self.overflow.as_ref());
        match &self.bounds {
            None => {
                let points: Vec<NumberPoint> = all
                    .filter_map(|s| match s.value {
                        Value::Count(n) => Some(NumberPoint::count(s.attributes.clone(), s.start, now, n)),
                        Value::Histogram { .. } => None,
                    })
                    .collect();
                (!points.is_empty()).then(|| Metric::from_def(self.def, points))
            }
            Some(bounds) => {
                let points: Vec<HistogramPoint> = all
                    .filter_map(|s| match &s.value {
                        Value::Histogram { count, sum, buckets } => Some(HistogramPoint {
                            attributes: s.attributes.clone(),
                            start_time_unix_nano: s.start,
                            time_unix_nano: now,
                            count: *count,
                            sum: *sum,
                            bucket_counts: buckets.clone(),
                            explicit_bounds: bounds.clone(),
                            min: None,
                            max: None,
                        }),
                        Value::Count(_) => None,
                    })
                    .collect();
                (!points.is_empty()).then(|| Metric::histogram_from_def(self.def, points))
            }
        }
    }
}
