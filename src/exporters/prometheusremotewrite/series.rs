//! From OpenTelemetry batches to remote-write series, with the scrape exporter's own series
//! store, so both paths name and label every series identically and fold data the same way.
//!
//! Each batch is folded into the [`Store`] point by point. After every point the store reports
//! which exposed series changed ([`Touch`]), and that series' value at that moment becomes a
//! sample: so every point is sent (a scrape would only see the latest), delta sums and delta
//! histograms are sent as running cumulative totals, and `naming: retina` sums the members of
//! one Retina series exactly as the scrape endpoint does.
//!
//! Prometheus refuses a whole request when one sample is not newer than what it already holds
//! for that series, so every series keeps the timestamp (ms) of its newest sample sent: an older
//! sample is dropped and counted here, and several changes within one millisecond in one batch
//! become one sample (the last value). Series not updated for [`SERIES_TTL`] are forgotten (a
//! delta series that comes back later restarts from 0, which Prometheus treats as a counter reset).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::proto::{MetricMetadata, MetricType, Sample};
use super::request::{Counted, RequestWriter, encode_labels};
use crate::model::{MetricBatch, Resource};
use crate::prometheus::{Exposed, Labels, Merged, PromKind, Scratch, Store, StoreOptions, Touch, write_go_float};

/// Series (and their accumulated deltas, Retina members, last timestamps) are forgotten after
/// this long without a point, like the scrape exporter's default `metric_expiration`.
pub const SERIES_TTL: Duration = Duration::from_secs(300);

/// How often forgotten series are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// No sample sent yet.
const NEVER: i64 = i64::MIN;

/// No next sample in a series' list for this batch.
const END: u32 = u32::MAX;

/// How series are built, derived from the config once.
#[derive(Debug, Clone)]
pub(crate) struct TranslatorOptions {
    /// Naming, namespace, suffixes, scope and resource labels: shared with the scrape exporter.
    pub store: StoreOptions,
    /// External labels (translated names), added last, never replacing a series' own label.
    pub external_labels: Vec<(String, String)>,
    /// Send `target_info` per resource (only without resource-to-telemetry conversion).
    pub target_info: bool,
}

/// What became of the points of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOutcome {
    /// Points that are in the requests.
    pub sent: u64,
    /// Points refused by the translation (older than held, malformed, unnameable, type conflict).
    pub refused: u64,
    /// Points not newer than the last sample of their series.
    pub stale: u64,
    /// Points without a timestamp.
    pub untimed: u64,
}

impl EncodeOutcome {
    /// Points that are not in the requests.
    pub fn dropped(&self) -> u64 {
        self.refused + self.stale + self.untimed
    }
}

/// One sample waiting to be written, in its series' list for this batch.
#[derive(Debug)]
struct Pending {
    time_ms: i64,
    points: u64,
    /// Where its values are in `values`: one number, or per histogram: finite buckets
    /// (cumulative), `+Inf`, `_sum`, `_count`.
    start: u32,
    len: u32,
    /// Histograms: the finite bucket bounds the values were made with (empty: no buckets).
    bounds: Option<Arc<[f64]>>,
    next: u32,
}

/// What is remembered about one exposed series.
#[derive(Debug)]
struct OutputCache {
    /// The store's labels of the series: identifies the output (ids are reused after expiry).
    identity: Arc<Labels>,
    /// Sorted labels with the external labels, without `__name__`.
    labels: Vec<(String, String)>,
    /// Timestamp of the newest sample made for this series.
    last_ms: i64,
    /// Batch in which `first` and `last` are valid.
    generation: u64,
    first: u32,
    last: u32,
    /// Encoded labels of each wire series: the number series, or per histogram bucket, `+Inf`,
    /// `_sum`, `_count`; built for `built_for`.
    encoded: Vec<Vec<u8>>,
    built_for: Option<Option<Arc<[f64]>>>,
}

/// What is remembered about one resource's `target_info`.
#[derive(Debug)]
struct ResourceCache {
    identity: Arc<Resource>,
    encoded: Option<Vec<u8>>,
    last_ms: i64,
    generation: u64,
    newest_ms: i64,
}

/// Turns batches into series and samples, remembering what each series needs across batches.
pub(crate) struct Translator {
    opts: TranslatorOptions,
    store: Store,
    outputs: Vec<Option<OutputCache>>,
    resources: Vec<Option<ResourceCache>>,
    generation: u64,
    last_sweep: Instant,
    scratch: Scratch,
    pending: Vec<Pending>,
    values: Vec<f64>,
    touched: Vec<u32>,
    touched_resources: Vec<u32>,
    samples: Vec<Counted>,
    run: Vec<u32>,
}

fn slot<T>(v: &mut Vec<Option<T>>, i: u32) -> &mut Option<T> {
    let i = i as usize;
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    &mut v[i]
}

/// Sorts labels by name and keeps the first of each name (they come in precedence order).
fn sorted_unique(mut labels: Vec<(String, String)>) -> Vec<(String, String)> {
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|later, first| later.0 == first.0);
    labels
}

/// Adds the external labels a series does not already have, and sorts.
fn with_external(labels: Vec<(String, String)>, external: &[(String, String)]) -> Vec<(String, String)> {
    let mut labels = sorted_unique(labels);
    for (name, value) in external {
        if labels.binary_search_by(|(n, _)| n.as_str().cmp(name)).is_err() {
            labels.push((name.clone(), value.clone()));
        }
    }
    sorted_unique(labels)
}

/// Encodes `labels` plus `__name__` and optionally `le`, sorted by name.
fn encode_series_labels(labels: &[(String, String)], name: &str, le: Option<&str>, out: &mut Vec<u8>) {
    let mut all: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    all.push(("__name__", name));
    if let Some(le) = le {
        all.retain(|(n, _)| *n != "le");
        all.push(("le", le));
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    encode_labels(all, out);
}

fn same_bounds(a: &Option<Arc<[f64]>>, b: &Option<Arc<[f64]>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

impl Translator {
    /// A translator with no series yet.
    pub fn new(opts: TranslatorOptions) -> Self {
        let mut store_opts = opts.store.clone();
        store_opts.expiration = Some(SERIES_TTL);
        // A push carries its own job and instance; a scrape gets them from Prometheus.
        store_opts.retina_target_labels = true;
        Translator {
            opts,
            store: Store::new(store_opts),
            outputs: Vec::new(),
            resources: Vec::new(),
            generation: 0,
            last_sweep: Instant::now(),
            scratch: Scratch::default(),
            pending: Vec::new(),
            values: Vec::new(),
            touched: Vec::new(),
            touched_resources: Vec::new(),
            samples: Vec::new(),
            run: Vec::new(),
        }
    }

    /// Number of OpenTelemetry series remembered.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Translates `batch` and writes its series (then `target_info`, then metadata when asked)
    /// into `writer`.
    pub fn encode(
        &mut self,
        batch: &MetricBatch,
        now: Instant,
        metadata: bool,
        writer: &mut RequestWriter<'_>,
    ) -> EncodeOutcome {
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.sweep(now);
        }
        let t = self.translate(batch, now);
        self.write(metadata, writer);
        t
    }

    /// Forgets series not updated for [`SERIES_TTL`], and what was remembered about them.
    pub fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        self.store.expire(now);
        for (i, cache) in self.outputs.iter_mut().enumerate() {
            let alive = cache.as_ref().is_some_and(|c| self.store.is_live(i as u32, &c.identity));
            if !alive {
                *cache = None;
            }
        }
        for (i, cache) in self.resources.iter_mut().enumerate() {
            let alive = cache
                .as_ref()
                .is_some_and(|c| self.store.resource(i as u32).is_some_and(|r| Arc::ptr_eq(r, &c.identity)));
            if !alive {
                *cache = None;
            }
        }
        while self.outputs.last().is_some_and(Option::is_none) {
            self.outputs.pop();
        }
        while self.resources.last().is_some_and(Option::is_none) {
            self.resources.pop();
        }
    }

    /// Folds the batch in and collects one pending sample per change of an exposed series.
    fn translate(&mut self, batch: &MetricBatch, now: Instant) -> EncodeOutcome {
        self.generation += 1;
        self.pending.clear();
        self.values.clear();
        self.touched.clear();
        self.touched_resources.clear();
        let generation = self.generation;
        let mut t = EncodeOutcome::default();
        let mut touches = 0u64;
        let Translator {
            opts, store, outputs, resources, scratch, pending, values, touched, touched_resources, ..
        } = self;
        let folded = store.fold_observed(batch, now, &mut |store: &Store, touch: Touch| {
            touches += 1;
            let Some((exposed, merged, time_ns)) = store.current(touch.output, scratch) else { return };
            if time_ns == 0 {
                t.untimed += 1;
                return;
            }
            let time_ms = i64::try_from(time_ns / 1_000_000).unwrap_or(i64::MAX);
            let cache = slot(outputs, touch.output);
            if !cache.as_ref().is_some_and(|c| Arc::ptr_eq(&c.identity, exposed.labels)) {
                *cache = Some(OutputCache {
                    identity: exposed.labels.clone(),
                    labels: with_external(
                        exposed.labels.pairs().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                        &opts.external_labels,
                    ),
                    last_ms: NEVER,
                    generation: 0,
                    first: END,
                    last: END,
                    encoded: Vec::new(),
                    built_for: None,
                });
            }
            let Some(cache) = cache.as_mut() else { return };

            // The series' values now.
            let start = values.len();
            let bounds = match merged {
                Merged::Number(v) => {
                    values.push(v * exposed.scale);
                    None
                }
                Merged::Hist(h) => {
                    let finite = h.buckets.len() == h.bounds.len() + 1;
                    push_histogram(values, finite.then_some(&h.buckets[..]), h.count, h.sum * exposed.scale);
                    Some(if finite { h.bounds.clone() } else { Arc::from(Vec::new()) })
                }
                Merged::SummedHist(b) => {
                    let finite = scratch.buckets.len() == b.len() + 1;
                    push_histogram(
                        values,
                        finite.then_some(&scratch.buckets[..]),
                        scratch.count,
                        scratch.sum * exposed.scale,
                    );
                    Some(if finite { b } else { Arc::from(Vec::new()) })
                }
            };
            let len = (values.len() - start) as u32;

            // Same millisecond as this batch's previous sample of the series: it becomes that sample.
            if cache.generation == generation
                && let Some(prev) = pending.get_mut(cache.last as usize)
                && prev.time_ms == time_ms
                && prev.len == len
                && same_bounds(&prev.bounds, &bounds)
            {
                let (from, to) = (start, prev.start as usize);
                values.copy_within(from..from + len as usize, to);
                values.truncate(start);
                prev.points += 1;
                t.sent += 1;
                note_resource(resources, touched_resources, store, touch.resource, time_ms, generation);
                return;
            }
            if time_ms <= cache.last_ms {
                values.truncate(start);
                t.stale += 1;
                return;
            }
            let index = pending.len() as u32;
            pending.push(Pending { time_ms, points: 1, start: start as u32, len, bounds, next: END });
            if cache.generation == generation {
                if let Some(prev) = pending.get_mut(cache.last as usize) {
                    prev.next = index;
                }
            } else {
                cache.generation = generation;
                cache.first = index;
                touched.push(touch.output);
            }
            cache.last = index;
            cache.last_ms = time_ms;
            t.sent += 1;
            note_resource(resources, touched_resources, store, touch.resource, time_ms, generation);
        });
        t.refused = folded.dropped + folded.accepted.saturating_sub(touches);
        // Touches that found no exposed series (cannot happen while the store is consistent).
        t.refused += touches.saturating_sub(t.sent + t.stale + t.untimed);
        if t.stale > 0 || t.untimed > 0 {
            debug!(
                stale = t.stale,
                untimed = t.untimed,
                "points not sent: not newer than the last sample of their series, or without a timestamp"
            );
        }
        t
    }

    /// Writes the pending samples of this batch, series by series, then `target_info` and metadata.
    fn write(&mut self, metadata: bool, writer: &mut RequestWriter<'_>) {
        let Translator {
            store,
            outputs,
            resources,
            pending,
            values,
            touched,
            touched_resources,
            samples,
            run,
            opts,
            ..
        } = self;
        let mut families: Vec<Exposed<'_>> = Vec::new();
        for &o in touched.iter() {
            let Some(Some(cache)) = outputs.get_mut(o as usize) else { continue };
            let Some(family) = store.exposed(o) else { continue };
            if metadata {
                families.push(family);
            }
            let mut run_start = cache.first;
            while run_start != END {
                // A run: consecutive samples with the same histogram bounds (almost always all).
                let Some(first) = pending.get(run_start as usize) else { break };
                let bounds = first.bounds.clone();
                run.clear();
                let mut i = run_start;
                while let Some(p) = pending.get(i as usize) {
                    if !same_bounds(&p.bounds, &bounds) {
                        break;
                    }
                    run.push(i);
                    i = p.next;
                }
                run_start = i;
                if !cache.built_for.as_ref().is_some_and(|b| same_bounds(b, &bounds)) {
                    build_encoded(cache, family.name, family.kind, family.scale, &bounds);
                }
                let primary = cache.encoded.len().saturating_sub(1);
                for (v, labels) in cache.encoded.iter().enumerate() {
                    samples.clear();
                    for &i in run.iter() {
                        let Some(p) = pending.get(i as usize) else { continue };
                        let value = values.get(p.start as usize + v).copied().unwrap_or(f64::NAN);
                        let points = if v == primary { p.points } else { 0 };
                        samples.push(Counted { sample: Sample { value, timestamp: p.time_ms }, points });
                    }
                    writer.series(labels, samples);
                }
            }
        }

        let mut wrote_target_info = false;
        if opts.target_info && !opts.store.resource_labels {
            let name = store.target_info_name();
            for &r in touched_resources.iter() {
                let Some(Some(cache)) = resources.get_mut(r as usize) else { continue };
                if cache.newest_ms <= cache.last_ms {
                    continue;
                }
                if cache.encoded.is_none() {
                    cache.encoded = store.target_info_labels(r).map(|labels| {
                        let labels = with_external(labels, &opts.external_labels);
                        let mut out = Vec::new();
                        encode_series_labels(&labels, &name, None, &mut out);
                        out
                    });
                }
                let Some(labels) = &cache.encoded else { continue };
                cache.last_ms = cache.newest_ms;
                let sample = Sample { value: 1.0, timestamp: cache.newest_ms };
                writer.series(labels, &[Counted { sample, points: 0 }]);
                wrote_target_info = true;
            }
        }

        if metadata {
            families.sort_unstable_by_key(|f| f.family);
            families.dedup_by_key(|f| f.family);
            for family in families {
                let kind = match family.kind {
                    PromKind::Counter => MetricType::Counter,
                    PromKind::Gauge => MetricType::Gauge,
                    PromKind::Histogram => MetricType::Histogram,
                };
                writer.metadata(&MetricMetadata {
                    r#type: kind as i32,
                    metric_family_name: family.name.to_string(),
                    help: family.help.to_string(),
                    unit: String::new(),
                });
            }
            if wrote_target_info {
                writer.metadata(&MetricMetadata {
                    r#type: MetricType::Gauge as i32,
                    metric_family_name: store.target_info_name(),
                    help: "Target metadata".to_string(),
                    unit: String::new(),
                });
            }
        }
    }
}

/// Appends a histogram's values: cumulative finite buckets (when known), `+Inf`, `_sum`, `_count`.
fn push_histogram(values: &mut Vec<f64>, buckets: Option<&[u64]>, count: u64, sum: f64) {
    if let Some(buckets) = buckets {
        let finite = &buckets[..buckets.len().saturating_sub(1)];
        let mut cumulative = 0u64;
        for n in finite {
            cumulative += n;
            values.push(cumulative as f64);
        }
    }
    values.push(count as f64);
    values.push(sum);
    values.push(count as f64);
}

/// Records that resource `r` has a sample at `time_ms` in this batch (for its `target_info`).
fn note_resource(
    resources: &mut Vec<Option<ResourceCache>>,
    touched: &mut Vec<u32>,
    store: &Store,
    r: u32,
    time_ms: i64,
    generation: u64,
) {
    let Some(resource) = store.resource(r) else { return };
    let cache = slot(resources, r);
    if !cache.as_ref().is_some_and(|c| Arc::ptr_eq(&c.identity, resource)) {
        *cache = Some(ResourceCache {
            identity: resource.clone(),
            encoded: None,
            last_ms: NEVER,
            generation: 0,
            newest_ms: NEVER,
        });
    }
    let Some(cache) = cache.as_mut() else { return };
    if cache.generation != generation {
        cache.generation = generation;
        cache.newest_ms = time_ms;
        touched.push(r);
    } else {
        cache.newest_ms = cache.newest_ms.max(time_ms);
    }
}

/// Encodes the labels of every wire series of an output: one for numbers; for histograms one
/// per finite bucket, `+Inf`, `_sum` and `_count` (the last one carries the points).
fn build_encoded(cache: &mut OutputCache, name: &str, kind: PromKind, scale: f64, bounds: &Option<Arc<[f64]>>) {
    cache.encoded.clear();
    match (kind, bounds) {
        (PromKind::Histogram, Some(bounds)) => {
            let bucket = format!("{name}_bucket");
            let mut le = String::new();
            for b in bounds.iter() {
                le.clear();
                write_go_float(&mut le, *b * scale, false);
                let mut out = Vec::new();
                encode_series_labels(&cache.labels, &bucket, Some(&le), &mut out);
                cache.encoded.push(out);
            }
            for (series, le) in [(bucket.as_str(), Some("+Inf")), (&format!("{name}_sum"), None)] {
                let mut out = Vec::new();
                encode_series_labels(&cache.labels, series, le, &mut out);
                cache.encoded.push(out);
            }
            let mut out = Vec::new();
            encode_series_labels(&cache.labels, &format!("{name}_count"), None, &mut out);
            cache.encoded.push(out);
        }
        _ => {
            let mut out = Vec::new();
            encode_series_labels(&cache.labels, name, None, &mut out);
            cache.encoded.push(out);
        }
    }
    cache.built_for = Some(bounds.clone());
}
