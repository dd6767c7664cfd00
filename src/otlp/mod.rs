//! OTLP shared by the `otlp` and `otlphttp` exporters and the `otlp` receiver: conversion between
//! fovea's model and the OTLP protobuf messages of `opentelemetry-proto`, the encoder the push
//! exporters plug into delivery, body compression, `google.rpc.Status` details, and TLS.

pub mod compression;
pub mod convert;
mod encoder;
pub mod flows;
pub mod grpc;
pub mod json;
pub mod status;

pub use compression::Compression;
pub use convert::{Decoded, metrics_from_proto, metrics_to_proto};
pub use encoder::{MAX_BODY_BYTES, OtlpEncoder};
pub use flows::flows_to_proto;

/// The generated OTLP messages and gRPC stubs (`opentelemetry-proto`), for tests and tools.
pub use opentelemetry_proto::tonic as proto;

/// The gRPC method that exports metrics.
pub const METRICS_GRPC_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// The gRPC method that exports logs (fovea's flow records travel as OTLP logs).
pub const LOGS_GRPC_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The OTLP/HTTP path of metrics, appended to an `otlphttp` base endpoint.
pub const METRICS_HTTP_PATH: &str = "/v1/metrics";

/// The OTLP/HTTP path of logs, appended to an `otlphttp` base endpoint.
pub const LOGS_HTTP_PATH: &str = "/v1/logs";

/// `User-Agent` of fovea's OTLP clients, shaped like otelcol's (`<name>/<version> (<os>/<arch>)`).
pub fn user_agent() -> String {
    format!("fovea/{} ({}/{})", env!("CARGO_PKG_VERSION"), std::env::consts::OS, std::env::consts::ARCH)
}
