//! Metric data with known values, for tests and benchmarks: attribute sets, the resource of a
//! node agent, batches of the shapes fovea's receivers and processors produce, and the start
//! context the engine gives a component run in-process. One place, so a change to the data model
//! or to `StartContext` is one change here.
//!
//! Include it with `#[path = "support/fixtures.rs"] mod fixtures;` (from a benchmark:
//! `#[path = "../tests/support/fixtures.rs"]`); `support/otlp.rs` and `support/remote_write.rs`
//! re-export what their tests use.

#![allow(dead_code)]

use std::sync::Arc;

use fovea::config::ComponentId;
use fovea::model::{
    AckWaiter, Acks, AttrValue, Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData,
    NumberPoint, Resource, ResourceMetrics, Scope, ScopeMetrics, Signal, SumData, Temporality,
};
use fovea::pipeline::StartContext;
use fovea::telemetry::{ComponentKind, ComponentStats, StatsRegistry};

/// Nanoseconds per second.
pub const SEC: u64 = 1_000_000_000;

/// A fixed start time (2023-11-14T22:13:20Z) in nanoseconds since the epoch.
pub const T0: u64 = 1_700_000_000_000_000_000;

/// Counters for a test component.
pub fn stats(kind: ComponentKind, id: &str) -> Arc<ComponentStats> {
    Arc::new(ComponentStats::new(kind, id, None))
}

/// What the engine starts component `id` with: fresh counters and own-metrics registry, the
/// metrics signal, no shared services.
pub fn start_context(kind: ComponentKind, id: &str) -> StartContext {
    StartContext {
        id: ComponentId::parse(id).expect("a valid component id"),
        signals: vec![Signal::Metrics],
        stats: stats(kind, id),
        telemetry: Arc::new(StatsRegistry::default()),
        services: Default::default(),
    }
}

/// Attributes from pairs.
pub fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    Attributes::from_pairs(pairs.iter().map(|(k, v)| (*k, *v)))
}

/// The resource of a node agent called `node`.
pub fn node_resource(node: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: attrs(&[
            ("service.name", "fovea"),
            ("service.instance.id", node),
            ("host.name", node),
            ("k8s.node.name", node),
        ]),
    })
}

/// The scope of the test data.
pub fn scope() -> Arc<Scope> {
    Arc::new(Scope { name: "fovea/test".into(), version: "0.1.0".into() })
}

/// A batch of `metrics` from `node`.
pub fn batch(node: &str, metrics: Vec<Metric>) -> MetricBatch {
    MetricBatch::single(node_resource(node), scope(), metrics)
}

/// A counter with one point.
pub fn counter_point(name: &str, attributes: &[(&str, &str)], start: u64, time: u64, value: i64) -> Metric {
    Metric::counter(name, "{packet}", "Packets", vec![NumberPoint::int(attrs(attributes), start, time, value)])
}

/// A realistic node batch: `series` counter series with 3 attributes each.
pub fn node_batch(series: usize) -> MetricBatch {
    let resource = Arc::new(Resource {
        attributes: Attributes::from_pairs([("k8s.node.name", "node-1"), ("service.name", "fovea")]),
    });
    let scope = Arc::new(Scope { name: "fovea/packetforward".into(), version: "0.1.0".into() });
    let points = (0..series)
        .map(|i| {
            let attrs = Attributes::from_pairs([
                ("network.interface.name", AttrValue::from(format!("veth{:05}", i / 2))),
                ("network.io.direction", AttrValue::from(if i % 2 == 0 { "receive" } else { "transmit" })),
                ("k8s.pod.name", AttrValue::from(format!("web-{}-7d4b9c8f6-x2k{:03}", i / 2, i % 1000))),
            ]);
            NumberPoint::int(attrs, 1_700_000_000_000_000_000, 1_700_000_060_000_000_000, (i as i64) * 1_000 + 7)
        })
        .collect();
    MetricBatch::single(
        resource,
        scope,
        vec![Metric::counter("network.forward.bytes", "By", "Bytes forwarded", points)],
    )
}

/// 10 000 pod-level forward counters (100 source pods x 50 destination pods x 2 directions), the
/// shape the `context` processor produces in remote mode, from `node_resource("node-1")`:
/// `round` changes every value (`1000 * round + 50 * source + destination`), points cover
/// `start..time`.
pub fn pod_batch(round: u64, start: u64, time: u64) -> MetricBatch {
    let scope = Arc::new(Scope { name: "fovea/context".into(), version: "0.1.0".into() });
    let mut points = Vec::with_capacity(10_000);
    for src in 0..100i64 {
        for dst in 0..50i64 {
            for dir in ["receive", "transmit"] {
                let attributes = Attributes::from_pairs([
                    ("network.io.direction", dir.to_string()),
                    ("source.k8s.namespace.name", format!("ns-{}", src % 10)),
                    ("source.k8s.pod.name", format!("client-{src}")),
                    ("source.k8s.workload.kind", "Deployment".to_string()),
                    ("source.k8s.workload.name", format!("client-{}", src / 4)),
                    ("destination.k8s.namespace.name", format!("ns-{}", dst % 10)),
                    ("destination.k8s.pod.name", format!("server-{dst}")),
                ]);
                points.push(NumberPoint::int(attributes, start, time, 1000 * round as i64 + src * 50 + dst));
            }
        }
    }
    let packets = Metric::counter("network.forward.packets", "{packet}", "", points);
    MetricBatch::single(node_resource("node-1"), scope, vec![packets])
}

/// `batch` with delivery acknowledgements of a new request, and the waiter that learns when
/// every exporter took it.
pub fn with_acks(mut batch: MetricBatch) -> (MetricBatch, AckWaiter) {
    let (acks, waiter) = Acks::new_request();
    batch.acks = acks;
    (batch, waiter)
}

/// Attributes of every value type.
pub fn every_attribute_type() -> Attributes {
    let mut a = Attributes::new();
    a.insert("network.interface.name", "eth0");
    a.insert("network.io.direction", "receive");
    a.insert("port", AttrValue::Int(-8080));
    a.insert("ratio", AttrValue::Double(0.25));
    a.insert("ipv6", AttrValue::Bool(true));
    a.insert("empty", "");
    a
}

/// A batch with every metric kind (int and double sums, delta and cumulative, monotonic and
/// not, gauges, histograms with min/max and without), two resources and two scopes.
pub fn every_kind_batch() -> MetricBatch {
    let node = Arc::new(Resource {
        attributes: Attributes::from_pairs([
            ("k8s.node.name", AttrValue::from("node-1")),
            ("host.name", AttrValue::from("node-1.example")),
            ("service.name", AttrValue::from("fovea")),
        ]),
    });
    let other = Arc::new(Resource { attributes: Attributes::from_pairs([("service.name", "other")]) });
    let probes = Arc::new(Scope { name: "fovea/packetforward".into(), version: "0.1.0".into() });
    let util = Arc::new(Scope { name: "fovea/linuxutil".into(), version: "".into() });
    let attrs = every_attribute_type();
    let (start, now) = (1_700_000_000_000_000_000u64, 1_700_000_060_123_456_789u64);
    let bounds: Arc<[f64]> = Arc::from(vec![0.0005, 0.001, 0.01, 0.1, 1.0]);
    let forward = Metric {
        name: "network.forward.packets".into(),
        description: "Packets forwarded".into(),
        unit: "{packet}".into(),
        data: MetricData::Sum(SumData {
            points: vec![
                NumberPoint::int(attrs.clone(), start, now, i64::MAX),
                NumberPoint::int(Attributes::from_pairs([("network.io.direction", "transmit")]), start, now, 0),
            ],
            temporality: Temporality::Cumulative,
            monotonic: true,
        }),
    };
    let delta = Metric {
        name: "network.drop.bytes".into(),
        description: "".into(),
        unit: "By".into(),
        data: MetricData::Sum(SumData {
            points: vec![NumberPoint::double(attrs.clone(), now - 10, now, 1536.5)],
            temporality: Temporality::Delta,
            monotonic: false,
        }),
    };
    let gauge = Metric::gauge(
        "network.tcp.connections",
        "{connection}",
        "Sockets by state",
        vec![
            NumberPoint::int(Attributes::from_pairs([("network.connection.state", "established")]), 0, now, -3),
            NumberPoint::double(Attributes::new(), 0, now, f64::MIN_POSITIVE),
        ],
    );
    let histogram = Metric {
        name: "network.tcp.handshake.duration".into(),
        description: "TCP handshake duration".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData {
            points: vec![
                HistogramPoint {
                    attributes: attrs.clone(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: 10,
                    sum: 0.123,
                    bucket_counts: vec![1, 2, 3, 4, 0, 0],
                    explicit_bounds: bounds.clone(),
                    min: Some(0.0001),
                    max: Some(0.09),
                },
                HistogramPoint {
                    attributes: Attributes::new(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    count: 0,
                    sum: 0.0,
                    bucket_counts: vec![0; 6],
                    explicit_bounds: bounds,
                    min: None,
                    max: None,
                },
            ],
            temporality: Temporality::Cumulative,
        }),
    };
    let delta_hist = Metric {
        name: "network.dns.duration".into(),
        description: "".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData {
            points: vec![HistogramPoint {
                attributes: Attributes::from_pairs([("dns.question.type", "AAAA")]),
                start_time_unix_nano: now - 10,
                time_unix_nano: now,
                count: 2,
                sum: 3.0,
                bucket_counts: vec![2],
                explicit_bounds: Arc::from(Vec::new()),
                min: Some(1.0),
                max: Some(2.0),
            }],
            temporality: Temporality::Delta,
        }),
    };
    MetricBatch {
        resource_metrics: vec![
            ResourceMetrics {
                resource: node,
                scope_metrics: vec![
                    ScopeMetrics { scope: probes, metrics: vec![forward, delta, histogram, delta_hist] },
                    ScopeMetrics { scope: util, metrics: vec![gauge] },
                ],
            },
            ResourceMetrics {
                resource: other,
                scope_metrics: vec![ScopeMetrics {
                    scope: Arc::new(Scope::default()),
                    metrics: vec![Metric::counter(
                        "other.total",
                        "1",
                        "",
                        vec![NumberPoint::int(Attributes::new(), 1, 2, 42)],
                    )],
                }],
            },
        ],
        acks: Default::default(),
        client: None,
    }
}
