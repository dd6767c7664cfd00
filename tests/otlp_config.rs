//! Configuration of the OTLP components as otelcol users write it: defaults, aliases, and
//! precise errors for what is wrong.

#[path = "support/snippet.rs"]
mod snippet;

use std::time::Duration;

use fovea::exporters::otlp::OtlpExporterConfig;
use fovea::exporters::otlphttp::{Encoding, OtlpHttpExporterConfig};
use fovea::otlp::Compression;
use fovea::pipeline::Registry;
use fovea::receivers::otlp::OtlpReceiverConfig;

fn registry() -> Registry {
    Registry::new(vec![
        fovea::receivers::otlp::factory(),
        fovea::exporters::otlp::factory(),
        fovea::exporters::otlphttp::factory(),
        fovea::exporters::debug::factory(),
    ])
}

/// Builds the graph; `Err` holds the rendered problems.
fn build(yaml: &str) -> Result<(), String> {
    snippet::build(yaml, &registry()).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn defaults_are_otelcols() {
    let doc = snippet::load(
        "exporters:\n  otlp: {endpoint: collector:4317}\n  otlphttp: {endpoint: http://collector:4318}\n\
         receivers:\n  otlp:\n    protocols:\n      grpc:\n      http:\n",
    )
    .unwrap();
    let grpc: OtlpExporterConfig = snippet::component(&doc, "exporters::otlp").unwrap();
    assert_eq!((grpc.compression, grpc.timeout, grpc.tls.insecure), (Compression::Gzip, Duration::from_secs(5), false));
    assert!(grpc.sending_queue.enabled && grpc.retry_on_failure.enabled);
    assert_eq!((grpc.sending_queue.num_consumers, grpc.sending_queue.queue_size), (10, 1000));
    let http: OtlpHttpExporterConfig = snippet::component(&doc, "exporters::otlphttp").unwrap();
    assert_eq!(
        (http.compression, http.timeout, http.encoding),
        (Compression::Gzip, Duration::from_secs(30), Encoding::Proto)
    );
    assert_eq!(http.metrics_url().unwrap(), "http://collector:4318/v1/metrics");
    let r: OtlpReceiverConfig = snippet::component(&doc, "receivers::otlp").unwrap();
    let (g, h) = (r.protocols.grpc.unwrap(), r.protocols.http.unwrap());
    assert_eq!((g.endpoint.as_str(), g.max_recv_msg_size_mib), ("127.0.0.1:4317", 4));
    assert_eq!(
        (h.endpoint.as_str(), h.max_request_body_size, h.metrics_url_path.as_str()),
        ("127.0.0.1:4318", 20 << 20, "/v1/metrics")
    );
}

#[test]
fn snake_case_aliases_and_a_full_graph_build() {
    build(
        "receivers:\n  otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}\n\
         exporters:\n  otlp_grpc/a: {endpoint: https://gw:4317, headers: {authorization: Bearer x}, compression: zstd}\n\
         \x20 otlp_http/b: {endpoint: https://gw:4318, encoding: json, tls: {insecure_skip_verify: true}}\n\
         \x20 otlphttp/flows: {logs_endpoint: http://loki:3100/otlp/v1/logs}\n\
         service:\n  pipelines:\n    metrics: {receivers: [otlp], exporters: [otlp_grpc/a, otlp_http/b]}\n",
    )
    .unwrap();
}

#[test]
fn mistakes_are_reported_with_their_path() {
    let cases = [
        ("exporters: {otlp: }", "exporters::otlp::endpoint: missing required field `endpoint`"),
        (
            "exporters: {otlp: {endpoint: c:4317, compression: snappy}}",
            "unknown value `snappy`; valid values: gzip, zstd, none",
        ),
        ("exporters: {otlp: {endpoint: 'c:http'}}", "exporters::otlp::endpoint: `http` is not a port number"),
        (
            "exporters: {otlp: {endpoint: c:4317, tls: {cert_file: /c.pem}}}",
            "exporters::otlp::tls::key_file: a client certificate needs both",
        ),
        ("exporters: {otlp: {endpoint: c:4317, timeout: 5}}", "a duration needs a unit"),
        (
            "exporters: {otlp: {endpoint: c:4317, sending_queue: {queue_sze: 5}}}",
            "exporters::otlp::sending_queue::queue_sze: unknown field `queue_sze`",
        ),
        ("exporters: {otlp: {endpoint: c:4317, balancer_name: pick_first}}", "unknown field `balancer_name`"),
        ("exporters: {otlphttp: {}}", "exporters::otlphttp::endpoint: at least one endpoint must be specified"),
        ("exporters: {otlphttp: {endpoint: 'collector:4318'}}", "needs an http:// or https:// scheme"),
        (
            "exporters: {otlphttp: {endpoint: 'http://c', encoding: xml}}",
            "unknown value `xml`; valid values: proto, json",
        ),
        ("receivers: {otlp: }", "receivers::otlp::protocols: must specify at least one protocol"),
        (
            "receivers: {otlp: {protocols: {grpc: {endpoint: 4317}}}}",
            "receivers::otlp::protocols::grpc::endpoint: `4317` is not host:port",
        ),
        ("receivers: {otlp: {protocols: {thrift: }}}", "unknown field `thrift`; valid fields: grpc, http"),
        (
            "receivers: {otlp: {protocols: {http: {tls: {cert_file: /c.pem}}}}}",
            "receivers::otlp::protocols::http::tls::key_file",
        ),
    ];
    for (yaml, expected) in cases {
        let err = build(&format!("{yaml}\nservice: {{pipelines: {{}}}}\n")).expect_err(yaml);
        assert!(err.contains(expected), "for `{yaml}`:\n  expected `{expected}`\n  got {err}");
    }
}
