//! The encoder both OTLP exporters give to delivery: metrics become encoded
//! `ExportMetricsServiceRequest`s, flows encoded `ExportLogsServiceRequest`s. A batch whose body
//! would pass the size servers accept by default (otelcol's `max_recv_msg_size_mib: 4`) is split
//! into several requests, so a large batch is not refused as a whole and dropped as permanent.

use bytes::Bytes;
use prost::Message as _;

use super::{flows_to_proto, metrics_to_proto};
use crate::delivery::{Encoder, Request};
use crate::model::{Acks, FlowBatch, MetricBatch, Payload, Signal};

/// Default upper bound of one request body: below the 4 MiB that OTLP/gRPC servers accept by default.
pub const MAX_BODY_BYTES: usize = 4_000_000;

/// Encodes batches as uncompressed OTLP protobuf request bodies.
#[derive(Debug, Clone, Copy)]
pub struct OtlpEncoder {
    max_body: usize,
}

impl Default for OtlpEncoder {
    fn default() -> Self {
        OtlpEncoder { max_body: MAX_BODY_BYTES }
    }
}

impl OtlpEncoder {
    /// An encoder splitting batches whose body would exceed `max_body` bytes.
    pub fn with_max_body(max_body: usize) -> Self {
        OtlpEncoder { max_body: max_body.max(1) }
    }

    fn metrics(&self, batch: &MetricBatch, out: &mut Vec<Request>) {
        let items = batch.data_points() as u64;
        let body = metrics_to_proto(batch).encode_to_vec();
        if body.len() <= self.max_body || items <= 1 {
            out.push(Request { signal: Signal::Metrics, items, body: Bytes::from(body) });
            return;
        }
        // Split into parts sized from the average point size, with headroom for uneven points;
        // a part that still comes out too large is split again.
        let per_part = (items as usize * self.max_body / body.len() * 9 / 10).max(1);
        // The copy must not carry the acknowledgements: delivery acknowledges the payload once.
        let mut rest = MetricBatch {
            resource_metrics: batch.resource_metrics.clone(),
            acks: Acks::default(),
            client: batch.client,
        };
        while rest.data_points() > 0 {
            let part = rest.split_front(per_part);
            self.metrics(&part, out);
        }
    }

    fn flows(&self, batch: &FlowBatch, out: &mut Vec<Request>) {
        let items = batch.records.len() as u64;
        let body = flows_to_proto(batch).encode_to_vec();
        if body.len() <= self.max_body || items <= 1 {
            out.push(Request { signal: Signal::Flows, items, body: Bytes::from(body) });
            return;
        }
        let per_part = (batch.records.len() * self.max_body / body.len() * 9 / 10).max(1);
        for chunk in batch.records.chunks(per_part) {
            let part = FlowBatch { resource: batch.resource.clone(), records: chunk.to_vec(), acks: Acks::default() };
            self.flows(&part, out);
        }
    }
}

impl Encoder for OtlpEncoder {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        if payload.items() == 0 {
            return Ok(());
        }
        match payload {
            Payload::Metrics(m) => self.metrics(m, out),
            Payload::Flows(f) => self.flows(f, out),
        }
        Ok(())
    }
}
