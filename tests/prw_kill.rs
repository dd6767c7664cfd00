//! `kill -9` loses nothing: the real `fovea` binary receives OTLP/HTTP from this test and writes
//! to a real Prometheus through `prometheusremotewrite` with the persistent queue. The `otlp`
//! receiver answers 200 only once the data is written to the queue on disk, so the test knows
//! exactly which samples were accepted. Prometheus is stopped, more data is accepted, the agent
//! is killed with SIGKILL while a request is in flight, started again on the same queue, more data
//! is accepted, and Prometheus comes back: every accepted sample is stored exactly once with its
//! value (and nothing else: a sample the agent did not accept may arrive, at most once).
//!
//! Needs the `prometheusremotewrite` and `otlp` components registered in the binary; without
//! them the test is skipped with the reason (and fails under `CI=true`).

#[path = "support/prometheus.rs"]
mod prometheus_server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use fovea::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
use fovea::otlp::proto::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use fovea::otlp::proto::resource::v1::Resource;
use prometheus_server::{Options, Prometheus, free_port, get, in_ci, labels, post};
use prost::Message;

const SEC: u64 = 1_000_000_000;

/// The agent as a child process.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(config: &Path, own: SocketAddr) -> Agent {
        let child = Command::new(env!("CARGO_BIN_EXE_fovea"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fovea");
        let mut agent = Agent { child };
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if get(own, "/readyz", &[]).is_ok_and(|r| r.status == 200) {
                return agent;
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("fovea exited during start: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        agent.kill9();
        panic!("fovea did not become ready on {own}");
    }

    fn kill9(&mut self) {
        // SAFETY: a signal to our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    fn stop(&mut self) {
        // SAFETY: a signal to our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// True when `fovea components` lists every type in `types`; otherwise prints why the test is
/// skipped (or panics under `CI=true`).
fn components_available(types: &[&str]) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_fovea")).arg("components").output().expect("fovea components");
    let listed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = types.iter().copied().filter(|t| !listed.split_whitespace().any(|w| w == *t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("the fovea binary does not register {missing:?} (src/components.rs); this test needs them");
    if in_ci() {
        panic!("{msg}; CI=true, so this test fails instead of skipping");
    }
    // Straight to stderr, past the test harness's capture, so the skip is seen even on success.
    use std::io::Write as _;
    let _ =
        writeln!(std::io::stderr().lock(), "SKIPPED kill_9_while_prometheus_is_down_loses_no_accepted_sample: {msg}");
    false
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// One OTLP request: the cumulative counter `kill.ticks` = 10 * tick at `t0 + tick` seconds.
fn otlp_request(tick: u64, t0: u64) -> Vec<u8> {
    let point = NumberDataPoint {
        attributes: vec![string("source", "test")],
        start_time_unix_nano: t0 - 3600 * SEC,
        time_unix_nano: t0 + tick * SEC,
        value: Some(number_data_point::Value::AsInt(10 * tick as i64)),
        ..Default::default()
    };
    let metric = Metric {
        name: "kill.ticks".into(),
        unit: "{tick}".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string("service.name", "loadgen"), string("service.instance.id", "client-1")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Posts tick `tick`; true when the agent answered 200 (the data is on disk).
fn send(otlp: SocketAddr, tick: u64, t0: u64) -> bool {
    let body = otlp_request(tick, t0);
    post(otlp, "/v1/metrics", &[("Content-Type", "application/x-protobuf")], &body).is_ok_and(|r| r.status == 200)
}

#[test]
fn kill_9_while_prometheus_is_down_loses_no_accepted_sample() {
    if !components_available(&["prometheusremotewrite", "otlp"]) {
        return;
    }
    let Some(mut prometheus) = Prometheus::start(Options { remote_write_receiver: true, ..Options::default() }) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let otlp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let own: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http: {{endpoint: \"{otlp}\"}}\n\
             exporters:\n  prometheusremotewrite:\n    endpoint: {}\n    remote_write_queue:\n      storage: {{directory: {}}}\n    retry_on_failure: {{max_interval: 2s}}\n\
             service:\n  pipelines:\n    metrics: {{receivers: [otlp], exporters: [prometheusremotewrite]}}\n  telemetry:\n    logs: {{level: warn}}\n    metrics: {{address: \"{own}\"}}\n",
            prometheus.remote_write_url(),
            dir.path().join("queue").display()
        ),
    )
    .expect("write config");

    // One tick per second of sample time, all in the past: at most 270 ticks.
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() * SEC - 600 * SEC;
    let mut accepted = Vec::new();
    let mut maybe = Vec::new();
    let mut agent = Agent::start(&config, own);

    // Prometheus up: ticks 0..10.
    for tick in 0..10 {
        assert!(send(otlp, tick, t0), "tick {tick} accepted while everything is up");
        accepted.push(tick);
    }
    // Prometheus down: ticks 10..30 are accepted into the queue on disk.
    prometheus.stop();
    for tick in 10..30 {
        assert!(send(otlp, tick, t0), "tick {tick} accepted while Prometheus is down");
        accepted.push(tick);
    }
    // SIGKILL in the middle of a stream of requests (ticks 30..): those answered 200 were
    // accepted; the one in flight when the agent died may or may not have been.
    let stream = std::thread::spawn(move || {
        let mut answered = Vec::new();
        // Bounded: the agent dies long before this many requests.
        for tick in 30..250 {
            let ok = send(otlp, tick, t0);
            answered.push((tick, ok));
            if !ok {
                break;
            }
        }
        answered
    });
    std::thread::sleep(Duration::from_millis(30));
    agent.kill9();
    let mut next = 30;
    for (tick, ok) in stream.join().expect("sender") {
        if ok {
            accepted.push(tick)
        } else {
            maybe.push(tick)
        }
        next = tick + 1;
    }
    assert!(!maybe.is_empty(), "the kill came after the last request; make the stream longer");
    // Down, then up again on the same queue, Prometheus still down: ten more ticks.
    assert!(!send(otlp, next, t0), "the agent is dead");
    let mut agent = Agent::start(&config, own);
    for tick in next..next + 10 {
        assert!(send(otlp, tick, t0), "tick {tick} accepted after the restart");
        accepted.push(tick);
    }
    // Prometheus back.
    prometheus.restart();

    let at = (t0 + 660 * SEC) as f64 / SEC as f64;
    let want: BTreeMap<i64, f64> =
        accepted.iter().map(|&tick| (((t0 + tick * SEC) / 1_000_000) as i64, 10.0 * tick as f64)).collect();
    let end = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let got = prometheus.raw_samples("kill_ticks_total", "15m", at);
        let stored: BTreeMap<i64, f64> = got.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        if want.keys().all(|k| stored.contains_key(k)) || Instant::now() > end {
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    agent.stop();
    assert_eq!(got.len(), 1, "one series: {got:?}");
    assert_eq!(
        got[0].0,
        labels(&[("__name__", "kill_ticks_total"), ("instance", "client-1"), ("job", "loadgen"), ("source", "test"),])
    );
    let stored: BTreeMap<i64, f64> = got[0].1.iter().copied().collect();
    eprintln!(
        "accepted {} ticks, {} unknown (in flight at the kill), {} stored",
        accepted.len(),
        maybe.len(),
        stored.len()
    );
    assert_eq!(stored.len(), got[0].1.len(), "no timestamp twice");
    let missing: Vec<&i64> = want.keys().filter(|k| !stored.contains_key(k)).collect();
    assert!(missing.is_empty(), "accepted samples missing: {missing:?}\nprometheus log:\n{}", prometheus.log());
    for (ts, value) in &stored {
        match want.get(ts) {
            Some(v) => assert_eq!(value, v, "value at {ts}"),
            None => {
                let tick = (*ts as u64 * 1_000_000 - t0) / SEC;
                assert!(maybe.contains(&tick), "tick {tick} was never sent, yet stored");
                assert_eq!(*value, 10.0 * tick as f64);
            }
        }
    }
}
