//! A real OpenTelemetry client: the official Python SDK's OTLP exporters (gRPC and HTTP, pinned
//! in tests/support/requirements.txt) send a counter, a gauge and a histogram to fovea's `otlp`
//! receiver, and exactly those values and attributes arrive.
//!
//! Skips when the Python packages are missing (`python3 -m pip install -r
//! tests/support/requirements.txt`), but fails when `CI=true`.

#[path = "support/otlp.rs"]
mod support;

use std::process::Command;

use fovea::model::{AttrValue, Attributes, MetricBatch, MetricData, Number, Temporality};

fn sdk_available() -> bool {
    let found = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, opentelemetry.sdk",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the OpenTelemetry Python SDK is required in CI: python3 -m pip install -r tests/support/requirements.txt"
        );
        eprintln!(
            "skipped: the OpenTelemetry Python SDK is not installed (python3 -m pip install -r tests/support/requirements.txt)"
        );
    }
    found
}

async fn run_client(protocol: &str, endpoint: String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/otlp_python_client.py");
    let out = tokio::process::Command::new("python3").args([script, protocol, &endpoint]).output().await.unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn check(batch: &MetricBatch) {
    assert_eq!(batch.resource_metrics.len(), 1);
    let rm = &batch.resource_metrics[0];
    let resource = &rm.resource.attributes;
    assert_eq!(resource.get_str("service.name"), Some("python-client"));
    assert_eq!(resource.get_str("k8s.node.name"), Some("node-7"));
    assert_eq!(resource.get_str("telemetry.sdk.language"), Some("python"));
    let sm = &rm.scope_metrics[0];
    assert_eq!((sm.scope.name.as_str(), sm.scope.version.as_str()), ("fovea.test", "1.2.3"));
    let metric = |name: &str| sm.metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no metric {name}"));

    let requests = metric("requests");
    assert_eq!((requests.unit.as_str(), requests.description.as_str()), ("{request}", "Requests served"));
    let MetricData::Sum(sum) = &requests.data else { panic!("requests is not a sum") };
    assert!(sum.monotonic);
    assert_eq!(sum.temporality, Temporality::Cumulative);
    let a = Attributes::from_pairs([
        ("route", AttrValue::from("/a")),
        ("code", AttrValue::Int(200)),
        ("cached", AttrValue::Bool(true)),
        ("ratio", AttrValue::Double(0.5)),
    ]);
    let b = Attributes::from_pairs([
        ("route", AttrValue::from("/b")),
        ("code", AttrValue::Int(503)),
        ("cached", AttrValue::Bool(false)),
        ("ratio", AttrValue::Double(1.5)),
    ]);
    let value = |attrs: &Attributes| sum.points.iter().find(|p| &p.attributes == attrs).map(|p| p.value);
    assert_eq!(sum.points.len(), 2);
    assert_eq!(value(&a), Some(Number::Int(12)));
    assert_eq!(value(&b), Some(Number::Int(1)));
    assert!(sum.points.iter().all(|p| p.start_time_unix_nano > 0 && p.time_unix_nano >= p.start_time_unix_nano));

    let temperature = metric("temperature");
    assert_eq!(temperature.unit, "Cel");
    let MetricData::Gauge(points) = &temperature.data else { panic!("temperature is not a gauge") };
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].value, Number::Double(21.5));
    assert_eq!(points[0].attributes, Attributes::from_pairs([("room", "lab")]));

    let duration = metric("http.server.duration");
    assert_eq!(duration.unit, "ms");
    let MetricData::Histogram(h) = &duration.data else { panic!("http.server.duration is not a histogram") };
    assert_eq!(h.temporality, Temporality::Cumulative);
    let p = &h.points[0];
    assert_eq!(p.attributes, Attributes::from_pairs([("route", "/a")]));
    assert_eq!(*p.explicit_bounds, [1.0, 5.0, 10.0]);
    assert_eq!(p.bucket_counts, [1, 1, 1, 1]);
    assert_eq!((p.count, p.sum, p.min, p.max), (4, 22.5, Some(0.5), Some(12.0)));
}

#[tokio::test]
async fn the_python_sdk_reaches_the_receiver_over_grpc_and_http() {
    if !sdk_available() {
        return;
    }
    let mut receiver = support::start_receiver(serde_json::json!({"protocols": {
        "grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"},
    }}))
    .await;
    let grpc = format!("http://{}", receiver.grpc.unwrap());
    let (_, batch) = tokio::join!(run_client("grpc", grpc), receiver.next_batch());
    check(&batch);

    let http = format!("http://{}/v1/metrics", receiver.http.unwrap());
    let (_, batch) = tokio::join!(run_client("http", http), receiver.next_batch());
    check(&batch);
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}
