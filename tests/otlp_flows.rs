//! Flow records leave through the OTLP exporters as OTLP logs: one log record per flow, posted
//! by `otlphttp` to `<endpoint>/v1/logs` (or `logs_endpoint`), with the flow's fields as attributes.

#[path = "support/otlp.rs"]
mod support;

use std::time::Duration;

use prost::Message as _;

use fovea::exporters::otlphttp::{self, OtlpHttpExporterConfig};
use fovea::model::{Direction, FlowBatch, FlowKind, FlowRecord, Payload, Resource, Signal};
use fovea::otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
use fovea::otlp::proto::common::v1::any_value::Value;

fn flows() -> FlowBatch {
    let records = (0..3u16)
        .map(|i| {
            let mut r =
                FlowRecord::new(FlowKind::Forward, "198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
            r.time_unix_nano = 1_700_000_000_000_000_000 + u64::from(i);
            r.source_port = 40_000 + i;
            r.destination_port = 443;
            r.protocol = 6;
            r.direction = Direction::Transmit;
            r.packets = 10;
            r.bytes = 1_500 * u64::from(i + 1);
            r
        })
        .collect();
    let resource = Resource { attributes: fovea::model::Attributes::from_pairs([("k8s.node.name", "node-1")]) };
    FlowBatch { resource: resource.into(), records, acks: Default::default() }
}

#[tokio::test]
async fn otlphttp_ships_flows_as_one_log_record_each() {
    let (addr, seen) = support::scripted_http(vec![]).await;
    let config: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
        "endpoint": format!("http://{addr}/otlp"), "compression": "zstd",
    }))
    .unwrap();
    let exporter = support::start_exporter(Box::new(otlphttp::exporter("otlphttp".into(), &config))).await;
    exporter.link.send(Payload::from(flows())).await.unwrap();
    for _ in 0..200 {
        if exporter.stats.snapshot(Signal::Flows).1 == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(exporter.stats.snapshot(Signal::Flows).1, 3, "sent flow records");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/otlp/v1/logs");
    assert_eq!(seen[0].headers["content-encoding"], "zstd");
    let body = fovea::otlp::compression::decompress("zstd", &seen[0].body, 1 << 20).unwrap();
    let request = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
    let rl = &request.resource_logs[0];
    assert_eq!(rl.resource.as_ref().unwrap().attributes[0].key, "k8s.node.name");
    let logs = &rl.scope_logs[0].log_records;
    assert_eq!(logs.len(), 3);
    let attr =
        |i: usize, k: &str| logs[i].attributes.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.clone()?.value);
    assert_eq!(attr(2, "flow.bytes"), Some(Value::IntValue(4_500)));
    assert_eq!(attr(1, "source.port"), Some(Value::IntValue(40_001)));
    assert_eq!(attr(0, "network.io.direction"), Some(Value::StringValue("transmit".into())));
    assert_eq!(logs[2].time_unix_nano, 1_700_000_000_000_000_002);
    drop(exporter.link);
    exporter.task.await.unwrap();
}
