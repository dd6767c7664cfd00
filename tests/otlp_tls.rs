//! TLS end to end with rustls on ring only: fovea's `otlp` receiver serves gRPC and HTTP over
//! TLS with a test CA's certificate, and the `otlp` / `otlphttp` exporters verify it with
//! `ca_file`, with `server_name_override`, or skip verification, and the data arrives unchanged.
//! The certificates are made by the `openssl` command in a temporary directory.

#[path = "support/certs.rs"]
mod certs;
#[path = "support/otlp.rs"]
mod support;

use std::path::Path;

use fovea::exporters::otlp::{self, OtlpExporterConfig};
use fovea::exporters::otlphttp::{self, OtlpHttpExporterConfig};
use fovea::model::Payload;

/// A CA and a server certificate for localhost, 127.0.0.1 and otlp.test; `None` without openssl.
fn make_certificates(dir: &Path) -> Option<()> {
    certs::make(dir, &["DNS:localhost", "DNS:otlp.test", "IP:127.0.0.1"])
}

#[tokio::test]
async fn exporters_reach_a_tls_receiver_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    if make_certificates(dir.path()).is_none() {
        return;
    }
    let p = |f: &str| dir.path().join(f).display().to_string();
    let server_tls = serde_json::json!({"cert_file": p("server.pem"), "key_file": p("server.key")});
    let mut receiver = support::start_receiver(serde_json::json!({"protocols": {
        "grpc": {"endpoint": "127.0.0.1:0", "tls": server_tls},
        "http": {"endpoint": "127.0.0.1:0", "tls": server_tls},
    }}))
    .await;
    let (grpc, http) = (receiver.grpc.unwrap(), receiver.http.unwrap());
    let batch = support::every_kind_batch();

    let grpc_variants = [
        serde_json::json!({"endpoint": grpc.to_string(), "tls": {"ca_file": p("ca.pem")}}),
        serde_json::json!({"endpoint": format!("https://localhost:{}", grpc.port()), "tls": {"ca_file": p("ca.pem")}}),
        serde_json::json!({"endpoint": grpc.to_string(), "tls": {"ca_file": p("ca.pem"), "server_name_override": "otlp.test"}}),
        serde_json::json!({"endpoint": grpc.to_string(), "tls": {"insecure_skip_verify": true}}),
    ];
    for config in grpc_variants {
        let c: OtlpExporterConfig = serde_json::from_value(config.clone()).unwrap();
        let exporter = support::start_exporter(Box::new(otlp::exporter("otlp".into(), &c).unwrap())).await;
        exporter.link.send(Payload::from(batch.clone())).await.unwrap();
        assert_eq!(*receiver.next_batch().await, batch, "{config}");
        drop(exporter.link);
        exporter.task.await.unwrap();
    }
    let http_variants = [
        serde_json::json!({"endpoint": format!("https://127.0.0.1:{}", http.port()), "tls": {"ca_file": p("ca.pem")}}),
        serde_json::json!({"endpoint": format!("https://localhost:{}", http.port()), "tls": {"insecure_skip_verify": true}}),
    ];
    for config in http_variants {
        let c: OtlpHttpExporterConfig = serde_json::from_value(config.clone()).unwrap();
        let exporter = support::start_exporter(Box::new(otlphttp::exporter("otlphttp".into(), &c))).await;
        exporter.link.send(Payload::from(batch.clone())).await.unwrap();
        assert_eq!(*receiver.next_batch().await, batch, "{config}");
        drop(exporter.link);
        exporter.task.await.unwrap();
    }
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    if make_certificates(dir.path()).is_none() {
        return;
    }
    let p = |f: &str| dir.path().join(f).display().to_string();
    let receiver = support::start_receiver(serde_json::json!({"protocols": {
        "http": {"endpoint": "127.0.0.1:0", "tls": {"cert_file": p("server.pem"), "key_file": p("server.key")}},
    }}))
    .await;
    // The server certificate itself is not a CA: verification must fail, and the failure is
    // retryable (the server may get a valid certificate), never a silent success.
    let c: OtlpHttpExporterConfig = serde_json::from_value(serde_json::json!({
        "endpoint": format!("https://127.0.0.1:{}", receiver.http.unwrap().port()), "tls": {"ca_file": p("server.pem")},
    }))
    .unwrap();
    let t = fovea::exporters::otlphttp::HttpTransport::new(&c);
    let request =
        fovea::delivery::Request { signal: fovea::model::Signal::Metrics, items: 1, body: bytes::Bytes::new() };
    use fovea::delivery::Transport as _;
    match t.send(&request).await {
        Err(fovea::delivery::SendError::Retryable { reason, .. }) => {
            assert!(reason.contains("certificate") || reason.contains("Certificate"), "{reason}")
        }
        other => panic!("an unverifiable server must not be accepted: {other:?}"),
    }
}
