//! fovea -> fovea: the `otlp` and `otlphttp` exporters send to fovea's own `otlp` receiver on
//! 127.0.0.1, with every compression (and OTLP/JSON), and every name, unit, attribute,
//! temporality and value arrives unchanged.

#[path = "support/otlp.rs"]
mod support;

use std::time::Duration;

use fovea::exporters::otlp::{self, OtlpExporterConfig};
use fovea::exporters::otlphttp::{self, OtlpHttpExporterConfig};
use fovea::model::{Payload, Signal};

async fn wait_sent(stats: &fovea::telemetry::ComponentStats, items: u64) {
    for _ in 0..200 {
        if stats.snapshot(Signal::Metrics).1 >= items {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the exporter reported {:?} (received, sent, dropped, failed), wanted {items} sent",
        stats.snapshot(Signal::Metrics)
    );
}

#[tokio::test]
async fn otlp_grpc_exporter_to_otlp_receiver_with_every_compression() {
    let mut receiver =
        support::start_receiver(serde_json::json!({"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}})).await;
    let batch = support::every_kind_batch();
    for compression in ["gzip", "zstd", "none"] {
        let config: OtlpExporterConfig = serde_json::from_value(serde_json::json!({
            "endpoint": receiver.grpc.unwrap().to_string(), "tls": {"insecure": true}, "compression": compression,
        }))
        .unwrap();
        let exporter = support::start_exporter(Box::new(otlp::exporter("otlp".into(), &config).unwrap())).await;
        exporter.link.send(Payload::from(batch.clone())).await.unwrap();
        let got = receiver.next_batch().await;
        assert_eq!(*got, batch, "compression {compression}");
        wait_sent(&exporter.stats, 9).await;
        drop(exporter.link);
        exporter.task.await.unwrap();
    }
    let (received, accepted, refused, failed) = receiver.stats.snapshot(Signal::Metrics);
    assert_eq!((received, accepted, refused, failed), (27, 27, 0, 0));
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}

#[tokio::test]
async fn otlphttp_exporter_to_otlp_receiver_with_every_compression_and_json() {
    let mut receiver =
        support::start_receiver(serde_json::json!({"protocols": {"http": {"endpoint": "127.0.0.1:0"}}})).await;
    let batch = support::every_kind_batch();
    for (compression, encoding) in
        [("gzip", "proto"), ("zstd", "proto"), ("none", "proto"), ("gzip", "json"), ("none", "json")]
    {
        let config: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
            "endpoint": format!("http://{}", receiver.http.unwrap()), "compression": compression, "encoding": encoding,
        }))
        .unwrap();
        let exporter = support::start_exporter(Box::new(otlphttp::exporter("otlphttp".into(), &config))).await;
        exporter.link.send(Payload::from(batch.clone())).await.unwrap();
        let got = receiver.next_batch().await;
        assert_eq!(*got, batch, "compression {compression}, encoding {encoding}");
        wait_sent(&exporter.stats, 9).await;
        drop(exporter.link);
        exporter.task.await.unwrap();
    }
    assert_eq!(receiver.stats.snapshot(Signal::Metrics).1, 45);
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}
