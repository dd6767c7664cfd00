//! Building blocks of metric batches for the crate's unit tests (integration tests and benches
//! have theirs in `tests/support/fixtures.rs`).

use std::sync::Arc;

use super::{
    Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, NumberPoint, Resource, Scope, SumData,
    Temporality,
};

/// Attributes from string pairs.
pub fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    Attributes::from_pairs(pairs.iter().map(|(k, v)| (*k, *v)))
}

/// The resource of node `node-1` as the agent describes itself.
pub fn node_resource() -> Arc<Resource> {
    Arc::new(Resource {
        attributes: attrs(&[
            ("service.name", "fovea"),
            ("service.instance.id", "node-1"),
            ("host.name", "h1"),
            ("k8s.node.name", "node-1"),
        ]),
    })
}

/// One batch of `metrics` from node `node-1`, scope `fovea/<component>` 0.1.0.
pub fn batch(component: &str, metrics: Vec<Metric>) -> MetricBatch {
    let scope = Arc::new(Scope { name: format!("fovea/{component}").into(), version: "0.1.0".into() });
    MetricBatch::single(node_resource(), scope, metrics)
}

/// A sum metric.
pub fn sum(name: &str, unit: &str, temporality: Temporality, monotonic: bool, points: Vec<NumberPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: "a sum".into(),
        unit: unit.into(),
        data: MetricData::Sum(SumData { points, temporality, monotonic }),
    }
}

/// A histogram metric in seconds.
pub fn histogram(name: &str, temporality: Temporality, points: Vec<HistogramPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: "Handshake time".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData { points, temporality }),
    }
}

/// A histogram point without attributes; its count is the sum of `buckets`.
pub fn hist_point(bounds: &Arc<[f64]>, buckets: &[u64], sum: f64, start: u64, time: u64) -> HistogramPoint {
    HistogramPoint {
        attributes: Attributes::new(),
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: buckets.iter().sum(),
        sum,
        bucket_counts: buckets.to_vec(),
        explicit_bounds: bounds.clone(),
        min: None,
        max: None,
    }
}
