//! `otel-configs/gateway.yaml`, the OpenTelemetry Collector gateway config shipped for fovea
//! agents, run unchanged (otelcol's keys, which fovea implements): agent -> OTLP/gRPC -> gateway
//! -> remote-write -> a real Prometheus, with exact values end to end.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/prometheus.rs"]
mod prometheus_server;
mod support;

use std::time::Duration;

use agent::{Agent, Launch, free_port};
use prometheus_server::{Options, Prometheus};
use support::netns::Netns;

const GATEWAY: &str = include_str!("../otel-configs/gateway.yaml");

#[test]
fn gateway_config_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, GATEWAY).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("PROMETHEUS_REMOTE_WRITE_URL", "http://127.0.0.1:9090/api/v1/write")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["validate", "--config", "config/default.yaml", "--config", "otel-configs/agent.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FOVEA_GATEWAY", "gateway:4317")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn agent_to_gateway_to_prometheus_keeps_exact_values() {
    let test = "agent_to_gateway_to_prometheus_keeps_exact_values";
    if !support::require_root(test) || !support::require_tools(test, &["ip", "ping"]) {
        return;
    }
    let Some(prometheus) = Prometheus::start(Options { remote_write_receiver: true, ..Options::default() }) else {
        return;
    };
    let grpc = free_port();
    let gateway = Agent::launch(Launch {
        config: Some(GATEWAY),
        sets: vec![
            format!("exporters.prometheusremotewrite.endpoint={}", prometheus.remote_write_url()),
            format!("receivers.otlp.protocols.grpc.endpoint=127.0.0.1:{grpc}"),
            format!("receivers.otlp.protocols.http.endpoint=127.0.0.1:{}", free_port()),
        ],
        wrapper: None,
    })
    .expect("gateway starts");

    // The agent reads a quiet network namespace, so the kernel's numbers are known exactly.
    let ns = Netns::new();
    let config = format!(
        "receivers:\n  linuxutil:\n    collection_interval: 200ms\n    netns: /run/netns/{}\n    netstat: {{include: ['Icmp:*']}}\n    interfaces: {{enabled: false}}\n    sockets: {{enabled: false}}\nexporters:\n  otlp/gateway:\n    endpoint: 127.0.0.1:{grpc}\n    tls: {{insecure: true}}\n    retry_on_failure: {{initial_interval: 100ms, max_interval: 1s}}\nservice:\n  pipelines:\n    metrics: {{receivers: [linuxutil], exporters: [otlp/gateway]}}\n",
        ns.name
    );
    let node = agent::free_port().to_string();
    let agent = Agent::launch(Launch {
        config: Some(&config),
        sets: vec![format!("service::resource::k8s.cluster.name=c{node}")],
        wrapper: None,
    })
    .expect("agent starts");

    let pings = 17;
    ns.exec("ping", &["-c", &pings.to_string(), "-i", "0.01", "-q", "127.0.0.1"]);
    let query =
        format!("network_netstat{{netstat_group=\"Icmp\",netstat_name=\"InEchos\",k8s_cluster_name=\"c{node}\"}}");
    let got =
        prometheus.wait_for(&query, Duration::from_secs(30), |r| r.first().is_some_and(|(_, v)| *v == pings as f64));
    assert_eq!(got.len(), 1, "one series: {got:?}\ngateway:\n{}\nagent:\n{}", gateway.output(), agent.output());
    assert_eq!(got[0].1, pings as f64, "InEchos after {pings} pings");
    // resource_to_telemetry_conversion keeps the node identity on the series.
    let labels = &got[0].0;
    assert!(labels.contains_key("k8s_node_name") && labels.contains_key("host_name"), "{labels:?}");
    assert_eq!(labels["job"], "fovea");

    let (status, _) = agent.terminate();
    assert!(status.success());
    let (status, out) = gateway.terminate();
    assert!(status.success(), "{out}");
}
