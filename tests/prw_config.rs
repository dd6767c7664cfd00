//! `exporters::prometheusremotewrite` configuration: otelcol's defaults, the alias, and every
//! invalid setting reported with its full path, line and what to do.

#[path = "support/snippet.rs"]
mod snippet;

use std::time::Duration;

use fovea::config::ConfigError;
use fovea::exporters::prometheusremotewrite::{self, RemoteWriteConfig};
use fovea::pipeline::{self, Registry};
use fovea::prometheus::Naming;

fn registry() -> Registry {
    Registry::new(vec![snippet::idle_receiver(), prometheusremotewrite::factory()])
}

fn build(yaml: &str) -> Result<pipeline::Graph, ConfigError> {
    snippet::build(yaml, &registry())
}

/// A config with the exporter `name` and its `body` (lines indented by 4 spaces), exporter at line 4.
fn with_exporter(name: &str, body: &str) -> String {
    format!(
        "receivers:\n  idle: {{}}\nexporters:\n  {name}:\n{body}service:\n  pipelines:\n    metrics: {{receivers: [idle], exporters: [{name}]}}\n"
    )
}

/// Every problem of an invalid config, as (path, line, message).
fn problems(body: &str) -> Vec<(String, u32, String)> {
    let err = build(&with_exporter("prometheusremotewrite", body)).err().expect("the config is invalid");
    snippet::problems(&err)
}

fn parsed(body: &str) -> RemoteWriteConfig {
    let doc = snippet::load(&with_exporter("prometheusremotewrite", body)).expect("loads");
    snippet::component(&doc, "exporters::prometheusremotewrite").expect("valid")
}

#[test]
fn defaults_are_otelcols() {
    let c = parsed("    endpoint: http://prometheus:9090/api/v1/write\n");
    assert_eq!(
        format!("{c:?}"),
        format!("{:?}", RemoteWriteConfig::with_endpoint("http://prometheus:9090/api/v1/write"))
    );
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.max_batch_size_bytes, 3_000_000);
    assert!(c.target_info.enabled && !c.send_metadata && !c.resource_to_telemetry_conversion.enabled);
    assert!(c.add_metric_suffixes && !c.disable_scope_info && !c.retry_on_http_429);
    assert_eq!(c.naming, Naming::Otel);
    let q = &c.remote_write_queue;
    assert_eq!((q.enabled, q.queue_size, q.num_consumers, q.storage.is_none()), (true, 10_000, 5, true));
    let r = &c.retry_on_failure;
    assert_eq!(
        (r.enabled, r.initial_interval, r.max_interval, r.max_elapsed_time),
        (true, Duration::from_millis(50), Duration::from_secs(30), Duration::from_secs(300))
    );
    // The delivery queue always has one consumer, whatever num_consumers says.
    let c = parsed("    endpoint: http://p:9090/api/v1/write\n    remote_write_queue: {num_consumers: 10}\n");
    assert_eq!(c.sending_queue().num_consumers, 1);
    // Setting one retry key keeps the remote-write defaults of the others.
    let c = parsed("    endpoint: http://p:9090/api/v1/write\n    retry_on_failure: {max_elapsed_time: 0}\n");
    assert_eq!(c.retry_on_failure.initial_interval, Duration::from_millis(50));
    assert_eq!(c.retry_on_failure.max_elapsed_time, Duration::ZERO);
}

#[test]
fn the_alias_and_a_persistent_queue_build() {
    let body = "    endpoint: https://prom.example:9090/api/v1/write\n    remote_write_queue:\n      storage: {directory: /var/lib/fovea/prw, max_size_mib: 64}\n";
    build(&with_exporter("prometheus_remote_write", body)).expect("alias accepted");
    build(&with_exporter("prometheusremotewrite/backup", body)).expect("named instance accepted");
}

#[test]
fn a_flows_pipeline_is_refused() {
    let yaml = "receivers:\n  idle: {}\nexporters:\n  prometheusremotewrite: {endpoint: \"http://p/api/v1/write\"}\nservice:\n  pipelines:\n    flows: {receivers: [idle], exporters: [prometheusremotewrite]}\n";
    let err = build(yaml).err().expect("invalid");
    let p = &err.problems()[0];
    assert_eq!(p.path, "service::pipelines::flows::exporters");
    assert!(p.message.contains("cannot handle flows"), "{}", p.message);
}

/// A problem: full path, line, message.
type Expected = (String, u32, &'static str);

#[test]
fn every_bad_setting_is_located_with_what_to_do() {
    let p = "exporters::prometheusremotewrite";
    let cases: Vec<(&str, Vec<Expected>)> = vec![
        ("    timeout: 5s\n", vec![(format!("{p}::endpoint"), 5, "missing required field `endpoint`")]),
        (
            "    endpoint: prometheus:9090\n",
            vec![(
                format!("{p}::endpoint"),
                5,
                "`prometheus:9090` has scheme `prometheus`; remote-write needs http:// or https://, e.g. \"http://prometheus:9090/api/v1/write\"",
            )],
        ),
        (
            "    endpoint: /api/v1/write\n",
            vec![(
                format!("{p}::endpoint"),
                5,
                "`/api/v1/write` is not a URL (relative URL without a base); write e.g. \"http://prometheus:9090/api/v1/write\"",
            )],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    headers:\n      Content-Encoding: gzip\n      X-Scope-OrgID: tenant\n      user-agent: me\n",
            vec![
                (
                    format!("{p}::headers::Content-Encoding"),
                    7,
                    "the exporter sets `Content-Encoding` itself and it cannot be overridden (reserved: Content-Encoding, Content-Type, X-Prometheus-Remote-Write-Version, User-Agent)",
                ),
                (
                    format!("{p}::headers::user-agent"),
                    9,
                    "the exporter sets `user-agent` itself and it cannot be overridden (reserved: Content-Encoding, Content-Type, X-Prometheus-Remote-Write-Version, User-Agent)",
                ),
            ],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    compression: gzip\n",
            vec![(format!("{p}::compression"), 6, "compression type must be snappy (remote-write 1.0 requires it)")],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    external_labels: {cluster: \"\", \"\": x, __x: y}\n",
            vec![
                (format!("{p}::external_labels::"), 6, "an external label needs a name"),
                (
                    format!("{p}::external_labels::__x"),
                    6,
                    "not usable as a label name: use letters, digits and `_`, not starting with `__`",
                ),
                (
                    format!("{p}::external_labels::cluster"),
                    6,
                    "an external label needs a value (an empty value would remove the label)",
                ),
            ],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    remote_write_queue: {queue_size: 0}\n",
            vec![(
                format!("{p}::remote_write_queue::queue_size"),
                6,
                "a 0 size queue will drop all the data; set it above 0 or disable the queue",
            )],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    remote_write_queue:\n      enabled: false\n      storage: {directory: /tmp/q}\n",
            vec![(
                format!("{p}::remote_write_queue::storage"),
                8,
                "the persistent queue needs the queue: set enabled: true or remove storage",
            )],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    sending_queue:\n      storage: {directory: /tmp/q}\n",
            vec![(
                format!("{p}::sending_queue"),
                7,
                "prometheusremotewrite has no sending_queue (as in otelcol); its queue is remote_write_queue, and the persistent queue is remote_write_queue::storage: {directory: ..., max_size_mib: ...}",
            )],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    wal: {directory: /tmp/wal}\n",
            vec![(
                format!("{p}::wal"),
                6,
                "otelcol's write-ahead log is not supported; use remote_write_queue::storage: {directory: ...}, a persistent queue that survives outages and restarts",
            )],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    retry_on_failure: {initial_interval: 10s, max_interval: 1s}\n",
            vec![(format!("{p}::retry_on_failure::max_interval"), 6, "must not be less than initial_interval")],
        ),
        (
            "    endpoint: http://p/api/v1/write\n    naming: prom\n",
            vec![(format!("{p}::naming"), 6, "unknown value `prom`; valid values: otel, retina")],
        ),
    ];
    for (body, want) in cases {
        let mut got = problems(body);
        got.sort();
        let mut want: Vec<(String, u32, String)> = want.into_iter().map(|(p, l, m)| (p, l, m.to_string())).collect();
        want.sort();
        assert_eq!(got, want, "{body}");
    }
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let got = problems("    endpoint: http://p/api/v1/write\n    queue_size: 5\n");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "exporters::prometheusremotewrite::queue_size");
    assert!(
        got[0].2.starts_with("unknown field `queue_size`; valid fields: endpoint, headers, tls, timeout, compression,"),
        "{}",
        got[0].2
    );
}
