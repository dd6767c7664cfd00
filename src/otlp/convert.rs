//! Metrics: fovea's model <-> `ExportMetricsServiceRequest`.
//!
//! Model -> OTLP keeps everything. OTLP -> model keeps everything the model can hold (gauges,
//! sums, explicit-bucket histograms; string, int, double and bool attributes) and refuses, with a
//! reason, the points it cannot represent (exponential histograms, summaries, points without a
//! value, sums and histograms without a temporality), so a receiver can report a partial success
//! instead of silently changing data. Array, map and bytes attribute values are rendered as
//! strings (JSON, base64) the way otelcol's `AsString` does. Exemplars, scope attributes and schema
//! URLs are not part of the model and are not carried.

use std::sync::Arc;

use base64::Engine as _;
use smol_str::SmolStr;

use crate::model::{
    AttrValue, Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, Number, NumberPoint,
    Resource, ResourceMetrics, Scope, ScopeMetrics, SumData, Temporality,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{self as common, AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::metrics::v1::{self as pm, metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1 as pr;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: a staleness marker, which the model cannot hold.
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Converts a batch to an OTLP export request (nothing is lost).
pub fn metrics_to_proto(batch: &MetricBatch) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: batch
            .resource_metrics
            .iter()
            .map(|rm| pm::ResourceMetrics {
                resource: Some(resource_to_proto(&rm.resource)),
                scope_metrics: rm
                    .scope_metrics
                    .iter()
                    .map(|sm| pm::ScopeMetrics {
                        scope: Some(scope_to_proto(&sm.scope)),
                        metrics: sm.metrics.iter().map(metric_to_proto).collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// An OTLP resource with `resource`'s attributes.
pub fn resource_to_proto(resource: &Resource) -> pr::Resource {
    pr::Resource {
        attributes: attributes_to_proto(&resource.attributes),
        dropped_attributes_count: 0,
        entity_refs: vec![],
    }
}

/// An OTLP instrumentation scope with `scope`'s name and version.
pub fn scope_to_proto(scope: &Scope) -> InstrumentationScope {
    InstrumentationScope {
        name: scope.name.to_string(),
        version: scope.version.to_string(),
        attributes: vec![],
        dropped_attributes_count: 0,
    }
}

fn metric_to_proto(m: &Metric) -> pm::Metric {
    let data = match &m.data {
        MetricData::Gauge(points) => {
            metric::Data::Gauge(pm::Gauge { data_points: points.iter().map(number_point_to_proto).collect() })
        }
        MetricData::Sum(s) => metric::Data::Sum(pm::Sum {
            data_points: s.points.iter().map(number_point_to_proto).collect(),
            aggregation_temporality: temporality_to_proto(s.temporality),
            is_monotonic: s.monotonic,
        }),
        MetricData::Histogram(h) => metric::Data::Histogram(pm::Histogram {
            data_points: h.points.iter().map(histogram_point_to_proto).collect(),
            aggregation_temporality: temporality_to_proto(h.temporality),
        }),
    };
    pm::Metric {
        name: m.name.to_string(),
        description: m.description.to_string(),
        unit: m.unit.to_string(),
        metadata: vec![],
        data: Some(data),
    }
}

fn temporality_to_proto(t: Temporality) -> i32 {
    match t {
        Temporality::Delta => pm::AggregationTemporality::Delta as i32,
        Temporality::Cumulative => pm::AggregationTemporality::Cumulative as i32,
    }
}

fn number_point_to_proto(p: &NumberPoint) -> pm::NumberDataPoint {
    pm::NumberDataPoint {
        attributes: attributes_to_proto(&p.attributes),
        start_time_unix_nano: p.start_time_unix_nano,
        time_unix_nano: p.time_unix_nano,
        exemplars: vec![],
        flags: 0,
        value: Some(match p.value {
            Number::Int(i) => number_data_point::Value::AsInt(i),
            Number::Double(d) => number_data_point::Value::AsDouble(d),
        }),
    }
}

fn histogram_point_to_proto(p: &HistogramPoint) -> pm::HistogramDataPoint {
    pm::HistogramDataPoint {
        attributes: attributes_to_proto(&p.attributes),
        start_time_unix_nano: p.start_time_unix_nano,
        time_unix_nano: p.time_unix_nano,
        count: p.count,
        sum: Some(p.sum),
        bucket_counts: p.bucket_counts.clone(),
        explicit_bounds: p.explicit_bounds.to_vec(),
        exemplars: vec![],
        flags: 0,
        min: p.min,
        max: p.max,
    }
}

/// OTLP key-values for an attribute set, in the set's (key) order.
pub fn attributes_to_proto(attributes: &Attributes) -> Vec<common::KeyValue> {
    attributes.iter().map(|kv| key_value(kv.key.as_str(), attr_value_to_proto(&kv.value))).collect()
}

/// One OTLP key-value.
pub fn key_value(key: &str, value: any_value::Value) -> common::KeyValue {
    common::KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), key_strindex: 0 }
}

fn attr_value_to_proto(v: &AttrValue) -> any_value::Value {
    match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
    }
}

/// The result of converting an OTLP request into the model.
#[derive(Debug, Default)]
pub struct Decoded {
    /// What the model can hold.
    pub batch: MetricBatch,
    /// Data points converted.
    pub accepted: u64,
    /// Data points that could not be represented and were left out.
    pub refused: u64,
    /// Why points were refused: one line per distinct reason, with the first metric name seen.
    pub reasons: Vec<String>,
}

impl Decoded {
    fn refuse(&mut self, points: usize, metric: &str, reason: &str) {
        if points == 0 {
            return;
        }
        self.refused += points as u64;
        if !self.reasons.iter().any(|r| r.starts_with(reason)) {
            self.reasons.push(format!("{reason} (e.g. metric `{metric}`)"));
        }
    }

    /// A one-line summary of the refusals for a partial-success message (empty if none).
    pub fn message(&self) -> String {
        if self.refused == 0 {
            return String::new();
        }
        format!("{} data points not accepted: {}", self.refused, self.reasons.join("; "))
    }
}

/// Converts an OTLP export request into the model, taking the request apart to avoid copies.
pub fn metrics_from_proto(request: ExportMetricsServiceRequest) -> Decoded {
    let mut out = Decoded::default();
    for rm in request.resource_metrics {
        let resource = Arc::new(Resource {
            attributes: rm.resource.map(|r| attributes_from_proto(r.attributes)).unwrap_or_default(),
        });
        let mut scope_metrics = Vec::with_capacity(rm.scope_metrics.len());
        for sm in rm.scope_metrics {
            let scope = Arc::new(
                sm.scope
                    .map(|s| Scope { name: SmolStr::from(s.name), version: SmolStr::from(s.version) })
                    .unwrap_or_default(),
            );
            let metrics: Vec<Metric> = sm.metrics.into_iter().filter_map(|m| metric_from_proto(m, &mut out)).collect();
            if !metrics.is_empty() {
                scope_metrics.push(ScopeMetrics { scope, metrics });
            }
        }
        if !scope_metrics.is_empty() {
            out.batch.resource_metrics.push(ResourceMetrics { resource, scope_metrics });
        }
    }
    out.accepted = out.batch.data_points() as u64;
    out
}

fn metric_from_proto(m: pm::Metric, out: &mut Decoded) -> Option<Metric> {
    let name = m.name;
    let data = match m.data? {
        metric::Data::Gauge(g) => MetricData::Gauge(number_points_from_proto(g.data_points, &name, out)),
        metric::Data::Sum(s) => {
            let Some(temporality) = temporality_from_proto(s.aggregation_temporality) else {
                out.refuse(s.data_points.len(), &name, "sum without a valid aggregation temporality");
                return None;
            };
            MetricData::Sum(SumData {
                points: number_points_from_proto(s.data_points, &name, out),
                temporality,
                monotonic: s.is_monotonic,
            })
        }
        metric::Data::Histogram(h) => {
            let Some(temporality) = temporality_from_proto(h.aggregation_temporality) else {
                out.refuse(h.data_points.len(), &name, "histogram without a valid aggregation temporality");
                return None;
            };
            MetricData::Histogram(HistogramData {
                points: histogram_points_from_proto(h.data_points, &name, out),
                temporality,
            })
        }
        metric::Data::ExponentialHistogram(h) => {
            out.refuse(h.data_points.len(), &name, "exponential histograms are not supported");
            return None;
        }
        metric::Data::Summary(s) => {
            out.refuse(s.data_points.len(), &name, "summaries are not supported");
            return None;
        }
    };
    if data.is_empty() {
        return None;
    }
    Some(Metric {
        name: SmolStr::from(name),
        description: SmolStr::from(m.description),
        unit: SmolStr::from(m.unit),
        data,
    })
}

fn temporality_from_proto(t: i32) -> Option<Temporality> {
    match pm::AggregationTemporality::try_from(t).ok()? {
        pm::AggregationTemporality::Delta => Some(Temporality::Delta),
        pm::AggregationTemporality::Cumulative => Some(Temporality::Cumulative),
        pm::AggregationTemporality::Unspecified => None,
    }
}

fn number_points_from_proto(points: Vec<pm::NumberDataPoint>, name: &str, out: &mut Decoded) -> Vec<NumberPoint> {
    let mut kept = Vec::with_capacity(points.len());
    for p in points {
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            out.refuse(1, name, "points flagged as having no recorded value (staleness markers) are not supported");
            continue;
        }
        let value = match p.value {
            Some(number_data_point::Value::AsInt(i)) => Number::Int(i),
            Some(number_data_point::Value::AsDouble(d)) => Number::Double(d),
            None => {
                out.refuse(1, name, "number points without a value");
                continue;
            }
        };
        kept.push(NumberPoint {
            attributes: attributes_from_proto(p.attributes),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            value,
        });
    }
    kept
}

fn histogram_points_from_proto(
    points: Vec<pm::HistogramDataPoint>,
    name: &str,
    out: &mut Decoded,
) -> Vec<HistogramPoint> {
    let mut kept = Vec::with_capacity(points.len());
    // Points of one metric usually share their bounds: share the allocation too.
    let mut bounds: Arc<[f64]> = Arc::from(Vec::new());
    for p in points {
        if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            out.refuse(1, name, "points flagged as having no recorded value (staleness markers) are not supported");
            continue;
        }
        let bucket_counts = if p.bucket_counts.is_empty() && p.explicit_bounds.is_empty() {
            // No buckets: the same as one bucket (-inf, +inf) holding every observation.
            vec![p.count]
        } else if p.bucket_counts.len() == p.explicit_bounds.len() + 1 {
            p.bucket_counts
        } else {
            out.refuse(1, name, "histogram points whose bucket_counts are not one more than explicit_bounds");
            continue;
        };
        if *bounds != *p.explicit_bounds {
            bounds = Arc::from(p.explicit_bounds);
        }
        kept.push(HistogramPoint {
            attributes: attributes_from_proto(p.attributes),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            count: p.count,
            sum: p.sum.unwrap_or(0.0),
            bucket_counts,
            explicit_bounds: bounds.clone(),
            min: p.min,
            max: p.max,
        });
    }
    kept
}

/// An attribute set from OTLP key-values (a later duplicate key wins).
pub fn attributes_from_proto(kvs: Vec<common::KeyValue>) -> Attributes {
    let mut a = Attributes::new();
    for kv in kvs {
        let value = kv.value.and_then(|v| v.value);
        a.insert(SmolStr::from(kv.key), attr_value_from_proto(value));
    }
    a
}

fn attr_value_from_proto(v: Option<any_value::Value>) -> AttrValue {
    match v {
        None => AttrValue::Str(SmolStr::default()),
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(SmolStr::from(s)),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(any_value::Value::BytesValue(b)) => {
            AttrValue::Str(SmolStr::from(base64::engine::general_purpose::STANDARD.encode(b)))
        }
        Some(other) => AttrValue::Str(SmolStr::from(any_value_json(&Some(other)).to_string())),
    }
}

/// The JSON rendering of an array or map value (otelcol's `AsString`).
fn any_value_json(v: &Option<any_value::Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Some(any_value::Value::BytesValue(b)) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(any_value::Value::ArrayValue(a)) => J::Array(a.values.iter().map(|v| any_value_json(&v.value)).collect()),
        Some(any_value::Value::KvlistValue(kvs)) => J::Object(
            kvs.values
                .iter()
                .map(|kv| (kv.key.clone(), any_value_json(&kv.value.as_ref().and_then(|v| v.value.clone()))))
                .collect(),
        ),
        Some(any_value::Value::StringValueStrindex(i)) => J::from(*i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_maps_and_bytes_become_strings() {
        let arr = any_value::Value::ArrayValue(common::ArrayValue {
            values: vec![
                AnyValue { value: Some(any_value::Value::IntValue(1)) },
                AnyValue { value: Some(any_value::Value::StringValue("a".into())) },
            ],
        });
        assert_eq!(attr_value_from_proto(Some(arr)), AttrValue::Str("[1,\"a\"]".into()));
        let map = any_value::Value::KvlistValue(common::KeyValueList {
            values: vec![key_value("k", any_value::Value::BoolValue(true))],
        });
        assert_eq!(attr_value_from_proto(Some(map)), AttrValue::Str("{\"k\":true}".into()));
        assert_eq!(
            attr_value_from_proto(Some(any_value::Value::BytesValue(vec![1, 2, 3]))),
            AttrValue::Str("AQID".into())
        );
        assert_eq!(attr_value_from_proto(None), AttrValue::Str("".into()));
    }

    #[test]
    fn unsupported_points_are_refused_with_reasons() {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![pm::ResourceMetrics {
                resource: None,
                scope_metrics: vec![pm::ScopeMetrics {
                    scope: None,
                    metrics: vec![
                        pm::Metric {
                            name: "s".into(),
                            data: Some(metric::Data::Summary(pm::Summary {
                                data_points: vec![Default::default(), Default::default()],
                            })),
                            ..Default::default()
                        },
                        pm::Metric {
                            name: "g".into(),
                            data: Some(metric::Data::Gauge(pm::Gauge {
                                data_points: vec![
                                    pm::NumberDataPoint {
                                        value: Some(number_data_point::Value::AsInt(7)),
                                        ..Default::default()
                                    },
                                    pm::NumberDataPoint::default(),
                                ],
                            })),
                            ..Default::default()
                        },
                        pm::Metric {
                            name: "c".into(),
                            data: Some(metric::Data::Sum(pm::Sum {
                                data_points: vec![Default::default()],
                                aggregation_temporality: 0,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let d = metrics_from_proto(req);
        assert_eq!((d.accepted, d.refused), (1, 4));
        assert_eq!(d.reasons.len(), 3);
        assert!(d.message().starts_with("4 data points not accepted: summaries are not supported (e.g. metric `s`)"));
    }
}
