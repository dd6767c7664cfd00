//! The agent's own telemetry: `/healthz`, `/readyz`, `/metrics` with build info and per-component
//! item counts that add up across the pipeline, and JSON logs.

#[path = "support/agent.rs"]
mod agent;
mod support;

use std::time::{Duration, Instant};

use agent::{Agent, Launch, http_get};

const CONFIG: &str = "receivers:\n  linuxutil:\n    collection_interval: 200ms\nprocessors:\n  batch: {timeout: 50ms}\nexporters:\n  prometheus: {}\n  debug: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], processors: [batch], exporters: [prometheus, debug]}\n";

#[test]
fn health_readiness_and_component_counts() {
    let agent = Agent::start(CONFIG);
    assert_eq!(http_get(agent.telemetry, "/healthz").unwrap(), (200, "ok\n".to_string()));
    assert_eq!(http_get(agent.telemetry, "/readyz").unwrap(), (200, "ready\n".to_string()));
    assert_eq!(http_get(agent.telemetry, "/nope").unwrap().0, 404);

    // Counts agree along the pipeline: what the receiver pushed, the batch processor passed on and
    // each exporter received and handled. Read until a collection is not in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = agent.scrape_at(agent.telemetry);
        let v = |name: &str, labels: &[(&str, &str)]| m.value(name, labels).unwrap_or(-1.0);
        let accepted = v("fovea_receiver_accepted_items_total", &[("receiver", "linuxutil"), ("signal", "metrics")]);
        let received = v("fovea_receiver_received_items_total", &[("receiver", "linuxutil"), ("signal", "metrics")]);
        let incoming = v("fovea_processor_incoming_items_total", &[("processor", "batch"), ("pipeline", "metrics")]);
        let outgoing = v("fovea_processor_outgoing_items_total", &[("processor", "batch"), ("pipeline", "metrics")]);
        let counts: Vec<f64> = ["prometheus", "debug"]
            .iter()
            .flat_map(|e| {
                [
                    v("fovea_exporter_received_items_total", &[("exporter", e), ("signal", "metrics")]),
                    v("fovea_exporter_sent_items_total", &[("exporter", e), ("signal", "metrics")]),
                ]
            })
            .collect();
        let all_equal = accepted > 0.0 && [received, incoming, outgoing].iter().chain(&counts).all(|c| *c == accepted);
        if all_equal {
            // The compiler that built fovea, as `rustc --version` names it.
            let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).unwrap_or("").to_string())
                .unwrap_or_default();
            assert!(rustc.starts_with("1."), "{rustc}");
            assert_eq!(v("fovea_build_info", &[("version", env!("CARGO_PKG_VERSION")), ("rustc", &rustc)]), 1.0);
            assert_eq!(
                v("fovea_exporter_dropped_items_total", &[("exporter", "prometheus"), ("signal", "metrics")]),
                0.0
            );
            assert_eq!(m.type_of("fovea_exporter_sent_items_total").as_deref(), Some("counter"));
            assert!(v("fovea_process_memory_rss_bytes", &[]) > 1e6);
            assert_eq!(v("fovea_exporter_queue_capacity", &[("exporter", "prometheus")]), 64.0);
            break;
        }
        assert!(Instant::now() < deadline, "counts never agreed: {accepted} {incoming} {outgoing} {counts:?}");
        std::thread::sleep(Duration::from_millis(30));
    }
    let (status, _) = agent.terminate();
    assert!(status.success());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let agent = Agent::launch(Launch {
        config: Some(CONFIG),
        sets: vec!["service.telemetry.logs.encoding=json".into()],
        wrapper: None,
    })
    .expect("ready");
    let (status, output) = agent.terminate();
    assert!(status.success());
    // stdout holds the debug exporter's summaries; every other line is a log line.
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("Metrics\t")).collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"fovea is ready\"")));
    assert!(lines.iter().any(|l| l.contains("stopped cleanly")));
}
