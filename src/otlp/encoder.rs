//! The encoder both OTLP exporters give to delivery: metrics become an encoded
//! `ExportMetricsServiceRequest`, flows an encoded `ExportLogsServiceRequest`.

use bytes::Bytes;
use prost::Message as _;

use super::{flows_to_proto, metrics_to_proto};
use crate::exporters::delivery::{Encoder, Request};
use crate::model::{Payload, Signal};

/// Encodes batches as uncompressed OTLP protobuf request bodies (one request per batch).
#[derive(Debug, Default, Clone, Copy)]
pub struct OtlpEncoder;

impl Encoder for OtlpEncoder {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        let items = payload.items();
        if items == 0 {
            return Ok(());
        }
        let body = match payload {
            Payload::Metrics(m) => metrics_to_proto(m).encode_to_vec(),
            Payload::Flows(f) => flows_to_proto(f).encode_to_vec(),
        };
        let signal: Signal = payload.signal();
        out.push(Request { signal, items, body: Bytes::from(body) });
        Ok(())
    }
}
