//! The whole push path (encoder -> sending queue -> retry loop -> transport) of the `otlp` and
//! `otlphttp` exporters against scripted servers: what otelcol retries is retried until it
//! succeeds, what it drops is dropped once, counted and never retried, partial successes are
//! counted, and server throttles are honoured.

#[path = "support/otlp.rs"]
mod support;

use std::time::{Duration, Instant};

use fovea::exporters::otlp::{self, OtlpExporterConfig};
use fovea::exporters::otlphttp::{self, OtlpHttpExporterConfig};
use fovea::model::{MetricBatch, Payload, Signal};
use fovea::otlp::status::RpcStatus;
use prost::Message;
use support::{GrpcReply, HttpReply};

/// A one-series batch (one data point) whose value identifies it.
fn batch(value: i64) -> (MetricBatch, fovea::model::AckWaiter) {
    let mut b = support::node_batch(1);
    if let fovea::model::MetricData::Sum(s) = &mut b.resource_metrics[0].scope_metrics[0].metrics[0].data {
        s.points[0].value = fovea::model::Number::Int(value);
    }
    support::fixtures::with_acks(b)
}

fn retry() -> serde_json::Value {
    serde_json::json!({"initial_interval": "50ms", "max_interval": "100ms", "max_elapsed_time": "3s", "randomization_factor": 0.0})
}

/// Waits until `(sent, dropped)` of the exporter reach the expected values.
async fn settle(stats: &fovea::telemetry::ComponentStats, want: (u64, u64)) -> (u64, u64) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, sent, dropped, _) = stats.snapshot(Signal::Metrics);
        if (sent, dropped) == want || Instant::now() > end {
            return (sent, dropped);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn values(seen: &[fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest]) -> Vec<i64> {
    use fovea::otlp::proto::metrics::v1::{metric::Data, number_data_point::Value};
    seen.iter()
        .map(|r| match &r.resource_metrics[0].scope_metrics[0].metrics[0].data {
            Some(Data::Sum(s)) => match s.data_points[0].value {
                Some(Value::AsInt(v)) => v,
                _ => panic!("int expected"),
            },
            _ => panic!("sum expected"),
        })
        .collect()
}

#[tokio::test]
async fn grpc_retries_what_otelcol_retries_and_drops_the_rest_once() {
    let retry_info = RpcStatus::new(8, "slow down", Some(Duration::from_millis(400))).encode_to_vec();
    let (addr, seen) = support::scripted_grpc(vec![
        // batch 1: two transient failures, then success
        GrpcReply::Status(tonic::Status::unavailable("restarting")),
        GrpcReply::Status(tonic::Status::deadline_exceeded("slow")),
        GrpcReply::Ok(None),
        // batch 2: permanent
        GrpcReply::Status(tonic::Status::invalid_argument("bad metric")),
        // batch 3: ResourceExhausted without RetryInfo is permanent
        GrpcReply::Status(tonic::Status::resource_exhausted("quota")),
        // batch 4: ResourceExhausted with RetryInfo waits the server's delay, then succeeds
        GrpcReply::Status(tonic::Status::with_details(tonic::Code::ResourceExhausted, "slow down", retry_info.into())),
        GrpcReply::Ok(None),
        // batch 5: partial success, 1 of 1 point rejected
        GrpcReply::Ok(Some((1, "too old".into()))),
    ])
    .await;
    let config: OtlpExporterConfig = serde_json::from_value(serde_json::json!({
        "endpoint": addr.to_string(), "tls": {"insecure": true}, "compression": "none",
        "sending_queue": {"num_consumers": 1}, "retry_on_failure": retry(),
    }))
    .unwrap();
    let exporter = otlp::exporter("otlp/out".into(), &config).unwrap();
    let running = support::start_exporter(Box::new(exporter)).await;

    let mut waiters = Vec::new();
    for v in 1..=5 {
        let (b, w) = batch(v);
        running.link.send(Payload::from(b)).await.unwrap();
        waiters.push(w);
        // one batch at a time, so the script lines up with the batches
        let want = match v {
            1 => (1, 0),
            2 => (1, 1),
            3 => (1, 2),
            4 => (2, 2),
            _ => (2, 3),
        };
        assert_eq!(settle(&running.stats, want).await, want, "after batch {v}");
    }
    // Every batch was accepted into the queue: the acknowledgements (what an OTLP client upstream
    // would be answered) are all positive, although two batches were later dropped by the backend.
    for w in waiters {
        assert!(w.wait().await);
    }
    // 3 attempts for batch 1, 1 each for the permanent ones, 2 for the throttled one, 1 partial.
    let attempts = values(&seen.lock().unwrap().requests);
    assert_eq!(attempts, vec![1, 1, 1, 2, 3, 4, 4, 5]);
    drop(running.link);
    running.task.await.unwrap();
}

#[tokio::test]
async fn grpc_throttle_from_retry_info_is_honoured() {
    let retry_info = RpcStatus::new(8, "slow down", Some(Duration::from_millis(700))).encode_to_vec();
    let (addr, _) = support::scripted_grpc(vec![
        GrpcReply::Status(tonic::Status::with_details(tonic::Code::ResourceExhausted, "slow down", retry_info.into())),
        GrpcReply::Ok(None),
    ])
    .await;
    let config: OtlpExporterConfig = serde_json::from_value(serde_json::json!({
        "endpoint": addr.to_string(), "tls": {"insecure": true},
        "sending_queue": {"num_consumers": 1}, "retry_on_failure": retry(),
    }))
    .unwrap();
    let running = support::start_exporter(Box::new(otlp::exporter("otlp/t".into(), &config).unwrap())).await;
    let start = Instant::now();
    let (b, _w) = batch(1);
    running.link.send(Payload::from(b)).await.unwrap();
    assert_eq!(settle(&running.stats, (1, 0)).await, (1, 0));
    // The backoff alone would have retried after 50ms; the server asked for 700ms.
    assert!(start.elapsed() >= Duration::from_millis(700), "{:?}", start.elapsed());
}

#[tokio::test]
async fn http_retries_429_and_5xx_with_retry_after_and_drops_4xx() {
    let (addr, seen) = support::scripted_http(vec![
        // batch 1: 429 asks for 1s, then 503, 502, 504, then success
        HttpReply::new(429, &[("retry-after", "1")], Vec::new()),
        HttpReply::new(503, &[], Vec::new()),
        HttpReply::new(502, &[], Vec::new()),
        HttpReply::new(504, &[], Vec::new()),
        HttpReply::new(200, &[("content-type", "application/x-protobuf")], Vec::new()),
        // batch 2: 400 is permanent
        HttpReply::new(400, &[], b"bad request".to_vec()),
        // batch 3: 500 is permanent for OTLP/HTTP (otelcol retries only 429/502/503/504)
        HttpReply::new(500, &[], Vec::new()),
    ])
    .await;
    let config: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
        "endpoint": format!("http://{addr}"), "compression": "none",
        "sending_queue": {"num_consumers": 1}, "retry_on_failure": retry(),
    }))
    .unwrap();
    let running = support::start_exporter(Box::new(otlphttp::exporter("otlphttp/out".into(), &config))).await;
    let start = Instant::now();
    let (b, _w) = batch(1);
    running.link.send(Payload::from(b)).await.unwrap();
    assert_eq!(settle(&running.stats, (1, 0)).await, (1, 0));
    assert!(start.elapsed() >= Duration::from_secs(1), "Retry-After: 1 honoured ({:?})", start.elapsed());
    let (b, _w) = batch(2);
    running.link.send(Payload::from(b)).await.unwrap();
    assert_eq!(settle(&running.stats, (1, 1)).await, (1, 1));
    let (b, _w) = batch(3);
    running.link.send(Payload::from(b)).await.unwrap();
    assert_eq!(settle(&running.stats, (1, 2)).await, (1, 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 5 attempts for batch 1, exactly one each for the permanent failures: never retried.
    assert_eq!(seen.lock().unwrap().len(), 7);
}
