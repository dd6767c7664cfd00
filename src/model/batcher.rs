//! Cutting a stream of payloads into batches by item count: what the `batch` processor and the
//! exporters' `sending_queue::batch` both do. Items (data points, flow records) are merged into
//! as few batches as their resources allow, acknowledgements travel with them, and a batch is
//! split when it exceeds the maximum.

use std::sync::Arc;

use super::{FlowBatch, MetricBatch, Payload};

/// Payloads held until there are enough items to send.
#[derive(Debug, Default)]
pub struct Batcher {
    /// Items that make a batch worth sending (`send_batch_size`, `min_size`).
    min: usize,
    /// Largest batch sent (`send_batch_max_size`, `max_size`); 0 = no limit.
    max: usize,
    metrics: MetricBatch,
    flows: Vec<FlowBatch>,
    pending: usize,
}

impl Batcher {
    /// A batcher sending at `min` items, in batches of at most `max` (0 = no limit).
    pub fn new(min: usize, max: usize) -> Self {
        Batcher { min, max, ..Batcher::default() }
    }

    /// Items held.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Holds `payload`'s items.
    pub fn add(&mut self, payload: Payload) {
        self.pending += payload.items() as usize;
        match payload {
            Payload::Metrics(m) => self.metrics.append(Arc::unwrap_or_clone(m)),
            Payload::Flows(f) => {
                let f = Arc::unwrap_or_clone(f);
                match self.flows.iter_mut().find(|b| Arc::ptr_eq(&b.resource, &f.resource) || b.resource == f.resource)
                {
                    Some(b) => {
                        b.records.extend(f.records);
                        b.acks.merge(f.acks);
                    }
                    None => self.flows.push(f),
                }
            }
        }
    }

    /// The next batch to send: one of at least `min` items, or with `all` whatever is held;
    /// `None` when there is nothing (or not enough) to send.
    pub fn take(&mut self, all: bool) -> Option<Payload> {
        if self.pending == 0 || !all && self.pending < self.min {
            return None;
        }
        let max = if self.max > 0 { self.max } else { usize::MAX };
        let metric_points = self.metrics.data_points();
        if metric_points > 0 {
            let batch =
                if metric_points <= max { std::mem::take(&mut self.metrics) } else { self.metrics.split_front(max) };
            self.pending -= batch.data_points();
            return Some(Payload::from(batch));
        }
        let Some(mut batch) = self.flows.pop() else {
            self.pending = 0;
            return None;
        };
        if batch.records.len() > max {
            let rest = batch.records.split_off(max);
            if !batch.acks.is_empty() {
                batch.acks.expect_more(1);
            }
            self.flows.push(FlowBatch { resource: batch.resource.clone(), records: rest, acks: batch.acks.clone() });
        }
        self.pending -= batch.records.len();
        Some(Payload::from(batch))
    }
}
