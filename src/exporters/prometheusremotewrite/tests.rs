//! Unit tests: the exact requests (decoded with prost), the same series as the scrape exporter,
//! ordering per series, delta accumulation, splitting, snappy, and the transport's
//! classification against a small HTTP server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;

use super::proto::{Label, MetricType, Sample, TimeSeries, WriteRequest};
use super::*;
use crate::delivery::{Request, SendError, Sent, Transport};
use crate::model::fixtures::{self, attrs};
use crate::model::{Attributes, HistogramPoint, Metric, MetricBatch, NumberPoint, Payload, Temporality};
use crate::prometheus::{Format, Naming, Store, StoreOptions};

const T0: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

fn batch(metrics: Vec<Metric>) -> MetricBatch {
    fixtures::batch("linuxutil", metrics)
}

fn sum(name: &str, unit: &str, temporality: Temporality, points: Vec<NumberPoint>) -> Metric {
    fixtures::sum(name, unit, temporality, true, points)
}

/// `(attributes, time, value)`.
type Point<'a> = (&'a [(&'a str, &'a str)], u64, i64);

fn counter(name: &str, points: &[Point<'_>]) -> Metric {
    let points = points.iter().map(|(a, t, v)| NumberPoint::int(attrs(a), T0 - 100 * SEC, *t, *v)).collect();
    sum(name, "{packet}", Temporality::Cumulative, points)
}

fn histogram(temporality: Temporality, points: Vec<HistogramPoint>) -> Metric {
    fixtures::histogram("network.tcp.handshake.duration", temporality, points)
}

fn hist_point(bounds: &Arc<[f64]>, buckets: &[u64], sum: f64, time: u64) -> HistogramPoint {
    fixtures::hist_point(bounds, buckets, sum, T0 - 100 * SEC, time)
}

fn config(extra: impl FnOnce(&mut RemoteWriteConfig)) -> RemoteWriteConfig {
    let mut c = RemoteWriteConfig::with_endpoint("http://127.0.0.1:9/api/v1/write");
    extra(&mut c);
    c
}

/// Encodes and decodes every request.
fn encode(encoder: &RemoteWriteEncoder, b: MetricBatch) -> (Vec<Request>, Vec<WriteRequest>, EncodeOutcome) {
    let mut out = Vec::new();
    let outcome = encoder.encode_counted(&Payload::from(b), &mut out).expect("encodes");
    let decoded = out.iter().map(|r| WriteRequest::decode(r.body.as_ref()).expect("valid protobuf")).collect();
    (out, decoded, outcome)
}

fn labels_of(ts: &TimeSeries) -> BTreeMap<String, String> {
    ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

/// The canonical text of a series: `name{k="v",...}` with labels sorted.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let text: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", text.join(","))
}

/// Series as `name{k="v",...}` (labels sorted, `__name__` outside) -> samples.
fn series_map(requests: &[WriteRequest]) -> BTreeMap<String, Vec<(i64, f64)>> {
    series_map_without(requests, &[])
}

/// [`series_map`] with the labels named in `drop` left out.
fn series_map_without(requests: &[WriteRequest], drop: &[&str]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for r in requests {
        for ts in &r.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "labels sorted by name");
            let mut labels = labels_of(ts);
            let name = labels.remove("__name__").expect("__name__ present");
            labels.retain(|k, _| !drop.contains(&k.as_str()));
            let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            out.entry(format!("{name}{{{}}}", text.join(",")))
                .or_default()
                .extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
        }
    }
    out
}

/// `key` with job, instance and the scope labels of the test resource and scope.
fn scoped(name: &str, extra: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("instance", "node-1"),
        ("job", "fovea"),
        ("otel_scope_name", "fovea/linuxutil"),
        ("otel_scope_version", "0.1.0"),
    ];
    all.extend_from_slice(extra);
    key(name, &all)
}

#[test]
fn counters_gauges_histograms_and_target_info_are_exact() {
    let encoder = RemoteWriteEncoder::new(&config(|c| {
        c.external_labels = BTreeMap::from([("cluster".into(), "lab".into()), ("job".into(), "not-this".into())]);
    }));
    let ms = (T0 / 1_000_000) as i64;
    let bounds: Arc<[f64]> = Arc::from(vec![0.001, 0.01, 1e6]);
    let b = batch(vec![
        counter(
            "network.forward.packets",
            &[(&[("network.io.direction", "receive")], T0, 10), (&[("network.io.direction", "receive")], T0 + SEC, 12)],
        ),
        Metric::gauge(
            "network.tcp.connections",
            "",
            "",
            vec![NumberPoint::int(attrs(&[("network.connection.state", "established")]), 0, T0, 7)],
        ),
        histogram(Temporality::Cumulative, vec![hist_point(&bounds, &[1, 2, 3, 4], 5.5, T0)]),
    ]);
    let (requests, decoded, outcome) = encode(&encoder, b);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].items, 4, "data points, not samples");
    assert_eq!(outcome, EncodeOutcome { sent: 4, ..Default::default() });
    let got = series_map(&decoded);
    let common = [
        ("cluster", "lab"),
        ("instance", "node-1"),
        ("job", "fovea"),
        ("otel_scope_name", "fovea/linuxutil"),
        ("otel_scope_version", "0.1.0"),
    ];
    let l = |name: &str, extra: &[(&str, &str)]| {
        let mut all = common.to_vec();
        all.extend_from_slice(extra);
        key(name, &all)
    };
    let mut want: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    want.insert(
        l("network_forward_packets_total", &[("network_io_direction", "receive")]),
        vec![(ms, 10.0), (ms + 1000, 12.0)],
    );
    want.insert(l("network_tcp_connections", &[("network_connection_state", "established")]), vec![(ms, 7.0)]);
    let h = "network_tcp_handshake_duration_seconds";
    for (le, v) in [("0.001", 1.0), ("0.01", 3.0), ("1e+06", 6.0), ("+Inf", 10.0)] {
        want.insert(l(&format!("{h}_bucket"), &[("le", le)]), vec![(ms, v)]);
    }
    want.insert(l(&format!("{h}_sum"), &[]), vec![(ms, 5.5)]);
    want.insert(l(&format!("{h}_count"), &[]), vec![(ms, 10.0)]);
    want.insert(
        key(
            "target_info",
            &[
                ("cluster", "lab"),
                ("host_name", "h1"),
                ("instance", "node-1"),
                ("job", "fovea"),
                ("k8s_node_name", "node-1"),
            ],
        ),
        vec![(ms + 1000, 1.0)],
    );
    assert_eq!(got, want);
    assert!(decoded[0].metadata.is_empty(), "send_metadata is off by default");
}

/// Labels of an exposition line (`a="x",b="y\"z"`), unescaped.
fn parse_exposition_labels(rendered: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = rendered;
    while let Some((name, after)) = rest.split_once("=\"") {
        let (mut value, mut chars, mut end) = (String::new(), after.char_indices(), after.len());
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((name.trim_start_matches(',').to_string(), value));
        rest = &after[end..];
    }
    labels
}

/// What the scrape exporter would expose for `options`, as `name{sorted labels}` -> value.
fn scrape_exposition(options: StoreOptions, batches: &[MetricBatch]) -> BTreeMap<String, f64> {
    let mut store = Store::new(options);
    for b in batches {
        store.fold(b, std::time::Instant::now());
    }
    let mut text = String::new();
    store.encode(Format::Text, false, &mut text);
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_exposition_labels(rest.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        let labels: BTreeMap<String, String> = labels.into_iter().collect();
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("number"),
        };
        out.insert(format!("{name}{{{}}}", text.join(",")), value);
    }
    out
}

fn node_traffic(t: u64, base: i64) -> MetricBatch {
    let nodes = [("eth0", "receive", 100), ("lo", "receive", 5), ("eth0", "transmit", 40)];
    let pts = nodes
        .iter()
        .map(|(i, d, v)| {
            NumberPoint::int(
                attrs(&[("network.interface.name", i), ("network.io.direction", d)]),
                T0 - 100 * SEC,
                t,
                base + v,
            )
        })
        .collect();
    let pod = NumberPoint::int(
        attrs(&[
            ("network.io.direction", "transmit"),
            ("source.k8s.namespace.name", "web"),
            ("source.k8s.pod.name", "web-1"),
        ]),
        T0 - 100 * SEC,
        t,
        base + 3,
    );
    batch(vec![
        sum("network.forward.packets", "{packet}", Temporality::Cumulative, pts),
        sum("network.forward.packets", "{packet}", Temporality::Cumulative, vec![pod]),
        Metric::gauge(
            "network.netstat",
            "",
            "",
            vec![NumberPoint::int(attrs(&[("netstat.group", "TcpExt"), ("netstat.name", "TCPTimeouts")]), 0, t, 9)],
        ),
    ])
}

#[test]
fn series_and_values_are_those_the_scrape_exporter_exposes() {
    for naming in [Naming::Otel, Naming::Retina] {
        let batches = [node_traffic(T0, 0), node_traffic(T0 + SEC, 1000)];
        let encoder = RemoteWriteEncoder::new(&config(|c| {
            c.naming = naming;
            c.target_info.enabled = false;
        }));
        let mut decoded = Vec::new();
        for b in &batches {
            decoded.extend(encode(&encoder, b.clone()).1);
        }
        // A scrape gets job and instance from Prometheus's target for Retina names; a push
        // carries the resource's.
        let target: &[&str] = if naming == Naming::Retina { &["instance", "job"] } else { &[] };
        let pushed: BTreeMap<String, f64> = series_map_without(&decoded, target)
            .into_iter()
            .map(|(k, v)| (k, v.last().map_or(f64::NAN, |s| s.1)))
            .collect();
        let scraped = scrape_exposition(StoreOptions { naming, ..StoreOptions::plain() }, &batches);
        let scraped: BTreeMap<String, f64> =
            scraped.into_iter().filter(|(k, _)| !k.starts_with("target_info")).collect();
        assert_eq!(pushed, scraped, "{naming:?}");
    }
    // And the Retina sums are what Retina reports: interfaces of one direction added up.
    let encoder = RemoteWriteEncoder::new(&config(|c| c.naming = Naming::Retina));
    let (_, decoded, _) = encode(&encoder, node_traffic(T0, 0));
    let got = series_map(&decoded);
    let ms = (T0 / 1_000_000) as i64;
    let node = [("instance", "node-1"), ("job", "fovea")];
    let l = |name: &str, extra: &[(&str, &str)]| {
        let mut all = node.to_vec();
        all.extend_from_slice(extra);
        key(name, &all)
    };
    assert_eq!(
        got[&l("networkobservability_forward_count", &[("direction", "ingress")])],
        vec![(ms, 105.0)],
        "eth0 (100) then lo (5) at the same millisecond: one sample, the sum"
    );
    let pod = [("direction", "EGRESS"), ("source_namespace", "web"), ("source_podname", "web-1")];
    assert_eq!(got[&l("networkobservability_adv_forward_count", &pod)], vec![(ms, 3.0)]);
    assert_eq!(
        got[&l("networkobservability_tcp_connection_stats", &[("statistic_name", "TCPTimeouts")])],
        vec![(ms, 9.0)]
    );
}

#[test]
fn every_point_is_sent_in_order_and_older_points_are_dropped() {
    let encoder = RemoteWriteEncoder::new(&config(|c| c.target_info.enabled = false));
    let ms = (T0 / 1_000_000) as i64;
    let a: &[(&str, &str)] = &[("k", "a")];
    // Three points of one series in one batch, one of them out of order (refused by the store
    // as older than what it holds), then a later batch with an older point (stale) and the same
    // millisecond as already sent with another value (stale: Prometheus would refuse the request).
    let first = counter("c", &[(a, T0, 1), (a, T0 + 2 * SEC, 3), (a, T0 + SEC, 2)]);
    let (r1, d1, o1) = encode(&encoder, batch(vec![first]));
    assert_eq!(series_map(&d1)[&scoped("c_total", &[("k", "a")])], vec![(ms, 1.0), (ms + 2000, 3.0)]);
    assert_eq!(o1, EncodeOutcome { sent: 2, refused: 1, ..Default::default() });
    assert_eq!(r1.iter().map(|r| r.items).sum::<u64>(), 2);

    let delta = sum(
        "d",
        "",
        Temporality::Delta,
        vec![NumberPoint::int(attrs(a), T0, T0 + 2 * SEC, 5), NumberPoint::int(attrs(a), T0, T0 + SEC, 1)],
    );
    let second = counter("c", &[(a, T0 + 2 * SEC + 400_000, 4), (a, T0 + 3 * SEC, 6)]);
    let (r2, d2, o2) = encode(&encoder, batch(vec![second, delta]));
    let got = series_map(&d2);
    assert_eq!(got[&scoped("c_total", &[("k", "a")])], vec![(ms + 3000, 6.0)]);
    // Deltas add up whatever their order; the total's time stays the newest point's, so both
    // points make one sample.
    assert_eq!(got[&scoped("d_total", &[("k", "a")])], vec![(ms + 2000, 6.0)]);
    assert_eq!(o2, EncodeOutcome { sent: 3, stale: 1, ..Default::default() });
    assert_eq!(r2.iter().map(|r| r.items).sum::<u64>(), 3);
}

#[test]
fn delta_sums_and_histograms_are_sent_as_running_totals() {
    let encoder = RemoteWriteEncoder::new(&config(|c| c.target_info.enabled = false));
    let bounds: Arc<[f64]> = Arc::from(vec![0.5]);
    let ms = (T0 / 1_000_000) as i64;
    let mut got: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for i in 0..3u64 {
        let t = T0 + i * SEC;
        let d = sum("drops", "", Temporality::Delta, vec![NumberPoint::int(Attributes::new(), t - SEC, t, 2)]);
        let h = histogram(Temporality::Delta, vec![hist_point(&bounds, &[1, 1], 0.75, t)]);
        for (k, v) in series_map(&encode(&encoder, batch(vec![d, h])).1) {
            got.entry(k).or_default().extend(v);
        }
    }
    let s = |v: [f64; 3]| vec![(ms, v[0]), (ms + 1000, v[1]), (ms + 2000, v[2])];
    assert_eq!(got[&scoped("drops_total", &[])], s([2.0, 4.0, 6.0]));
    let h = "network_tcp_handshake_duration_seconds";
    assert_eq!(got[&scoped(&format!("{h}_bucket"), &[("le", "0.5")])], s([1.0, 2.0, 3.0]));
    assert_eq!(got[&scoped(&format!("{h}_bucket"), &[("le", "+Inf")])], s([2.0, 4.0, 6.0]));
    assert_eq!(got[&scoped(&format!("{h}_sum"), &[])], s([0.75, 1.5, 2.25]));
    assert_eq!(got[&scoped(&format!("{h}_count"), &[])], s([2.0, 4.0, 6.0]));
}

#[test]
fn target_info_is_sent_when_newer_with_namespace_and_metadata() {
    let encoder = RemoteWriteEncoder::new(&config(|c| {
        c.namespace = "fovea".into();
        c.send_metadata = true;
        c.disable_scope_info = true;
    }));
    let a: &[(&str, &str)] = &[];
    let (_, d1, _) = encode(&encoder, batch(vec![counter("c", &[(a, T0 + SEC, 1)])]));
    let (_, d2, _) = encode(&encoder, batch(vec![counter("c", &[(a, T0, 1)])]));
    let ms = (T0 / 1_000_000) as i64;
    let target = [("host_name", "h1"), ("instance", "node-1"), ("job", "fovea"), ("k8s_node_name", "node-1")];
    assert_eq!(series_map(&d1)[&key("fovea_target_info", &target)], vec![(ms + 1000, 1.0)]);
    assert!(d2.iter().all(|r| r.timeseries.is_empty()), "nothing newer: neither the point nor target_info");
    let meta: Vec<(i32, &str, &str)> =
        d1[0].metadata.iter().map(|m| (m.r#type, m.metric_family_name.as_str(), m.help.as_str())).collect();
    assert_eq!(
        meta,
        [
            (MetricType::Counter as i32, "fovea_c_total", "a sum"),
            (MetricType::Gauge as i32, "fovea_target_info", "Target metadata")
        ]
    );
    assert_eq!(series_map(&d1)["fovea_c_total{instance=\"node-1\",job=\"fovea\"}"], vec![(ms + 1000, 1.0)]);
}

#[test]
fn requests_are_split_at_the_size_limit_without_splitting_series() {
    let limit = 2000;
    let encoder = RemoteWriteEncoder::new(&config(|c| {
        c.max_batch_size_bytes = limit;
        c.target_info.enabled = false;
        c.disable_scope_info = true;
    }));
    let names: Vec<String> = (0..60).map(|i| format!("pod-{i:03}")).collect();
    let points: Vec<NumberPoint> = (0..3u64)
        .flat_map(|t| {
            names.iter().map(move |n| NumberPoint::int(attrs(&[("pod", n)]), T0 - SEC, T0 + t * SEC, t as i64))
        })
        .collect();
    let (requests, decoded, outcome) =
        encode(&encoder, batch(vec![sum("c", "", Temporality::Cumulative, points.clone())]));
    assert!(requests.len() > 1, "{} requests", requests.len());
    assert!(
        requests.iter().all(|r| r.body.len() <= limit),
        "{:?}",
        requests.iter().map(|r| r.body.len()).collect::<Vec<_>>()
    );
    assert_eq!(requests.iter().map(|r| r.items).sum::<u64>(), 180);
    assert_eq!(outcome.sent, 180);
    // Each series in exactly one request, whole, in first-seen order.
    let order: Vec<String> =
        decoded.iter().flat_map(|r| &r.timeseries).map(|ts| labels_of(ts)["pod"].clone()).collect();
    assert_eq!(order, names);
    for ts in decoded.iter().flat_map(|r| &r.timeseries) {
        let ms = (T0 / 1_000_000) as i64;
        assert_eq!(
            ts.samples,
            vec![
                Sample { value: 0.0, timestamp: ms },
                Sample { value: 1.0, timestamp: ms + 1000 },
                Sample { value: 2.0, timestamp: ms + 2000 }
            ]
        );
    }

    // A series larger than the limit on its own is cut between samples, in order.
    let small = RemoteWriteEncoder::new(&config(|c| {
        c.max_batch_size_bytes = 200;
        c.target_info.enabled = false;
    }));
    let many: Vec<NumberPoint> =
        (0..50u64).map(|t| NumberPoint::int(Attributes::new(), T0 - SEC, T0 + t * SEC, t as i64)).collect();
    let (requests, decoded, _) = encode(&small, batch(vec![sum("c", "", Temporality::Cumulative, many)]));
    assert!(requests.len() > 5);
    assert!(requests.iter().all(|r| r.body.len() <= 200));
    let samples: Vec<i64> =
        decoded.iter().flat_map(|r| &r.timeseries).flat_map(|ts| &ts.samples).map(|s| s.value as i64).collect();
    assert_eq!(samples, (0..50).collect::<Vec<_>>());
    assert_eq!(requests.iter().map(|r| r.items).sum::<u64>(), 50);
}

#[test]
fn request_bytes_are_what_prost_writes() {
    let encoder = RemoteWriteEncoder::new(&config(|c| c.send_metadata = true));
    let a: &[(&str, &str)] = &[("k", "é\"\\\n")];
    let (requests, decoded, _) = encode(&encoder, batch(vec![counter("c", &[(a, T0, 0), (a, T0 + SEC, -1)])]));
    assert_eq!(decoded[0].encode_to_vec(), requests[0].body.to_vec(), "hand-packed bytes equal prost's encoding");
    let ts = decoded[0].timeseries.iter().find(|t| t.labels.iter().any(|l| l.name == "k")).expect("series");
    assert!(ts.labels.contains(&Label { name: "k".into(), value: "é\"\\\n".into() }), "values are raw, not escaped");
}

#[test]
fn snappy_block_format_round_trips() {
    let encoder = RemoteWriteEncoder::new(&config(|_| {}));
    let (requests, _, _) = encode(&encoder, node_traffic(T0, 0));
    let body = &requests[0].body;
    let compressed = compress(body).expect("compresses");
    assert!(compressed.len() < body.len());
    // The block format starts with the uncompressed length as a varint (no stream identifier).
    let (len, _) = decode_varint(&compressed);
    assert_eq!(len as usize, body.len());
    assert_ne!(&compressed[..4], b"\xff\x06\x00\x00", "not the framed format");
    assert_eq!(snap::raw::Decoder::new().decompress_vec(&compressed).expect("decompresses"), body.to_vec());
}

fn decode_varint(bytes: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (v, bytes.len())
}

#[test]
fn flows_cannot_be_encoded() {
    let encoder = RemoteWriteEncoder::new(&config(|_| {}));
    let err = encoder.encode_counted(&Payload::from(crate::model::FlowBatch::default()), &mut Vec::new());
    assert_eq!(err.expect_err("flows"), "prometheusremotewrite exports metrics only, not flows");
}

/// Status, headers and body of one answer of the test server.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// What the test server saw, and what it answers next.
#[derive(Default)]
struct Script {
    answers: Vec<Answer>,
    seen: Vec<(axum::http::HeaderMap, Vec<u8>)>,
    delay: Option<Duration>,
}

async fn server(script: Arc<Mutex<Script>>) -> String {
    use axum::body::Bytes as AxumBytes;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus};
    use axum::response::IntoResponse;
    let handler = move |headers: AxumHeaders, body: AxumBytes| {
        let script = script.clone();
        async move {
            let (answer, delay) = {
                let mut s = script.lock().expect("lock");
                s.seen.push((headers, body.to_vec()));
                let answer = if s.answers.is_empty() { (204, Vec::new(), "") } else { s.answers.remove(0) };
                (answer, s.delay)
            };
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let (status, headers, body) = answer;
            let mut response = (AxumStatus::from_u16(status).expect("status"), body).into_response();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().expect("header value"));
            }
            response
        }
    };
    let app = axum::Router::new().route("/api/v1/write", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v1/write")
}

fn request(body: &[u8], items: u64) -> Request {
    Request { signal: crate::model::Signal::Metrics, items, body: bytes::Bytes::copy_from_slice(body) }
}

#[tokio::test]
async fn transport_sends_snappy_with_the_protocol_headers_and_classifies_answers() {
    let script = Arc::new(Mutex::new(Script::default()));
    let url = server(script.clone()).await;
    let transport = RemoteWriteTransport::new(&config(|c| {
        c.endpoint = url.clone();
        c.headers = BTreeMap::from([("X-Scope-OrgID".into(), "tenant-1".into())]);
    }));
    transport.connect().expect("client");
    let body = WriteRequest { timeseries: vec![], metadata: vec![] }.encode_to_vec();
    let mut payload = body.clone();
    payload.extend_from_slice(b"anything at all, repeated repeated repeated");
    assert_eq!(transport.send(&request(&payload, 3)).await, Ok(Sent::default()));
    {
        let s = script.lock().expect("lock");
        let (headers, seen) = &s.seen[0];
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert_eq!(h("content-encoding"), "snappy");
        assert_eq!(h("content-type"), "application/x-protobuf");
        assert_eq!(h("x-prometheus-remote-write-version"), "0.1.0");
        assert_eq!(h("user-agent"), format!("fovea/{}", env!("CARGO_PKG_VERSION")));
        assert_eq!(h("x-scope-orgid"), "tenant-1");
        assert_eq!(snap::raw::Decoder::new().decompress_vec(seen).expect("snappy block"), payload);
    }

    let cases: Vec<(Answer, Result<Sent, SendError>)> = vec![
        ((200, vec![], ""), Ok(Sent::default())),
        (
            (500, vec![], "out of memory"),
            Err(SendError::Retryable {
                reason: "HTTP 500 Internal Server Error: out of memory".into(),
                throttle: None,
            }),
        ),
        (
            (503, vec![("retry-after", "3")], ""),
            Err(SendError::Retryable {
                reason: "HTTP 503 Service Unavailable".into(),
                throttle: Some(Duration::from_secs(3)),
            }),
        ),
        (
            (429, vec![("retry-after", "2")], "slow down"),
            Err(SendError::Permanent {
                reason:
                    "HTTP 429 Too Many Requests: slow down (set retry_on_http_429: true to retry throttled requests)"
                        .into(),
            }),
        ),
        (
            (400, vec![], "out of order sample\n"),
            Err(SendError::Permanent { reason: "HTTP 400 Bad Request: out of order sample".into() }),
        ),
        ((404, vec![], ""), Err(SendError::Permanent { reason: "HTTP 404 Not Found".into() })),
    ];
    for (answer, want) in cases {
        let status = answer.0;
        script.lock().expect("lock").answers.push(answer);
        assert_eq!(transport.send(&request(&payload, 1)).await, want, "status {status}");
    }

    // 429 with retry_on_http_429: retryable, Retry-After honoured.
    let retrying = RemoteWriteTransport::new(&config(|c| {
        c.endpoint = url.clone();
        c.retry_on_http_429 = true;
    }));
    script.lock().expect("lock").answers.push((429, vec![("retry-after", "2")], ""));
    assert_eq!(
        retrying.send(&request(&payload, 1)).await,
        Err(SendError::Retryable {
            reason: "HTTP 429 Too Many Requests".into(),
            throttle: Some(Duration::from_secs(2))
        })
    );

    // A long answer is cut to an excerpt.
    let long: &'static str = Box::leak("x".repeat(1000).into_boxed_str());
    script.lock().expect("lock").answers.push((400, vec![], long));
    let Err(SendError::Permanent { reason }) = transport.send(&request(&payload, 1)).await else { panic!("permanent") };
    assert_eq!(reason, format!("HTTP 400 Bad Request: {}...", "x".repeat(256)));

    // No answer within the timeout: retryable.
    let slow = RemoteWriteTransport::new(&config(|c| {
        c.endpoint = url.clone();
        c.timeout = Duration::from_millis(200);
    }));
    script.lock().expect("lock").delay = Some(Duration::from_secs(2));
    let Err(SendError::Retryable { reason, throttle: None }) = slow.send(&request(&payload, 1)).await else {
        panic!("timeout is retryable")
    };
    assert!(reason.starts_with("no answer within 200ms"), "{reason}");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let transport =
        RemoteWriteTransport::new(&config(|c| c.endpoint = format!("http://127.0.0.1:{port}/api/v1/write")));
    let Err(SendError::Retryable { reason, throttle: None }) = transport.send(&request(b"x", 1)).await else {
        panic!("retryable")
    };
    assert!(reason.starts_with("cannot connect: "), "{reason}");
}

#[test]
fn a_missing_ca_file_is_reported_at_start() {
    let transport = RemoteWriteTransport::new(&config(|c| {
        c.endpoint = "https://127.0.0.1:9/api/v1/write".into();
        c.tls.ca_file = Some("/nonexistent/ca.pem".into());
    }));
    let err = transport.connect().expect_err("missing file").to_string();
    assert_eq!(
        err,
        "cannot read tls::ca_file file /nonexistent/ca.pem: No such file or directory (os error 2); \
         check the path and the agent's permissions"
    );
}

#[test]
fn the_queue_always_has_one_consumer_and_prw_retry_defaults() {
    let c = config(|c| c.remote_write_queue.num_consumers = 8);
    let q = c.sending_queue();
    assert_eq!((q.enabled, q.num_consumers, q.queue_size, q.block_on_overflow), (true, 1, 10_000, false));
    let r = &c.retry_on_failure;
    assert_eq!(
        (r.enabled, r.initial_interval, r.max_interval, r.max_elapsed_time),
        (true, Duration::from_millis(50), Duration::from_secs(30), Duration::from_secs(300))
    );
    assert_eq!(config(|c| c.max_batch_size_bytes = 0).batch_size_limit(), DEFAULT_MAX_BATCH_SIZE_BYTES);
}

/// A remote-write receiver that, like Prometheus, refuses a whole request with 400 when it
/// holds a series named `stale`, and records the series of the requests it takes.
async fn picky_server(taken: Arc<Mutex<Vec<String>>>) -> String {
    use axum::http::StatusCode as AxumStatus;
    let handler = move |body: axum::body::Bytes| {
        let taken = taken.clone();
        async move {
            let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy");
            let request = WriteRequest::decode(raw.as_slice()).expect("protobuf");
            let names: Vec<String> = request.timeseries.iter().map(|t| t.labels[0].value.clone()).collect();
            if names.iter().any(|n| n == "stale") {
                return (AxumStatus::BAD_REQUEST, "out of order sample");
            }
            taken.lock().expect("lock").extend(names);
            (AxumStatus::NO_CONTENT, "")
        }
    };
    let app = axum::Router::new().route("/api/v1/write", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v1/write")
}

fn named_series(names: &[&str]) -> Request {
    let timeseries = names
        .iter()
        .enumerate()
        .map(|(i, n)| TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: n.to_string() }],
            samples: vec![Sample { value: i as f64, timestamp: 1 }, Sample { value: i as f64, timestamp: 2 }],
        })
        .collect();
    request(&WriteRequest { timeseries, metadata: vec![] }.encode_to_vec(), names.len() as u64 * 2)
}

#[tokio::test]
async fn a_request_refused_for_some_samples_is_delivered_without_them() {
    let taken = Arc::new(Mutex::new(Vec::new()));
    let url = picky_server(taken.clone()).await;
    let transport = RemoteWriteTransport::new(&config(|c| c.endpoint = url.clone()));
    let names = ["a", "b", "stale", "c", "d", "e", "stale", "f"];
    let sent = transport.send(&named_series(&names)).await;
    assert_eq!(
        sent,
        Ok(Sent {
            rejected_items: 4,
            message: "the backend refused 2 of 8 series (HTTP 400 Bad Request: out of order sample); \
                      the others were delivered"
                .into()
        })
    );
    assert_eq!(*taken.lock().expect("lock"), ["a", "b", "c", "d", "e", "f"], "in order, each once");

    // Nothing to save: permanent, as answered.
    taken.lock().expect("lock").clear();
    let refused = transport.send(&named_series(&["stale", "stale"])).await;
    assert_eq!(refused, Err(SendError::Permanent { reason: "HTTP 400 Bad Request: out of order sample".into() }));
    assert!(taken.lock().expect("lock").is_empty());
    assert!(refuses_samples(reqwest::StatusCode::BAD_REQUEST, b"duplicate sample for timestamp"));
    assert!(!refuses_samples(reqwest::StatusCode::BAD_REQUEST, b"snappy: corrupt input"));
    assert!(!refuses_samples(reqwest::StatusCode::CONFLICT, b"out of order sample"));
}
