//! `google.rpc.Status` and `google.rpc.RetryInfo`: how OTLP servers explain failures (gRPC status
//! details, OTLP/HTTP error bodies) and ask clients to wait before retrying.

use std::time::Duration;

use prost::Message;

/// `type_url` of `google.rpc.RetryInfo` inside `Status.details`.
pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details (`RetryInfo` ...).
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    /// The message type, e.g. [`RETRY_INFO_TYPE`].
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long the client should wait.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds on top.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl RpcStatus {
    /// A status with `code` and `message`, plus a `RetryInfo` asking to wait `retry_delay`.
    pub fn new(code: i32, message: impl Into<String>, retry_delay: Option<Duration>) -> Self {
        let details = retry_delay
            .map(|d| ProtoAny {
                type_url: RETRY_INFO_TYPE.to_string(),
                value: RetryInfo {
                    retry_delay: Some(ProtoDuration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }),
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect();
        RpcStatus { code, message: message.into(), details }
    }

    /// The `RetryInfo.retry_delay` among the details, if present. A `RetryInfo` without a delay
    /// counts as present with zero delay (the server wants a retry, at the client's pace).
    pub fn retry_delay(&self) -> Option<Duration> {
        let any = self.details.iter().find(|d| d.type_url == RETRY_INFO_TYPE)?;
        let info = RetryInfo::decode(any.value.as_slice()).ok()?;
        let d = info.retry_delay.unwrap_or_default();
        Some(Duration::new(d.seconds.max(0) as u64, d.nanos.clamp(0, 999_999_999) as u32))
    }
}

/// The `RetryInfo` delay carried in gRPC status details (`grpc-status-details-bin`, an encoded
/// `google.rpc.Status`); `None` if the details carry no `RetryInfo`.
pub fn grpc_retry_delay(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    RpcStatus::decode(details).ok()?.retry_delay()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips() {
        let s = RpcStatus::new(8, "slow down", Some(Duration::from_millis(1500)));
        assert_eq!(grpc_retry_delay(&s.encode_to_vec()), Some(Duration::from_millis(1500)));
        let s = RpcStatus::new(8, "slow down", None);
        assert_eq!(grpc_retry_delay(&s.encode_to_vec()), None);
        assert_eq!(grpc_retry_delay(b""), None);
    }
}
