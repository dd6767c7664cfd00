//! The `otlp` receiver's listeners under hostile clients, through the real agent with a low
//! file-descriptor limit: hundreds of connections that never finish their headers, a body that
//! never comes, a huge declared length. Each listener keeps `max_connections`, refuses (and
//! counts) the rest, disconnects the slow ones after `read_header_timeout` / `read_timeout`, and
//! the own-telemetry and scrape endpoints answer all along.

#[path = "support/agent.rs"]
mod agent;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use agent::{Agent, Launch, free_port, http_get, http_post};
use bytes::Bytes;
use prost::Message as _;

use fovea::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use fovea::otlp::proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use fovea::otlp::proto::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric};

/// Connections each listener keeps.
const CAP: usize = 20;
/// Connections the test opens to each listener and never completes.
const FLOOD: usize = 300;

fn request(points: usize) -> ExportMetricsServiceRequest {
    let data_points = (0..points)
        .map(|i| NumberDataPoint {
            time_unix_nano: 1,
            value: Some(fovea::otlp::proto::metrics::v1::number_data_point::Value::AsInt(i as i64)),
            attributes: vec![fovea::otlp::proto::common::v1::KeyValue {
                key: "i".into(),
                value: Some(fovea::otlp::proto::common::v1::AnyValue {
                    value: Some(fovea::otlp::proto::common::v1::any_value::Value::IntValue(i as i64)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "load.test".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Lets this test hold the flood's sockets (the soft limit is often 1024).
fn raise_own_fd_limit() {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out-parameter and value.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
        cur.rlim_cur = cur.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &cur);
    }
}

/// Opens `n` connections to `addr` and sends each the start of a request, never its end.
fn flood(addr: SocketAddr, n: usize, partial: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            // The server may close it at once (over the cap): writing may then fail, which is fine.
            let _ = s.write_all(partial);
            s
        })
        .collect()
}

/// Own metric value, `-1` when absent.
fn own(agent: &Agent, name: &str, labels: &[(&str, &str)]) -> f64 {
    agent.scrape_at(agent.telemetry).value(name, labels).unwrap_or(-1.0)
}

fn wait_for(what: &str, agent: &Agent, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened:\n{}", agent.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True once the server has closed `s` (end of stream or reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn floods_of_slow_clients_are_capped_counted_and_timed_out_while_telemetry_stays_up() {
    raise_own_fd_limit();
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: \"127.0.0.1:{grpc}\", max_connections: {CAP}, read_header_timeout: 4s, read_timeout: 1s}}
      http: {{endpoint: \"127.0.0.1:{http}\", max_connections: {CAP}, read_header_timeout: 4s, read_timeout: 1s, max_request_body_size: 100000}}
exporters:
  prometheus: {{}}
service:
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheus]}}
"
    );
    // 400 descriptors: before listeners had a cap, the flood below exhausted them and took the
    // own-telemetry and scrape endpoints down with "Too many open files".
    let agent = Agent::launch(Launch { config: Some(&config), sets: Vec::new(), wrapper: Some("ulimit -n 400; eval") })
        .unwrap_or_else(|(status, out)| panic!("agent did not start ({status}):\n{out}"));
    let (grpc, http): (SocketAddr, SocketAddr) = (([127, 0, 0, 1], grpc).into(), ([127, 0, 0, 1], http).into());

    let mut http_flood =
        flood(http, FLOOD, b"POST /v1/metrics HTTP/1.1\r\nHost: fovea\r\nContent-Type: application/x-protobuf\r\n");
    let mut grpc_flood = flood(grpc, FLOOD, b"PRI * HTTP/2.0\r\n");
    let refused = |agent: &Agent, protocol| {
        own(agent, "fovea_receiver_connections_refused_total", &[("receiver", "otlp"), ("protocol", protocol)])
    };
    let expected = (FLOOD - CAP) as f64;
    wait_for("refusing every connection over the cap", &agent, || {
        refused(&agent, "http") == expected && refused(&agent, "grpc") == expected
    });
    for protocol in ["http", "grpc"] {
        let labels = [("receiver", "otlp"), ("protocol", protocol)];
        assert_eq!(own(&agent, "fovea_receiver_connections", &labels), CAP as f64, "{protocol}");
    }

    // While the OTLP ports are full: the own endpoint and the scrape endpoint answer.
    assert_eq!(http_get(agent.telemetry, "/healthz").unwrap(), (200, "ok\n".to_string()));
    assert_eq!(http_get(agent.telemetry, "/readyz").unwrap().0, 200);
    assert_eq!(http_get(agent.metrics, "/metrics").unwrap().0, 200);
    // A new OTLP client is refused at once (closed without an answer), not left hanging.
    let late = http_post(http, "/v1/metrics", "application/x-protobuf", &request(1).encode_to_vec());
    assert!(late.as_ref().map_or(true, |(code, _)| *code == 0), "answered: {late:?}");
    wait_for("the extra client counted", &agent, || refused(&agent, "http") == expected + 1.0);

    // After read_header_timeout every slow client is gone (the refused ones went at once), and
    // the CAP of each listener that were accepted are counted as header timeouts.
    wait_for("slow clients disconnected", &agent, || {
        http_flood.iter_mut().chain(grpc_flood.iter_mut()).all(closed_by_server)
    });
    for protocol in ["http", "grpc"] {
        let labels = [("receiver", "otlp"), ("protocol", protocol), ("reason", "header_timeout")];
        wait_for("header timeouts counted", &agent, || {
            own(&agent, "fovea_receiver_requests_rejected_total", &labels) == CAP as f64
        });
        let open = [("receiver", "otlp"), ("protocol", protocol)];
        wait_for("connections released", &agent, || own(&agent, "fovea_receiver_connections", &open) == 0.0);
    }
    drop(http_flood);
    drop(grpc_flood);

    // The ports serve again: 3 points over HTTP, 4 over gRPC, all accepted.
    let (status, _) = http_post(http, "/v1/metrics", "application/x-protobuf", &request(3).encode_to_vec()).unwrap();
    assert_eq!(status, 200);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = MetricsServiceClient::connect(format!("http://{grpc}")).await.unwrap();
        client.export(request(4)).await.unwrap();
    });
    let accepted =
        || own(&agent, "fovea_receiver_accepted_items_total", &[("receiver", "otlp"), ("signal", "metrics")]);
    wait_for("7 points accepted", &agent, || accepted() == 7.0);

    let stderr = agent.stderr();
    assert!(stderr.contains("connection refused: the listener has max_connections open"), "{stderr}");
    assert!(stderr.contains("reason=\"header_timeout\""), "{stderr}");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{out}");
}

#[test]
fn late_and_oversized_bodies_are_refused_with_their_own_codes() {
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: \"127.0.0.1:{grpc}\", read_timeout: 1s}}
      http: {{endpoint: \"127.0.0.1:{http}\", read_timeout: 1s, max_request_body_size: 100000}}
exporters:
  prometheus: {{}}
service:
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheus]}}
"
    );
    let agent = Agent::start(&config);
    let (grpc, http): (SocketAddr, SocketAddr) = (([127, 0, 0, 1], grpc).into(), ([127, 0, 0, 1], http).into());
    let rejected = |protocol, reason| {
        own(
            &agent,
            "fovea_receiver_requests_rejected_total",
            &[("receiver", "otlp"), ("protocol", protocol), ("reason", reason)],
        )
    };

    // A declared 10 GB body is refused before any of it is read.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /v1/metrics HTTP/1.1\r\nHost: f\r\nContent-Type: application/x-protobuf\r\nContent-Length: 10000000000\r\n\r\nabc").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert_eq!(rejected("http", "too_large"), 1.0);

    // 3 bytes of a declared 1000 never complete: 408 after read_timeout, connection closed.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /v1/metrics HTTP/1.1\r\nHost: f\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\nabc").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(rejected("http", "body_timeout"), 1.0);

    // gRPC: the headers and 2 bytes of a 1000-byte message, then nothing: DeadlineExceeded.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(grpc).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = http::Request::post(format!("http://{grpc}{}", fovea::otlp::METRICS_GRPC_PATH))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        send.send_data(Bytes::from_static(&[0, 0, 0, 3, 232, 1, 2]), false).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), response).await.unwrap().unwrap();
        let (parts, mut body) = response.into_parts();
        match parts.headers.get("grpc-status") {
            Some(s) => s.to_str().unwrap().to_string(),
            None => {
                while body.data().await.is_some() {}
                let trailers = body.trailers().await.unwrap().unwrap();
                trailers["grpc-status"].to_str().unwrap().to_string()
            }
        }
    });
    assert_eq!(status, "4", "DeadlineExceeded");
    assert_eq!(rejected("grpc", "body_timeout"), 1.0);
    let (status, out) = agent.terminate();
    assert!(status.success(), "{out}");
}
