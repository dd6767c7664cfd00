//! What the exporter reads next: the batches of its input as they come, or with
//! `sending_queue::batch` merged until `min_size` items are there or `flush_timeout` has passed
//! since the first of them.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::config::QueueBatchConfig;
use crate::model::{Batcher, Payload};
use crate::pipeline::Input;

/// The exporter's intake.
pub(super) struct Intake {
    /// `sending_queue::batch`: the items held and how long the first may wait.
    batching: Option<(Batcher, Duration)>,
    /// When the items held must go.
    flush_at: Option<Instant>,
    /// The input is closed (or the shutdown deadline passed): what is held goes now.
    closed: bool,
}

impl Intake {
    /// An intake that batches with `batch` when set.
    pub(super) fn new(batch: Option<&QueueBatchConfig>) -> Self {
        let batching = batch.map(|b| (Batcher::new(b.min_size, b.max_size), b.flush_timeout));
        Intake { batching, flush_at: None, closed: false }
    }

    /// The next batch, or `None` once the input is closed (or `deadline` is cancelled) and
    /// nothing is held.
    pub(super) async fn next(&mut self, input: &mut Input, deadline: &CancellationToken) -> Option<Payload> {
        let Some((batcher, timeout)) = &mut self.batching else {
            return tokio::select! {
                biased;
                _ = deadline.cancelled() => None,
                p = input.recv() => p,
            };
        };
        loop {
            if let Some(batch) = batcher.take(self.closed) {
                if batcher.pending() == 0 {
                    self.flush_at = None;
                }
                return Some(batch);
            }
            if self.closed {
                return None;
            }
            let flush_at = self.flush_at;
            let timer = async move {
                match flush_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = deadline.cancelled() => self.closed = true,
                p = input.recv() => match p {
                    Some(p) => {
                        if batcher.pending() == 0 {
                            self.flush_at = Some(Instant::now() + *timeout);
                        }
                        batcher.add(p);
                    }
                    None => self.closed = true,
                },
                _ = timer => {
                    self.flush_at = None;
                    if let Some(batch) = batcher.take(true) {
                        return Some(batch);
                    }
                }
            }
        }
    }
}
