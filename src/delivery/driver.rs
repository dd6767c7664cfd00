//! The push exporter: encodes each batch once, queues its requests (in memory or on disk) and
//! drains the queue with `num_consumers` senders. On shutdown it keeps sending until the queue is
//! empty or the deadline passes; then what is left in memory is counted as dropped, and what is
//! left on disk stays there for the next start.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::intake::Intake;
use super::memory::MemoryQueue;
use super::persistent::{Appender, DiskConsumer, Limits, PersistentQueue};
use super::retry::{Holder, Outcome, RetryingSender};
use super::telemetry::{DeliveryTelemetry, DropSummary};
use super::{DeliveryError, Encoder, Request, RetryConfig, SendingQueueConfig, Transport};
use crate::model::Payload;
use crate::pipeline::{ComponentError, Exporter, ExporterContext, Input, StartContext};
use crate::telemetry::ComponentStats;

/// A push exporter: encodes each batch once, queues the requests and sends them with retries.
pub struct DeliveryExporter {
    name: String,
    queue: SendingQueueConfig,
    retry: RetryConfig,
    encoder: Arc<dyn Encoder>,
    transport: Arc<dyn Transport>,
    /// The persistent queue, once opened by `start` (or `run`).
    disk: Option<(Arc<PersistentQueue>, Appender)>,
}

impl DeliveryExporter {
    /// An exporter named `name` (its component id, for logs) with the given queue and retry
    /// settings, encoder and transport.
    pub fn new(
        name: String,
        queue: SendingQueueConfig,
        retry: RetryConfig,
        encoder: Arc<dyn Encoder>,
        transport: Arc<dyn Transport>,
    ) -> Self {
        DeliveryExporter { name, queue, retry, encoder, transport, disk: None }
    }

    /// Opens the persistent queue if one is configured and not open yet (directory lock, replay).
    async fn open_disk(&mut self, stats: &Arc<ComponentStats>) -> Result<(), DeliveryError> {
        let Some(storage) = self.queue.storage.clone() else { return Ok(()) };
        if !self.queue.enabled || self.disk.is_some() {
            return Ok(());
        }
        let limits = Limits::new(self.queue.queue_size, storage.max_size_mib);
        let (name, stats) = (self.name.clone(), stats.clone());
        let directory = storage.directory.clone();
        let opened =
            tokio::task::spawn_blocking(move || PersistentQueue::open(&storage.directory, limits, &name, stats))
                .await
                .map_err(|e| DeliveryError::Io {
                    action: "open the persistent queue in",
                    path: directory,
                    source: std::io::Error::other(e),
                })??;
        self.disk = Some((Arc::new(opened.0), opened.1));
        Ok(())
    }

    fn sender(
        &self,
        ctx: &ExporterContext,
        telemetry: &Arc<DeliveryTelemetry>,
        closing: &CancellationToken,
    ) -> RetryingSender {
        RetryingSender {
            exporter: self.name.clone(),
            transport: self.transport.clone(),
            retry: self.retry.clone(),
            stats: ctx.start.stats.clone(),
            telemetry: telemetry.clone(),
            deadline: ctx.deadline.clone(),
            closing: closing.clone(),
        }
    }

    /// Encodes `payload` into `out`; on failure counts the batch as dropped, fails its
    /// acknowledgements and returns false.
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>, stats: &ComponentStats) -> bool {
        out.clear();
        match self.encoder.encode(payload, out) {
            Ok(()) => true,
            Err(e) => {
                warn!(
                    exporter = %self.name, signal = %payload.signal(), items = payload.items(), error = %e,
                    "dropping batch: it cannot be encoded"
                );
                stats.add_dropped(payload.signal(), payload.items());
                payload.acks().fail();
                out.clear();
                false
            }
        }
    }

    /// `sending_queue: {enabled: false}`: each request is sent (with retries) before the next batch
    /// is read; a batch is acknowledged once all of it is delivered.
    async fn run_inline(self, mut ctx: ExporterContext) -> Result<(), ComponentError> {
        let telemetry = Arc::new(DeliveryTelemetry::new(&self.name, "none", || 0, None));
        ctx.start.telemetry.register(telemetry.clone());
        let sender = self.sender(&ctx, &telemetry, &CancellationToken::new());
        let mut requests = Vec::new();
        let mut intake = Intake::new(self.queue.batch.as_ref());
        while let Some(payload) = intake.next(&mut ctx.input, &ctx.deadline).await {
            if !self.encode(&payload, &mut requests, &ctx.start.stats) {
                continue;
            }
            let mut delivered = true;
            for request in requests.drain(..) {
                delivered &= sender.deliver(&request, Holder::Memory).await == Outcome::Delivered;
            }
            if delivered {
                payload.acks().accept();
            } else {
                payload.acks().fail();
            }
        }
        drop_unread(&mut ctx.input, &ctx.deadline, &self.name, &ctx.start.stats);
        Ok(())
    }

    /// The in-memory queue: batches are acknowledged once queued.
    async fn run_memory(self, mut ctx: ExporterContext) -> Result<(), ComponentError> {
        let queue = Arc::new(MemoryQueue::new(self.queue.queue_size));
        let weak = Arc::downgrade(&queue);
        ctx.start.stats.add_queue_probe(move || weak.upgrade().map_or((0, 0), |q| (q.len(), q.capacity())));
        let weak = Arc::downgrade(&queue);
        let telemetry = Arc::new(DeliveryTelemetry::new(
            &self.name,
            "memory",
            move || weak.upgrade().map_or(0, |q| q.bytes() as u64),
            None,
        ));
        ctx.start.telemetry.register(telemetry.clone());
        let sender = Arc::new(self.sender(&ctx, &telemetry, &CancellationToken::new()));
        let consumers: Vec<_> = (0..self.queue.num_consumers.max(1))
            .map(|_| {
                let (queue, sender) = (queue.clone(), sender.clone());
                tokio::spawn(async move {
                    loop {
                        let request = tokio::select! {
                            biased;
                            _ = sender.deadline.cancelled() => return,
                            r = queue.pop() => match r {
                                Some(r) => r,
                                None => return,
                            },
                        };
                        sender.deliver(&request, Holder::Memory).await;
                    }
                })
            })
            .collect();

        let mut requests = Vec::new();
        let mut refused = DropSummary::default();
        let log_refused = |(requests, items): (u64, u64)| {
            warn!(
                exporter = %self.name, requests, items, queue_size = self.queue.queue_size,
                "sending queue is full: refusing new data (raise queue_size, or set block_on_overflow: true to slow the pipeline down instead)"
            );
        };
        let mut intake = Intake::new(self.queue.batch.as_ref());
        while let Some(payload) = intake.next(&mut ctx.input, &ctx.deadline).await {
            if !self.encode(&payload, &mut requests, &ctx.start.stats) {
                continue;
            }
            let queued = if self.queue.block_on_overflow {
                queue.push_all(&mut requests, &ctx.deadline).await
            } else {
                queue.try_push_all(&mut requests)
            };
            if queued {
                payload.acks().accept();
                continue;
            }
            let (count, items) = (requests.len() as u64, requests.iter().map(|r| r.items).sum());
            for r in requests.drain(..) {
                ctx.start.stats.add_dropped(r.signal, r.items);
            }
            payload.acks().fail();
            if let Some(counts) = refused.add(count, items) {
                log_refused(counts);
            }
        }
        if let Some(counts) = refused.take() {
            log_refused(counts);
        }
        drop_unread(&mut ctx.input, &ctx.deadline, &self.name, &ctx.start.stats);

        queue.close();
        for c in consumers {
            let _ = c.await;
        }
        let left = queue.take_all();
        if !left.is_empty() {
            let items: u64 = left.iter().map(|r| r.items).sum();
            for r in &left {
                ctx.start.stats.add_dropped(r.signal, r.items);
            }
            warn!(
                exporter = %self.name, requests = left.len(), items,
                "shutdown deadline passed: dropping the requests still in the sending queue"
            );
        }
        Ok(())
    }

    /// The persistent queue: batches are acknowledged once written and fsynced.
    async fn run_disk(
        self,
        mut ctx: ExporterContext,
        queue: Arc<PersistentQueue>,
        appender: Appender,
    ) -> Result<(), ComponentError> {
        if self.queue.block_on_overflow {
            info!(
                exporter = %self.name,
                "block_on_overflow does not apply to the persistent queue: when full, it drops its oldest requests"
            );
        }
        let max_requests = self.queue.queue_size;
        let weak = Arc::downgrade(&queue);
        ctx.start.stats.add_queue_probe(move || weak.upgrade().map_or((0, 0), |q| (q.len(), max_requests)));
        let weak = Arc::downgrade(&queue);
        let capacity = self.queue.storage.as_ref().map(|s| s.max_size_mib << 20);
        let telemetry = Arc::new(DeliveryTelemetry::new(
            &self.name,
            "disk",
            move || weak.upgrade().map_or(0, |q| q.disk_bytes()),
            capacity,
        ));
        ctx.start.telemetry.register(telemetry.clone());
        let closing = CancellationToken::new();
        let sender = Arc::new(self.sender(&ctx, &telemetry, &closing));
        let consumers: Vec<_> = (0..self.queue.num_consumers.max(1))
            .map(|_| tokio::spawn(consume_disk(queue.consumer(), sender.clone())))
            .collect();

        let mut requests = Vec::new();
        let mut intake = Intake::new(self.queue.batch.as_ref());
        'batches: while let Some(payload) = intake.next(&mut ctx.input, &ctx.deadline).await {
            if !self.encode(&payload, &mut requests, &ctx.start.stats) {
                continue;
            }
            if requests.is_empty() {
                payload.acks().accept();
                continue;
            }
            let last = requests.len() - 1;
            let mut batch = requests.drain(..).enumerate();
            while let Some((i, request)) = batch.next() {
                let (signal, items) = (request.signal, request.items);
                let accept = (i == last).then(|| payload.clone());
                let appended = tokio::select! {
                    biased;
                    _ = ctx.deadline.cancelled() => Err(None),
                    r = appender.append(request, accept) => r.map_err(Some),
                };
                if let Err(e) = appended {
                    if let Some(e) = e {
                        warn!(exporter = %self.name, error = %e, "dropping batch");
                    }
                    // Requests of the batch already handed over are persisted and sent; the batch
                    // as a whole is refused, so a client that resends may duplicate them.
                    ctx.start.stats.add_dropped(signal, items);
                    for (_, r) in batch {
                        ctx.start.stats.add_dropped(r.signal, r.items);
                    }
                    payload.acks().fail();
                    break 'batches;
                }
            }
        }
        drop_unread(&mut ctx.input, &ctx.deadline, &self.name, &ctx.start.stats);
        drop(appender);
        closing.cancel();
        for c in consumers {
            let _ = c.await;
        }
        let (left, items) = queue.close().await;
        if left > 0 {
            info!(
                exporter = %self.name, requests = left, items, directory = %queue.directory().display(),
                "stopping with undelivered requests in the persistent queue; they are sent after the next start"
            );
        }
        Ok(())
    }
}

/// One consumer of the persistent queue: sends in queue order until the queue is empty and closed,
/// the deadline passes, or (shutting down) a send fails: what is not delivered stays on disk.
async fn consume_disk(consumer: DiskConsumer, sender: Arc<RetryingSender>) {
    loop {
        let lease = tokio::select! {
            biased;
            _ = sender.deadline.cancelled() => return,
            l = consumer.pop() => match l {
                Some(l) => l,
                None => return,
            },
        };
        let evicted = || consumer.is_evicted(&lease);
        match sender.deliver(&lease.request, Holder::Disk { evicted: &evicted }).await {
            Outcome::Delivered | Outcome::Dropped => consumer.complete(lease).await,
            Outcome::Kept => {
                let (signal, items) = (lease.request.signal, lease.request.items);
                if !consumer.release(lease) {
                    sender.stats.add_dropped(signal, items);
                }
                return;
            }
        }
    }
}

/// After the deadline, batches still waiting in the input are refused and counted.
fn drop_unread(input: &mut Input, deadline: &CancellationToken, name: &str, stats: &ComponentStats) {
    if !deadline.is_cancelled() {
        return;
    }
    let (mut batches, mut items) = (0u64, 0u64);
    while let Some(p) = input.try_recv() {
        stats.add_dropped(p.signal(), p.items());
        p.acks().fail();
        batches += 1;
        items += p.items();
    }
    if batches > 0 {
        warn!(exporter = %name, batches, items, "shutdown deadline passed: dropping batches not read yet");
    }
}

#[async_trait]
impl Exporter for DeliveryExporter {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        self.transport.connect()?;
        self.open_disk(&ctx.stats).await?;
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ExporterContext) -> Result<(), ComponentError> {
        let mut this = *self;
        if !this.queue.enabled {
            return this.run_inline(ctx).await;
        }
        this.open_disk(&ctx.start.stats).await?;
        match this.disk.take() {
            Some((queue, appender)) => this.run_disk(ctx, queue, appender).await,
            None => this.run_memory(ctx).await,
        }
    }
}
