//! What the `flowmetrics` connector costs on one core, on records labelled as `k8sattributes`
//! labels them (remote context, every label of both ends):
//!
//! 1. records folded per second: into existing series (the steady state) and creating them;
//! 2. the process's RSS with 50 000 active pod-pair series per metric (forward count and bytes,
//!    TCP flags), against before;
//! 3. the cost of a MetricsConfiguration change over those series (one metric dropped, the
//!    namespaces narrowed), and of one flush (the cumulative metrics of every series).
//!
//! `cargo bench --bench flowmetrics_fold` prints a table. Measurements, never assertions.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use fovea::connectors::flowmetrics::{FlowMetrics, FlowMetricsConfig, MetricName, Mode, Namespaces};
use fovea::model::{Attributes, Direction, FlowBatch, FlowKind, FlowRecord, ObservationPoint, Resource, TcpFlagCounts};

const PAIRS: u32 = 25_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i))
}

/// Both observations of one pod pair (leaving the client's veth, entering the server's): two
/// series per metric, so `PAIRS` pairs make 50 000 series.
fn records(pairs: u32) -> Vec<FlowRecord> {
    let mut out = Vec::with_capacity(2 * pairs as usize);
    for i in 0..pairs {
        let (client, server) = (2 * i, 2 * i + 1);
        let ns = |n: u32| format!("ns-{}", n % 50);
        let mut attributes = Vec::new();
        for (end, n) in [("source", client), ("destination", server)] {
            attributes.push((format!("{end}.k8s.pod.name"), format!("pod-{n}")));
            attributes.push((format!("{end}.k8s.namespace.name"), ns(n)));
            attributes.push((format!("{end}.k8s.node.name"), format!("node-{}", n % 200)));
            attributes.push((format!("{end}.k8s.workload.kind"), "ReplicaSet".to_string()));
            attributes.push((format!("{end}.k8s.workload.name"), format!("app-{}-5d8", n / 2)));
            attributes.push((format!("{end}.k8s.replicaset.name"), format!("app-{}-5d8", n / 2)));
        }
        let attributes = Attributes::from_pairs(attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for direction in [Direction::Receive, Direction::Transmit] {
            let mut r = FlowRecord::new(FlowKind::Forward, ip(client), ip(server));
            r.protocol = 6;
            r.destination_port = 8080;
            r.direction = direction;
            r.observation_point = ObservationPoint::Pod;
            r.packets = 10;
            r.bytes = 1500;
            r.tcp_flag_counts = TcpFlagCounts([1, 0, 9, 0, 0, 1, 0, 0, 0]);
            r.attributes = attributes.clone();
            out.push(r);
        }
    }
    out
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let resource = Arc::new(Resource { attributes: Attributes::from_pairs([("k8s.node.name", "node-1")]) });
    let config = FlowMetricsConfig {
        mode: Mode::Remote,
        metrics: vec![MetricName::ForwardCount, MetricName::ForwardBytes, MetricName::TcpFlagGauges],
        ..FlowMetricsConfig::default()
    };
    let records = records(PAIRS);
    let batches: Vec<FlowBatch> = records
        .chunks(1000)
        .map(|c| FlowBatch { resource: resource.clone(), records: c.to_vec(), acks: Default::default() })
        .collect();
    let n = records.len() as f64;
    drop(records);

    let before = rss_kib();
    let mut m = FlowMetrics::new(config, resource.clone());
    let start = Instant::now();
    for b in &batches {
        m.fold(b, 1);
    }
    let create = start.elapsed();
    let after = rss_kib();

    let rounds = 10;
    let start = Instant::now();
    for round in 0..rounds {
        for b in &batches {
            m.fold(b, 2 + round);
        }
    }
    let steady = start.elapsed() / rounds as u32;

    let start = Instant::now();
    let flushed = m.flush(100);
    let flush = start.elapsed();
    let points = flushed.data_points();
    drop(flushed);

    let mut spec = m.spec().clone();
    spec.metrics.remove(&MetricName::ForwardBytes);
    spec.namespaces = Namespaces::Include((0..25).map(|i| format!("ns-{i}")).collect());
    let start = Instant::now();
    m.apply(spec);
    let change = start.elapsed();
    let left = m.flush(101).data_points();

    println!("flowmetrics, remote context, every label of both ends, one core");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| records folded/s into existing series | {:.0} ({:.0} ns/record) |",
        n / steady.as_secs_f64(),
        steady.as_nanos() as f64 / n
    );
    println!(
        "| records folded/s creating series | {:.0} ({:.0} ns/record) |",
        n / create.as_secs_f64(),
        create.as_nanos() as f64 / n
    );
    println!(
        "| series per metric after the fold | {} (forward count, forward bytes, TCP flags: {} points) |",
        2 * PAIRS,
        points
    );
    println!(
        "| RSS before / after | {} MiB / {} MiB (+{:.1} MiB, {:.0} bytes per series of the 3 metrics) |",
        before / 1024,
        after / 1024,
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / (3.0 * 2.0 * f64::from(PAIRS))
    );
    println!("| one flush of every series | {:.1} ms |", flush.as_secs_f64() * 1e3);
    println!(
        "| MetricsConfiguration change (drop forward_bytes, half the namespaces) | {:.1} ms ({} points left) |",
        change.as_secs_f64() * 1e3,
        left
    );
}
