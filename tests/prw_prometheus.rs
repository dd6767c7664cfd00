//! The `prometheusremotewrite` exporter against a real Prometheus (`--web.enable-remote-write-receiver`):
//! every series arrives with the exact name, labels, values and timestamps sent, read back as the
//! raw samples Prometheus stored, with OpenTelemetry and Retina naming, a histogram, delta sums,
//! `target_info` and external labels; and Prometheus's answers are classified as expected.

#[path = "support/prometheus.rs"]
mod prometheus_server;
#[path = "support/remote_write.rs"]
mod remote_write;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fovea::delivery::{Request, SendError, Sent, Transport};
use fovea::exporters::prometheusremotewrite::RemoteWriteTransport;
use fovea::exporters::prometheusremotewrite::proto::{Label, Sample, TimeSeries, WriteRequest};
use fovea::model::{HistogramData, HistogramPoint, Metric, MetricData, NumberPoint, Signal, SumData, Temporality};
use prometheus_server::{Options, Prometheus, Series, labels};
use prost::Message;
use remote_write::{SEC, attrs, batch, config, counter_point, now_whole_second, start, unix_seconds};

fn prometheus() -> Option<Prometheus> {
    Prometheus::start(Options { remote_write_receiver: true, ..Options::default() })
}

/// Polls until `selector` has `want` samples in total, then returns every series.
fn wait_samples(p: &Prometheus, selector: &str, at: f64, want: usize) -> Series {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = p.raw_samples(selector, "15m", at);
        let n: usize = got.iter().map(|(_, v)| v.len()).sum();
        if n >= want || Instant::now() > end {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn histogram_point(bounds: &Arc<[f64]>, buckets: &[u64], sum: f64, start: u64, time: u64) -> HistogramPoint {
    HistogramPoint {
        attributes: attrs(&[("network.io.direction", "receive")]),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_names_labels_values_and_timestamps_arrive_exactly() {
    let Some(p) = prometheus() else { return };
    let cfg = config(&format!(
        "    endpoint: {}\n    external_labels: {{cluster: lab, job: not-used}}\n",
        p.remote_write_url()
    ));
    let exporter = start(&cfg).await;
    let t0 = now_whole_second() - 120 * SEC;
    let start_time = t0 - 3600 * SEC;
    let bounds: Arc<[f64]> = Arc::from(vec![0.001, 0.01, 0.1]);
    for i in 0..3u64 {
        let t = t0 + i * SEC;
        let dir = [("network.io.direction", "receive"), ("network.interface.name", "eth0")];
        let delta = Metric {
            name: "network.drop.packets".into(),
            description: "Dropped packets".into(),
            unit: "{packet}".into(),
            data: MetricData::Sum(SumData {
                points: vec![NumberPoint::int(attrs(&[("drop.reason", "NETFILTER_DROP")]), t - SEC, t, 2)],
                temporality: Temporality::Delta,
                monotonic: true,
            }),
        };
        let hist = Metric {
            name: "network.tcp.handshake.duration".into(),
            description: "Handshake time".into(),
            unit: "s".into(),
            data: MetricData::Histogram(HistogramData {
                points: vec![histogram_point(&bounds, &[1 + i, 2, 3, 4], 0.5 + i as f64, start_time, t)],
                temporality: Temporality::Cumulative,
            }),
        };
        let gauge = Metric::gauge(
            "network.tcp.connections",
            "",
            "",
            vec![NumberPoint::int(attrs(&[("network.connection.state", "established")]), 0, t, 7 + i as i64)],
        );
        let metrics = vec![
            counter_point("network.forward.packets", &dir, start_time, t, 10 * (i as i64 + 1)),
            delta,
            hist,
            gauge,
        ];
        exporter.send(batch("node-1", metrics)).await;
    }
    let at = unix_seconds(t0 + 60 * SEC);
    let s = |i: u64, v: f64| (ms(t0 + i * SEC), v);
    let common = [
        ("cluster", "lab"),
        ("instance", "node-1"),
        ("job", "fovea"),
        ("otel_scope_name", "fovea/test"),
        ("otel_scope_version", "0.1.0"),
    ];
    let with = |name: &str, extra: &[(&str, &str)]| {
        let mut l = common.to_vec();
        l.push(("__name__", name));
        l.extend_from_slice(extra);
        labels(&l)
    };

    let got = wait_samples(&p, "network_forward_packets_total", at, 3);
    let want = with(
        "network_forward_packets_total",
        &[("network_interface_name", "eth0"), ("network_io_direction", "receive")],
    );
    assert_eq!(got, vec![(want, vec![s(0, 10.0), s(1, 20.0), s(2, 30.0)])], "{}", p.log());

    let got = wait_samples(&p, "network_drop_packets_total", at, 3);
    let want = with("network_drop_packets_total", &[("drop_reason", "NETFILTER_DROP")]);
    assert_eq!(got, vec![(want, vec![s(0, 2.0), s(1, 4.0), s(2, 6.0)])], "deltas become running totals");

    let got = wait_samples(&p, "network_tcp_connections", at, 3);
    let want = with("network_tcp_connections", &[("network_connection_state", "established")]);
    assert_eq!(got, vec![(want, vec![s(0, 7.0), s(1, 8.0), s(2, 9.0)])]);

    let h = "network_tcp_handshake_duration_seconds";
    let dir = ("network_io_direction", "receive");
    let got = wait_samples(&p, &format!("{h}_bucket"), at, 12);
    let mut want: Series = [("0.001", 1.0), ("0.01", 3.0), ("0.1", 6.0), ("+Inf", 10.0)]
        .iter()
        .map(|(le, base)| {
            (with(&format!("{h}_bucket"), &[dir, ("le", le)]), vec![s(0, *base), s(1, base + 1.0), s(2, base + 2.0)])
        })
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let mut got = got;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    let got = wait_samples(&p, &format!("{h}_sum"), at, 3);
    assert_eq!(got, vec![(with(&format!("{h}_sum"), &[dir]), vec![s(0, 0.5), s(1, 1.5), s(2, 2.5)])]);
    let got = wait_samples(&p, &format!("{h}_count"), at, 3);
    assert_eq!(got, vec![(with(&format!("{h}_count"), &[dir]), vec![s(0, 10.0), s(1, 11.0), s(2, 12.0)])]);
    // The histogram works with PromQL as a histogram.
    let q = p.query(&format!("histogram_quantile(0.5, {h}_bucket)"));
    assert_eq!(q.len(), 1);

    let got = wait_samples(&p, "target_info", at, 3);
    let want = labels(&[
        ("__name__", "target_info"),
        ("cluster", "lab"),
        ("host_name", "node-1"),
        ("instance", "node-1"),
        ("job", "fovea"),
        ("k8s_node_name", "node-1"),
    ]);
    assert_eq!(got, vec![(want, vec![s(0, 1.0), s(1, 1.0), s(2, 1.0)])], "one per batch, at its newest sample");

    let (received, sent, dropped, failed) = exporter.stop(Duration::from_secs(10)).await;
    assert_eq!((received, sent, dropped, failed), (12, 12, 0, 0), "data points in, sent, dropped, failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retina_names_and_labels_arrive_exactly() {
    let Some(p) = prometheus() else { return };
    let cfg = config(&format!(
        "    endpoint: {}\n    naming: retina\n    external_labels: {{cluster: lab}}\n",
        p.remote_write_url()
    ));
    let exporter = start(&cfg).await;
    let t0 = now_whole_second() - 120 * SEC;
    let start_time = t0 - 3600 * SEC;
    for i in 0..2u64 {
        let t = t0 + i * SEC;
        let k = i as i64;
        let node = |iface: &str, dir: &str, v: i64| {
            NumberPoint::int(
                attrs(&[("network.interface.name", iface), ("network.io.direction", dir)]),
                start_time,
                t,
                v,
            )
        };
        let pod = NumberPoint::int(
            attrs(&[
                ("network.io.direction", "transmit"),
                ("source.k8s.namespace.name", "web"),
                ("source.k8s.pod.name", "web-1"),
                ("destination.k8s.namespace.name", "db"),
                ("destination.k8s.pod.name", "db-0"),
            ]),
            start_time,
            t,
            50 + k,
        );
        let forward = Metric::counter(
            "network.forward.packets",
            "{packet}",
            "",
            vec![node("eth0", "receive", 100 + k), node("lo", "receive", 5 + k), node("eth0", "transmit", 40), pod],
        );
        let drops = Metric::counter(
            "network.drop.packets",
            "{packet}",
            "",
            vec![NumberPoint::int(
                attrs(&[("drop.reason", "TCP_CSUM"), ("network.io.direction", "receive")]),
                start_time,
                t,
                3,
            )],
        );
        let states = Metric::gauge(
            "network.tcp.connections",
            "",
            "",
            vec![NumberPoint::int(attrs(&[("network.connection.state", "time_wait")]), 0, t, 4)],
        );
        exporter.send(batch("node-1", vec![forward, drops, states])).await;
    }
    let at = unix_seconds(t0 + 60 * SEC);
    let s = |i: u64, v: f64| (ms(t0 + i * SEC), v);
    let with = |name: &str, extra: &[(&str, &str)]| {
        let mut l = vec![("__name__", name), ("cluster", "lab"), ("instance", "node-1"), ("job", "fovea")];
        l.extend_from_slice(extra);
        labels(&l)
    };
    let mut got = wait_samples(&p, "networkobservability_forward_count", at, 4);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (with("networkobservability_forward_count", &[("direction", "egress")]), vec![s(0, 40.0), s(1, 40.0)]),
            (with("networkobservability_forward_count", &[("direction", "ingress")]), vec![s(0, 105.0), s(1, 107.0)]),
        ],
        "eth0 and lo of one direction add up, as in Retina"
    );
    let got = wait_samples(&p, "networkobservability_adv_forward_count", at, 2);
    let want = with(
        "networkobservability_adv_forward_count",
        &[
            // Remote context spells the direction as Retina's enum does.
            ("direction", "EGRESS"),
            ("source_namespace", "web"),
            ("source_podname", "web-1"),
            ("destination_namespace", "db"),
            ("destination_podname", "db-0"),
        ],
    );
    assert_eq!(got, vec![(want, vec![s(0, 50.0), s(1, 51.0)])]);
    let got = wait_samples(&p, "networkobservability_drop_count", at, 2);
    let want = with("networkobservability_drop_count", &[("direction", "ingress"), ("reason", "TCP_CSUM")]);
    assert_eq!(got, vec![(want, vec![s(0, 3.0), s(1, 3.0)])]);
    let got = wait_samples(&p, "networkobservability_tcp_state", at, 2);
    assert_eq!(
        got,
        vec![(with("networkobservability_tcp_state", &[("state", "TIME_WAIT")]), vec![s(0, 4.0), s(1, 4.0)])]
    );
    let (received, sent, dropped, _) = exporter.stop(Duration::from_secs(10)).await;
    assert_eq!((received, sent, dropped), (12, 12, 0));
}

fn write_request(series: &[(&str, i64, f64)]) -> Request {
    let timeseries = series
        .iter()
        .map(|(name, ts, v)| TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: name.to_string() }],
            samples: vec![Sample { value: *v, timestamp: *ts }],
        })
        .collect();
    let body = WriteRequest { timeseries, metadata: vec![] }.encode_to_vec();
    Request { signal: Signal::Metrics, items: series.len() as u64, body: Bytes::from(body) }
}

/// What the exporter's ordering rules and crash recovery rely on: Prometheus takes a request
/// whole or not at all, refuses an older sample with 400 (permanent), and accepts an exact
/// duplicate of a series' newest sample (a request sent again after a crash). The transport then
/// sends a refused request again without the refused series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_refuses_out_of_order_samples_and_the_rest_of_the_request_still_arrives() {
    let Some(p) = prometheus() else { return };
    let transport = RemoteWriteTransport::new(&config(&format!("    endpoint: {}\n", p.remote_write_url())));
    transport.connect().expect("client");
    let t = ms(now_whole_second() - 60 * SEC);
    assert_eq!(transport.send(&write_request(&[("a", t, 1.0), ("b", t, 1.0)])).await, Ok(Sent::default()));
    assert_eq!(transport.send(&write_request(&[("a", t, 1.0)])).await, Ok(Sent::default()), "exact duplicate");
    let refused = transport.send(&write_request(&[("a", t - 1000, 0.5)])).await;
    let Err(SendError::Permanent { reason }) = refused else { panic!("permanent: {refused:?}") };
    assert!(reason.starts_with("HTTP 400 Bad Request: out of order sample"), "{reason}");
    let changed = transport.send(&write_request(&[("a", t, 9.0)])).await;
    let Err(SendError::Permanent { reason }) = changed else { panic!("permanent: {changed:?}") };
    assert!(reason.starts_with("HTTP 400 Bad Request: duplicate sample for timestamp"), "{reason}");

    // One stale series among fresh ones: Prometheus refuses the request whole; the transport
    // delivers the fresh series without it.
    let mixed =
        transport.send(&write_request(&[("b", t + 1000, 2.0), ("a", t - 1000, 0.5), ("c", t + 1000, 3.0)])).await;
    let Ok(Sent { rejected_items, message }) = mixed else { panic!("partly delivered: {mixed:?}") };
    assert_eq!(rejected_items, 1);
    assert!(
        message.starts_with("the backend refused 1 of 3 series (HTTP 400 Bad Request: out of order sample"),
        "{message}"
    );
    let at = (t + 60_000) as f64 / 1000.0;
    let mut stored = BTreeMap::new();
    for (l, v) in p.raw_samples("{__name__=~\"a|b|c\"}", "10m", at) {
        stored.insert(l["__name__"].clone(), v);
    }
    assert_eq!(
        stored,
        BTreeMap::from([
            ("a".to_string(), vec![(t, 1.0)]),
            ("b".to_string(), vec![(t, 1.0), (t + 1000, 2.0)]),
            ("c".to_string(), vec![(t + 1000, 3.0)]),
        ])
    );
}
