//! The series store: the latest value of every series (metric + resource + scope + attributes),
//! already placed in its Prometheus family with its label text rendered, so a scrape only
//! concatenates.
//!
//! Cumulative sums, gauges and cumulative histograms replace the stored value (older points are
//! dropped); delta sums and delta histograms are added to a running total, so they are exposed as
//! cumulative, as otelcol does. Unlike otelcol, a delta whose start time leaves a gap after the
//! previous point is still added: a gap only means nothing was reported in between.
//!
//! Hot path: a point of a known series is hashed, found in a hash table by comparing ids and
//! attributes in place, and updated; nothing is allocated. Allocation happens only when a series
//! is first seen (its attributes, its label text, perhaps its family).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::{DefaultHashBuilder, HashTable};
use smol_str::SmolStr;
use tracing::warn;

use super::naming::{MetricKind, attr_text, label_name, metric_name};
use super::options::{Naming, StoreOptions};
use super::retina;
use crate::model::{
    Attributes, HistogramPoint, Metric, MetricBatch, MetricData, NumberPoint, Resource, Scope, Temporality,
};

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromKind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
}

impl From<MetricKind> for PromKind {
    fn from(k: MetricKind) -> Self {
        match k {
            MetricKind::Counter => PromKind::Counter,
            MetricKind::Gauge | MetricKind::UpDownCounter => PromKind::Gauge,
            MetricKind::Histogram => PromKind::Histogram,
        }
    }
}

/// How the members of one exposed series combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Merge {
    /// The most recent member (OpenTelemetry naming: members coincide only by accident).
    Latest,
    /// Sum of the members (Retina naming drops attributes, e.g. interfaces, and adds up).
    Sum,
}

/// A stored histogram, cumulative.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist {
    /// Observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Per-bucket (not cumulative) counts; one more than `bounds`, or empty.
    pub buckets: Vec<u64>,
    /// Finite upper bounds.
    pub bounds: Arc<[f64]>,
}

/// A stored value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Hist(Hist),
}

/// One OpenTelemetry series.
#[derive(Debug)]
struct Series {
    hash: u64,
    metric: u32,
    resource: u32,
    scope: u32,
    attributes: Attributes,
    start: u64,
    time: u64,
    value: Value,
    updated: Instant,
    /// The exposed series it belongs to; [`NO_OUTPUT`] when its family's type conflicts.
    output: u32,
    /// A second exposed series it also counts in (Retina's dashboard spellings), or [`NO_OUTPUT`].
    alias: u32,
}

const NO_OUTPUT: u32 = u32::MAX;

/// The labels of one exposed series, kept twice in one compact form: rendered once as
/// exposition text (`a="x",b="y"`, values escaped), which identifies the series in its family and
/// is what a scrape copies, and as name/value pairs sorted by name (what remote-write sends),
/// stored unescaped in one buffer so a series costs a few allocations, not two per label.
#[derive(Debug, PartialEq, Eq)]
pub struct Labels {
    text: Box<str>,
    /// Names and values, concatenated in order.
    parts: Box<str>,
    /// End offset in `parts` of each name and each value, alternating.
    ends: Box<[u32]>,
}

impl Labels {
    /// Sorts `labels` by name, keeps the first of each name (they come in precedence order), and
    /// renders the text.
    pub fn new(mut labels: Vec<(String, String)>) -> Self {
        // A stable sort keeps precedence order among equal names.
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|later, first| later.0 == first.0);
        // Exact sizes up front: no regrowth, and the boxes below need no shrinking copy.
        let raw: usize = labels.iter().map(|(n, v)| n.len() + v.len()).sum();
        let escapes =
            labels.iter().map(|(_, v)| v.bytes().filter(|b| matches!(b, b'\\' | b'"' | b'\n')).count()).sum::<usize>();
        let mut text = String::with_capacity(raw + escapes + (labels.len() * 4).saturating_sub(1));
        let mut parts = String::with_capacity(raw);
        let mut ends = Vec::with_capacity(labels.len() * 2);
        for (name, value) in &labels {
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(name);
            text.push_str("=\"");
            escape_label_value(value, &mut text);
            text.push('"');
            for part in [name, value] {
                parts.push_str(part);
                ends.push(parts.len() as u32);
            }
        }
        Labels { text: text.into(), parts: parts.into(), ends: ends.into() }
    }

    /// Name/value pairs, sorted by name, unescaped.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0usize;
        let mut next = move |end: u32| {
            let part = self.parts.get(start..end as usize).unwrap_or_default();
            start = end as usize;
            part
        };
        self.ends.chunks_exact(2).map(move |e| (next(e[0]), next(e[1])))
    }

    /// The exposition text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// [`Labels`] as a key of a family's series, ordered by their text.
#[derive(Debug, Clone)]
struct LabelsKey(Arc<Labels>);

impl PartialEq for LabelsKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.text == other.0.text
    }
}

impl Eq for LabelsKey {}

impl PartialOrd for LabelsKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LabelsKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.text.cmp(&other.0.text)
    }
}

impl Borrow<str> for LabelsKey {
    fn borrow(&self) -> &str {
        &self.0.text
    }
}

/// One exposed (Prometheus) series: its labels (shared with the family's index) and the
/// OpenTelemetry series that feed it.
#[derive(Debug)]
pub(super) struct Output {
    family: u32,
    pub(super) labels: Arc<Labels>,
    pub(super) members: Vec<u32>,
}

/// One exposed metric family.
#[derive(Debug)]
pub(super) struct Family {
    pub(super) name: String,
    pub(super) help: String,
    pub(super) kind: PromKind,
    pub(super) merge: Merge,
    /// Exposed values are the stored ones times this (a histogram's bounds and sum too).
    pub(super) scale: f64,
    /// Labels -> output, in label text order for a stable exposition.
    series: BTreeMap<LabelsKey, u32>,
    conflict_reported: bool,
}

/// How a new family is made: its type, how members combine, the scale of its values.
#[derive(Debug, Clone, Copy)]
struct Shape {
    kind: PromKind,
    merge: Merge,
    scale: f64,
}

/// What an exposed series is, as a pusher needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct Exposed<'a> {
    /// The family's id (stable while the family has series).
    pub family: u32,
    /// The family (metric) name.
    pub name: &'a str,
    /// The family's help text.
    pub help: &'a str,
    /// The family's type.
    pub kind: PromKind,
    /// The series' labels; the same `Arc` as long as the series lives (a new one after expiry).
    pub labels: &'a Arc<Labels>,
    /// Exposed values are the stored ones times this (a histogram's bounds and sum too): 1
    /// except where Retina has a unit of its own.
    pub scale: f64,
}

#[derive(Debug)]
struct MetricEntry {
    hash: u64,
    name: SmolStr,
    unit: SmolStr,
    kind: MetricKind,
    description: SmolStr,
    /// The OpenTelemetry-translated Prometheus name (empty: nothing valid remains).
    otel_name: String,
    users: u32,
}

#[derive(Debug)]
struct ResourceEntry {
    hash: u64,
    resource: Arc<Resource>,
    job: Option<String>,
    instance: Option<String>,
    users: u32,
}

#[derive(Debug)]
struct ScopeEntry {
    hash: u64,
    scope: Arc<Scope>,
    users: u32,
}

/// A vector with reusable holes; ids stay stable while an item lives.
#[derive(Debug)]
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { items: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    fn insert(&mut self, item: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(item);
                i
            }
            None => {
                self.items.push(Some(item));
                (self.items.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, i: u32) -> Option<T> {
        let item = self.items.get_mut(i as usize)?.take();
        if item.is_some() {
            self.free.push(i);
        }
        item
    }

    fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)?.as_ref()
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)?.as_mut()
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.items.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (i as u32, t)))
    }

    fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

/// Points folded into the store by one call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    /// Points stored (new, replacing, or added to a running total).
    pub accepted: u64,
    /// Points refused: older than the stored value, malformed histograms, unusable names.
    pub dropped: u64,
}

/// One point taken into the store that changed an exposed series: reported, right after the
/// point is folded in, to the observer of [`Store::fold_observed`] (remote-write sends every
/// such change, where a scrape only sees the latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// The exposed series that changed.
    pub output: u32,
    /// The resource the point came from.
    pub resource: u32,
}

/// Called with the store as it is right after each [`Touch`].
pub type Observer<'a> = dyn FnMut(&Store, Touch) + 'a;

/// What identifies an OpenTelemetry series, borrowed from the incoming point.
struct SeriesKey<'a> {
    metric: u32,
    resource: u32,
    scope: u32,
    attributes: &'a Attributes,
}

/// The latest value of every series, ready to encode.
#[derive(Debug)]
pub struct Store {
    opts: StoreOptions,
    hasher: DefaultHashBuilder,
    metrics: Slab<MetricEntry>,
    metric_index: HashTable<u32>,
    resources: Slab<ResourceEntry>,
    resource_index: HashTable<u32>,
    scopes: Slab<ScopeEntry>,
    scope_index: HashTable<u32>,
    series: Slab<Series>,
    series_index: HashTable<u32>,
    outputs: Slab<Output>,
    families: Slab<Family>,
    /// Family name -> family, sorted for the exposition.
    family_index: BTreeMap<String, u32>,
}

/// What the exposition walks: families in name order, each family's series in label order.
impl Store {
    pub(super) fn families_in_order(&self) -> impl Iterator<Item = &Family> {
        self.family_index.values().filter_map(|&f| self.families.get(f))
    }

    pub(super) fn outputs_of<'a>(&'a self, family: &'a Family) -> impl Iterator<Item = &'a Output> {
        family.series.values().filter_map(|&o| self.outputs.get(o))
    }

    pub(super) fn resource_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.resources.iter().map(|(i, _)| i)
    }
}

fn metric_kind(data: &MetricData) -> MetricKind {
    match data {
        MetricData::Gauge(_) => MetricKind::Gauge,
        MetricData::Sum(s) if s.monotonic => MetricKind::Counter,
        MetricData::Sum(_) => MetricKind::UpDownCounter,
        MetricData::Histogram(_) => MetricKind::Histogram,
    }
}

impl Store {
    /// An empty store.
    pub fn new(opts: StoreOptions) -> Self {
        Store {
            opts,
            hasher: DefaultHashBuilder::default(),
            metrics: Slab::default(),
            metric_index: HashTable::new(),
            resources: Slab::default(),
            resource_index: HashTable::new(),
            scopes: Slab::default(),
            scope_index: HashTable::new(),
            series: Slab::default(),
            series_index: HashTable::new(),
            outputs: Slab::default(),
            families: Slab::default(),
            family_index: BTreeMap::new(),
        }
    }

    /// The options the store was made with.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Number of OpenTelemetry series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.len() == 0
    }

    /// Exposed series `output` (from a [`Touch`]), while it lives.
    pub fn exposed(&self, output: u32) -> Option<Exposed<'_>> {
        let o = self.outputs.get(output)?;
        let f = self.families.get(o.family)?;
        Some(Exposed {
            family: o.family,
            name: &f.name,
            help: &f.help,
            kind: f.kind,
            labels: &o.labels,
            scale: f.scale,
        })
    }

    /// Exposed series `output` and its value now (its members combined) with the time of its
    /// newest point (ns); `None` when it is gone or has no member left.
    pub fn current<'a>(&'a self, output: u32, scratch: &mut Scratch) -> Option<(Exposed<'a>, Merged<'a>, u64)> {
        let o = self.outputs.get(output)?;
        let f = self.families.get(o.family)?;
        let (merged, time) = self.merge(f.merge, &o.members, scratch)?;
        let exposed =
            Exposed { family: o.family, name: &f.name, help: &f.help, kind: f.kind, labels: &o.labels, scale: f.scale };
        Some((exposed, merged, time))
    }

    /// True while exposed series `output` is the one these `labels` were handed out for (ids
    /// are reused after a series expires).
    pub fn is_live(&self, output: u32, labels: &Arc<Labels>) -> bool {
        self.outputs.get(output).is_some_and(|o| Arc::ptr_eq(&o.labels, labels))
    }

    /// The resource interned as `resource` (from a [`Touch`]), while a series uses it.
    pub fn resource(&self, resource: u32) -> Option<&Arc<Resource>> {
        self.resources.get(resource).map(|r| &r.resource)
    }

    /// Folds every point of a batch in; `now` marks the series as updated (for expiration).
    pub fn fold(&mut self, batch: &MetricBatch, now: Instant) -> Folded {
        self.fold_observed(batch, now, &mut |_, _| {})
    }

    /// [`Store::fold`], calling `observe` after every accepted point that feeds an exposed series.
    pub fn fold_observed(&mut self, batch: &MetricBatch, now: Instant, observe: &mut Observer<'_>) -> Folded {
        let mut folded = Folded::default();
        for rm in &batch.resource_metrics {
            let resource = self.intern_resource(&rm.resource);
            for sm in &rm.scope_metrics {
                let scope = self.intern_scope(&sm.scope);
                self.fold_metrics(resource, scope, &sm.metrics, now, &mut folded, observe);
            }
        }
        folded
    }

    /// Folds metrics that have no resource or scope (the agent's own telemetry).
    pub fn fold_unattributed(&mut self, metrics: &[Metric], now: Instant) -> Folded {
        let mut folded = Folded::default();
        let resource = self.intern_resource(&Arc::new(Resource::default()));
        let scope = self.intern_scope(&Arc::new(Scope::default()));
        self.fold_metrics(resource, scope, metrics, now, &mut folded, &mut |_, _| {});
        folded
    }

    fn fold_metrics(
        &mut self,
        resource: u32,
        scope: u32,
        metrics: &[Metric],
        now: Instant,
        folded: &mut Folded,
        observe: &mut Observer<'_>,
    ) {
        for m in metrics {
            let metric = self.intern_metric(m);
            let usable =
                self.opts.naming == Naming::Retina || self.metrics.get(metric).is_some_and(|e| !e.otel_name.is_empty());
            if !usable {
                folded.dropped += m.data.len() as u64;
                continue;
            }
            let mut ok = |store: &Store, series: Option<u32>, f: &mut Folded| match series {
                None => f.dropped += 1,
                Some(i) => {
                    f.accepted += 1;
                    if let Some(s) = store.series.get(i) {
                        for output in [s.output, s.alias] {
                            if output != NO_OUTPUT {
                                observe(store, Touch { output, resource });
                            }
                        }
                    }
                }
            };
            match &m.data {
                MetricData::Gauge(points) => {
                    for p in points {
                        let key = SeriesKey { metric, resource, scope, attributes: &p.attributes };
                        let series = self.fold_number(key, p, Temporality::Cumulative, now);
                        ok(self, series, folded);
                    }
                }
                MetricData::Sum(sum) => {
                    for p in &sum.points {
                        let key = SeriesKey { metric, resource, scope, attributes: &p.attributes };
                        let series = self.fold_number(key, p, sum.temporality, now);
                        ok(self, series, folded);
                    }
                }
                MetricData::Histogram(h) => {
                    for p in &h.points {
                        let key = SeriesKey { metric, resource, scope, attributes: &p.attributes };
                        let series = self.fold_histogram(key, p, h.temporality, now);
                        ok(self, series, folded);
                    }
                }
            }
        }
    }

    fn series_hash(&self, key: &SeriesKey<'_>) -> u64 {
        self.hasher.hash_one((key.metric, key.resource, key.scope, key.attributes))
    }

    fn find_series(&self, hash: u64, key: &SeriesKey<'_>) -> Option<u32> {
        let series = &self.series;
        self.series_index
            .find(hash, |&i| {
                series.get(i).is_some_and(|s| {
                    s.metric == key.metric
                        && s.resource == key.resource
                        && s.scope == key.scope
                        && s.attributes == *key.attributes
                })
            })
            .copied()
    }

    /// Folds one number point; the series it went into, or `None` when it was refused.
    fn fold_number(
        &mut self,
        key: SeriesKey<'_>,
        p: &NumberPoint,
        temporality: Temporality,
        now: Instant,
    ) -> Option<u32> {
        let v = p.value.as_f64();
        let hash = self.series_hash(&key);
        let Some(i) = self.find_series(hash, &key) else {
            return Some(self.create_series(
                hash,
                key,
                p.start_time_unix_nano,
                p.time_unix_nano,
                Value::Number(v),
                now,
            ));
        };
        let s = self.series.get_mut(i)?;
        match (temporality, &mut s.value) {
            (Temporality::Delta, Value::Number(total)) => {
                *total += v;
                s.time = s.time.max(p.time_unix_nano);
            }
            _ => {
                if p.time_unix_nano < s.time {
                    return None;
                }
                s.value = Value::Number(v);
                s.start = p.start_time_unix_nano;
                s.time = p.time_unix_nano;
            }
        }
        s.updated = now;
        Some(i)
    }

    /// Folds one histogram point; the series it went into, or `None` when it was refused.
    fn fold_histogram(
        &mut self,
        key: SeriesKey<'_>,
        p: &HistogramPoint,
        temporality: Temporality,
        now: Instant,
    ) -> Option<u32> {
        if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            return None;
        }
        let hash = self.series_hash(&key);
        let Some(i) = self.find_series(hash, &key) else {
            let h = Hist {
                count: p.count,
                sum: p.sum,
                buckets: p.bucket_counts.clone(),
                bounds: p.explicit_bounds.clone(),
            };
            return Some(self.create_series(hash, key, p.start_time_unix_nano, p.time_unix_nano, Value::Hist(h), now));
        };
        let s = self.series.get_mut(i)?;
        match (temporality, &mut s.value) {
            (Temporality::Delta, Value::Hist(h))
                if h.buckets.len() == p.bucket_counts.len()
                    && (Arc::ptr_eq(&h.bounds, &p.explicit_bounds) || h.bounds == p.explicit_bounds) =>
            {
                h.count += p.count;
                h.sum += p.sum;
                for (total, n) in h.buckets.iter_mut().zip(&p.bucket_counts) {
                    *total += n;
                }
                s.time = s.time.max(p.time_unix_nano);
            }
            (temporality, value) => {
                if temporality == Temporality::Cumulative && p.time_unix_nano < s.time {
                    return None;
                }
                // Cumulative, or a delta whose buckets changed (otelcol then restarts from it).
                match value {
                    Value::Hist(h) => {
                        h.count = p.count;
                        h.sum = p.sum;
                        h.buckets.clear();
                        h.buckets.extend_from_slice(&p.bucket_counts);
                        h.bounds = p.explicit_bounds.clone();
                    }
                    Value::Number(_) => {
                        *value = Value::Hist(Hist {
                            count: p.count,
                            sum: p.sum,
                            buckets: p.bucket_counts.clone(),
                            bounds: p.explicit_bounds.clone(),
                        });
                    }
                }
                s.start = p.start_time_unix_nano;
                s.time = p.time_unix_nano;
            }
        }
        s.updated = now;
        Some(i)
    }

    fn intern_metric(&mut self, m: &Metric) -> u32 {
        let kind = metric_kind(&m.data);
        let hash = self.hasher.hash_one((m.name.as_str(), m.unit.as_str(), kind));
        let metrics = &self.metrics;
        if let Some(&i) = self
            .metric_index
            .find(hash, |&i| metrics.get(i).is_some_and(|e| e.kind == kind && e.name == m.name && e.unit == m.unit))
        {
            if let Some(e) = self.metrics.get_mut(i)
                && e.description != m.description
                && !m.description.is_empty()
            {
                e.description = m.description.clone();
            }
            return i;
        }
        let otel_name = metric_name(&m.name, &m.unit, kind, &self.opts.namespace, self.opts.add_suffixes);
        if otel_name.is_empty() {
            warn!(metric = %m.name, "metric name has no character Prometheus accepts; its points are dropped");
        }
        let entry = MetricEntry {
            hash,
            name: m.name.clone(),
            unit: m.unit.clone(),
            kind,
            description: m.description.clone(),
            otel_name,
            users: 0,
        };
        let i = self.metrics.insert(entry);
        let metrics = &self.metrics;
        self.metric_index.insert_unique(hash, i, |&j| metrics.get(j).map_or(0, |e| e.hash));
        i
    }

    fn intern_resource(&mut self, r: &Arc<Resource>) -> u32 {
        let hash = self.hasher.hash_one(&r.attributes);
        let resources = &self.resources;
        if let Some(&i) = self.resource_index.find(hash, |&i| {
            resources.get(i).is_some_and(|e| Arc::ptr_eq(&e.resource, r) || e.resource.attributes == r.attributes)
        }) {
            return i;
        }
        let attrs = &r.attributes;
        let job = attrs.get_str("service.name").map(|name| match attrs.get_str("service.namespace") {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name.to_string(),
        });
        let instance = attrs.get("service.instance.id").map(|v| {
            let mut s = String::new();
            attr_text(v, &mut s);
            s
        });
        let i = self.resources.insert(ResourceEntry { hash, resource: r.clone(), job, instance, users: 0 });
        let resources = &self.resources;
        self.resource_index.insert_unique(hash, i, |&j| resources.get(j).map_or(0, |e| e.hash));
        i
    }

    fn intern_scope(&mut self, s: &Arc<Scope>) -> u32 {
        let hash = self.hasher.hash_one(&**s);
        let scopes = &self.scopes;
        if let Some(&i) =
            self.scope_index.find(hash, |&i| scopes.get(i).is_some_and(|e| Arc::ptr_eq(&e.scope, s) || *e.scope == **s))
        {
            return i;
        }
        let i = self.scopes.insert(ScopeEntry { hash, scope: s.clone(), users: 0 });
        let scopes = &self.scopes;
        self.scope_index.insert_unique(hash, i, |&j| scopes.get(j).map_or(0, |e| e.hash));
        i
    }

    fn create_series(
        &mut self,
        hash: u64,
        key: SeriesKey<'_>,
        start: u64,
        time: u64,
        value: Value,
        now: Instant,
    ) -> u32 {
        let (output, alias) = self.place(&key);
        let series = Series {
            hash,
            metric: key.metric,
            resource: key.resource,
            scope: key.scope,
            attributes: key.attributes.clone(),
            start,
            time,
            value,
            updated: now,
            output,
            alias,
        };
        if let Some(e) = self.metrics.get_mut(key.metric) {
            e.users += 1;
        }
        if let Some(e) = self.resources.get_mut(key.resource) {
            e.users += 1;
        }
        if let Some(e) = self.scopes.get_mut(key.scope) {
            e.users += 1;
        }
        let i = self.series.insert(series);
        for output in [output, alias] {
            if let Some(o) = self.outputs.get_mut(output) {
                o.members.push(i);
            }
        }
        let all = &self.series;
        self.series_index.insert_unique(hash, i, |&j| all.get(j).map_or(0, |s| s.hash));
        i
    }

    /// Decides the family and labels of a new series and returns its output and its alias
    /// output ([`NO_OUTPUT`] when it has none).
    fn place(&mut self, key: &SeriesKey<'_>) -> (u32, u32) {
        let Some(metric) = self.metrics.get(key.metric) else { return (NO_OUTPUT, NO_OUTPUT) };
        let retina = match self.opts.naming {
            Naming::Retina => retina::place(&metric.name, key.attributes),
            Naming::Otel => None,
        };
        match retina {
            Some(p) => {
                let alias = match p.alias {
                    Some(labels) => self.output_with(key, p.name.to_string(), Merge::Sum, p.scale, labels),
                    None => NO_OUTPUT,
                };
                (self.output_with(key, p.name.to_string(), Merge::Sum, p.scale, p.labels), alias)
            }
            None => {
                if metric.otel_name.is_empty() {
                    return (NO_OUTPUT, NO_OUTPUT);
                }
                let name = metric.otel_name.clone();
                (self.output_with(key, name, Merge::Latest, 1.0, attribute_labels(key.attributes)), NO_OUTPUT)
            }
        }
    }

    /// The output of family `name` with the point's `labels` and those the options add.
    fn output_with(
        &mut self,
        key: &SeriesKey<'_>,
        name: String,
        merge: Merge,
        scale: f64,
        mut labels: Vec<(String, String)>,
    ) -> u32 {
        let Some(metric) = self.metrics.get(key.metric) else { return NO_OUTPUT };
        let kind = PromKind::from(metric.kind);
        let help = metric.description.to_string();
        // Labels in precedence order (a later label whose name is already present is skipped):
        // job and instance, so `target_info` joins hold; the point's attributes; the resource's
        // (when copied); the scope; the constant labels.
        if (merge == Merge::Latest || self.opts.retina_target_labels)
            && let Some(r) = self.resources.get(key.resource)
        {
            let target = [("instance", &r.instance), ("job", &r.job)];
            for (label, value) in target {
                if let Some(value) = value {
                    labels.insert(0, (label.to_string(), value.clone()));
                }
            }
        }
        if self.opts.resource_labels
            && let Some(r) = self.resources.get(key.resource)
        {
            labels.extend(attribute_labels(&r.resource.attributes));
        }
        if merge == Merge::Latest
            && self.opts.scope_labels
            && let Some(s) = self.scopes.get(key.scope)
        {
            for (label, value) in [("otel_scope_name", &s.scope.name), ("otel_scope_version", &s.scope.version)] {
                if !value.is_empty() {
                    labels.push((label.to_string(), value.to_string()));
                }
            }
        }
        labels.extend(self.opts.const_labels.iter().cloned());
        self.output_for(name, help, Shape { kind, merge, scale }, Labels::new(labels))
    }

    fn output_for(&mut self, name: String, help: String, shape: Shape, labels: Labels) -> u32 {
        let Shape { kind, merge, scale } = shape;
        let family = match self.family_index.get(&name) {
            Some(&f) => f,
            None => {
                let f = self.families.insert(Family {
                    name: name.clone(),
                    help: String::new(),
                    kind,
                    merge,
                    scale,
                    series: BTreeMap::new(),
                    conflict_reported: false,
                });
                self.family_index.insert(name, f);
                f
            }
        };
        let Some(fam) = self.families.get_mut(family) else { return NO_OUTPUT };
        if fam.kind != kind {
            if !fam.conflict_reported {
                fam.conflict_reported = true;
                warn!(
                    family = %fam.name,
                    existing = ?fam.kind,
                    dropped = ?kind,
                    "two metrics translate to the same Prometheus name with different types; the later one is not exposed"
                );
            }
            return NO_OUTPUT;
        }
        if fam.help.is_empty() {
            fam.help = help;
        }
        if let Some(&o) = fam.series.get(labels.text()) {
            return o;
        }
        let labels = Arc::new(labels);
        let o = self.outputs.insert(Output { family, labels: labels.clone(), members: Vec::new() });
        if let Some(fam) = self.families.get_mut(family) {
            fam.series.insert(LabelsKey(labels), o);
        }
        o
    }

    /// The bucket bounds of the first histogram member (the bounds of a summed histogram).
    fn first_bounds(&self, members: &[u32]) -> std::sync::Arc<[f64]> {
        members
            .iter()
            .filter_map(|&m| match &self.series.get(m)?.value {
                Value::Hist(h) => Some(h.bounds.clone()),
                Value::Number(_) => None,
            })
            .next()
            .unwrap_or_else(|| std::sync::Arc::from(Vec::new()))
    }

    /// Combines the members of one exposed series; `None` when none is left.
    pub(super) fn merge<'a>(&'a self, merge: Merge, members: &[u32], s: &mut Scratch) -> Option<(Merged<'a>, u64)> {
        if members.len() == 1 || merge == Merge::Latest {
            let latest = members.iter().filter_map(|&m| self.series.get(m)).max_by_key(|x| x.time)?;
            let v = match &latest.value {
                Value::Number(v) => Merged::Number(*v),
                Value::Hist(h) => Merged::Hist(h),
            };
            return Some((v, latest.time));
        }
        let mut time = 0;
        let mut total = 0.0;
        let mut hist_bounds: Option<&[f64]> = None;
        for &m in members {
            let Some(x) = self.series.get(m) else { continue };
            time = time.max(x.time);
            match &x.value {
                Value::Number(v) => total += v,
                Value::Hist(h) => match hist_bounds {
                    None => {
                        hist_bounds = Some(&h.bounds);
                        s.buckets.clear();
                        s.buckets.extend_from_slice(&h.buckets);
                        s.count = h.count;
                        s.sum = h.sum;
                    }
                    // Histograms with other bounds cannot be added up; they are left out.
                    Some(b) if *b == *h.bounds && s.buckets.len() == h.buckets.len() => {
                        for (t, n) in s.buckets.iter_mut().zip(&h.buckets) {
                            *t += n;
                        }
                        s.count += h.count;
                        s.sum += h.sum;
                    }
                    Some(_) => {}
                },
            }
        }
        let merged = match hist_bounds {
            Some(_) => Merged::SummedHist(self.first_bounds(members)),
            None => Merged::Number(total),
        };
        Some((merged, time))
    }

    /// The labels of the `target_info` series of resource `i` (otelcol's rules: the resource's
    /// attributes except `service.name`, `service.namespace` and `service.instance.id`, plus
    /// `job` and `instance`); `None` when the resource has neither `job` nor `instance`, or when
    /// no series uses it.
    pub fn target_info_labels(&self, i: u32) -> Option<Vec<(String, String)>> {
        let r = self.resources.get(i)?;
        if r.users == 0 || (r.job.is_none() && r.instance.is_none()) {
            return None;
        }
        let mut attributes = r.resource.attributes.clone();
        for key in ["service.name", "service.namespace", "service.instance.id"] {
            attributes.remove(key);
        }
        let mut labels = attribute_labels(&attributes);
        if let Some(job) = &r.job {
            labels.insert(0, ("job".to_string(), job.clone()));
        }
        if let Some(instance) = &r.instance {
            labels.insert(0, ("instance".to_string(), instance.clone()));
        }
        Some(labels)
    }

    /// `target_info`, prefixed with the namespace when one is set.
    pub fn target_info_name(&self) -> String {
        let namespace = metric_name(&self.opts.namespace, "", MetricKind::Gauge, "", false);
        if namespace.is_empty() { "target_info".to_string() } else { format!("{namespace}_target_info") }
    }

    /// Removes series not updated within the expiration, and interned entries nobody uses.
    /// Returns the number of series removed.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        if let Some(ttl) = self.opts.expiration {
            let stale: Vec<u32> = self
                .series
                .iter()
                .filter(|(_, s)| now.saturating_duration_since(s.updated) > ttl)
                .map(|(i, _)| i)
                .collect();
            removed = stale.len();
            for i in stale {
                self.remove_series(i);
            }
        }
        self.release_unused();
        removed
    }

    fn remove_series(&mut self, i: u32) {
        let Some(s) = self.series.remove(i) else { return };
        if let Ok(entry) = self.series_index.find_entry(s.hash, |&j| j == i) {
            entry.remove();
        }
        if let Some(e) = self.metrics.get_mut(s.metric) {
            e.users -= 1;
        }
        if let Some(e) = self.resources.get_mut(s.resource) {
            e.users -= 1;
        }
        if let Some(e) = self.scopes.get_mut(s.scope) {
            e.users -= 1;
        }
        self.detach(i, s.output);
        self.detach(i, s.alias);
    }

    /// Takes series `i` out of `output`, and the output out of its family when it was the last.
    fn detach(&mut self, i: u32, output: u32) {
        let Some(o) = self.outputs.get_mut(output) else { return };
        o.members.retain(|&m| m != i);
        if !o.members.is_empty() {
            return;
        }
        let family = o.family;
        let Some(o) = self.outputs.remove(output) else { return };
        let Some(f) = self.families.get_mut(family) else { return };
        f.series.remove(o.labels.text());
        if f.series.is_empty() {
            self.family_index.remove(&f.name);
            self.families.remove(family);
        }
    }

    fn release_unused(&mut self) {
        let unused: Vec<(u32, u64)> =
            self.metrics.iter().filter(|(_, e)| e.users == 0).map(|(i, e)| (i, e.hash)).collect();
        for (i, hash) in unused {
            if let Ok(entry) = self.metric_index.find_entry(hash, |&j| j == i) {
                entry.remove();
            }
            self.metrics.remove(i);
        }
        let unused: Vec<(u32, u64)> =
            self.resources.iter().filter(|(_, e)| e.users == 0).map(|(i, e)| (i, e.hash)).collect();
        for (i, hash) in unused {
            if let Ok(entry) = self.resource_index.find_entry(hash, |&j| j == i) {
                entry.remove();
            }
            self.resources.remove(i);
        }
        let unused: Vec<(u32, u64)> =
            self.scopes.iter().filter(|(_, e)| e.users == 0).map(|(i, e)| (i, e.hash)).collect();
        for (i, hash) in unused {
            if let Ok(entry) = self.scope_index.find_entry(hash, |&j| j == i) {
                entry.remove();
            }
            self.scopes.remove(i);
        }
    }
}

/// The merged value of an exposed series, borrowed where it has a single source.
pub enum Merged<'a> {
    /// A number.
    Number(f64),
    /// A single histogram.
    Hist(&'a Hist),
    /// Histograms added up into the [`Scratch`] (`buckets`, `count`, `sum`), with these bounds.
    SummedHist(Arc<[f64]>),
}

/// Scratch space reused across series while encoding.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Summed per-bucket counts.
    pub buckets: Vec<u64>,
    /// Summed count.
    pub count: u64,
    /// Summed sum.
    pub sum: f64,
    /// Text of an `le` value.
    pub le: String,
}

/// Attributes as labels: names translated, values of names that coincide after translation
/// joined with `;` in attribute-key order (a repeated value is not repeated).
pub(super) fn attribute_labels(attributes: &Attributes) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = Vec::with_capacity(attributes.len() + 4);
    for kv in attributes {
        let name = label_name(&kv.key);
        if name.is_empty() {
            continue;
        }
        let mut value = String::new();
        attr_text(&kv.value, &mut value);
        match labels.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                if !existing.split(';').any(|v| v == value) {
                    existing.push(';');
                    existing.push_str(&value);
                }
            }
            None => labels.push((name, value)),
        }
    }
    labels
}

/// Escapes a label value: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
