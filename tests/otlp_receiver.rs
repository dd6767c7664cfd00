//! The `otlp` receiver under bad input and failing pipelines, with real clients on 127.0.0.1:
//! every malformed, oversized or misaddressed request gets otelcol's status code, the process
//! keeps serving, and a request the pipeline did not take is answered retryable.

#[path = "support/otlp.rs"]
mod support;

use std::io::Write as _;

use bytes::Bytes;
use prost::Message as _;

use fovea::model::{Payload, Signal};
use fovea::otlp::grpc::ClientCodec;
use fovea::otlp::proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use fovea::otlp::proto::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use fovea::otlp::proto::metrics::v1::{self as pm, metric};
use fovea::otlp::status::RpcStatus;
use fovea::otlp::{LOGS_GRPC_PATH, metrics_to_proto};

fn valid_body() -> Vec<u8> {
    metrics_to_proto(&support::every_kind_batch()).encode_to_vec()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post(url: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    // reqwest is built without a default crypto provider; fovea makes ring the process default.
    fovea::tls::install_default_provider();
    let mut req = reqwest::Client::new().post(url).header("content-type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

fn status_message(body: &[u8]) -> (i32, String) {
    let s = RpcStatus::decode(body).unwrap();
    (s.code, s.message)
}

#[tokio::test]
async fn http_answers_bad_requests_with_otelcol_codes_and_keeps_serving() {
    let mut receiver = support::start_receiver(
        serde_json::json!({"protocols": {"http": {"endpoint": "127.0.0.1:0", "max_request_body_size": 100_000}}}),
    )
    .await;
    let base = format!("http://{}", receiver.http.unwrap());
    let url = format!("{base}/v1/metrics");
    let proto = "application/x-protobuf";

    let (status, ct, body) = post(&url, proto, None, b"\xff\xff\xff\xff".to_vec()).await;
    assert_eq!((status, ct.as_str()), (400, proto));
    let (code, message) = status_message(&body);
    assert_eq!(code, 3, "InvalidArgument");
    assert!(message.starts_with("malformed ExportMetricsServiceRequest"), "{message}");

    let packed = gzip(&valid_body());
    let (status, _, body) = post(&url, proto, Some("gzip"), packed[..packed.len() / 2].to_vec()).await;
    assert_eq!(status, 400);
    assert!(status_message(&body).1.starts_with("cannot decompress gzip body"));

    let (status, _, body) = post(&url, "text/plain", None, valid_body()).await;
    assert_eq!(status, 415);
    assert!(String::from_utf8_lossy(&body).contains("application/x-protobuf, application/json"));

    let (status, _, body) = post(&url, proto, None, vec![0u8; 100_001]).await;
    assert_eq!(status, 413);
    assert_eq!(status_message(&body), (8, "request body exceeds max_request_body_size (100000 bytes)".into()));

    // A small gzip body that inflates past the limit is refused as well.
    let (status, _, _) = post(&url, proto, Some("gzip"), gzip(&vec![0u8; 200_000])).await;
    assert_eq!(status, 413);

    let (status, _, _) = post(&url, proto, Some("br"), valid_body()).await;
    assert_eq!(status, 400);

    let bad_json = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":7,"gauge":{}}]}]}]}"#;
    let (status, ct, body) = post(&url, "application/json", None, bad_json.to_vec()).await;
    assert_eq!((status, ct.as_str()), (400, "application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], 3);
    assert!(json["message"].as_str().unwrap().starts_with("invalid OTLP/JSON"));

    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status().as_u16(), 405);
    let traces = client.post(format!("{base}/v1/traces")).header("content-type", proto).body(valid_body());
    assert_eq!(traces.send().await.unwrap().status().as_u16(), 404);

    // Nothing above reached the pipeline, and the receiver still serves.
    assert!(receiver.input.is_empty());
    let (answer, got) = tokio::join!(post(&url, proto, Some("gzip"), gzip(&valid_body())), receiver.next_batch());
    assert_eq!(answer.0, 200);
    assert_eq!(
        ExportMetricsServiceResponse::decode(answer.2.as_slice()).unwrap(),
        ExportMetricsServiceResponse::default()
    );
    assert_eq!(*got, support::every_kind_batch());
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}

#[tokio::test]
async fn unsupported_points_are_a_partial_success_not_a_failure() {
    let mut receiver =
        support::start_receiver(serde_json::json!({"protocols": {"http": {"endpoint": "127.0.0.1:0"}}})).await;
    let url = format!("http://{}/v1/metrics", receiver.http.unwrap());
    let json = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"latency","summary":{"dataPoints":[{"count":"2","sum":3.5},{"count":"1","sum":1}]}},
        {"name":"queue","unit":"{item}","gauge":{"dataPoints":[{"asInt":"12","timeUnixNano":"1000"}]}}]}]}]}"#;
    let (answer, got) = tokio::join!(post(&url, "application/json", None, json.to_vec()), receiver.next_batch());
    assert_eq!(answer.0, 200);
    let response: ExportMetricsServiceResponse = serde_json::from_slice(&answer.2).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 2);
    assert_eq!(
        partial.error_message,
        "2 data points not accepted: summaries are not supported (e.g. metric `latency`)"
    );
    assert_eq!(got.data_points(), 1);
    assert_eq!(got.resource_metrics[0].scope_metrics[0].metrics[0].name, "queue");
    // received 3, accepted 1, refused 2
    let (received, accepted, refused, failed) = receiver.stats.snapshot(Signal::Metrics);
    assert_eq!((received, accepted, refused, failed), (3, 1, 2, 0));
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}

#[tokio::test]
async fn grpc_answers_bad_requests_with_grpc_go_codes_and_keeps_serving() {
    let mut receiver = support::start_receiver(
        serde_json::json!({"protocols": {"grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 1}}}),
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", receiver.grpc.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let raw = |body: Vec<u8>, path: &'static str| {
        let channel = channel.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.unwrap();
            grpc.unary::<Bytes, ExportMetricsServiceResponse, _>(
                tonic::Request::new(Bytes::from(body)),
                http::uri::PathAndQuery::from_static(path),
                ClientCodec::<ExportMetricsServiceResponse>::default(),
            )
            .await
        }
    };
    let metrics = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

    let err = raw(b"\xff\xff\xff\xff".to_vec(), metrics).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = raw(vec![0u8; 2 * 1024 * 1024], metrics).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    let err = raw(valid_body(), LOGS_GRPC_PATH).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // An exponential histogram is refused as a partial success.
    let mut request = metrics_to_proto(&support::every_kind_batch());
    request.resource_metrics[1].scope_metrics[0].metrics.push(pm::Metric {
        name: "exp".into(),
        data: Some(metric::Data::ExponentialHistogram(pm::ExponentialHistogram {
            data_points: vec![Default::default()],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    });
    let mut client =
        MetricsServiceClient::new(channel.clone()).send_compressed(tonic::codec::CompressionEncoding::Zstd);
    let (answer, got) = tokio::join!(client.export(request), receiver.next_batch());
    let partial = answer.unwrap().into_inner().partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert!(partial.error_message.contains("exponential histograms are not supported (e.g. metric `exp`)"));
    assert_eq!(*got, support::every_kind_batch());
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}

#[tokio::test]
async fn data_the_pipeline_did_not_take_is_answered_retryable() {
    let mut receiver = support::start_receiver(serde_json::json!({"protocols": {
        "grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"},
    }}))
    .await;
    let url = format!("http://{}/v1/metrics", receiver.http.unwrap());
    let mut client = MetricsServiceClient::connect(format!("http://{}", receiver.grpc.unwrap())).await.unwrap();

    // An exporter that refuses (queue full): the client must resend.
    let fail_next = |input: &mut fovea::pipeline::Input| {
        let p: Option<Payload> = input.try_recv();
        p.map(|p| p.acks().fail()).is_some()
    };
    let http_call = post(&url, "application/x-protobuf", None, valid_body());
    let refuse = async {
        loop {
            if fail_next(&mut receiver.input) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let (answer, ()) = tokio::join!(http_call, refuse);
    assert_eq!(answer.0, 503);
    let (code, message) = status_message(&answer.2);
    assert_eq!(code, 14);
    assert!(message.starts_with("the pipeline did not take the data"), "{message}");

    let grpc_call = client.export(ExportMetricsServiceRequest::decode(valid_body().as_slice()).unwrap());
    let refuse = async {
        loop {
            if fail_next(&mut receiver.input) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let (answer, ()) = tokio::join!(grpc_call, refuse);
    assert_eq!(answer.unwrap_err().code(), tonic::Code::Unavailable);

    let (_, _, _, failed) = receiver.stats.snapshot(Signal::Metrics);
    assert_eq!(failed, 18);

    // The pipeline is gone (agent stopping): retryable too.
    let mut input = std::mem::replace(
        &mut receiver.input,
        fovea::pipeline::Input::channel(1, support::stats(fovea::telemetry::ComponentKind::Exporter, "x")).1,
    );
    while input.try_recv().is_some() {}
    drop(input);
    let answer = post(&url, "application/x-protobuf", None, valid_body()).await;
    assert_eq!(answer.0, 503);
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}

#[tokio::test]
async fn json_special_doubles_are_accepted_and_a_bad_as_int_fails_the_request() {
    let mut receiver =
        support::start_receiver(serde_json::json!({"protocols": {"http": {"endpoint": "127.0.0.1:0"}}})).await;
    let url = format!("http://{}/v1/metrics", receiver.http.unwrap());
    let json = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"ratio","gauge":{"dataPoints":[{"asDouble":"NaN","timeUnixNano":"1"},{"asDouble":"Infinity","timeUnixNano":"1"},
          {"asDouble":"-Infinity","timeUnixNano":"1"}]}}]}]}]}"#;
    let (answer, got) = tokio::join!(post(&url, "application/json", None, json.to_vec()), receiver.next_batch());
    assert_eq!(answer.0, 200, "{}", String::from_utf8_lossy(&answer.2));
    let response: ExportMetricsServiceResponse = serde_json::from_slice(&answer.2).unwrap();
    assert_eq!(response.partial_success, None, "nothing refused");
    let back = metrics_to_proto(&got);
    let Some(metric::Data::Gauge(g)) = &back.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("not a gauge")
    };
    let values: Vec<f64> = g
        .data_points
        .iter()
        .map(|p| match p.value {
            Some(pm::number_data_point::Value::AsDouble(d)) => d,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert!(values[0].is_nan());
    assert_eq!(&values[1..], &[f64::INFINITY, f64::NEG_INFINITY]);

    // A non-numeric asInt is a 400 for the whole request, not a silently refused point.
    let bad = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"queue","gauge":{"dataPoints":[{"asInt":"12"},{"asInt":"twelve"}]}}]}]}]}"#;
    let (status, _, body) = post(&url, "application/json", None, bad.to_vec()).await;
    assert_eq!(status, 400);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], 3);
    assert_eq!(
        json["message"],
        "invalid OTLP/JSON at resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[1].asInt: \"twelve\" is not a 64-bit integer"
    );
    assert!(receiver.input.is_empty());
    let (received, accepted, refused, failed) = receiver.stats.snapshot(Signal::Metrics);
    assert_eq!((received, accepted, refused, failed), (3, 3, 0, 0));
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
}
