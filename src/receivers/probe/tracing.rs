//! What the tracing receivers (`dropreason`, `tcpretrans`) share: a probe that counts in the
//! kernel and writes rate-capped flow records to a ring buffer, driven the same way.
//!
//! A receiver implements [`TracingReceiver`] (which probe, how counts become metrics and records
//! become flows); [`TracingDriver`] is the [`Receiver`] around it:
//!
//! * `start` loads the probe on a blocking thread, takes its record stream only when a flows
//!   pipeline consumes the receiver, and registers its `fovea.ebpf.*` telemetry.
//! * `run` reads the counters every `collection_interval` (on a blocking thread) and sends them as
//!   one metric batch, sends each ring-buffer drain as one flow batch, counts records the kernel
//!   lost to a full ring as failed flow items, and at shutdown sends what is left in the ring and
//!   a last reading. Then it unloads the probe on a blocking thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::telemetry::{self as ebpf_telemetry, EbpfCollector, ProbeHealth};
use crate::ebpf::{self, RecordError, RecordStats, RecordStream};
use crate::model::{FlowBatch, FlowRecord, MetricBatch, Payload, Resource, Signal, now_unix_nano};
use crate::pipeline::{ComponentError, Receiver, ReceiverContext, StartContext};

/// Errors of a tracing receiver whose probe fails with `E`.
#[derive(Debug, thiserror::Error)]
pub enum TracingReceiverError<E: std::error::Error + 'static> {
    /// Loading the probe or reading it failed (a missing capability is listed here).
    #[error(transparent)]
    Probe(E),
    /// A blocking eBPF call panicked or was cancelled.
    #[error("the {receiver} worker thread failed: {reason}")]
    Worker {
        /// The receiver type (`dropreason`).
        receiver: &'static str,
        /// What happened.
        reason: String,
    },
    /// `run` without a successful `start`.
    #[error("the {0} receiver was not started")]
    NotStarted(&'static str),
}

/// A loaded probe as its tracing receiver uses it.
pub trait TracingProbe: ProbeHealth + Sized + 'static {
    /// What [`TracingProbe::load`] takes.
    type Config: Send + 'static;
    /// One reading of the in-kernel counters.
    type Counts: Send + 'static;
    /// One flow record from the ring buffer.
    type Record: ebpf::records::RingRecord + Send + 'static;
    /// The probe's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Checks prerequisites, loads and attaches (blocking).
    fn load(config: Self::Config) -> Result<Self, Self::Error>;
    /// Reads the cumulative counters (blocking).
    fn counts(&self) -> Result<Self::Counts, Self::Error>;
    /// Takes the flow-record stream (once); call inside a tokio runtime.
    fn take_records(&mut self) -> Result<RecordStream<Self::Record>, Self::Error>;
    /// Records emitted, capped and lost since load.
    fn record_stats(&self) -> RecordStats;
}

/// What differs between the tracing receivers: their probe, settings and data.
pub trait TracingReceiver: Send + 'static {
    /// The probe it drives.
    type Probe: TracingProbe;
    /// The component type, for log lines and errors (`dropreason`).
    const NAME: &'static str;
    /// What one record is, for log lines (`drop` records).
    const RECORDS: &'static str;

    /// How often to read the counters.
    fn collection_interval(&self) -> Duration;
    /// The probe's settings; with `flows` false it must write no records.
    fn probe_config(&self, flows: bool) -> <Self::Probe as TracingProbe>::Config;
    /// Called once the probe is loaded, before anything is read (log it, learn from it).
    fn loaded(&mut self, probe: &Self::Probe, flows: bool);
    /// The resource flow batches are sent for.
    fn resource(&self) -> &Arc<Resource>;
    /// A reading of the counters since `start` (the load), at `now`, as metrics.
    fn to_metrics(&mut self, counts: <Self::Probe as TracingProbe>::Counts, start: u64, now: u64) -> MetricBatch;
    /// A record as a flow record, `None` to leave it out.
    fn to_flow(&mut self, record: &<Self::Probe as TracingProbe>::Record) -> Option<FlowRecord>;
}

type Error<R> = TracingReceiverError<<<R as TracingReceiver>::Probe as TracingProbe>::Error>;

/// What `start` acquired.
struct Started<P: TracingProbe> {
    probe: Arc<Mutex<P>>,
    records: Option<RecordStream<P::Record>>,
    loaded_at: u64,
    _run_time_stats: Option<ebpf::RunTimeStats>,
}

/// The [`Receiver`] of a [`TracingReceiver`].
pub struct TracingDriver<R: TracingReceiver> {
    receiver: R,
    started: Option<Started<R::Probe>>,
}

impl<R: TracingReceiver> TracingDriver<R> {
    /// Drives `receiver`.
    pub fn new(receiver: R) -> Self {
        TracingDriver { receiver, started: None }
    }

    fn worker_failed(reason: impl ToString) -> Error<R> {
        TracingReceiverError::Worker { receiver: R::NAME, reason: reason.to_string() }
    }

    /// Reads the counters and sends them; false when the pipeline has stopped.
    async fn collect(&mut self, probe: &Arc<Mutex<R::Probe>>, loaded_at: u64, ctx: &ReceiverContext) -> bool {
        let probe = probe.clone();
        let read = tokio::task::spawn_blocking(move || match probe.lock() {
            Ok(p) => p.counts().map_err(TracingReceiverError::Probe),
            Err(_) => Err(Self::worker_failed("a previous call panicked")),
        })
        .await;
        match read {
            Ok(Ok(counts)) => {
                let batch = self.receiver.to_metrics(counts, loaded_at, now_unix_nano());
                ctx.output.send(Payload::from(batch)).await.is_ok()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "{} collection failed", R::NAME);
                ctx.start.stats.add_failed(Signal::Metrics, 1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "{} collection failed", R::NAME);
                true
            }
        }
    }

    /// Sends `records` as one flow batch (emptying it); false when the pipeline has stopped.
    async fn send_flows(
        &mut self,
        records: &mut Vec<<R::Probe as TracingProbe>::Record>,
        ctx: &ReceiverContext,
    ) -> bool {
        let mut flows = Vec::with_capacity(records.len());
        flows.extend(records.drain(..).filter_map(|r| self.receiver.to_flow(&r)));
        if flows.is_empty() {
            return true;
        }
        let batch = FlowBatch { resource: self.receiver.resource().clone(), records: flows, acks: Default::default() };
        ctx.output.send(Payload::from(batch)).await.is_ok()
    }
}

/// Waits for the next records, or forever when there is no stream.
async fn next_records<T: ebpf::records::RingRecord>(
    stream: &mut Option<RecordStream<T>>,
    out: &mut Vec<T>,
) -> Result<usize, RecordError> {
    match stream {
        Some(s) => s.next_batch(out).await,
        None => std::future::pending().await,
    }
}

/// Counts records the kernel lost to a full ring as failed flow items of this receiver.
fn report_lost<P: TracingProbe>(probe: &Arc<Mutex<P>>, reported: u64, ctx: &ReceiverContext) -> u64 {
    let Ok(p) = probe.lock() else {
        return reported;
    };
    let lost = p.record_stats().lost;
    if lost > reported {
        ctx.start.stats.add_failed(Signal::Flows, lost - reported);
    }
    lost.max(reported)
}

#[async_trait]
impl<R: TracingReceiver> Receiver for TracingDriver<R> {
    fn probe_needs(&self) -> Option<crate::ebpf::preflight::Needs> {
        Some(crate::ebpf::preflight::Needs::TRACING)
    }

    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        let flows = ctx.signals.contains(&Signal::Flows);
        let config = self.receiver.probe_config(flows);
        let mut probe = tokio::task::spawn_blocking(move || R::Probe::load(config))
            .await
            .map_err(Self::worker_failed)?
            .map_err(Error::<R>::Probe)?;
        let loaded_at = now_unix_nano();
        self.receiver.loaded(&probe, flows);
        let records = if flows { Some(probe.take_records().map_err(Error::<R>::Probe)?) } else { None };
        let id = ctx.id.to_string();
        let run_time_stats = ebpf_telemetry::run_time_stats(ctx.telemetry.level(), &id);
        let probe = Arc::new(Mutex::new(probe));
        if ebpf_telemetry::reports(ctx.telemetry.level()) {
            let collector = EbpfCollector::new(&id, Arc::downgrade(&probe), flows, loaded_at);
            ctx.telemetry.register(Arc::new(collector));
        }
        self.started = Some(Started { probe, records, loaded_at, _run_time_stats: run_time_stats });
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let Started { probe, mut records, loaded_at, _run_time_stats } =
            self.started.take().ok_or(Error::<R>::NotStarted(R::NAME))?;
        let metrics = ctx.output.wants(Signal::Metrics);
        let mut ticker = tokio::time::interval(self.receiver.collection_interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        let mut lost_reported = 0u64;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if metrics && !self.collect(&probe, loaded_at, &ctx).await {
                        break;
                    }
                    lost_reported = report_lost(&probe, lost_reported, &ctx);
                }
                got = next_records(&mut records, &mut batch) => {
                    if let Err(e) = got {
                        tracing::warn!(error = %e, "reading {} records failed; flow records stop", R::RECORDS);
                        records = None;
                    }
                    if !self.send_flows(&mut batch, &ctx).await {
                        break;
                    }
                }
                _ = ctx.shutdown.cancelled() => {
                    if let Some(stream) = &mut records {
                        stream.try_drain(&mut batch);
                        self.send_flows(&mut batch, &ctx).await;
                    }
                    if metrics {
                        self.collect(&probe, loaded_at, &ctx).await;
                    }
                    break;
                }
            }
        }
        drop(records);
        tokio::task::spawn_blocking(move || drop(probe)).await.map_err(Self::worker_failed)?;
        Ok(())
    }
}
