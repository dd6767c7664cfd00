//! Property and fuzz tests on the stable toolchain (proptest): whatever a user or a client
//! sends, the config loader, the OTLP decoders (HTTP and gRPC bodies, protobuf and JSON) and the
//! compression layer and the DNS message parser answer with a value or a clear error, never a panic, a hang or an
//! unbounded allocation. Each run is bounded (about half a minute in all, `FOVEA_FUZZ_SCALE=N`
//! runs N times longer) and starts from the corpus in `tests/corpus/` (the cases of issue 13).
//! Netlink parsing has its own property tests next to the parsers (`src/receivers/probe/links.rs`,
//! `src/receivers/linuxutil/netlink.rs`).

#[path = "support/otlp.rs"]
mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use prost::Message as _;

use fovea::config::{self, ConfigError, Sources};
use fovea::model::Resource;
use fovea::otlp::compression::{Compression, decompress};
use fovea::otlp::proto::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use fovea::otlp::proto::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use fovea::otlp::proto::metrics::v1 as pm;
use fovea::receivers::otlp::{Format, decode_body};

/// Cases of one property: `default`, times `FOVEA_FUZZ_SCALE` for longer runs.
fn cases(default: u32) -> u32 {
    let scale = std::env::var("FOVEA_FUZZ_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    default.saturating_mul(scale.max(1))
}

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// Loads and builds a config as `fovea validate` does; checks that a refusal is a clear error:
/// at least one problem, each with a message of bounded size.
fn check_config(result: Result<(), ConfigError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        let problems = e.problems();
        let read_error = matches!(e, ConfigError::Read { .. });
        prop_assert!(!problems.is_empty() || read_error, "an error without a problem: {}", e);
        for p in problems {
            prop_assert!(!p.message.is_empty());
            prop_assert!(
                p.message.len() <= 2200 && p.path.len() <= 2200,
                "unbounded message: {} bytes",
                p.message.len()
            );
        }
    }
    Ok(())
}

fn build(doc: &config::Document) -> Result<(), ConfigError> {
    fovea::pipeline::build(doc, &fovea::components::builtin(), Arc::new(Resource::default())).map(|_| ())
}

fn load_and_build(text: &str) -> Result<(), ConfigError> {
    build(&config::load_str("fuzz.yaml", text)?)
}

#[test]
fn config_corpus_gives_clear_errors_naming_the_file() {
    let expected = [
        ("alias_bomb.yaml", "past 100000 copied nodes"),
        ("bad_addresses.yaml", "is not host:port"),
        ("bad_durations.yaml", "unknown unit ` s`"),
        ("binary.yaml", "not valid UTF-8 at byte offset 136 (byte 0x80)"),
        ("deep_nesting.yaml", "nested more than 64 levels"),
        ("duplicate_key.yaml", "exporters::otlp::endpoint: duplicate key"),
        ("latin1.yaml", "not valid UTF-8 at byte offset 32"),
        ("mapping_key.yaml", "mapping keys must be strings"),
        ("tabs.yaml", "YAML syntax error"),
        ("two_documents.yaml", "more than one YAML document"),
        ("unknown_extension.yaml", "the `oauth2client` extension is not supported by fovea"),
        ("unset_env.yaml", "`${env:FOVEA_CORPUS_UNSET}` at "),
    ];
    let files = corpus("config");
    assert_eq!(files.len(), expected.len(), "every corpus file has an expectation");
    for (file, (name, fragment)) in files.iter().zip(expected) {
        assert!(file.ends_with(name), "{}", file.display());
        let sources = Sources { files: vec![file.clone()], sets: Vec::new() };
        let err = config::load_with(&sources, &|_| None).and_then(|doc| build(&doc)).expect_err(name);
        let text = err.to_string();
        assert!(text.contains(fragment), "{name}: `{fragment}` not in\n{text}");
        assert!(text.contains(&file.display().to_string()), "{name} names the file:\n{text}");
        check_config(Err(err)).unwrap();
    }
    // All problems of bad_durations.yaml in one report.
    let sources = Sources { files: vec![corpus("config").remove(2)], sets: Vec::new() };
    let err = config::load_with(&sources, &|_| None).and_then(|doc| build(&doc)).unwrap_err();
    assert_eq!(err.problems().len(), 4, "{err}");
}

/// Pieces that YAML and fovea's configs are made of, so random texts reach deep into both.
fn yaml_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "receivers",
        "exporters",
        "processors",
        "extensions",
        "connectors",
        "service",
        "pipelines",
        "metrics",
        "flows",
        "linuxutil",
        "otlp",
        "debug",
        "prometheus",
        "batch",
        "forward",
        "health_check",
        "pprof",
        "zpages",
        "protocols",
        "grpc",
        "http",
        "endpoint",
        "telemetry",
        "readers",
        "pull",
        "periodic",
        "sending_queue",
        "storage",
        "directory",
        "retry_on_failure",
        "tls",
        "cert_file",
        "collection_interval",
        "timeout",
        ":",
        ": ",
        ", ",
        "-",
        "- ",
        "[",
        "]",
        "{",
        "}",
        "&a",
        "*a",
        "&b",
        "*b",
        "!",
        "!!str",
        "|",
        ">",
        "'",
        "\"",
        "#",
        "%",
        "@",
        "`",
        "?",
        "\n",
        "\n  ",
        "\n    ",
        "\t",
        " ",
        "1s",
        "5 s",
        "1y",
        "0",
        "-1",
        "1e999",
        "0x1F",
        ".inf",
        "~",
        "null",
        "true",
        "127.0.0.1:0",
        "localhost:",
        "${env:X}",
        "${env:X:-1s}",
        "$$",
        "${",
        "\u{0}",
        "é",
        "\u{feff}",
        "---",
        "...",
    ])
}

fn yaml_text() -> impl Strategy<Value = String> {
    prop::collection::vec(yaml_piece(), 0..80).prop_map(|p| p.concat())
}

/// A YAML value rendered in flow style, from fovea's vocabulary.
fn yaml_value() -> impl Strategy<Value = String> {
    let scalar = prop::sample::select(vec![
        "1s",
        "200ms",
        "5 s",
        "2 minutes",
        "0",
        "-5s",
        "2562047h47m16.854775808s",
        "10",
        "-1",
        "65536",
        "true",
        "null",
        "''",
        "\"127.0.0.1:0\"",
        "\"localhost:\"",
        "\"[::1]:0\"",
        "debug",
        "loud",
        "\"${env:FOVEA_FUZZ}\"",
        "gzip",
        "items",
        "bytes",
        "http/protobuf",
        "grpc",
        "/nonexistent/file.pem",
        "\"http://u:p@h/?token=x\"",
    ])
    .prop_map(str::to_string);
    let key = prop::sample::select(vec![
        "endpoint",
        "protocols",
        "grpc",
        "http",
        "tls",
        "cert_file",
        "key_file",
        "collection_interval",
        "verbosity",
        "sending_queue",
        "batch",
        "min_size",
        "max_size",
        "sizer",
        "storage",
        "directory",
        "queue_size",
        "num_consumers",
        "retry_on_failure",
        "initial_interval",
        "max_connections",
        "read_header_timeout",
        "keepalive",
        "server_parameters",
        "max_connection_idle",
        "enforcement_policy",
        "interfaces",
        "netstat",
        "include",
        "statistics",
        "path",
        "response_body",
        "save_to_file",
        "readers",
        "pull",
        "periodic",
        "exporter",
        "prometheus",
        "port",
        "otlp",
        "unknown_key",
    ]);
    scalar.prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| {
                let entries: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", entries.join(", "))
            }),
        ]
    })
}

/// A whole config: components with generated bodies wired into a pipeline.
fn config_doc() -> impl Strategy<Value = String> {
    let receiver = prop::sample::select(vec!["linuxutil", "otlp", "packetforward", "dropreason", "tcpretrans", "nope"]);
    let exporter = prop::sample::select(vec!["debug", "otlp", "otlphttp", "prometheus", "prometheusremotewrite"]);
    let extension = prop::sample::select(vec!["health_check", "pprof", "zpages", "file_storage"]);
    (receiver, yaml_value(), exporter, yaml_value(), extension, yaml_value(), yaml_value()).prop_map(
        |(r, rb, e, eb, x, xb, telemetry)| {
            format!(
                "receivers:\n  {r}: {rb}\nprocessors:\n  batch: {{}}\nexporters:\n  {e}: {eb}\nextensions:\n  {x}: {xb}\n\
                 service:\n  extensions: [{x}]\n  telemetry: {telemetry}\n  pipelines:\n    metrics: {{receivers: [{r}], processors: [batch], exporters: [{e}]}}\n"
            )
        },
    )
}

/// Random edits of a text: flip, insert, delete and duplicate bytes.
fn mutate(base: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for &(op, at, byte) in edits {
        let at = if out.is_empty() { 0 } else { at % out.len() };
        match op % 4 {
            0 if !out.is_empty() => out[at] ^= byte.max(1),
            1 => out.insert(at, byte),
            2 if !out.is_empty() => {
                out.remove(at);
            }
            _ => {
                let end = (at + byte as usize % 16).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..12)
}

/// A proptest configuration of `n` cases (times `FOVEA_FUZZ_SCALE`), without failure files:
/// a failure prints its minimal input, which belongs in `tests/corpus/`.
fn runs(n: u32) -> ProptestConfig {
    ProptestConfig { cases: cases(n), failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(runs(20_000))]

    #[test]
    fn random_yaml_texts_are_answered_clearly(text in yaml_text()) {
        check_config(load_and_build(&text))?;
    }
}

proptest! {
    #![proptest_config(runs(8_000))]

    #[test]
    fn generated_configs_are_answered_clearly(text in config_doc()) {
        check_config(load_and_build(&text))?;
    }

    #[test]
    fn mutated_corpus_configs_are_answered_clearly(index in 0usize..12, edits in edits()) {
        let files = corpus("config");
        let base = std::fs::read(&files[index % files.len()]).unwrap();
        let text = String::from_utf8_lossy(&mutate(&base, &edits)).into_owned();
        check_config(load_and_build(&text))?;
    }

    #[test]
    fn set_expressions_are_answered_clearly(key in yaml_text(), value in yaml_text()) {
        // On top of the embedded default config, as `fovea validate --set ...` reads it.
        let sources = Sources { files: Vec::new(), sets: vec![format!("{key}={value}")] };
        check_config(config::load_with(&sources, &|_| None).and_then(|d| build(&d)))?;
    }
}

/// A random but valid OTLP request: resources, scopes and every metric kind.
fn otlp_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let value = prop_oneof![
        any::<i64>().prop_map(pm::number_data_point::Value::AsInt),
        any::<f64>().prop_map(pm::number_data_point::Value::AsDouble),
    ];
    let attribute =
        (prop::sample::select(vec!["a", "host.name", "", "k8s.pod.name"]), any::<i64>()).prop_map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }),
            ..Default::default()
        });
    let point = (value, prop::collection::vec(attribute, 0..3), any::<u64>()).prop_map(|(v, attributes, t)| {
        pm::NumberDataPoint { value: Some(v), attributes, time_unix_nano: t, ..Default::default() }
    });
    let histogram = (prop::collection::vec(any::<f64>(), 0..4), prop::collection::vec(any::<u64>(), 0..5)).prop_map(
        |(explicit_bounds, bucket_counts)| pm::HistogramDataPoint {
            count: bucket_counts.iter().fold(0u64, |a, b| a.wrapping_add(*b)),
            explicit_bounds,
            bucket_counts,
            sum: Some(1.5),
            ..Default::default()
        },
    );
    let metric = (
        prop::sample::select(vec!["m", "network.forward.bytes", "", "é"]),
        0u8..5,
        prop::collection::vec(point, 0..4),
        prop::collection::vec(histogram, 0..2),
        0i32..4,
    )
        .prop_map(|(name, kind, points, histograms, temporality)| pm::Metric {
            name: name.to_string(),
            data: Some(match kind {
                0 => pm::metric::Data::Gauge(pm::Gauge { data_points: points }),
                1 => pm::metric::Data::Sum(pm::Sum {
                    data_points: points,
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                }),
                2 => pm::metric::Data::Histogram(pm::Histogram {
                    data_points: histograms,
                    aggregation_temporality: temporality,
                }),
                3 => pm::metric::Data::Summary(pm::Summary { data_points: vec![Default::default()] }),
                _ => pm::metric::Data::ExponentialHistogram(pm::ExponentialHistogram {
                    data_points: vec![Default::default()],
                    aggregation_temporality: temporality,
                }),
            }),
            ..Default::default()
        });
    prop::collection::vec(prop::collection::vec(metric, 0..4), 0..3).prop_map(|resources| ExportMetricsServiceRequest {
        resource_metrics: resources
            .into_iter()
            .map(|metrics| pm::ResourceMetrics {
                scope_metrics: vec![pm::ScopeMetrics { metrics, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    })
}

/// An AnyValue nested `depth` deep (kvlists in arrays ...).
fn nested_attribute(depth: usize) -> AnyValue {
    let mut value = AnyValue { value: Some(any_value::Value::StringValue("leaf".into())) };
    for i in 0..depth {
        let kv = KeyValue { key: format!("k{i}"), value: Some(value), ..Default::default() };
        value = AnyValue { value: Some(any_value::Value::KvlistValue(KeyValueList { values: vec![kv] })) };
    }
    value
}

/// Decodes as the HTTP receiver does, and converts what decodes, checking the answer is clear.
fn decode_http(format: Format, encoding: &str, body: &[u8], limit: usize) -> Result<(), TestCaseError> {
    match decode_body(format, encoding, body, limit) {
        Ok(request) => {
            let decoded = fovea::otlp::metrics_from_proto(request);
            prop_assert!(decoded.batch.data_points() as u64 <= decoded.accepted);
        }
        Err(refusal) => {
            prop_assert!(matches!(refusal.status.as_u16(), 400 | 413), "{:?}", refusal);
            prop_assert!(!refusal.message.is_empty() && refusal.message.len() < 4096);
        }
    }
    Ok(())
}

#[test]
fn otlp_corpus_is_decoded_or_refused_clearly() {
    for file in corpus("otlp") {
        let body = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let result = decode_body(Format::Json, "", &body, 1 << 20);
        match name.as_str() {
            "nan_doubles.json" => {
                let batch = fovea::otlp::metrics_from_proto(result.unwrap()).batch;
                assert_eq!(batch.data_points(), 4, "NaN, Infinity and -Infinity points, and the histogram");
            }
            "bad_as_int.json" => assert!(result.unwrap_err().message.contains("is not a 64-bit integer")),
            "bad_metric_data.json" => assert!(result.unwrap_err().message.contains("metrics[0].sum")),
            "deep_array.json" => assert!(result.unwrap_err().message.contains("recursion limit"), "{name}"),
            other => panic!("corpus file {other} has no expectation here"),
        }
    }
    // Attributes nested deeper than protobuf's recursion limit are refused, not overflowing the stack.
    let mut request = ExportMetricsServiceRequest::default();
    request.resource_metrics.push(pm::ResourceMetrics {
        resource: Some(fovea::otlp::proto::resource::v1::Resource {
            attributes: vec![KeyValue { key: "deep".into(), value: Some(nested_attribute(500)), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    });
    let refusal = decode_body(Format::Protobuf, "", &request.encode_to_vec(), 1 << 20).unwrap_err();
    assert!(refusal.message.contains("recursion limit"), "{}", refusal.message);
    // A length prefix promising a terabyte: refused at once, nothing allocated for it.
    let huge = [0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    assert!(decode_body(Format::Protobuf, "", &huge, 1 << 20).is_err());
    // Compression bombs: 64 MiB of zeros in a few hundred kilobytes, refused at the limit.
    for c in [Compression::Gzip, Compression::Zstd] {
        let bomb = c.compress(&vec![0u8; 64 << 20]).unwrap();
        assert!(bomb.len() < 400_000, "{} bytes", bomb.len());
        let refusal = decode_body(Format::Protobuf, c.token().unwrap(), &bomb, 1 << 20).unwrap_err();
        assert_eq!(refusal.status.as_u16(), 413);
    }
}

proptest! {
    #![proptest_config(runs(10_000))]

    #[test]
    fn any_bytes_as_an_otlp_body_are_answered_clearly(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        json in any::<bool>(),
        encoding in prop::sample::select(vec!["", "gzip", "zstd", "deflate", "br", "identity"]),
    ) {
        let format = if json { Format::Json } else { Format::Protobuf };
        decode_http(format, encoding, &body, 4096)?;
    }

    #[test]
    fn valid_requests_round_trip_and_their_mutations_are_answered_clearly(
        request in otlp_request(),
        edits in edits(),
        compression in prop::sample::select(vec![Compression::None, Compression::Gzip, Compression::Zstd]),
    ) {
        let encoded = request.encode_to_vec();
        prop_assert_eq!(&ExportMetricsServiceRequest::decode(encoded.as_slice()).unwrap(), &request);
        let packed = compression.compress(&encoded).unwrap();
        let token = compression.token().unwrap_or("");
        decode_http(Format::Protobuf, token, &packed, 1 << 20)?;
        decode_http(Format::Protobuf, token, &mutate(&packed, &edits), 1 << 20)?;
        // The same request as OTLP/JSON, and mutated.
        let json = serde_json::to_vec(&request).unwrap();
        decode_http(Format::Json, "", &json, 1 << 20)?;
        decode_http(Format::Json, "", &mutate(&json, &edits), 1 << 20)?;
    }

    #[test]
    fn mutated_json_corpus_is_answered_clearly(index in 0usize..4, edits in edits()) {
        let files = corpus("otlp");
        let base = std::fs::read(&files[index % files.len()]).unwrap();
        decode_http(Format::Json, "", &mutate(&base, &edits), 1 << 20)?;
    }

}

proptest! {
    #![proptest_config(runs(3_000))]

    #[test]
    fn compression_round_trips_and_never_exceeds_its_limit(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        noise in prop::collection::vec(any::<u8>(), 0..256),
        limit in 0usize..8192,
    ) {
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let token = c.token().unwrap_or("");
            let packed = c.compress(&data).unwrap();
            match decompress(token, &packed, limit) {
                Ok(out) => prop_assert_eq!(out, data.clone()),
                Err(e) => prop_assert!(data.len() > limit, "{} of {} bytes, limit {}", e, data.len(), limit),
            }
            for encoding in [token, "deflate"] {
                if let Ok(out) = decompress(encoding, &noise, limit) {
                    prop_assert!(out.len() <= limit);
                }
            }
        }
    }
}

/// Random bodies against the real listeners: every answer is one of otelcol's, and only the
/// valid requests reach the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_answers_random_http_and_grpc_bodies_clearly_and_keeps_serving() {
    let mut receiver = support::start_receiver(serde_json::json!({"protocols": {
        "grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 1},
        "http": {"endpoint": "127.0.0.1:0", "max_request_body_size": 100_000},
    }}))
    .await;
    let url = format!("http://{}/v1/metrics", receiver.http.unwrap());
    fovea::tls::install_default_provider();
    let http = reqwest::Client::new();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", receiver.grpc.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Take what reaches the pipeline, as an exporter would.
    let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = taken.clone();
    let mut input = std::mem::replace(
        &mut receiver.input,
        fovea::pipeline::Input::channel(1, support::stats(fovea::telemetry::ComponentKind::Exporter, "x")).1,
    );
    let drain = tokio::spawn(async move {
        while let Some(p) = input.recv().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            p.acks().accept();
        }
    });

    let mut runner = proptest::test_runner::TestRunner::new(runs(600));
    let bodies = (otlp_request(), edits(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..512));
    let mut answered_ok = 0u64;
    for _ in 0..cases(600) {
        let (request, edits, mutate_it, noise) = bodies.new_tree(&mut runner).unwrap().current();
        let mut body = request.encode_to_vec();
        if mutate_it {
            body = mutate(&body, &edits);
        }
        let (ct, raw) = match edits[0].0 % 3 {
            0 => ("application/x-protobuf", body.clone()),
            1 => ("application/json", serde_json::to_vec(&request).unwrap()),
            _ => ("application/x-protobuf", noise.clone()),
        };
        let response = http.post(&url).header("content-type", ct).body(raw).send().await.unwrap();
        let status = response.status().as_u16();
        assert!(matches!(status, 200 | 400 | 413), "HTTP answered {status}");
        if status == 200 {
            answered_ok += 1;
            let body = response.bytes().await.unwrap();
            if ct == "application/x-protobuf" {
                ExportMetricsServiceResponse::decode(body).unwrap();
            }
        }
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let answer = grpc
            .unary::<Bytes, ExportMetricsServiceResponse, _>(
                tonic::Request::new(Bytes::from(if mutate_it { body } else { noise })),
                http::uri::PathAndQuery::from_static(fovea::otlp::METRICS_GRPC_PATH),
                fovea::otlp::grpc::ClientCodec::<ExportMetricsServiceResponse>::default(),
            )
            .await;
        match answer {
            Ok(_) => answered_ok += 1,
            Err(status) => assert!(
                matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted),
                "gRPC answered {status:?}"
            ),
        }
    }
    // Requests with no point do not reach the pipeline; the others each did once.
    assert!(taken.load(std::sync::atomic::Ordering::Relaxed) <= answered_ok);
    receiver.shutdown.cancel();
    receiver.task.await.unwrap();
    drain.await.unwrap();
    let _ = std::io::stderr().flush();
}

/// A DNS response as dnsmasq sends it: `web.test` A, one answer (198.18.250.1), then a TXT
/// record in the additional section.
fn dns_response() -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1];
    m.extend_from_slice(b"\x03web\x04test\x00\x00\x01\x00\x01");
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 250, 1]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, 0, 6, 5, b'f', b'o', b'v', b'e', b'a']);
    m
}

/// What a parsed DNS message may hold: a name no longer than DNS allows (in its text form with
/// escapes) and no more kept addresses than there is room for.
fn check_dns(
    result: Result<fovea::model::DnsInfo, fovea::receivers::dns::message::Malformed>,
) -> Result<(), TestCaseError> {
    if let Ok(d) = result {
        prop_assert!(d.question_name.len() <= 4 * 255, "name of {} bytes", d.question_name.len());
        prop_assert!(d.addresses().len() <= fovea::model::dns::DNS_RECORD_ADDRESSES);
    }
    Ok(())
}

proptest! {
    #![proptest_config(runs(20_000))]

    /// Any bytes on a DNS port, whole or cut by the capture.
    #[test]
    fn random_dns_messages_are_parsed_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600), cut in any::<bool>()) {
        check_dns(fovea::receivers::dns::message::parse(&bytes, cut))?;
    }

    /// A real response with bytes flipped, inserted, removed or repeated (names, pointers,
    /// counts, record lengths), whole or cut.
    #[test]
    fn mutated_dns_responses_are_parsed_or_refused(edits in edits(), cut in any::<bool>()) {
        let message = mutate(&dns_response(), &edits);
        check_dns(fovea::receivers::dns::message::parse(&message, cut))?;
    }
}

#[test]
fn the_dns_seed_parses_as_dnsmasqs_answer() {
    let d = fovea::receivers::dns::message::parse(&dns_response(), false).expect("a valid response");
    assert!(d.response);
    assert_eq!((d.question_name.as_str(), d.question_type, d.answer_count), ("web.test", 1, 1));
    assert_eq!(d.addresses(), ["198.18.250.1".parse::<std::net::IpAddr>().unwrap()]);
}
