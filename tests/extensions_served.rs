//! otelcol's usual extensions through the real agent: `health_check` answers otelcol's status,
//! `pprof` serves a real CPU profile of the agent (decoded here as `go tool pprof` would read
//! it), `zpages` shows the pipelines.

#[path = "support/agent.rs"]
mod agent;

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent::{Agent, free_port, http_get, http_post};
use prost::Message as _;

use fovea::extensions::pprof::profile::Profile;
use fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;

/// `GET path` answering raw bytes (the profile is binary).
fn get_bytes(address: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    (code, raw[split + 4..].to_vec())
}

#[test]
fn health_check_pprof_and_zpages_are_served() {
    let (health, pprof, zpages, otlp) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        "receivers:
  otlp:
    protocols:
      http: {{endpoint: \"127.0.0.1:{otlp}\"}}
exporters:
  prometheus: {{}}
extensions:
  health_check: {{endpoint: \"127.0.0.1:{health}\"}}
  health_check/plain: {{endpoint: \"127.0.0.1:0\", path: /ok, response_body: {{healthy: up, unhealthy: down}}}}
  pprof: {{endpoint: \"127.0.0.1:{pprof}\"}}
  zpages: {{endpoint: \"127.0.0.1:{zpages}\"}}
service:
  extensions: [health_check, pprof, zpages]
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheus]}}
"
    );
    let agent = Agent::start(&config);
    let at = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
    assert!(
        agent.stderr().contains("extensions::health_check/plain is configured but not enabled"),
        "{}",
        agent.stderr()
    );

    // health_check: otelcol's body while ready.
    let (code, body) = http_get(at(health), "/").unwrap();
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["status"], "Server available");
    let up_since = humantime::parse_rfc3339(status["upSince"].as_str().unwrap()).unwrap();
    assert!(up_since <= std::time::SystemTime::now());
    let uptime = fovea::config::duration::parse(status["uptime"].as_str().unwrap()).unwrap();
    assert!(uptime < Duration::from_secs(60), "{uptime:?}");

    // pprof: a 2 s profile while the agent decodes OTLP requests as fast as it can.
    let busy = AtomicBool::new(true);
    let body = fovea::otlp::metrics_to_proto(&support_batch()).encode_to_vec();
    // Two profiles asked for at once: the profiler is one per process, so one of them is
    // refused at once, not queued (which one wins depends on scheduling, not on order).
    let barrier = std::sync::Barrier::new(2);
    let ask = || {
        barrier.wait();
        get_bytes(at(pprof), "/debug/pprof/profile?seconds=2")
    };
    let (profile, concurrent) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let mut sent = 0u64;
            while busy.load(Ordering::Relaxed) {
                let (code, _) = http_post(at(otlp), "/v1/metrics", "application/x-protobuf", &body).unwrap();
                assert_eq!(code, 200);
                sent += 1;
            }
            sent
        });
        let first = scope.spawn(ask);
        let second = ask();
        let first = first.join().unwrap();
        busy.store(false, Ordering::Relaxed);
        assert!(load.join().unwrap() > 0);
        let mut answers = [first, second];
        answers.sort_by_key(|(code, _)| *code);
        let [profile, concurrent] = answers;
        (profile, concurrent)
    });
    assert_eq!(concurrent.0, 409, "{}", String::from_utf8_lossy(&concurrent.1));
    assert_eq!(profile.0, 200, "{}", String::from_utf8_lossy(&profile.1));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(profile.1.as_slice()).read_to_end(&mut raw).expect("gzip, as Go serves profiles");
    let profile = Profile::decode(raw.as_slice()).expect("a pprof Profile message");
    let s = |i: i64| profile.string_table[i as usize].as_str();
    assert_eq!(s(0), "");
    let types: Vec<(&str, &str)> = profile.sample_type.iter().map(|t| (s(t.r#type), s(t.unit))).collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert_eq!(profile.period, 1_000_000_000 / 99);
    assert!((1_900_000_000..3_000_000_000).contains(&profile.duration_nanos), "{}", profile.duration_nanos);
    let samples: i64 = profile.sample.iter().map(|x| x.value[0]).sum();
    assert!(samples > 0, "a busy agent is sampled");
    for sample in &profile.sample {
        assert_eq!(sample.value[1], sample.value[0] * profile.period);
        for id in &sample.location_id {
            assert_eq!(profile.location[*id as usize - 1].id, *id);
        }
    }
    // The stacks are the agent's own code, symbolized.
    let names: Vec<&str> = profile.function.iter().map(|f| s(f.name)).collect();
    assert!(names.iter().any(|n| n.starts_with("fovea::")), "{names:?}");
    assert_eq!(http_get(at(pprof), "/debug/pprof/heap").unwrap().0, 404);

    // zpages: the pipeline and the extensions.
    let (code, page) = http_get(at(zpages), "/debug/pipelinez").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<tr><td>metrics</td><td>otlp</td><td></td><td>prometheus</td></tr>"), "{page}");
    let (_, page) = http_get(at(zpages), "/debug/extensionz").unwrap();
    assert!(page.contains("<li>health_check</li>\n<li>pprof</li>\n<li>zpages</li>"), "{page}");
    let (_, page) = http_get(at(zpages), "/debug/servicez").unwrap();
    assert!(page.contains(&format!("<td>{}</td>", env!("CARGO_PKG_VERSION"))), "{page}");

    let (status, out) = agent.terminate();
    assert!(status.success(), "{out}");
}

fn support_batch() -> fovea::model::MetricBatch {
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![fovea::otlp::proto::metrics::v1::ResourceMetrics {
            scope_metrics: vec![fovea::otlp::proto::metrics::v1::ScopeMetrics {
                metrics: (0..50)
                    .map(|m| fovea::otlp::proto::metrics::v1::Metric {
                        name: format!("m{m}"),
                        data: Some(fovea::otlp::proto::metrics::v1::metric::Data::Gauge(
                            fovea::otlp::proto::metrics::v1::Gauge {
                                data_points: (0..20)
                                    .map(|i| fovea::otlp::proto::metrics::v1::NumberDataPoint {
                                        time_unix_nano: 1,
                                        value: Some(
                                            fovea::otlp::proto::metrics::v1::number_data_point::Value::AsDouble(
                                                f64::from(i),
                                            ),
                                        ),
                                        ..Default::default()
                                    })
                                    .collect(),
                            },
                        )),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    fovea::otlp::metrics_from_proto(request).batch
}

#[test]
fn pprof_save_to_file_profiles_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fovea.cpu.pprof");
    let config = format!(
        "receivers:
  linuxutil: {{collection_interval: 100ms}}
exporters:
  debug: {{}}
extensions:
  pprof: {{endpoint: \"127.0.0.1:0\", save_to_file: {}}}
service:
  extensions: [pprof]
  pipelines:
    metrics: {{receivers: [linuxutil], exporters: [debug]}}
",
        file.display()
    );
    let agent = Agent::start(&config);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, out) = agent.terminate();
    assert!(status.success(), "{out}");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap()).read_to_end(&mut raw).unwrap();
    let profile = Profile::decode(raw.as_slice()).unwrap();
    assert!(profile.duration_nanos >= 1_500_000_000, "{}", profile.duration_nanos);
    assert_eq!(profile.period, 1_000_000_000 / 99);
}

#[path = "support/certs.rs"]
mod certs;
mod support;

/// `health_check` with confighttp's server `tls`: HTTPS with the configured certificate, verified
/// against the test CA by curl; plain HTTP on that port gets no status.
#[test]
fn health_check_serves_https_with_tls() {
    let test = "health_check_serves_https_with_tls";
    if !support::require_tools(test, &["curl", "openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    if certs::make(dir.path(), &["IP:127.0.0.1"]).is_none() {
        return;
    }
    let p = |f: &str| dir.path().join(f).display().to_string();
    let health = free_port();
    let config = format!(
        "receivers:
  linuxutil: {{}}
exporters:
  prometheus: {{}}
extensions:
  health_check:
    endpoint: \"127.0.0.1:{health}\"
    tls: {{cert_file: {cert}, key_file: {key}}}
service:
  extensions: [health_check]
  pipelines:
    metrics: {{receivers: [linuxutil], exporters: [prometheus]}}
",
        cert = p("server.pem"),
        key = p("server.key")
    );
    let agent = Agent::start(&config);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", &p("ca.pem"), &format!("https://127.0.0.1:{health}/")])
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{test}: curl: {}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["status"], "Server available", "{test}: {body}");
    let plain = http_get(([127, 0, 0, 1], health).into(), "/");
    assert!(plain.is_err() || plain.as_ref().is_ok_and(|(code, _)| *code != 200), "{test}: plain HTTP: {plain:?}");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: {out}");
}
