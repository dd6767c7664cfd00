//! The `otlp` and `otlphttp` transports against scripted servers on 127.0.0.1: every answer an
//! OTLP server can give is classified exactly as otelcol does (retryable with the server's
//! throttle, permanent with the server's reason, or sent with the partial-success count).

#[path = "support/otlp.rs"]
mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message as _;

use fovea::delivery::{Request, SendError, Sent, Transport};
use fovea::exporters::otlp::{GrpcTransport, OtlpExporterConfig};
use fovea::exporters::otlphttp::{HttpTransport, OtlpHttpExporterConfig};
use fovea::model::Signal;
use fovea::otlp::metrics_to_proto;
use fovea::otlp::proto::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
use fovea::otlp::status::RpcStatus;
use support::{GrpcReply, HttpReply};

fn request() -> Request {
    let batch = support::every_kind_batch();
    Request { signal: Signal::Metrics, items: 9, body: Bytes::from(metrics_to_proto(&batch).encode_to_vec()) }
}

fn grpc_transport(endpoint: String, timeout: &str) -> GrpcTransport {
    let config: OtlpExporterConfig = serde_json::from_value(serde_json::json!({
        "endpoint": endpoint, "tls": {"insecure": true}, "timeout": timeout,
        "headers": {"authorization": "Bearer s3cret"},
    }))
    .unwrap();
    GrpcTransport::new(&config).unwrap()
}

#[tokio::test]
async fn grpc_answers_are_classified_as_otelcol_does() {
    let retry_info = RpcStatus::new(8, "over quota", Some(Duration::from_millis(2500))).encode_to_vec();
    let (addr, seen) = support::scripted_grpc(vec![
        GrpcReply::Status(tonic::Status::unavailable("backend restarting")),
        GrpcReply::Status(tonic::Status::resource_exhausted("over quota")),
        GrpcReply::Status(tonic::Status::with_details(tonic::Code::ResourceExhausted, "over quota", retry_info.into())),
        GrpcReply::Status(tonic::Status::invalid_argument("metric name is empty")),
        GrpcReply::Ok(Some((3, "3 points too old".into()))),
        GrpcReply::Ok(None),
        GrpcReply::Status(tonic::Status::unauthenticated("bad token")),
        GrpcReply::Status(tonic::Status::aborted("conflict")),
    ])
    .await;
    let t = grpc_transport(addr.to_string(), "5s");
    let r = request();
    let retry = |reason: &str, throttle| Err(SendError::Retryable { reason: reason.into(), throttle });
    let permanent = |reason: &str| Err(SendError::Permanent { reason: reason.into() });
    assert_eq!(t.send(&r).await, retry("Unavailable: backend restarting", None));
    assert_eq!(t.send(&r).await, permanent("ResourceExhausted: over quota"));
    assert_eq!(t.send(&r).await, retry("ResourceExhausted: over quota", Some(Duration::from_millis(2500))));
    assert_eq!(t.send(&r).await, permanent("InvalidArgument: metric name is empty"));
    assert_eq!(t.send(&r).await, Ok(Sent { rejected_items: 3, message: "3 points too old".into() }));
    assert_eq!(t.send(&r).await, Ok(Sent::default()));
    assert_eq!(t.send(&r).await, permanent("Unauthenticated: bad token"));
    assert_eq!(t.send(&r).await, retry("Aborted: conflict", None));

    // Every attempt carried the data (gzip on the wire, the default) and the configured metadata.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 8);
    assert_eq!(seen.requests[0], metrics_to_proto(&support::every_kind_batch()));
    assert_eq!(seen.metadata[0].get("authorization").unwrap(), "Bearer s3cret");
    assert_eq!(seen.metadata[0].get("grpc-encoding").unwrap(), "gzip");
    assert!(seen.metadata[0].get("user-agent").unwrap().to_str().unwrap().contains("fovea/"));
}

#[tokio::test]
async fn grpc_connection_failures_and_timeouts_are_retryable() {
    // A port nobody listens on: bind, note the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let t = grpc_transport(closed.to_string(), "2s");
    match t.send(&request()).await {
        Err(SendError::Retryable { throttle: None, .. }) => {}
        other => panic!("connection refused must be retryable, got {other:?}"),
    }

    let (addr, _) = support::scripted_grpc(vec![GrpcReply::Delay(Duration::from_secs(3))]).await;
    let t = grpc_transport(addr.to_string(), "300ms");
    match t.send(&request()).await {
        Err(SendError::Retryable { reason, throttle: None }) => {
            assert!(reason.starts_with("DeadlineExceeded"), "{reason}")
        }
        other => panic!("a timeout must be retryable, got {other:?}"),
    }
}

fn http_transport(endpoint: String, extra: serde_json::Value) -> HttpTransport {
    let mut config = serde_json::json!({"endpoint": endpoint, "headers": {"X-Scope-OrgID": "tenant-1"}});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let config: OtlpHttpExporterConfig = serde_json::from_value(config).unwrap();
    HttpTransport::new(&config)
}

#[tokio::test]
async fn http_answers_are_classified_as_otelcol_does() {
    let in_ten_seconds = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(10));
    let status_body = RpcStatus::new(3, "unknown metric type", None).encode_to_vec();
    let partial = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess { rejected_data_points: 4, error_message: "4 stale".into() }),
    }
    .encode_to_vec();
    let proto = ("content-type", "application/x-protobuf");
    let (addr, seen) = support::scripted_http(vec![
        HttpReply::new(429, &[("retry-after", "2")], "slow down"),
        HttpReply::new(503, &[("retry-after", &in_ten_seconds)], ""),
        HttpReply::new(502, &[], "bad gateway"),
        HttpReply::new(504, &[("retry-after", "7")], ""),
        HttpReply::new(400, &[proto], status_body),
        HttpReply::new(200, &[proto], b"\xff\xff\xff garbage".to_vec()),
        HttpReply::new(200, &[proto], partial),
        HttpReply::new(200, &[("content-type", "text/plain")], "ok"),
        HttpReply::new(500, &[], "internal"),
        HttpReply::new(401, &[("content-type", "application/json")], r#"{"code":16,"message":"who are you"}"#),
    ])
    .await;
    let t = http_transport(format!("http://{addr}"), serde_json::json!({}));
    let r = request();

    assert_eq!(
        t.send(&r).await,
        Err(SendError::Retryable {
            reason: "HTTP 429 Too Many Requests: slow down".into(),
            throttle: Some(Duration::from_secs(2))
        })
    );
    match t.send(&r).await {
        Err(SendError::Retryable { reason, throttle: Some(d) }) => {
            assert_eq!(reason, "HTTP 503 Service Unavailable");
            assert!(
                d <= Duration::from_secs(10) && d >= Duration::from_secs(8),
                "throttle {d:?} from an HTTP date 10s ahead"
            );
        }
        other => panic!("503 with an HTTP-date Retry-After: {other:?}"),
    }
    assert_eq!(
        t.send(&r).await,
        Err(SendError::Retryable { reason: "HTTP 502 Bad Gateway: bad gateway".into(), throttle: None })
    );
    // Retry-After counts only on 429 and 503.
    assert_eq!(
        t.send(&r).await,
        Err(SendError::Retryable { reason: "HTTP 504 Gateway Timeout".into(), throttle: None })
    );
    assert_eq!(
        t.send(&r).await,
        Err(SendError::Permanent { reason: "HTTP 400 Bad Request: unknown metric type".into() })
    );
    match t.send(&r).await {
        Err(SendError::Permanent { reason }) => {
            assert!(reason.starts_with("HTTP 200 OK with an unreadable OTLP response body"))
        }
        other => panic!("200 with a garbage protobuf body must be permanent: {other:?}"),
    }
    assert_eq!(t.send(&r).await, Ok(Sent { rejected_items: 4, message: "4 stale".into() }));
    assert_eq!(t.send(&r).await, Ok(Sent::default()));
    assert_eq!(
        t.send(&r).await,
        Err(SendError::Permanent { reason: "HTTP 500 Internal Server Error: internal".into() })
    );
    assert_eq!(t.send(&r).await, Err(SendError::Permanent { reason: "HTTP 401 Unauthorized: who are you".into() }));

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10);
    let first = &seen[0];
    assert_eq!(first.path, "/v1/metrics");
    assert_eq!(first.headers["content-type"], "application/x-protobuf");
    assert_eq!(first.headers["content-encoding"], "gzip");
    assert_eq!(first.headers["x-scope-orgid"], "tenant-1");
    let body = fovea::otlp::compression::decompress("gzip", &first.body, 1 << 24).unwrap();
    assert_eq!(body, r.body.to_vec());
}

#[tokio::test]
async fn http_connection_failures_and_timeouts_are_retryable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let t = http_transport(format!("http://{closed}"), serde_json::json!({"timeout": "2s"}));
    match t.send(&request()).await {
        Err(SendError::Retryable { reason, throttle: None }) => {
            assert!(reason.starts_with("cannot connect"), "{reason}")
        }
        other => panic!("connection refused must be retryable, got {other:?}"),
    }
    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let t = http_transport(format!("http://{addr}"), serde_json::json!({"timeout": "300ms"}));
    match t.send(&request()).await {
        Err(SendError::Retryable { reason, .. }) => assert!(reason.contains("in time"), "{reason}"),
        other => panic!("a timeout must be retryable, got {other:?}"),
    }
    hold.abort();
}
