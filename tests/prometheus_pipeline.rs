//! The `prometheus` exporter inside the engine: its config errors as `fovea validate` reports
//! them (full path, line, what to do), a bind failure, and a whole graph run from YAML.

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/prometheus.rs"]
mod prometheus_server;
#[path = "support/snippet.rs"]
mod snippet;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fovea::config::ConfigError;
use fovea::exporters::prometheus::{self, PrometheusConfig, PrometheusExporter};
use fovea::model::{Attributes, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope, Signal};
use fovea::pipeline::{
    self, BuildContext, Built, ComponentError, Exporter, Factory, Receiver, ReceiverContext, Registry,
};
use fovea::prometheus::Naming;
use fovea::telemetry::{ComponentKind, StatsRegistry};

/// A receiver that sends one fixed batch, then waits to be stopped.
struct OneBatch;

fn one_batch() -> MetricBatch {
    let resource = Arc::new(Resource { attributes: Attributes::from_pairs([("service.name", "fovea")]) });
    let scope = Arc::new(Scope { name: "test".into(), version: "".into() });
    let drops = Metric::counter(
        "network.drop.packets",
        "{packet}",
        "Packets dropped",
        vec![NumberPoint::int(
            Attributes::from_pairs([("drop.reason", "NETFILTER_DROP"), ("network.io.direction", "receive")]),
            1,
            2,
            31,
        )],
    );
    MetricBatch::single(resource, scope, vec![drops])
}

#[async_trait]
impl Receiver for OneBatch {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        ctx.output.send(Payload::from(one_batch())).await?;
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

fn one_batch_factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "onebatch",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "test: one fixed metric batch",
        metrics: &[],
        build: |_: &BuildContext<'_>| Ok(Built::Receiver(Box::new(OneBatch))),
    }
}

fn registry() -> Registry {
    Registry::new(vec![one_batch_factory(), prometheus::factory()])
}

fn build(yaml: &str) -> Result<pipeline::Graph, ConfigError> {
    snippet::build(yaml, &registry())
}

/// The single problem of an invalid config, as (path, line, message).
fn problem(yaml: &str) -> (String, u32, String) {
    let err = build(yaml).err().expect("the config is invalid");
    let mut problems = snippet::problems(&err);
    assert_eq!(problems.len(), 1, "{err}");
    problems.remove(0)
}

fn with_exporter(body: &str) -> String {
    format!(
        "receivers:\n  onebatch: {{}}\nexporters:\n  prometheus:\n{body}service:\n  pipelines:\n    metrics: {{receivers: [onebatch], exporters: [prometheus]}}\n"
    )
}

#[test]
fn unknown_key_names_full_path_line_and_valid_keys() {
    let (path, line, message) =
        problem(&with_exporter("    endpoint: \"0.0.0.0:9999\"\n    endpiont: \"0.0.0.0:9998\"\n"));
    assert_eq!(path, "exporters::prometheus::endpiont");
    assert_eq!(line, 6);
    assert_eq!(
        message,
        "unknown field `endpiont`; valid fields: endpoint, path, namespace, const_labels, send_timestamps, \
         metric_expiration, resource_to_telemetry_conversion, enable_open_metrics, add_metric_suffixes, \
         without_scope_info, naming"
    );
    let (path, line, message) = problem(&with_exporter("    resource_to_telemetry_conversion:\n      enable: true\n"));
    assert_eq!(path, "exporters::prometheus::resource_to_telemetry_conversion::enable");
    assert_eq!(line, 6);
    assert_eq!(message, "unknown field `enable`; valid fields: enabled");
}

#[test]
fn bad_values_are_located_with_what_to_do() {
    let cases = [
        ("    naming: prom\n", "exporters::prometheus::naming", "unknown value `prom`; valid values: otel, retina"),
        (
            "    metric_expiration: 10\n",
            "exporters::prometheus::metric_expiration",
            "a duration needs a unit: write `10s` or `10ms`",
        ),
        (
            "    endpoint: localhost\n",
            "exporters::prometheus::endpoint",
            "`localhost` is not host:port (no port); write e.g. \"0.0.0.0:4317\", \"127.0.0.1:8888\", \"localhost:9464\" or \"[::]:4318\"",
        ),
        (
            "    path: metrics\n",
            "exporters::prometheus::path",
            "`metrics` is not a plain URL path (letters, digits, / . _ ~ -); write e.g. \"/metrics\"",
        ),
        (
            "    path: /metrics/{x}\n",
            "exporters::prometheus::path",
            "`/metrics/{x}` is not a plain URL path (letters, digits, / . _ ~ -); write e.g. \"/metrics\"",
        ),
        (
            "    const_labels: {cluster: a, bad-label: b}\n",
            "exporters::prometheus::const_labels::bad-label",
            "not a Prometheus label name: use letters, digits and `_`, not starting with a digit or `__`",
        ),
        (
            "    send_timestamps: yes\n",
            "exporters::prometheus::send_timestamps",
            "expected true or false, found a string",
        ),
    ];
    for (body, want_path, want_message) in cases {
        let (path, line, message) = problem(&with_exporter(body));
        assert_eq!((path.as_str(), line, message.as_str()), (want_path, 5, want_message), "{body}");
    }
}

#[test]
fn null_body_means_defaults() {
    let doc = snippet::load(&with_exporter("")).expect("loads");
    let parsed: PrometheusConfig = snippet::component(&doc, "exporters::prometheus").expect("defaults");
    assert_eq!(parsed, PrometheusConfig::default());
    assert_eq!(parsed.endpoint, "0.0.0.0:10093");
    assert_eq!(parsed.path, "/metrics");
    assert_eq!(parsed.metric_expiration, Duration::from_secs(300));
    assert!(parsed.add_metric_suffixes && !parsed.send_timestamps && !parsed.enable_open_metrics);
    assert_eq!(parsed.naming, Naming::Otel);
    assert!(build(&with_exporter("")).is_ok());
}

#[test]
fn flows_pipeline_is_refused() {
    let yaml = "receivers:\n  onebatch: {}\nexporters:\n  prometheus: {}\nservice:\n  pipelines:\n    flows: {receivers: [onebatch], exporters: [prometheus]}\n";
    let (path, _, message) = problem(yaml);
    assert_eq!(path, "service::pipelines::flows::exporters");
    assert!(message.contains("cannot handle flows"), "{message}");
}

#[tokio::test]
async fn bind_failure_names_the_address_and_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = taken.local_addr().expect("addr").to_string();
    let mut exporter = PrometheusExporter::new(PrometheusConfig { endpoint: endpoint.clone(), ..Default::default() });
    let start = fixtures::start_context(ComponentKind::Exporter, "prometheus/node");
    let err = exporter.start(&start).await.expect_err("the port is taken").to_string();
    assert!(err.starts_with(&format!("exporter `prometheus/node` cannot listen on {endpoint}: ")), "{err}");
    assert!(err.ends_with("another process already listens there (Retina's agent also uses 10093); stop it or set `endpoint` to a free port"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_from_yaml_serves_what_its_receiver_sent() {
    let port = prometheus_server::free_port();
    let yaml = with_exporter(&format!(
        "    endpoint: 127.0.0.1:{port}\n    naming: retina\n    const_labels: {{cluster: lab}}\n"
    ));
    let graph = build(&yaml).expect("valid config");
    let telemetry = Arc::new(StatsRegistry::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run =
        tokio::spawn(graph.run(telemetry.clone(), Default::default(), async { stop_rx.await.unwrap_or(()) }, || {}));

    let want = "networkobservability_drop_count{cluster=\"lab\",direction=\"ingress\",reason=\"NETFILTER_DROP\"} 31\n";
    let end = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = prometheus_server::get(("127.0.0.1", port), "/metrics", &[]).map(|r| r.text()).unwrap_or_default();
        if text.contains(want) || Instant::now() > end {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains(want), "{text}");
    assert!(text.contains("# TYPE networkobservability_drop_count counter\n"), "{text}");

    stop_tx.send(()).expect("graph still running");
    let report = run.await.expect("no panic").expect("graph ran");
    assert!(report.failed.is_empty() && report.dropped_at_shutdown == 0, "{report:?}");
    let exporter = telemetry.components().into_iter().find(|c| c.id() == "prometheus").expect("exporter stats");
    assert_eq!(exporter.snapshot(Signal::Metrics), (1, 1, 0, 0), "received, sent, dropped, failed");
    assert!(prometheus_server::get(("127.0.0.1", port), "/metrics", &[]).is_err(), "the endpoint is closed after stop");
}
