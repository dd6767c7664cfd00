//! The `prometheus` exporter end to end: its HTTP endpoint, `promtool check metrics` on what it
//! serves, and a real Prometheus scraping it and answering PromQL with the exact values sent.

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/prometheus.rs"]
mod prometheus_server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixtures::attrs;
use fovea::exporters::prometheus::{PrometheusConfig, PrometheusExporter};
use fovea::model::{
    Attributes, HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, NumberPoint, Payload, Resource, Scope,
    Signal, Temporality,
};
use fovea::pipeline::{ComponentError, Exporter, ExporterContext, Input, Link};
use fovea::prometheus::Naming;
use fovea::telemetry::{ComponentKind, ComponentStats};
use prometheus_server::{Options, Prometheus, ScrapeTarget, get, labels, require_tool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An exporter started and running, fed through its input channel like the engine does.
struct Running {
    addr: SocketAddr,
    link: Link,
    stats: Arc<ComponentStats>,
    task: JoinHandle<Result<(), ComponentError>>,
}

async fn start(config: PrometheusConfig) -> Running {
    let mut exporter = PrometheusExporter::new(config);
    let start = fixtures::start_context(ComponentKind::Exporter, "prometheus");
    let stats = start.stats.clone();
    exporter.start(&start).await.expect("exporter starts");
    let addr = exporter.local_addr().expect("bound address");
    let (link, input) = Input::channel(8, stats.clone());
    let ctx = ExporterContext { input, deadline: CancellationToken::new(), start };
    let task = tokio::spawn(Box::new(exporter).run(ctx));
    Running { addr, link, stats, task }
}

impl Running {
    async fn send(&self, batch: MetricBatch) {
        self.link.send(Payload::from(batch)).await.expect("exporter accepts the batch");
    }

    /// Scrapes until the body contains `needle` (the exporter folds asynchronously).
    async fn scrape_until(&self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let r = get(self.addr, "/metrics", &[]).expect("scrape");
            let text = r.text();
            if text.contains(needle) || Instant::now() > end {
                assert!(text.contains(needle), "scrape never contained {needle:?}:\n{text}");
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the input and waits for the exporter to stop; returns (received, sent, dropped).
    async fn stop(self) -> (u64, u64, u64) {
        drop(self.link);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("exporter stops when its input closes")
            .expect("no panic")
            .expect("no error");
        let (received, sent, dropped, _) = self.stats.snapshot(Signal::Metrics);
        (received, sent, dropped)
    }
}

fn config(naming: Naming) -> PrometheusConfig {
    PrometheusConfig { endpoint: "127.0.0.1:0".into(), naming, ..PrometheusConfig::default() }
}

fn point(pairs: &[(&str, &str)], value: i64) -> NumberPoint {
    NumberPoint::int(attrs(pairs), 1_700_000_000_000_000_000, fovea::model::now_unix_nano(), value)
}

/// What one node reports: forward counters on two interfaces, TCP states, a handshake histogram
/// and a drop counter, from resource `net/fovea` on `node-a`.
fn node_batch(receive_eth0: i64) -> MetricBatch {
    let resource = Arc::new(Resource {
        attributes: attrs(&[
            ("service.name", "fovea"),
            ("service.namespace", "net"),
            ("service.instance.id", "node-a"),
            ("k8s.node.name", "node-a"),
            ("host.name", "host-a"),
        ]),
    });
    let scope = Arc::new(Scope { name: "fovea/packetforward".into(), version: "0.1.0".into() });
    let fwd = |dir, ifname, v| point(&[("network.io.direction", dir), ("network.interface.name", ifname)], v);
    let packets = Metric::counter(
        "network.forward.packets",
        "{packet}",
        "Packets forwarded by the host",
        vec![fwd("receive", "eth0", receive_eth0), fwd("receive", "eth1", 55), fwd("transmit", "eth0", 678)],
    );
    let bytes = Metric::counter(
        "network.forward.bytes",
        "By",
        "Bytes forwarded by the host",
        vec![fwd("receive", "eth0", 987654)],
    );
    let states = Metric::gauge(
        "network.tcp.connections",
        "{connection}",
        "TCP sockets by state",
        vec![
            point(&[("network.connection.state", "established"), ("note", "a \"quoted\" \\ value\nline 2")], 7),
            point(&[("network.connection.state", "time_wait")], 3),
        ],
    );
    let drops = Metric::counter(
        "network.drop.packets",
        "{packet}",
        "Packets dropped by the kernel",
        vec![point(&[("drop.reason", "NETFILTER_DROP"), ("network.io.direction", "receive")], 42)],
    );
    let now = fovea::model::now_unix_nano();
    let handshake = Metric {
        name: "network.tcp.handshake.duration".into(),
        description: "TCP handshake time".into(),
        unit: "s".into(),
        data: MetricData::Histogram(HistogramData {
            temporality: Temporality::Cumulative,
            points: vec![HistogramPoint {
                attributes: Attributes::new(),
                start_time_unix_nano: 1_700_000_000_000_000_000,
                time_unix_nano: now,
                count: 10,
                sum: 1.5,
                bucket_counts: vec![1, 2, 3, 4],
                explicit_bounds: Arc::from(vec![0.001, 0.01, 0.1]),
                min: None,
                max: None,
            }],
        }),
    };
    MetricBatch::single(resource, scope, vec![packets, bytes, states, drops, handshake])
}

const NODE_BATCH_POINTS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_serves_text_open_metrics_and_404() {
    let exporter = start(PrometheusConfig { enable_open_metrics: true, ..config(Naming::Otel) }).await;
    exporter.send(node_batch(12345)).await;
    let text = exporter.scrape_until("network_forward_packets_total").await;
    let l = "instance=\"node-a\",job=\"net/fovea\"";
    let scope = "otel_scope_name=\"fovea/packetforward\",otel_scope_version=\"0.1.0\"";
    for line in [
        "# HELP network_forward_packets_total Packets forwarded by the host\n# TYPE network_forward_packets_total counter\n".to_string(),
        format!("network_forward_packets_total{{{l},network_interface_name=\"eth0\",network_io_direction=\"receive\",{scope}}} 12345\n"),
        format!("network_forward_bytes_total{{{l},network_interface_name=\"eth0\",network_io_direction=\"receive\",{scope}}} 987654\n"),
        format!("network_tcp_connections{{{l},network_connection_state=\"established\",note=\"a \\\"quoted\\\" \\\\ value\\nline 2\",{scope}}} 7\n"),
        format!("network_tcp_handshake_duration_seconds_bucket{{{l},{scope},le=\"0.01\"}} 3\n"),
        format!("network_tcp_handshake_duration_seconds_bucket{{{l},{scope},le=\"+Inf\"}} 10\n"),
        "target_info{host_name=\"host-a\",instance=\"node-a\",job=\"net/fovea\",k8s_node_name=\"node-a\"} 1\n".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }

    let r = get(exporter.addr, "/metrics", &[]).expect("scrape");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(!r.text().contains("# EOF"));

    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let om = get(exporter.addr, "/metrics", &[("Accept", accept)]).expect("scrape");
    assert_eq!(om.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let om = om.text();
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    assert!(om.contains("# TYPE network_forward_packets counter\n"), "{om}");
    assert!(om.contains("network_tcp_handshake_duration_seconds_bucket{"), "{om}");
    assert!(om.contains("le=\"0.1\"} 6\n"), "{om}");

    assert_eq!(get(exporter.addr, "/", &[]).expect("get /").status, 404);
    assert_eq!(get(exporter.addr, "/metricsx", &[]).expect("get /metricsx").status, 404);
    let post = prometheus_server::post(exporter.addr, "/metrics", &[], b"x").expect("post");
    assert_eq!(post.status, 405);

    let (received, sent, dropped) = exporter.stop().await;
    assert_eq!((received, sent, dropped), (NODE_BATCH_POINTS, NODE_BATCH_POINTS, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_metrics_is_not_served_unless_enabled() {
    let exporter = start(config(Naming::Otel)).await;
    exporter.send(node_batch(1)).await;
    exporter.scrape_until("network_forward_packets_total").await;
    let r =
        get(exporter.addr, "/metrics", &[("Accept", "application/openmetrics-text;version=1.0.0")]).expect("scrape");
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_disappear_after_metric_expiration() {
    let exporter =
        start(PrometheusConfig { metric_expiration: Duration::from_millis(500), ..config(Naming::Otel) }).await;
    exporter.send(node_batch(5)).await;
    exporter.scrape_until("network_forward_packets_total").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let text = get(exporter.addr, "/metrics", &[]).expect("scrape").text();
    assert_eq!(text, "", "every series and target_info expired");
    exporter.send(node_batch(6)).await;
    exporter.scrape_until("network_forward_packets_total").await;
    exporter.stop().await;
}

fn promtool(exposition: &str) -> Option<(bool, String)> {
    let promtool = require_tool("promtool")?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_is_clean() {
    let exporter = start(config(Naming::Otel)).await;
    exporter.send(node_batch(12345)).await;
    let text = exporter.scrape_until("network_tcp_handshake_duration_seconds_count").await;
    exporter.stop().await;
    let Some((ok, report)) = promtool(&text) else { return };
    assert!(ok && report.trim().is_empty(), "promtool check metrics:\n{report}\non:\n{text}");

    // Retina's names break two promtool naming conventions on purpose (its dashboards use them);
    // nothing else may be reported.
    let exporter = start(config(Naming::Retina)).await;
    exporter.send(node_batch(12345)).await;
    let text = exporter.scrape_until("networkobservability_forward_count").await;
    exporter.stop().await;
    let Some((_, report)) = promtool(&text) else { return };
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| {
            !(l.ends_with("counter metrics should have \"_total\" suffix")
                || l.ends_with("non-histogram and non-summary metrics should not have \"_count\" suffix"))
        })
        .collect();
    assert!(unexpected.is_empty(), "promtool check metrics (retina):\n{report}\non:\n{text}");
    assert!(
        report.contains("networkobservability_forward_count counter metrics should have \"_total\" suffix"),
        "{report}"
    );
}

fn values(samples: &prometheus_server::Samples) -> Vec<f64> {
    samples.iter().map(|(_, v)| *v).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_exact_values() {
    let otel = start(PrometheusConfig { enable_open_metrics: true, ..config(Naming::Otel) }).await;
    let retina = start(PrometheusConfig { enable_open_metrics: true, ..config(Naming::Retina) }).await;
    let text_only = start(config(Naming::Retina)).await;
    for e in [&otel, &retina, &text_only] {
        e.send(node_batch(12345)).await;
    }
    otel.scrape_until("network_forward_packets_total").await;
    retina.scrape_until("networkobservability_forward_count").await;
    text_only.scrape_until("networkobservability_forward_count").await;

    let (otel_addr, retina_addr, text_addr) = (otel.addr, retina.addr, text_only.addr);
    let prom = tokio::task::spawn_blocking(move || {
        Prometheus::start(Options {
            targets: vec![
                ScrapeTarget { honor_labels: true, ..ScrapeTarget::new("otel", otel_addr) },
                ScrapeTarget::new("retina", retina_addr),
                ScrapeTarget::new("retina-text", text_addr),
            ],
            ..Options::default()
        })
    })
    .await
    .expect("start prometheus");
    let Some(prom) = prom else { return };
    let prom = Arc::new(prom);
    let wait = Duration::from_secs(30);

    let p = prom.clone();
    tokio::task::spawn_blocking(move || {
        p.wait_targets_up(3, wait);
        let prom = &p;

        // OpenTelemetry naming, scraped as OpenMetrics, target labels honored.
        let r =
            prom.wait_for("network_forward_packets_total{network_io_direction=\"receive\"}", wait, |r| r.len() == 2);
        let mut r = r;
        r.sort_by(|a, b| a.0.cmp(&b.0));
        let base = |ifname: &str| {
            labels(&[
                ("__name__", "network_forward_packets_total"),
                ("instance", "node-a"),
                ("job", "net/fovea"),
                ("network_interface_name", ifname),
                ("network_io_direction", "receive"),
                ("otel_scope_name", "fovea/packetforward"),
                ("otel_scope_version", "0.1.0"),
            ])
        };
        assert_eq!(r, vec![(base("eth0"), 12345.0), (base("eth1"), 55.0)]);
        assert_eq!(values(&prom.query("network_tcp_handshake_duration_seconds_count{job=\"net/fovea\"}")), [10.0]);
        assert_eq!(values(&prom.query("network_tcp_handshake_duration_seconds_sum{job=\"net/fovea\"}")), [1.5]);
        assert_eq!(
            values(&prom.query("network_tcp_handshake_duration_seconds_bucket{job=\"net/fovea\",le=\"0.01\"}")),
            [3.0]
        );
        assert_eq!(
            values(&prom.query("network_tcp_handshake_duration_seconds_bucket{job=\"net/fovea\",le=\"+Inf\"}")),
            [10.0]
        );
        let joined = prom.query(
            "network_forward_packets_total{network_interface_name=\"eth0\",network_io_direction=\"receive\"} \
             * on(job, instance) group_left(k8s_node_name, host_name) target_info",
        );
        assert_eq!(joined.len(), 1, "{joined:?}");
        assert_eq!(joined[0].1, 12345.0);
        assert_eq!(joined[0].0.get("k8s_node_name").map(String::as_str), Some("node-a"));
        assert_eq!(joined[0].0.get("host_name").map(String::as_str), Some("host-a"));
        let note = prom.query("network_tcp_connections{network_connection_state=\"established\"}");
        assert_eq!(note.len(), 1, "{note:?}");
        assert_eq!(note[0].0.get("note").map(String::as_str), Some("a \"quoted\" \\ value\nline 2"));
        assert_eq!(note[0].1, 7.0);
        let meta = prom.query("count(network_forward_packets_total)");
        assert_eq!(values(&meta), [3.0]);

        // Retina naming: Retina's names and exactly Retina's labels (plus the scrape's job and
        // instance), interfaces summed per direction; over OpenMetrics and the text format.
        for (job, addr) in [("retina", retina_addr), ("retina-text", text_addr)] {
            let q = format!("networkobservability_forward_count{{job=\"{job}\"}}");
            let mut r = prom.wait_for(&q, wait, |r| r.len() == 2);
            r.sort_by(|a, b| a.0.cmp(&b.0));
            let instance = addr.to_string();
            let series = |direction: &str| {
                labels(&[
                    ("__name__", "networkobservability_forward_count"),
                    ("direction", direction),
                    ("instance", &instance),
                    ("job", job),
                ])
            };
            assert_eq!(r, vec![(series("egress"), 678.0), (series("ingress"), 12400.0)], "{job}");
            let drops = prom.query(&format!("networkobservability_drop_count{{job=\"{job}\"}}"));
            assert_eq!(
                drops,
                vec![(
                    labels(&[
                        ("__name__", "networkobservability_drop_count"),
                        ("direction", "ingress"),
                        ("instance", &instance),
                        ("job", job),
                        ("reason", "NETFILTER_DROP"),
                    ]),
                    42.0
                )]
            );
            let states: BTreeMap<String, f64> = prom
                .query(&format!("networkobservability_tcp_state{{job=\"{job}\"}}"))
                .into_iter()
                .map(|(l, v)| (l.get("state").cloned().unwrap_or_default(), v))
                .collect();
            assert_eq!(states, BTreeMap::from([("ESTABLISHED".to_string(), 7.0), ("TIME_WAIT".to_string(), 3.0)]));
            let q = format!("rate(networkobservability_forward_bytes{{job=\"{job}\"}}[1m])");
            let rate = prom.wait_for(&q, wait, |r| r.len() == 1);
            assert_eq!(values(&rate), [0.0], "a counter that does not move has rate 0");
        }
        // The type Prometheus recorded: counters are counters, under both formats.
        for (metric, want) in [
            ("networkobservability_forward_count", "counter"),
            ("networkobservability_forward_bytes", "counter"),
            ("networkobservability_drop_count", "counter"),
            ("networkobservability_tcp_state", "gauge"),
            ("network_forward_packets", "counter"),
            ("network_tcp_handshake_duration_seconds", "histogram"),
        ] {
            let types = prom.metadata_types(metric);
            assert!(!types.is_empty() && types.iter().all(|t| t == want), "{metric}: {types:?}");
        }
    })
    .await
    .expect("queries");

    // A new cumulative value reaches Prometheus on the next scrape.
    otel.send(node_batch(20000)).await;
    let p = prom.clone();
    tokio::task::spawn_blocking(move || {
        let q = "network_forward_packets_total{network_interface_name=\"eth0\",network_io_direction=\"receive\"}";
        let r = p.wait_for(q, wait, |r| r.first().is_some_and(|(_, v)| *v == 20000.0));
        assert_eq!(values(&r), [20000.0]);
    })
    .await
    .expect("update");

    for e in [otel, retina, text_only] {
        e.stop().await;
    }
}
