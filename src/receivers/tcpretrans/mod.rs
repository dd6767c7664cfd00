//! `tcpretrans` receiver: TCP retransmissions counted in the kernel at `tcp:tcp_retransmit_skb`
//! and `tcp:tcp_retransmit_synack`, plus a flow record per retransmission when a flows pipeline
//! wants them.
//!
//! * `network.tcp.retransmits` (`{segment}`): a cumulative monotonic sum of retransmitted
//!   segments exactly as the kernel's `TcpRetransSegs` counts them (TSO retransmits count every
//!   segment, SYN-ACK retransmits count one), for IPv4 and IPv6 together. It is not split by
//!   address family: the in-kernel counter is one per-CPU slot, and splitting it would cost a
//!   second map lookup per retransmit for a breakdown the flow records already give.
//! * Flows: one [`FlowRecord`] (`kind: retransmit`, source = the retransmitting side,
//!   `packets` = segments, `tcp_state`) per retransmission the kernel counted, batched per
//!   ring-buffer drain, at most `flows.max_records_per_second`. Attempts the kernel aborted
//!   before counting (e.g. `-EBUSY`) are in neither.

mod config;

use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;

pub use config::{FlowsConfig, TcpretransConfig};

use super::ebpf_telemetry::{self, EbpfCollector, ProbeHealth};
use crate::config::parse_component;
use crate::ebpf::{
    self, ProbeTelemetry, RecordStream, RetransConfig, RetransError, RetransKind, RetransRecord, TcpRetransProbe,
};
use crate::model::{
    Attributes, Direction, FlowBatch, FlowKind, FlowRecord, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope,
    Signal, now_unix_nano,
};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, StartContext};
use crate::telemetry::ComponentKind;

/// Errors of the tcpretrans receiver.
#[derive(Debug, thiserror::Error)]
pub enum TcpretransError {
    /// Loading the probe or reading it failed (a missing capability is listed here).
    #[error(transparent)]
    Probe(#[from] RetransError),
    /// A blocking eBPF call panicked or was cancelled.
    #[error("the tcpretrans worker thread failed: {0}")]
    Worker(String),
    /// `run` without a successful `start`.
    #[error("the tcpretrans receiver was not started")]
    NotStarted,
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "tcpretrans",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        description: "TCP retransmitted segments as the kernel counts them, with 5-tuple flow records (eBPF, tcp:tcp_retransmit_skb)",
        build: |ctx: &BuildContext<'_>| {
            let config: TcpretransConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(Tcpretrans::new(config, ctx.resource.clone()))))
        },
    }
}

struct Held(TcpRetransProbe);

impl ProbeHealth for Held {
    fn probe_telemetry(&self) -> ProbeTelemetry {
        self.0.telemetry()
    }
}

/// A retransmission as a flow record, `None` for attempts the kernel did not count.
fn to_flow(r: &RetransRecord) -> Option<FlowRecord> {
    if !r.counted() {
        return None;
    }
    let mut f = FlowRecord::new(FlowKind::Retransmit, r.tuple.src, r.tuple.dst);
    f.time_unix_nano = r.time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
    f.source_port = r.tuple.src_port;
    f.destination_port = r.tuple.dst_port;
    f.protocol = r.tuple.protocol;
    f.direction = Direction::Transmit;
    f.packets = u64::from(r.segments);
    f.tcp_state = r.state;
    if r.kind == RetransKind::SynAck {
        // the segment retransmitted was a SYN-ACK
        f.tcp_flags = 0x12;
    }
    Some(f)
}

/// What `start` acquired.
struct Started {
    probe: Arc<Mutex<Held>>,
    records: Option<RecordStream<RetransRecord>>,
    loaded_at: u64,
    _run_time_stats: Option<ebpf::RunTimeStats>,
}

/// The receiver.
pub struct Tcpretrans {
    config: TcpretransConfig,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    started: Option<Started>,
}

impl Tcpretrans {
    /// A receiver with the given settings.
    pub fn new(config: TcpretransConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/tcpretrans".into(), version: env!("CARGO_PKG_VERSION").into() });
        Tcpretrans { config, resource, scope, started: None }
    }

    fn to_metrics(&self, segments: u64, start: u64, now: u64) -> MetricBatch {
        let point = NumberPoint::int(Attributes::new(), start, now, i64::try_from(segments).unwrap_or(i64::MAX));
        let metric = Metric::counter(
            "network.tcp.retransmits",
            "{segment}",
            "TCP segments retransmitted, as the kernel's TcpRetransSegs counts them (IPv4 and IPv6)",
            vec![point],
        );
        MetricBatch::single(self.resource.clone(), self.scope.clone(), vec![metric])
    }

    /// Reads the counter and sends it; false when the pipeline has stopped.
    async fn collect(&self, probe: &Arc<Mutex<Held>>, loaded_at: u64, ctx: &ReceiverContext) -> bool {
        let probe = probe.clone();
        let read = tokio::task::spawn_blocking(move || match probe.lock() {
            Ok(p) => p.0.total().map_err(TcpretransError::from),
            Err(_) => Err(TcpretransError::Worker("a previous call panicked".into())),
        })
        .await;
        match read {
            Ok(Ok(segments)) => {
                let batch = self.to_metrics(segments, loaded_at, now_unix_nano());
                ctx.output.send(Payload::from(batch)).await.is_ok()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "tcpretrans collection failed");
                ctx.start.stats.add_failed(Signal::Metrics, 1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcpretrans collection failed");
                true
            }
        }
    }

    /// Sends `records` as one flow batch (emptying it); false when the pipeline has stopped.
    async fn send_flows(&self, records: &mut Vec<RetransRecord>, ctx: &ReceiverContext) -> bool {
        let flows: Vec<FlowRecord> = records.drain(..).filter_map(|r| to_flow(&r)).collect();
        if flows.is_empty() {
            return true;
        }
        let batch = FlowBatch { resource: self.resource.clone(), records: flows, acks: Default::default() };
        ctx.output.send(Payload::from(batch)).await.is_ok()
    }
}

/// Waits for the next records, or forever when there is no stream.
async fn next_records(
    stream: &mut Option<RecordStream<RetransRecord>>,
    out: &mut Vec<RetransRecord>,
) -> Result<usize, ebpf::RecordError> {
    match stream {
        Some(s) => s.next_batch(out).await,
        None => std::future::pending().await,
    }
}

/// Counts records the kernel lost to a full ring as failed flow items of this receiver.
fn report_lost(probe: &Arc<Mutex<Held>>, reported: u64, ctx: &ReceiverContext) -> u64 {
    let Ok(p) = probe.lock() else {
        return reported;
    };
    let lost = p.0.record_stats().lost;
    if lost > reported {
        ctx.start.stats.add_failed(Signal::Flows, lost - reported);
    }
    lost.max(reported)
}

#[async_trait]
impl Receiver for Tcpretrans {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        let flows = ctx.signals.contains(&Signal::Flows);
        let config = RetransConfig {
            record_rate_per_sec: if flows { self.config.flows.max_records_per_second } else { 0 },
            ring_bytes: if flows { RetransConfig::default().ring_bytes } else { ebpf_telemetry::smallest_ring() },
        };
        let mut probe = tokio::task::spawn_blocking(move || TcpRetransProbe::load(config))
            .await
            .map_err(|e| TcpretransError::Worker(e.to_string()))?
            .map_err(TcpretransError::from)?;
        let loaded_at = now_unix_nano();
        tracing::info!(flows, "tcpretrans attached");
        let records = if flows { Some(probe.take_records().map_err(TcpretransError::from)?) } else { None };
        let id = ctx.id.to_string();
        let run_time_stats = ebpf_telemetry::run_time_stats(ctx.telemetry.level(), &id);
        let probe = Arc::new(Mutex::new(Held(probe)));
        if ebpf_telemetry::reports(ctx.telemetry.level()) {
            let collector = EbpfCollector::new(&id, Arc::downgrade(&probe), flows, loaded_at);
            ctx.telemetry.register(Arc::new(collector));
        }
        self.started = Some(Started { probe, records, loaded_at, _run_time_stats: run_time_stats });
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let Started { probe, mut records, loaded_at, _run_time_stats } =
            self.started.take().ok_or(TcpretransError::NotStarted)?;
        let metrics = ctx.output.wants(Signal::Metrics);
        let mut ticker = tokio::time::interval(self.config.collection_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<RetransRecord> = Vec::new();
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
                        tracing::warn!(error = %e, "reading retransmit records failed; flow records stop");
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
        tokio::task::spawn_blocking(move || drop(probe)).await.map_err(|e| TcpretransError::Worker(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ebpf::FlowTuple;
    use crate::model::TcpState;

    fn record(err: i32) -> RetransRecord {
        RetransRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            tuple: FlowTuple {
                src: "2001:db8::1".parse::<IpAddr>().expect("ip"),
                dst: "2001:db8::2".parse::<IpAddr>().expect("ip"),
                src_port: 41000,
                dst_port: 5201,
                protocol: 6,
            },
            state: Some(TcpState::Established),
            kind: RetransKind::Segment,
            segments: 12,
            err,
        }
    }

    #[test]
    fn counted_retransmits_become_flows_with_segments_and_state() {
        let f = to_flow(&record(0)).expect("counted");
        assert_eq!(f.kind, FlowKind::Retransmit);
        assert_eq!(f.packets, 12);
        assert_eq!(f.tcp_state, Some(TcpState::Established));
        assert_eq!((f.source_port, f.destination_port, f.protocol), (41000, 5201, 6));
        assert_eq!(f.direction, Direction::Transmit);
        assert!(to_flow(&record(-libc::EBUSY)).is_none(), "aborted attempts are not retransmits");
        assert!(to_flow(&record(1)).is_some(), "a transmit-time failure was counted by the kernel");
    }

    #[test]
    fn the_counter_is_one_cumulative_sum() {
        let rx = Tcpretrans::new(TcpretransConfig::default(), Arc::new(Resource::default()));
        let batch = rx.to_metrics(42, 7, 9);
        let (_, _, m) = batch.iter_metrics().next().expect("metric");
        assert_eq!(m.name, "network.tcp.retransmits");
        assert_eq!(m.unit, "{segment}");
        let crate::model::MetricData::Sum(s) = &m.data else { panic!("a sum") };
        assert!(s.monotonic);
        assert_eq!(s.points[0].value, crate::model::Number::Int(42));
    }
}
