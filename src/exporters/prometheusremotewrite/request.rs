//! Packs encoded series into `WriteRequest` bodies of at most `max_batch_size_bytes`.
//!
//! The bytes are exactly what prost writes for [`WriteRequest`](super::proto::WriteRequest)
//! (field 1: series, field 3: metadata), built directly so that the labels of a series are
//! encoded once, cached, and only copied per request. A series goes whole into one request when
//! it fits; only a series larger than the limit on its own is cut, between samples, into
//! consecutive requests, so its samples stay in order.

use bytes::Bytes;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len, message};

use super::proto::{Label, MetricMetadata, Sample};
use crate::delivery::Request;
use crate::model::Signal;

/// `WriteRequest.timeseries`.
const TIMESERIES: u32 = 1;
/// `WriteRequest.metadata`.
const METADATA: u32 = 3;
/// `TimeSeries.labels`.
const LABELS: u32 = 1;
/// `TimeSeries.samples`.
const SAMPLES: u32 = 2;

/// Encodes sorted labels as the `labels` fields of a `TimeSeries`.
pub(crate) fn encode_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>, out: &mut Vec<u8>) {
    for (name, value) in labels {
        let label = Label { name: name.to_string(), value: value.to_string() };
        message::encode(LABELS, &label, out);
    }
}

/// One sample and the data points it accounts for (`Request::items`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Counted {
    /// The sample.
    pub sample: Sample,
    /// Data points this sample carries for accounting (0 for derived series: buckets, `target_info`).
    pub points: u64,
}

fn sample_len(s: &Sample) -> usize {
    message::encoded_len(SAMPLES, s)
}

fn entry_len(body: usize) -> usize {
    key_len(TIMESERIES) + encoded_len_varint(body as u64) + body
}

/// Builds requests no larger than `limit` bytes (unless one sample with its labels is larger).
pub(crate) struct RequestWriter<'a> {
    limit: usize,
    body: Vec<u8>,
    items: u64,
    out: &'a mut Vec<Request>,
}

impl<'a> RequestWriter<'a> {
    /// A writer appending finished requests to `out`.
    pub fn new(limit: usize, out: &'a mut Vec<Request>) -> Self {
        RequestWriter { limit: limit.max(1), body: Vec::new(), items: 0, out }
    }

    /// Adds one series: `labels` from [`encode_labels`], `samples` in timestamp order.
    pub fn series(&mut self, labels: &[u8], samples: &[Counted]) {
        if samples.is_empty() {
            return;
        }
        let body = labels.len() + samples.iter().map(|c| sample_len(&c.sample)).sum::<usize>();
        if self.body.len() + entry_len(body) > self.limit && !self.body.is_empty() {
            self.flush();
        }
        if entry_len(body) <= self.limit {
            self.write_series(labels, samples, body);
            return;
        }
        // Larger than a request on its own: cut between samples.
        let mut start = 0;
        while start < samples.len() {
            let mut end = start;
            let mut len = labels.len();
            while end < samples.len() {
                let next = len + sample_len(&samples[end].sample);
                if end > start && entry_len(next) > self.limit {
                    break;
                }
                len = next;
                end += 1;
            }
            if !self.body.is_empty() {
                self.flush();
            }
            self.write_series(labels, &samples[start..end], len);
            start = end;
        }
    }

    fn write_series(&mut self, labels: &[u8], samples: &[Counted], body: usize) {
        encode_key(TIMESERIES, WireType::LengthDelimited, &mut self.body);
        encode_varint(body as u64, &mut self.body);
        self.body.extend_from_slice(labels);
        for c in samples {
            message::encode(SAMPLES, &c.sample, &mut self.body);
            self.items += c.points;
        }
    }

    /// Adds a family's metadata.
    pub fn metadata(&mut self, m: &MetricMetadata) {
        let len = key_len(METADATA) + encoded_len_varint(m.encoded_len() as u64) + m.encoded_len();
        if self.body.len() + len > self.limit && !self.body.is_empty() {
            self.flush();
        }
        message::encode(METADATA, m, &mut self.body);
    }

    fn flush(&mut self) {
        let body = std::mem::take(&mut self.body);
        let items = std::mem::take(&mut self.items);
        self.out.push(Request { signal: Signal::Metrics, items, body: Bytes::from(body) });
    }

    /// Emits the last request, if anything was written.
    pub fn finish(mut self) {
        if !self.body.is_empty() {
            self.flush();
        }
    }
}
