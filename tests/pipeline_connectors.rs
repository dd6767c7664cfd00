//! Connectors through the real binary and the real config path: the `forward` connector joins
//! pipelines (fan-in of two into one, fan-out of one into two) with exact values out, counts
//! what it received and sent, passes acknowledgements on so an OTLP client is answered only when
//! every final exporter took its data, and bad connector configs are refused with file, line,
//! path and, for a cycle, the path of pipelines.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/snippet.rs"]
mod snippet;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;

use agent::{Agent, free_port, http_post};
use fovea::model::{Attributes, Metric, MetricBatch, NumberPoint, Resource, Scope};
use otlp::HttpReply;

/// An OTLP/HTTP protobuf body with one cumulative counter `test.requests{source}` = `value`.
fn body(source: &str, value: i64) -> Vec<u8> {
    let point = NumberPoint::int(Attributes::from_pairs([("source", source)]), 1_000_000_000, 2_000_000_000, value);
    let metric = Metric::counter("test.requests", "{request}", "requests seen by the test", vec![point]);
    let batch = MetricBatch::single(
        Arc::new(Resource::default()),
        Arc::new(Scope { name: "test".into(), version: "1".into() }),
        vec![metric],
    );
    fovea::otlp::metrics_to_proto(&batch).encode_to_vec()
}

fn post(address: SocketAddr, source: &str, value: i64) -> u16 {
    http_post(address, "/v1/metrics", "application/x-protobuf", &body(source, value)).expect("POST /v1/metrics").0
}

/// Scrapes `address` until `test_requests_total{source}` is `want` (or 10 s pass).
fn wait_value(agent: &Agent, address: SocketAddr, source: &str, want: f64) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = agent.scrape_at(address).value("test_requests_total", &[("source", source)]);
        if got == Some(want) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn forward_fans_two_pipelines_in_and_one_out_with_exact_values() {
    let (a, b) = (free_port(), free_port());
    let copy: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = format!(
        "receivers:
  otlp/a: {{protocols: {{http: {{endpoint: '127.0.0.1:{a}'}}}}}}
  otlp/b: {{protocols: {{http: {{endpoint: '127.0.0.1:{b}'}}}}}}
connectors:
  forward: {{}}
processors:
  batch: {{timeout: 100ms}}
exporters:
  prometheus: {{}}
  prometheus/copy: {{endpoint: '{copy}'}}
service:
  pipelines:
    metrics/a: {{receivers: [otlp/a], exporters: [forward]}}
    metrics/b: {{receivers: [otlp/b], exporters: [forward]}}
    metrics/out: {{receivers: [forward], processors: [batch], exporters: [prometheus]}}
    metrics/copy: {{receivers: [forward], exporters: [prometheus/copy]}}
"
    );
    let agent = Agent::start(&config);
    assert_eq!(post(([127, 0, 0, 1], a).into(), "a", 5), 200);
    assert_eq!(post(([127, 0, 0, 1], b).into(), "b", 7), 200);
    assert_eq!(post(([127, 0, 0, 1], a).into(), "a", 11), 200);

    // Fan-in: both pipelines' data reach both exporters; fan-out: each exporter has all of it.
    for address in [agent.metrics, copy] {
        assert_eq!(wait_value(&agent, address, "a", 11.0), Some(11.0), "{address}");
        assert_eq!(wait_value(&agent, address, "b", 7.0), Some(7.0), "{address}");
    }

    // The connector counted 3 points in and 3 out (a batch shared by two pipelines is one send).
    let own = agent.scrape_at(agent.telemetry);
    let labels = [("connector", "forward"), ("signal", "metrics")];
    assert_eq!(own.value("fovea_connector_received_items_total", &labels), Some(3.0));
    assert_eq!(own.value("fovea_connector_sent_items_total", &labels), Some(3.0));
    assert_eq!(own.value("fovea_connector_failed_items_total", &labels), Some(0.0));
    for exporter in ["prometheus", "prometheus/copy"] {
        assert_eq!(
            own.value("fovea_exporter_received_items_total", &[("exporter", exporter), ("signal", "metrics")]),
            Some(3.0),
            "{exporter}"
        );
    }
    let (status, out) = agent.terminate();
    assert!(status.success(), "{out}");
}

#[test]
fn an_otlp_client_is_answered_only_when_every_final_exporter_behind_a_connector_took_the_data() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Two backends behind the connector's two output pipelines: one takes everything, the other
    // refuses the first request (a permanent 400: no retry, no queue) and takes the second.
    let (good, good_seen) = runtime.block_on(otlp::scripted_http(vec![]));
    let (picky, picky_seen) =
        runtime.block_on(otlp::scripted_http(vec![HttpReply::new(400, &[("content-type", "text/plain")], "no")]));
    let port = free_port();
    let exporter = |name: &str, address: SocketAddr| {
        format!(
            "  otlphttp/{name}:\n    endpoint: 'http://{address}'\n    compression: none\n    sending_queue: {{enabled: false}}\n    retry_on_failure: {{enabled: false}}\n"
        )
    };
    let config = format!(
        "receivers:
  otlp: {{protocols: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}
connectors:
  forward/split: {{}}
exporters:
{}{}service:
  pipelines:
    metrics/in: {{receivers: [otlp], exporters: [forward/split]}}
    metrics/good: {{receivers: [forward/split], exporters: [otlphttp/good]}}
    metrics/picky: {{receivers: [forward/split], exporters: [otlphttp/picky]}}
",
        exporter("good", good),
        exporter("picky", picky)
    );
    let agent = Agent::start(&config);
    let address: SocketAddr = ([127, 0, 0, 1], port).into();

    // The picky backend refuses: the client must resend although the other backend takes it (the
    // refusal may be answered before the other backend has even been sent the data).
    assert_eq!(post(address, "a", 1), 503);
    let deadline = Instant::now() + Duration::from_secs(10);
    while good_seen.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(good_seen.lock().unwrap().len(), 1);
    assert_eq!(picky_seen.lock().unwrap().len(), 1);
    // Both take the resend: success, answered only after both have it.
    assert_eq!(post(address, "a", 1), 200);
    assert_eq!(good_seen.lock().unwrap().len(), 2);
    assert_eq!(picky_seen.lock().unwrap().len(), 2);

    let own = agent.scrape_at(agent.telemetry);
    let labels = [("connector", "forward/split"), ("signal", "metrics")];
    assert_eq!(own.value("fovea_connector_received_items_total", &labels), Some(2.0));
    assert_eq!(own.value("fovea_connector_sent_items_total", &labels), Some(2.0));
    assert_eq!(
        own.value("fovea_exporter_dropped_items_total", &[("exporter", "otlphttp/picky"), ("signal", "metrics")]),
        Some(1.0)
    );
    let (status, out) = agent.terminate();
    assert!(status.success(), "{out}");
}

const RECEIVERS: &str = "receivers:\n  otlp: {protocols: {http: }}\nexporters:\n  debug: {}\n";

/// (path, line, message) of every problem of `yaml` built with the real registry.
fn problems(yaml: &str) -> Vec<(String, u32, String)> {
    match snippet::build(yaml, &fovea::components::builtin()) {
        Ok(_) => panic!("the config should be refused:\n{yaml}"),
        Err(e) => snippet::problems(&e),
    }
}

#[test]
fn bad_connector_configs_are_refused_with_position_and_what_to_do() {
    // Unknown type.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  fowrard: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [otlp], exporters: [debug]}}\n"
    ));
    assert_eq!(
        got,
        vec![(
            "connectors::fowrard".into(),
            6,
            "unknown connector type `fowrard`; valid types: flowmetrics, forward".into()
        )]
    );

    // Configured, used nowhere.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  forward: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [otlp], exporters: [debug]}}\n"
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0.as_str(), got[0].1), ("connectors::forward", 6));
    assert!(got[0].2.starts_with("`forward` is configured but not used; a connector must be listed"), "{}", got[0].2);

    // Exporter side only: its data would go nowhere.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  forward: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [otlp], exporters: [debug, forward]}}\n"
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].2.contains("is used as an exporter but no pipeline lists it under `receivers:`"), "{}", got[0].2);

    // Receiver side only: it would never get data.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  forward: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [otlp], exporters: [debug]}}\n    metrics/2: {{receivers: [forward], exporters: [debug]}}\n"
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].2.contains("is used as a receiver but no pipeline lists it under `exporters:`"), "{}", got[0].2);

    // Signals it cannot join: metrics in, flows out.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  forward: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [otlp], exporters: [forward]}}\n    flows: {{receivers: [forward], exporters: [debug]}}\n"
    ));
    assert_eq!(
        got,
        vec![
            (
                "service::pipelines::metrics::exporters".into(),
                9,
                "connector `forward` takes metrics here, but no pipeline that lists it under `receivers:` has a \
                 signal it makes from metrics (it joins: metrics->metrics, flows->flows)"
                    .into()
            ),
            (
                "service::pipelines::flows::receivers".into(),
                10,
                "connector `forward` would feed flows here, but no pipeline that lists it under `exporters:` has a \
                 signal it makes flows from (it joins: metrics->metrics, flows->flows)"
                    .into()
            ),
        ]
    );

    // An id both a receiver and a connector.
    let got = problems(
        "receivers:\n  otlp: {protocols: {http: }}\n  forward: {}\nexporters:\n  debug: {}\nconnectors:\n  forward: {}\nservice:\n  pipelines:\n    metrics: {receivers: [otlp], exporters: [debug]}\n",
    );
    assert!(got.iter().any(|(p, l, m)| p == "connectors::forward"
        && *l == 7
        && m.starts_with("ambiguous id: `forward` is configured both under `connectors:` and under `receivers:`")));

    // A cycle: a -> forward/1 -> b -> forward/2 -> a. The report names the whole loop.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  forward/1: {{}}\n  forward/2: {{}}\nservice:\n  pipelines:\n    metrics/a: {{receivers: [otlp, forward/2], exporters: [forward/1]}}\n    metrics/b: {{receivers: [forward/1], exporters: [debug, forward/2]}}\n"
    ));
    assert_eq!(
        got,
        vec![(
            "service::pipelines::metrics/b::exporters".into(),
            11,
            "pipelines form a cycle through connectors: metrics/a -> forward/1 -> metrics/b -> forward/2 -> metrics/a; \
             data would loop for ever, so break the cycle"
                .into()
        )]
    );

    // A pipeline feeding itself.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  forward: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [otlp, forward], exporters: [debug, forward]}}\n"
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].2.contains("metrics -> forward -> metrics;"), "{}", got[0].2);

    // A connector id in a list that cannot name it is an unknown reference that lists both kinds.
    let got = problems(&format!(
        "{RECEIVERS}connectors:\n  forward: {{}}\nservice:\n  pipelines:\n    metrics: {{receivers: [otlp], exporters: [forward]}}\n    metrics/2: {{receivers: [forwrd], exporters: [debug]}}\n"
    ));
    assert!(got.iter().any(|(p, _, m)| p == "service::pipelines::metrics/2::receivers"
        && m == "references receiver `forwrd` which is not configured under `receivers:` or `connectors:`; configured: [forward, otlp]"));
}

#[test]
fn validate_and_components_name_the_connector() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "receivers:\n  otlp: {protocols: {http: }}\nexporters:\n  debug: {}\nconnectors:\n  forward: {}\nservice:\n  pipelines:\n    flows/in: {receivers: [otlp], exporters: [forward]}\n    flows/out: {receivers: [forward], exporters: [debug]}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    // The otlp receiver takes metrics only.
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("receiver `otlp` cannot handle flows"));

    std::fs::write(
        &path,
        "receivers:\n  otlp: {protocols: {http: }}\nexporters:\n  debug: {}\nconnectors:\n  forward: {}\nservice:\n  pipelines:\n    metrics/in: {receivers: [otlp], exporters: [forward]}\n    metrics/out: {receivers: [forward], exporters: [debug]}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea"))
        .arg("validate")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configuration is valid: pipelines [metrics/in, metrics/out], 1 receivers, 0 processor instances, 1 connectors, 1 exporters\n"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea")).arg("components").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let connectors: Vec<&str> = text.lines().filter(|l| l.starts_with("connector")).collect();
    let joins = |name: &str, signals: &str| {
        connectors.iter().any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["connector", name, signals])
    };
    assert!(joins("forward", "metrics->metrics,flows->flows"), "{connectors:?}");
    assert!(joins("flowmetrics", "flows->metrics"), "{connectors:?}");
}
