//! `service.telemetry.metrics.readers` through the real agent: a `pull` reader serves the own
//! metrics (with its naming choices) and the health endpoints, `periodic` readers push them over
//! OTLP/HTTP and OTLP/gRPC to servers run here, and bad readers are refused by `validate`.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/otlp.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::{free_port, http_get};
use fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message as _;

/// The names and the `service.name` resource attribute of the metrics in `request`.
fn names(request: &ExportMetricsServiceRequest) -> (Vec<String>, Option<String>) {
    let rm = &request.resource_metrics[0];
    let service = rm.resource.as_ref().and_then(|r| {
        r.attributes.iter().find(|a| a.key == "service.name").and_then(|a| match &a.value.as_ref()?.value {
            Some(fovea::otlp::proto::common::v1::any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
    });
    let names = rm.scope_metrics.iter().flat_map(|s| &s.metrics).map(|m| m.name.clone()).collect();
    (names, service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_periodic_readers_serve_and_push_the_own_metrics() {
    let (http_addr, http_seen) = support::scripted_http(Vec::new()).await;
    let (grpc_addr, grpc_seen) = support::scripted_grpc(Vec::new()).await;
    let pull = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "receivers:
  linuxutil: {{collection_interval: 100ms}}
exporters:
  debug: {{}}
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {{host: 127.0.0.1, port: {pull}, without_scope_info: true, without_units: true, without_type_suffix: true}}
        - periodic:
            interval: 200
            exporter:
              otlp: {{protocol: http/protobuf, endpoint: \"http://{http_addr}/v1/metrics\", compression: none, headers: [{{name: x-tenant, value: a}}]}}
        - periodic:
            interval: 200
            exporter:
              otlp: {{protocol: grpc, endpoint: \"{grpc_addr}\", insecure: true}}
  pipelines:
    metrics: {{receivers: [linuxutil], exporters: [debug]}}
"
    );
    let file = dir.path().join("readers.yaml");
    std::fs::write(&file, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["run", "--config", &file.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let at = ([127, 0, 0, 1], pull).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(at, "/readyz").map(|r| r.0).ok() != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "the agent exited");
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pull reader: the reader's naming (no `_total`, no unit words, no scope labels).
    let (code, body) = http_get(at, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("# TYPE fovea_exporter_sent_items counter"), "{body}");
    assert!(body.contains("fovea_process_uptime{") || body.contains("fovea_process_uptime "), "{body}");
    assert!(!body.contains("_total") && !body.contains("otel_scope_name"), "{body}");

    // Both periodic readers push, again and again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (h, g) = (http_seen.lock().unwrap().len(), grpc_seen.lock().unwrap().requests.len());
        if h >= 3 && g >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "pushes: http {h}, grpc {g}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_http = http_seen.lock().unwrap()[0].clone();
    assert_eq!(first_http.path, "/v1/metrics");
    assert_eq!(first_http.headers["x-tenant"], "a");
    let request = ExportMetricsServiceRequest::decode(first_http.body.as_slice()).unwrap();
    let (metrics, service) = names(&request);
    assert_eq!(service.as_deref(), Some("fovea"));
    for name in ["fovea.build_info", "fovea.process.uptime", "fovea.receiver.accepted_items"] {
        assert!(metrics.iter().any(|m| m == name), "{name} in {metrics:?}");
    }
    let (grpc_metrics, _) = names(&grpc_seen.lock().unwrap().requests[0]);
    assert!(grpc_metrics.iter().any(|m| m == "fovea.build_info"), "{grpc_metrics:?}");

    // SIGTERM: a last push, then a clean exit.
    let before = http_seen.lock().unwrap().len();
    // SAFETY: kill with a valid pid of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success());
    assert!(http_seen.lock().unwrap().len() > before, "a last push at stop");
}

#[test]
fn bad_readers_are_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "receivers:
  linuxutil: {}
exporters:
  debug: {}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:8888
      readers:
        - pull: {exporter: {prometheus: {port: 9999, without_units: true}}}
        - periodic: {exporter: {otlp: {protocol: http/json, endpoint: collector:4318, temporality_preference: delta}}}
        - push: {}
  pipelines:
    metrics: {receivers: [linuxutil], exporters: [debug]}
",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fovea")).args(["validate", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "service::telemetry::metrics::readers::2::push: unknown value `push`; valid values: pull, periodic",
        "service::telemetry::metrics::address: set either address (otelcol's older key) or a pull reader in readers, not both",
        "service::telemetry::metrics::readers::0::pull::exporter::prometheus::without_units: fovea leaves out units and type suffixes together",
        "service::telemetry::metrics::readers::1::periodic::exporter::otlp::protocol: valid values: http/protobuf, grpc",
        "service::telemetry::metrics::readers::1::periodic::exporter::otlp::temporality_preference: only cumulative",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
}
