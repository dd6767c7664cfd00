//! `sending_queue::batch` (otelcol's exporter-side batching) through the real `otlphttp`
//! exporter against a scripted server: small batches are merged into one request once
//! `min_size` points are there, the rest goes after `flush_timeout`, `max_size` splits, and every
//! input batch is acknowledged once its points are queued.

#[path = "support/otlp.rs"]
mod support;

use std::time::{Duration, Instant};

use fovea::exporters::otlphttp::{self, OtlpHttpExporterConfig};
use fovea::model::{Payload, Signal};
use fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

fn points_of(seen: &[support::HttpSeen]) -> Vec<usize> {
    seen.iter()
        .map(|s| {
            let request = ExportMetricsServiceRequest::decode(s.body.as_slice()).unwrap();
            fovea::otlp::metrics_from_proto(request).batch.data_points()
        })
        .collect()
}

async fn wait_requests(seen: &std::sync::Mutex<Vec<support::HttpSeen>>, n: usize) -> Vec<usize> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let got = points_of(&seen.lock().unwrap());
        if got.len() >= n || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn small_batches_leave_as_few_requests_of_min_size_and_the_rest_after_flush_timeout() {
    let (addr, seen) = support::scripted_http(Vec::new()).await;
    let config: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
        "endpoint": format!("http://{addr}"), "compression": "none",
        "sending_queue": {"num_consumers": 1, "batch": {"min_size": 100, "max_size": 150, "flush_timeout": "700ms"}},
    }))
    .unwrap();
    let running = support::start_exporter(Box::new(otlphttp::exporter("otlphttp/out".into(), &config))).await;
    let mut waiters = Vec::new();
    // 7 batches of 30 points: 210 points in all.
    for _ in 0..7 {
        let (b, w) = support::fixtures::with_acks(support::node_batch(30));
        waiters.push(w);
        running.link.send(Payload::from(b)).await.unwrap();
    }
    // At 120 points (4 batches) a merged batch goes; the other 90 stay under min_size and go
    // when flush_timeout has passed.
    let early = wait_requests(&seen, 1).await;
    assert_eq!(early, vec![120]);
    let start = Instant::now();
    let all = wait_requests(&seen, 2).await;
    assert_eq!(all, vec![120, 90]);
    assert!(start.elapsed() >= Duration::from_millis(300), "held for flush_timeout ({:?})", start.elapsed());
    for w in waiters {
        assert!(w.wait().await, "each input batch acknowledged");
    }
    let (_, sent, dropped, _) = running.stats.snapshot(Signal::Metrics);
    assert_eq!((sent, dropped), (210, 0));

    // Above max_size a batch is split: 200 points -> 150 at once, 50 after the timeout.
    let (b, _w) = support::fixtures::with_acks(support::node_batch(200));
    running.link.send(Payload::from(b)).await.unwrap();
    let all = wait_requests(&seen, 4).await;
    assert_eq!(all, vec![120, 90, 150, 50]);
    drop(running.link);
    running.task.await.unwrap();
}
