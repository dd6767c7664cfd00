//! Sends encoded OTLP requests over gRPC and classifies the outcome with otelcol's rules
//! (`otlpexporter.shouldRetry`).

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::config::{GrpcTarget, OtlpExporterConfig, grpc_target};
use crate::delivery::{Request, SendError, Sent, Transport};
use crate::model::Signal;
use crate::otlp::grpc::ClientCodec;
use crate::otlp::proto::collector::logs::v1::ExportLogsServiceResponse;
use crate::otlp::proto::collector::metrics::v1::ExportMetricsServiceResponse;
use crate::otlp::status::grpc_retry_delay;
use crate::otlp::{Compression, LOGS_GRPC_PATH, METRICS_GRPC_PATH};
use crate::pipeline::ComponentError;
use crate::tls::{ClientTls, TlsError};

/// Errors of setting up the gRPC connection.
#[derive(Debug, thiserror::Error)]
pub enum GrpcTransportError {
    /// The endpoint cannot be used.
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// tonic refused the endpoint or TLS settings.
    #[error("cannot set up the gRPC channel to {uri}: {source}")]
    Channel {
        /// The endpoint.
        uri: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// Largest response accepted from the server (responses are tiny; this only bounds a broken one).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// OTLP/gRPC transport: one lazily connected HTTP/2 channel shared by all concurrent sends.
pub struct GrpcTransport {
    target: GrpcTarget,
    tls: ClientTls,
    metadata: MetadataMap,
    compression: Compression,
    timeout: Duration,
    channel: OnceLock<Channel>,
}

impl GrpcTransport {
    /// A transport for `config`; nothing is read or connected until [`GrpcTransport::connect`]
    /// or the first send.
    pub fn new(config: &OtlpExporterConfig) -> Result<Self, GrpcTransportError> {
        let target = grpc_target(&config.endpoint, config.tls.insecure).map_err(GrpcTransportError::Endpoint)?;
        let mut metadata = MetadataMap::new();
        for (k, v) in &config.headers {
            // Both were checked by the config's validation; skip rather than fail if not.
            if let (Ok(k), Ok(v)) =
                (AsciiMetadataKey::from_bytes(k.as_bytes()), AsciiMetadataValue::try_from(v.as_str()))
            {
                metadata.insert(k, v);
            }
        }
        Ok(GrpcTransport {
            target,
            tls: config.tls.clone(),
            metadata,
            compression: config.compression,
            timeout: config.timeout,
            channel: OnceLock::new(),
        })
    }

    fn channel(&self) -> Result<Channel, GrpcTransportError> {
        if let Some(c) = self.channel.get() {
            return Ok(c.clone());
        }
        let uri = self.target.uri();
        let err = |source| GrpcTransportError::Channel { uri: uri.clone(), source };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(err)?
            .user_agent(crate::otlp::user_agent())
            .map_err(err)?
            .connect_timeout(self.timeout)
            .tcp_nodelay(true);
        if self.target.tls {
            let (config, verifier) = self.tls.tonic_config()?;
            endpoint = endpoint.tls_config_with_verifier(config, verifier).map_err(err)?;
        }
        let channel = endpoint.connect_lazy();
        // Two concurrent first sends may both build a channel; one wins, the other is dropped.
        Ok(self.channel.get_or_init(|| channel).clone())
    }

    async fn call<R>(&self, channel: Channel, request: &Request, path: &'static str) -> Result<R, Status>
    where
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .max_encoding_message_size(usize::MAX);
        grpc = match self.compression {
            Compression::Gzip => grpc.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => grpc.send_compressed(CompressionEncoding::Zstd),
            Compression::None => grpc,
        };
        let mut req = tonic::Request::new(request.body.clone());
        *req.metadata_mut() = self.metadata.clone();
        req.set_timeout(self.timeout);
        grpc.ready().await.map_err(|e| Status::unavailable(format!("cannot connect: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(path);
        grpc.unary(req, path, ClientCodec::<R>::default()).await.map(|r| r.into_inner())
    }
}

/// Classifies a gRPC failure as otelcol does: Canceled, DeadlineExceeded, Aborted, OutOfRange,
/// Unavailable and DataLoss are retryable; ResourceExhausted only with a `RetryInfo`; the rest
/// is permanent. A `RetryInfo` delay becomes the throttle. Errors raised by the client's own
/// transport (connection refused, reset) count as Unavailable, as in grpc-go.
pub fn classify(status: &Status) -> SendError {
    let reason = format!("{:?}: {}", status.code(), status.message());
    let throttle = grpc_retry_delay(status.details());
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => throttle.is_some(),
        // tonic reports local transport failures as Unknown with the cause attached; a server's
        // own Unknown status has no source.
        Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    };
    if retryable { SendError::Retryable { reason, throttle } } else { SendError::Permanent { reason } }
}

fn is_local_timeout(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn partial(rejected: i64, message: String) -> Sent {
    Sent { rejected_items: rejected.max(0) as u64, message }
}

#[async_trait]
impl Transport for GrpcTransport {
    /// Loads the TLS material and creates the (lazily connecting) channel.
    fn connect(&self) -> Result<(), ComponentError> {
        Ok(self.channel().map(|_| ())?)
    }

    async fn send(&self, request: &Request) -> Result<Sent, SendError> {
        let channel = self.channel().map_err(|e| SendError::Permanent { reason: e.to_string() })?;
        let attempt = async {
            match request.signal {
                Signal::Metrics => self
                    .call::<ExportMetricsServiceResponse>(channel, request, METRICS_GRPC_PATH)
                    .await
                    .map(|r| r.partial_success.map(|p| partial(p.rejected_data_points, p.error_message))),
                Signal::Flows => self
                    .call::<ExportLogsServiceResponse>(channel, request, LOGS_GRPC_PATH)
                    .await
                    .map(|r| r.partial_success.map(|p| partial(p.rejected_log_records, p.error_message))),
            }
        };
        let deadline_exceeded = || SendError::Retryable {
            reason: format!("DeadlineExceeded: no answer from {} within {:?}", self.target.authority, self.timeout),
            throttle: None,
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Err(_) => Err(deadline_exceeded()),
            Ok(Ok(sent)) => Ok(sent.unwrap_or_default()),
            // tonic's own deadline (the `grpc-timeout` it sends) surfaces as Cancelled; grpc-go
            // and otelcol call it DeadlineExceeded.
            Ok(Err(status)) if is_local_timeout(&status) => Err(deadline_exceeded()),
            Ok(Err(status)) => Err(classify(&status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::status::RpcStatus;
    use prost::Message as _;

    #[test]
    fn codes_are_classified_as_otelcol_does() {
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(
                matches!(classify(&Status::new(code, "x")), SendError::Retryable { throttle: None, .. }),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::Unknown,
            Code::ResourceExhausted,
        ] {
            assert!(matches!(classify(&Status::new(code, "x")), SendError::Permanent { .. }), "{code:?}");
        }
        let details = RpcStatus::new(8, "slow down", Some(Duration::from_secs(3))).encode_to_vec();
        let s = Status::with_details(Code::ResourceExhausted, "slow down", details.into());
        assert_eq!(
            classify(&s),
            SendError::Retryable {
                reason: "ResourceExhausted: slow down".into(),
                throttle: Some(Duration::from_secs(3))
            }
        );
    }
}
