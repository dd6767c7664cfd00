//! The `flowlog` exporter's files, read back by pyarrow: every value equals what was sent, in
//! both formats; files rotate by size and by age; the disk budget deletes the oldest files (and
//! counts them); a reader watching the directory never sees a partial file.

#[path = "support/fixtures.rs"]
mod fixtures;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fovea::exporters::flowlog::{FlowlogConfig, FlowlogExporter, Format, RotationConfig};
use fovea::model::{
    Direction, FlowBatch, FlowKind, FlowRecord, LatencySummary, ObservationPoint, Payload, TcpFlagCounts, TcpState,
};
use fovea::pipeline::{Exporter, ExporterContext, Input, Link};
use fovea::telemetry::{ComponentKind, StatsRegistry};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Record `i` of a test stream, with every field set and values that differ per record.
fn record(i: u64) -> FlowRecord {
    let kind = if i % 5 == 4 { FlowKind::Drop } else { FlowKind::Forward };
    let (src, dst) = if i.is_multiple_of(2) {
        ("198.18.7.1".parse().unwrap(), "198.18.7.2".parse().unwrap())
    } else {
        ("2001:db8::7:1".parse().unwrap(), "2001:db8::7:2".parse().unwrap())
    };
    let mut r = FlowRecord::new(kind, src, dst);
    r.time_unix_nano = fixtures::T0 + i * 1_000_003;
    r.start_time_unix_nano = fixtures::T0 + i;
    r.source_port = (40000 + i % 1000) as u16;
    r.destination_port = 443;
    r.protocol = 6;
    r.direction = if i.is_multiple_of(3) { Direction::Receive } else { Direction::Transmit };
    r.ifindex = 10 + (i % 4) as u32;
    r.interface = format!("veth{}", i % 4).into();
    r.observation_point = if i % 4 == 3 { ObservationPoint::Uplink } else { ObservationPoint::Pod };
    r.packets = i + 1;
    r.bytes = (i + 1) * 1400;
    r.tcp_flag_counts = TcpFlagCounts([1, 1, i as u32, 1, 0, 2, 0, 0, 0]);
    r.tcp_flags = r.tcp_flag_counts.header_bits();
    if i.is_multiple_of(7) {
        r.handshake = LatencySummary { count: 2, sum_ns: 300_000 + i, min_ns: 100_000, max_ns: 200_000 + i };
    }
    if i.is_multiple_of(11) {
        r.rtt = LatencySummary::one(55_000 + i);
    }
    if kind == FlowKind::Drop {
        r.drop_reason = Some("NETFILTER_DROP".into());
        r.tcp_state = Some(TcpState::Established);
    }
    r.attributes.insert("source.k8s.namespace.name", "shop");
    r.attributes.insert("source.k8s.pod.name", format!("cart-{}", i % 9));
    r.attributes.insert("destination.k8s.service.name", "payments");
    r.attributes.insert("source.k8s.pod.label.app", "cart");
    r.attributes.insert("flow.sampled", i as i64);
    r
}

/// What pyarrow must read for `r` (the schema in docs/configuration.md).
fn expected(r: &FlowRecord) -> Value {
    let opt = |l: &LatencySummary, v: u64| if l.count > 0 { json!(v) } else { Value::Null };
    let attr = |k: &str| r.attributes.get(k).map_or(Value::Null, |v| json!(v.to_string()));
    let mut row = json!({
        "time": r.time_unix_nano, "start_time": r.start_time_unix_nano, "kind": r.kind.as_str(),
        "source_address": r.source.to_string(), "source_port": r.source_port,
        "destination_address": r.destination.to_string(), "destination_port": r.destination_port,
        "protocol": r.protocol, "direction": r.direction.as_str(), "interface_index": r.ifindex,
        "interface_name": r.interface.as_str(), "observation_point": r.observation_point.as_str(),
        "packets": r.packets, "bytes": r.bytes, "tcp_flags": r.tcp_flags,
        "handshake_count": r.handshake.count, "handshake_sum_ns": opt(&r.handshake, r.handshake.sum_ns),
        "handshake_min_ns": opt(&r.handshake, r.handshake.min_ns), "handshake_max_ns": opt(&r.handshake, r.handshake.max_ns),
        "rtt_count": r.rtt.count, "rtt_sum_ns": opt(&r.rtt, r.rtt.sum_ns),
        "rtt_min_ns": opt(&r.rtt, r.rtt.min_ns), "rtt_max_ns": opt(&r.rtt, r.rtt.max_ns),
        "tcp_state": r.tcp_state.map(|s| s.as_str()), "drop_reason": r.drop_reason.as_deref(),
        "flow.overflow": false,
        "attributes": {"source.k8s.pod.label.app": "cart", "flow.sampled": r.attributes.get("flow.sampled").map(|v| v.to_string())},
    });
    let obj = row.as_object_mut().expect("object");
    for (i, flag) in ["syn", "synack", "ack", "fin", "rst", "psh", "urg", "ece", "cwr"].iter().enumerate() {
        obj.insert(format!("tcp_{flag}"), json!(r.tcp_flag_counts.0[i]));
    }
    for end in ["source.", "destination."] {
        for k in [
            "k8s.namespace.name",
            "k8s.pod.name",
            "k8s.workload.kind",
            "k8s.workload.name",
            "k8s.service.name",
            "k8s.node.name",
        ] {
            let key = format!("{end}{k}");
            obj.insert(key.clone(), attr(&key));
        }
    }
    row
}

struct Running {
    link: Link,
    task: tokio::task::JoinHandle<Result<(), fovea::pipeline::ComponentError>>,
    telemetry: Arc<StatsRegistry>,
}

async fn start(config: FlowlogConfig) -> Running {
    let mut exporter = FlowlogExporter::new(config);
    let mut start = fixtures::start_context(ComponentKind::Exporter, "flowlog");
    start.signals = vec![fovea::model::Signal::Flows];
    let telemetry = start.telemetry.clone();
    exporter.start(&start).await.expect("exporter starts");
    let (link, input) = Input::channel(8, start.stats.clone());
    let ctx = ExporterContext { input, deadline: CancellationToken::new(), start };
    Running { link, task: tokio::spawn(Box::new(exporter).run(ctx)), telemetry }
}

impl Running {
    async fn send(&self, records: Vec<FlowRecord>) {
        let batch = FlowBatch { resource: fixtures::node_resource("node-7"), records, acks: Default::default() };
        self.link.send(Payload::from(batch)).await.expect("exporter takes the batch");
    }

    /// Closes the input: the exporter completes its open file and returns.
    async fn stop(self) -> Arc<StatsRegistry> {
        drop(self.link);
        self.task.await.expect("join").expect("exporter ran");
        self.telemetry
    }
}

fn own(telemetry: &StatsRegistry, name: &str, attr: Option<(&str, &str)>) -> i64 {
    let mut out = Vec::new();
    telemetry.collect(0, 1, &mut out);
    let m = out.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name}"));
    let points = match &m.data {
        fovea::model::MetricData::Sum(s) => &s.points,
        fovea::model::MetricData::Gauge(p) => p,
        fovea::model::MetricData::Histogram(_) => panic!("histogram"),
    };
    let p = points
        .iter()
        .find(|p| attr.is_none_or(|(k, v)| p.attributes.get_str(k) == Some(v)))
        .unwrap_or_else(|| panic!("no point of {name}"));
    match p.value {
        fovea::model::Number::Int(i) => i,
        fovea::model::Number::Double(d) => d as i64,
    }
}

fn config(dir: &Path, format: Format, max_megabytes: f64, max_total_megabytes: f64) -> FlowlogConfig {
    FlowlogConfig {
        directory: dir.to_path_buf(),
        format,
        rotation: RotationConfig { max_megabytes, max_age: Duration::from_secs(3600) },
        max_total_megabytes,
        row_group_size: 1000,
        ..FlowlogConfig::default()
    }
}

async fn every_value_reads_back(format: Format, name: &str) {
    let test = format!("flowlog_every_value_reads_back_{name}");
    if !support::require_python_module(&test, "pyarrow") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = start(config(dir.path(), format, 64.0, 1024.0)).await;
    let records: Vec<FlowRecord> = (0..3000).map(record).collect();
    for chunk in records.chunks(700) {
        exporter.send(chunk.to_vec()).await;
    }
    exporter.stop().await;
    let read = support::pyarrow_read(dir.path(), name);
    let rows = read["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), records.len(), "{test}: every record");
    for (i, (row, r)) in rows.iter().zip(&records).enumerate() {
        assert_eq!(row, &expected(r), "{test}: record {i}");
    }
    assert_eq!(read["metadata"]["resource.k8s.node.name"], "node-7", "{test}: the resource travels as file metadata");
    assert_eq!(read["schema"]["time"], "timestamp[ns, tz=UTC]");
    assert_eq!(read["files"].as_array().map(Vec::len), Some(1), "{test}: one file under the size limit");
}

#[tokio::test]
async fn flowlog_every_value_reads_back_parquet() {
    every_value_reads_back(Format::Parquet, "parquet").await;
}

#[tokio::test]
async fn flowlog_every_value_reads_back_arrow() {
    every_value_reads_back(Format::Arrow, "arrow").await;
}

/// Size rotation and the disk budget: many files, the oldest deleted and counted, what remains
/// is exactly the newest records, and a reader polling the directory the whole time never hit a
/// partial file.
#[tokio::test]
async fn flowlog_rotates_keeps_the_budget_and_never_shows_a_partial_file() {
    let test = "flowlog_rotates_keeps_the_budget_and_never_shows_a_partial_file";
    if !support::require_python_module(test, "pyarrow") {
        return;
    }
    for (format, name) in [(Format::Parquet, "parquet"), (Format::Arrow, "arrow")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watcher = std::process::Command::new("python3")
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/flowlog_read.py"), "--watch"])
            .arg(dir.path())
            .args([name, "3"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = std::io::BufReader::new(watcher.stdout.take().expect("stdout"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).expect("watcher ready");
        assert_eq!(line.trim(), "ready");
        let watcher = tokio::task::spawn_blocking(move || {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut out, &mut rest).expect("watcher output");
            watcher.wait().expect("watcher exit");
            rest
        });
        let exporter = start(config(dir.path(), format, 0.1, 0.4)).await;
        let records: Vec<FlowRecord> = (0..40_000).map(record).collect();
        for chunk in records.chunks(500) {
            exporter.send(chunk.to_vec()).await;
            // as a receiver delivers: batch after batch, not all at once
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let telemetry = exporter.stop().await;
        let completed = own(&telemetry, "fovea.flowlog.files.completed", None);
        let deleted = own(&telemetry, "fovea.flowlog.files.deleted", Some(("reason", "max_total_megabytes")));
        let on_disk = own(&telemetry, "fovea.flowlog.disk.usage", None) as u64;
        let read = support::pyarrow_read(dir.path(), name);
        let files = read["files"].as_array().expect("files").len() as i64;
        assert!(completed > 10 && deleted > 0, "{test} {name}: rotated {completed} files, deleted {deleted}");
        assert_eq!(files, completed - deleted, "{test} {name}: what was not deleted is on disk");
        let bytes: u64 = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        assert!(bytes <= (0.4 * 1024.0 * 1024.0) as u64, "{test} {name}: {bytes} bytes within the budget");
        assert_eq!(bytes, on_disk, "{test} {name}: the disk usage metric");
        // the files left hold exactly the newest records, in order
        let rows = read["rows"].as_array().expect("rows");
        let first = records.len() - rows.len();
        for (row, r) in rows.iter().zip(&records[first..]) {
            assert_eq!(row, &expected(r), "{test} {name}: a kept record");
        }
        let watched = watcher.await.expect("join");
        let report: Value = serde_json::from_str(&watched).expect("watcher JSON");
        assert_eq!(report["errors"], json!([]), "{test} {name}: a reader saw a partial file");
        assert!(report["read"].as_u64().unwrap_or(0) > 5, "{test} {name}: the reader read files as they appeared");
    }
}

/// A quiet exporter still completes its file after `max_age`.
#[tokio::test]
async fn flowlog_completes_files_by_age() {
    let test = "flowlog_completes_files_by_age";
    if !support::require_python_module(test, "pyarrow") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), Format::Parquet, 64.0, 1024.0);
    c.rotation.max_age = Duration::from_secs(1);
    let exporter = start(c).await;
    exporter.send((0..10).map(record).collect()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let read = support::pyarrow_read(dir.path(), "parquet");
    assert_eq!(read["rows"].as_array().map(Vec::len), Some(10), "{test}: completed by age, before shutdown");
    exporter.stop().await;
}
