//! The OpenTelemetry metrics data model: resource -> scope -> metric -> data points.

use std::sync::Arc;

use smol_str::SmolStr;

use super::ack::Acks;
use super::attributes::Attributes;
use super::semconv::{Instrument, MetricDef};

/// What produced the data: node, host, service attributes (`k8s.node.name`, `host.name`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Resource {
    /// Resource attributes.
    pub attributes: Attributes,
}

/// The instrumentation scope (the fovea component that made the metrics).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Scope {
    /// Scope name, e.g. `fovea/linuxutil`.
    pub name: SmolStr,
    /// Scope version (the fovea version).
    pub version: SmolStr,
}

/// A batch of metrics from one or more resources.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricBatch {
    /// Metrics grouped by resource.
    pub resource_metrics: Vec<ResourceMetrics>,
    /// Delivery acknowledgements of the requests this batch came from (usually none).
    pub acks: Acks,
    /// The address of the client that sent the data, for receivers that serve requests (`otlp`);
    /// `k8sattributes` associates data with a pod by it (`pod_association: connection`), as
    /// otelcol does with its request context. Lost when batches from different clients merge.
    pub client: Option<std::net::IpAddr>,
}

/// Metrics of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceMetrics {
    /// The resource, shared by every batch of the same producer.
    pub resource: Arc<Resource>,
    /// Metrics grouped by scope.
    pub scope_metrics: Vec<ScopeMetrics>,
}

/// Metrics of one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeMetrics {
    /// The scope, shared by every batch of the same producer.
    pub scope: Arc<Scope>,
    /// The metrics.
    pub metrics: Vec<Metric>,
}

/// One metric with its data points.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// OpenTelemetry name, e.g. `network.forward.packets`.
    pub name: SmolStr,
    /// Human description.
    pub description: SmolStr,
    /// UCUM unit, e.g. `By`, `{packet}`, `s`.
    pub unit: SmolStr,
    /// The points.
    pub data: MetricData,
}

/// Aggregation temporality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Temporality {
    /// Each point covers the time since the previous point.
    Delta,
    /// Each point covers the time since `start_time_unix_nano` (what counters use here).
    Cumulative,
}

/// The points of a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricData {
    /// Last value.
    Gauge(Vec<NumberPoint>),
    /// A sum, monotonic (a counter) or not.
    Sum(SumData),
    /// An explicit-bucket histogram.
    Histogram(HistogramData),
}

/// Sum points and their properties.
#[derive(Debug, Clone, PartialEq)]
pub struct SumData {
    /// The points.
    pub points: Vec<NumberPoint>,
    /// Cumulative or delta.
    pub temporality: Temporality,
    /// True for counters.
    pub monotonic: bool,
}

/// Histogram points and their temporality.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramData {
    /// The points.
    pub points: Vec<HistogramPoint>,
    /// Cumulative or delta.
    pub temporality: Temporality,
}

/// A numeric value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer value.
    Int(i64),
    /// A float value.
    Double(f64),
}

impl Number {
    /// The value as f64.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Double(d) => d,
        }
    }
}

/// A gauge or sum point.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberPoint {
    /// Point attributes.
    pub attributes: Attributes,
    /// Start of the cumulative period (0 for gauges).
    pub start_time_unix_nano: u64,
    /// When the value was observed.
    pub time_unix_nano: u64,
    /// The value.
    pub value: Number,
}

/// A histogram point with explicit bucket bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    /// Point attributes.
    pub attributes: Attributes,
    /// Start of the cumulative period.
    pub start_time_unix_nano: u64,
    /// When the value was observed.
    pub time_unix_nano: u64,
    /// Number of observations.
    pub count: u64,
    /// Sum of observations.
    pub sum: f64,
    /// Counts per bucket; one more than `explicit_bounds`.
    pub bucket_counts: Vec<u64>,
    /// Upper bounds of the buckets, shared between points of one metric.
    pub explicit_bounds: Arc<[f64]>,
    /// Smallest observation, when known.
    pub min: Option<f64>,
    /// Largest observation, when known.
    pub max: Option<f64>,
}

impl MetricData {
    /// Number of data points.
    pub fn len(&self) -> usize {
        match self {
            MetricData::Gauge(p) => p.len(),
            MetricData::Sum(s) => s.points.len(),
            MetricData::Histogram(h) => h.points.len(),
        }
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MetricBatch {
    /// Total number of data points.
    pub fn data_points(&self) -> usize {
        self.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).map(|m| m.data.len()).sum()
    }

    /// Iterates `(resource, scope, metric)`.
    pub fn iter_metrics(&self) -> impl Iterator<Item = (&Arc<Resource>, &Arc<Scope>, &Metric)> {
        self.resource_metrics.iter().flat_map(|r| {
            r.scope_metrics.iter().flat_map(move |s| s.metrics.iter().map(move |m| (&r.resource, &s.scope, m)))
        })
    }

    /// A batch of one resource and scope.
    pub fn single(resource: Arc<Resource>, scope: Arc<Scope>, metrics: Vec<Metric>) -> Self {
        MetricBatch {
            resource_metrics: vec![ResourceMetrics { resource, scope_metrics: vec![ScopeMetrics { scope, metrics }] }],
            acks: Acks::default(),
            client: None,
        }
    }
}

impl Metric {
    /// The metric `def` defines, with `points`: a monotonic cumulative sum for a counter, a gauge
    /// for a gauge. Name, unit and description come from the definition only, so a receiver
    /// cannot emit a metric that differs from what the docs say. Histograms use
    /// [`Metric::histogram_from_def`].
    pub fn from_def(def: &MetricDef, points: Vec<NumberPoint>) -> Self {
        let data = match def.instrument {
            Instrument::Counter => {
                MetricData::Sum(SumData { points, temporality: Temporality::Cumulative, monotonic: true })
            }
            Instrument::Gauge => MetricData::Gauge(points),
            Instrument::Histogram => {
                debug_assert!(false, "{} is a histogram: build it with Metric::histogram_from_def", def.name);
                MetricData::Gauge(points)
            }
        };
        Self::with_def(def, data)
    }

    /// The cumulative histogram `def` defines, with `points`.
    pub fn histogram_from_def(def: &MetricDef, points: Vec<HistogramPoint>) -> Self {
        debug_assert_eq!(def.instrument, Instrument::Histogram, "{} is not a histogram", def.name);
        Self::with_def(def, MetricData::Histogram(HistogramData { points, temporality: Temporality::Cumulative }))
    }

    /// `data` under `def`'s name, unit and description (static strings: nothing is copied).
    fn with_def(def: &MetricDef, data: MetricData) -> Self {
        Metric {
            name: SmolStr::new_static(def.name),
            description: SmolStr::new_static(def.description),
            unit: SmolStr::new_static(def.unit),
            data,
        }
    }

    /// A monotonic cumulative sum (a counter).
    pub fn counter(name: &str, unit: &str, description: &str, points: Vec<NumberPoint>) -> Self {
        Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: MetricData::Sum(SumData { points, temporality: Temporality::Cumulative, monotonic: true }),
        }
    }

    /// A gauge.
    pub fn gauge(name: &str, unit: &str, description: &str, points: Vec<NumberPoint>) -> Self {
        Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: MetricData::Gauge(points),
        }
    }
}

impl NumberPoint {
    /// An integer point.
    pub fn int(attributes: Attributes, start: u64, time: u64, value: i64) -> Self {
        NumberPoint { attributes, start_time_unix_nano: start, time_unix_nano: time, value: Number::Int(value) }
    }

    /// An integer point from an unsigned count, saturating at `i64::MAX` (OTLP integers are
    /// signed; a kernel counter never gets there in practice).
    pub fn count(attributes: Attributes, start: u64, time: u64, value: u64) -> Self {
        Self::int(attributes, start, time, i64::try_from(value).unwrap_or(i64::MAX))
    }

    /// A float point.
    pub fn double(attributes: Attributes, start: u64, time: u64, value: f64) -> Self {
        NumberPoint { attributes, start_time_unix_nano: start, time_unix_nano: time, value: Number::Double(value) }
    }
}

impl MetricBatch {
    /// Moves `other`'s metrics into `self`, merging into an existing resource and scope when
    /// they are the same (by pointer first, then by value).
    pub fn append(&mut self, other: MetricBatch) {
        self.acks.merge(other.acks);
        if self.resource_metrics.is_empty() {
            self.client = other.client;
        } else if self.client != other.client {
            self.client = None;
        }
        for rm in other.resource_metrics {
            let slot = self
                .resource_metrics
                .iter_mut()
                .find(|r| Arc::ptr_eq(&r.resource, &rm.resource) || r.resource == rm.resource);
            match slot {
                None => self.resource_metrics.push(rm),
                Some(into) => {
                    for sm in rm.scope_metrics {
                        match into
                            .scope_metrics
                            .iter_mut()
                            .find(|s| Arc::ptr_eq(&s.scope, &sm.scope) || s.scope == sm.scope)
                        {
                            None => into.scope_metrics.push(sm),
                            Some(s) => s.metrics.extend(sm.metrics),
                        }
                    }
                }
            }
        }
    }

    /// Removes and returns the first `max_points` data points (splitting a metric's points if
    /// needed), keeping the rest in `self`. Both parts carry the acknowledgements.
    pub fn split_front(&mut self, max_points: usize) -> MetricBatch {
        let mut out = MetricBatch { client: self.client, ..MetricBatch::default() };
        if !self.acks.is_empty() {
            self.acks.expect_more(1);
            out.acks = self.acks.clone();
        }
        let mut budget = max_points;
        while budget > 0 && !self.resource_metrics.is_empty() {
            let rm = &mut self.resource_metrics[0];
            let mut taken_scopes = Vec::new();
            while budget > 0 && !rm.scope_metrics.is_empty() {
                let sm = &mut rm.scope_metrics[0];
                let mut taken = Vec::new();
                while budget > 0 && !sm.metrics.is_empty() {
                    let n = sm.metrics[0].data.len();
                    if n <= budget {
                        budget -= n;
                        taken.push(sm.metrics.remove(0));
                    } else {
                        taken.push(sm.metrics[0].split_points_front(budget));
                        budget = 0;
                    }
                }
                taken_scopes.push(ScopeMetrics { scope: sm.scope.clone(), metrics: taken });
                if sm.metrics.is_empty() {
                    rm.scope_metrics.remove(0);
                }
            }
            out.resource_metrics.push(ResourceMetrics { resource: rm.resource.clone(), scope_metrics: taken_scopes });
            if rm.scope_metrics.is_empty() {
                self.resource_metrics.remove(0);
            }
        }
        out
    }
}

impl Metric {
    /// Splits off the first `n` points into a new metric with the same identity.
    fn split_points_front(&mut self, n: usize) -> Metric {
        let data = match &mut self.data {
            MetricData::Gauge(p) => MetricData::Gauge(p.drain(..n).collect()),
            MetricData::Sum(s) => MetricData::Sum(SumData {
                points: s.points.drain(..n).collect(),
                temporality: s.temporality,
                monotonic: s.monotonic,
            }),
            MetricData::Histogram(h) => MetricData::Histogram(HistogramData {
                points: h.points.drain(..n).collect(),
                temporality: h.temporality,
            }),
        };
        Metric { name: self.name.clone(), description: self.description.clone(), unit: self.unit.clone(), data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::semconv;

    fn batch(resource: &Arc<Resource>, scope: &Arc<Scope>, points: usize) -> MetricBatch {
        let pts = (0..points).map(|i| NumberPoint::int(Attributes::new(), 0, 1, i as i64)).collect();
        MetricBatch::single(resource.clone(), scope.clone(), vec![Metric::counter("c", "1", "", pts)])
    }

    #[test]
    fn a_metric_from_its_definition_has_the_definitions_name_unit_and_kind() {
        let def = semconv::NETWORK_FORWARD_BYTES;
        let m = Metric::from_def(&def, vec![NumberPoint::int(Attributes::new(), 1, 2, 3)]);
        assert_eq!((m.name.as_str(), m.unit.as_str(), m.description.as_str()), (def.name, def.unit, def.description));
        assert!(matches!(&m.data, MetricData::Sum(s) if s.monotonic && s.temporality == Temporality::Cumulative));
        let gauge = Metric::from_def(&semconv::NETWORK_NETSTAT, vec![]);
        assert!(matches!(gauge.data, MetricData::Gauge(_)));
        let histogram = MetricDef { instrument: Instrument::Histogram, ..def };
        let h = Metric::histogram_from_def(&histogram, vec![]);
        assert!(matches!(h.data, MetricData::Histogram(HistogramData { temporality: Temporality::Cumulative, .. })));
    }

    #[test]
    fn append_merges_same_resource_and_split_keeps_every_point() {
        let r = Arc::new(Resource::default());
        let s = Arc::new(Scope::default());
        let mut a = batch(&r, &s, 3);
        a.append(batch(&r, &s, 4));
        assert_eq!(a.resource_metrics.len(), 1);
        assert_eq!(a.data_points(), 7);
        let first = a.split_front(5);
        assert_eq!((first.data_points(), a.data_points()), (5, 2));
        let rest = a.split_front(10);
        assert_eq!((rest.data_points(), a.data_points()), (2, 0));
        assert!(a.resource_metrics.is_empty());
    }
}
