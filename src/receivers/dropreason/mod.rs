//! `dropreason` receiver: packets the kernel dropped, per drop reason and direction, counted in
//! the kernel at `skb:kfree_skb`, plus a flow record per drop when a flows pipeline wants them.
//!
//! * `network.drop.packets` (`{packet}`) and `network.drop.bytes` (`By`, network-layer bytes:
//!   what an nft counter on the same path counts): cumulative monotonic sums with `drop.reason`
//!   (the running kernel's name without `SKB_DROP_REASON_`, `UNKNOWN_<code>` for a value its BTF
//!   does not name) and `network.io.direction`: `receive` (the packet came in on a device),
//!   `transmit` (this host generated it) or `unknown`. Every series has both attributes, so
//!   `sum by (direction)` under `naming: retina` gives Retina's `ingress` / `egress` plus an
//!   explicit `unknown`, never an unlabelled remainder.
//! * Flows: one [`FlowRecord`] (`kind: drop`) per dropped IP packet, batched per ring-buffer
//!   drain, at most `flows.max_records_per_second`. The ring is not even created when no flows
//!   pipeline consumes this receiver.

mod config;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use smol_str::SmolStr;

pub use config::{DropreasonConfig, FlowsConfig};

use super::ebpf_telemetry::{self, EbpfCollector, ProbeHealth};
use crate::config::parse_component;
use crate::ebpf::{
    self, DropConfig, DropCount, DropError, DropProbe, DropReasons, DropRecord, ProbeTelemetry, RecordStream,
};
use crate::model::{
    Attributes, FlowBatch, FlowKind, FlowRecord, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope, Signal,
    now_unix_nano,
};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, StartContext};
use crate::telemetry::ComponentKind;

/// Errors of the dropreason receiver.
#[derive(Debug, thiserror::Error)]
pub enum DropreasonError {
    /// Loading the probe or reading it failed (a missing capability is listed here).
    #[error(transparent)]
    Probe(#[from] DropError),
    /// Reading flow records failed.
    #[error(transparent)]
    Records(#[from] ebpf::RecordError),
    /// A blocking eBPF call panicked or was cancelled.
    #[error("the dropreason worker thread failed: {0}")]
    Worker(String),
    /// `run` without a successful `start`.
    #[error("the dropreason receiver was not started")]
    NotStarted,
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "dropreason",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        description: "packets dropped by the kernel per drop reason and direction, with 5-tuple flow records (eBPF, skb:kfree_skb)",
        build: |ctx: &BuildContext<'_>| {
            let config: DropreasonConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(Dropreason::new(config, ctx.resource.clone()))))
        },
    }
}

struct Held(DropProbe);

impl ProbeHealth for Held {
    fn probe_telemetry(&self) -> ProbeTelemetry {
        self.0.telemetry()
    }
}

/// Names of drop reasons as attribute values, made once per reason.
struct ReasonNames {
    kernel: DropReasons,
    cache: HashMap<u32, SmolStr>,
}

impl ReasonNames {
    fn name(&mut self, code: u32) -> SmolStr {
        let kernel = &self.kernel;
        self.cache
            .entry(code)
            .or_insert_with(|| match kernel.name(code) {
                Some(name) => SmolStr::new(name),
                None => SmolStr::new(format!("UNKNOWN_{code}")),
            })
            .clone()
    }
}

/// Converts a probe direction to the model's.
fn direction(d: ebpf::Direction) -> crate::model::Direction {
    match d {
        ebpf::Direction::Ingress => crate::model::Direction::Receive,
        ebpf::Direction::Egress => crate::model::Direction::Transmit,
        ebpf::Direction::Unknown => crate::model::Direction::Unknown,
    }
}

/// A drop as a flow record.
fn to_flow(r: &DropRecord, reason: SmolStr) -> FlowRecord {
    let mut f = FlowRecord::new(FlowKind::Drop, r.tuple.src, r.tuple.dst);
    f.time_unix_nano = r.time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
    f.source_port = r.tuple.src_port;
    f.destination_port = r.tuple.dst_port;
    f.protocol = r.tuple.protocol;
    f.direction = direction(r.direction);
    f.ifindex = r.ifindex;
    f.packets = 1;
    f.bytes = u64::from(r.bytes);
    f.drop_reason = Some(reason);
    f
}

/// What `start` acquired.
struct Started {
    probe: Arc<Mutex<Held>>,
    records: Option<RecordStream<DropRecord>>,
    loaded_at: u64,
    _run_time_stats: Option<ebpf::RunTimeStats>,
}

/// The receiver.
pub struct Dropreason {
    config: DropreasonConfig,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    started: Option<Started>,
    reasons: ReasonNames,
}

impl Dropreason {
    /// A receiver with the given settings.
    pub fn new(config: DropreasonConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/dropreason".into(), version: env!("CARGO_PKG_VERSION").into() });
        let reasons = ReasonNames { kernel: DropReasons::default(), cache: HashMap::new() };
        Dropreason { config, resource, scope, started: None, reasons }
    }

    fn metrics(&mut self, counts: &[DropCount], start: u64, now: u64) -> MetricBatch {
        let mut packets = Vec::with_capacity(counts.len());
        let mut bytes = Vec::with_capacity(counts.len());
        for c in counts {
            let attrs = Attributes::from_pairs([
                ("drop.reason", self.reasons.name(c.reason_code)),
                ("network.io.direction", SmolStr::new_static(c.direction.as_otel())),
            ]);
            packets.push(NumberPoint::int(attrs.clone(), start, now, to_i64(c.packets)));
            bytes.push(NumberPoint::int(attrs, start, now, to_i64(c.bytes)));
        }
        let metrics = vec![
            Metric::counter(
                "network.drop.packets",
                "{packet}",
                "Packets dropped by the kernel, per drop reason and direction (skb:kfree_skb)",
                packets,
            ),
            Metric::counter(
                "network.drop.bytes",
                "By",
                "Network-layer bytes of the packets dropped by the kernel, per drop reason and direction",
                bytes,
            ),
        ];
        MetricBatch::single(self.resource.clone(), self.scope.clone(), metrics)
    }

    /// Reads the counters and sends them; false when the pipeline has stopped.
    async fn collect(&mut self, probe: &Arc<Mutex<Held>>, loaded_at: u64, ctx: &ReceiverContext) -> bool {
        let probe = probe.clone();
        let read = tokio::task::spawn_blocking(move || match probe.lock() {
            Ok(p) => p.0.counters().map_err(DropreasonError::from),
            Err(_) => Err(DropreasonError::Worker("a previous call panicked".into())),
        })
        .await;
        match read {
            Ok(Ok(counts)) => {
                let batch = self.metrics(&counts, loaded_at, now_unix_nano());
                ctx.output.send(Payload::from(batch)).await.is_ok()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "dropreason collection failed");
                ctx.start.stats.add_failed(Signal::Metrics, 1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "dropreason collection failed");
                true
            }
        }
    }

    /// Sends `records` as one flow batch (emptying it); false when the pipeline has stopped.
    async fn send_flows(&mut self, records: &mut Vec<DropRecord>, ctx: &ReceiverContext) -> bool {
        if records.is_empty() {
            return true;
        }
        let mut flows = Vec::with_capacity(records.len());
        for r in records.drain(..) {
            let reason = self.reasons.name(r.reason_code);
            flows.push(to_flow(&r, reason));
        }
        let batch = FlowBatch { resource: self.resource.clone(), records: flows, acks: Default::default() };
        ctx.output.send(Payload::from(batch)).await.is_ok()
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Waits for the next records, or forever when there is no stream.
async fn next_records(
    stream: &mut Option<RecordStream<DropRecord>>,
    out: &mut Vec<DropRecord>,
) -> Result<usize, ebpf::RecordError> {
    match stream {
        Some(s) => s.next_batch(out).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Receiver for Dropreason {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        let flows = ctx.signals.contains(&Signal::Flows);
        let config = DropConfig {
            include_unspecified: self.config.include_unspecified,
            // No flows pipeline: no records at all, so the kernel never even reserves one.
            record_rate_per_sec: if flows { self.config.flows.max_records_per_second } else { 0 },
            ring_bytes: if flows { DropConfig::default().ring_bytes } else { ebpf_telemetry::smallest_ring() },
            ..DropConfig::default()
        };
        let mut probe = tokio::task::spawn_blocking(move || DropProbe::load(config))
            .await
            .map_err(|e| DropreasonError::Worker(e.to_string()))?
            .map_err(DropreasonError::from)?;
        let loaded_at = now_unix_nano();
        tracing::info!(hook = ?probe.hook(), reasons = probe.reasons().len(), flows, "dropreason attached");
        let records = if flows { Some(probe.take_records().map_err(DropreasonError::from)?) } else { None };
        self.reasons.kernel = probe.reasons().clone();
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
            self.started.take().ok_or(DropreasonError::NotStarted)?;
        let metrics = ctx.output.wants(Signal::Metrics);
        let mut ticker = tokio::time::interval(self.config.collection_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<DropRecord> = Vec::new();
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
                        tracing::warn!(error = %e, "reading drop records failed; flow records stop");
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
        tokio::task::spawn_blocking(move || drop(probe)).await.map_err(|e| DropreasonError::Worker(e.to_string()))?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ebpf::FlowTuple;
    use crate::model::{MetricData, Number};

    #[test]
    fn unknown_reasons_get_a_fallback_name() {
        let mut names = ReasonNames { kernel: DropReasons::default(), cache: HashMap::new() };
        assert_eq!(names.name(77), "UNKNOWN_77");
    }

    #[test]
    fn counts_become_points_with_reason_and_direction() {
        let mut rx = Dropreason::new(DropreasonConfig::default(), Arc::new(Resource::default()));
        let counts = [
            DropCount { reason_code: 5, direction: ebpf::Direction::Ingress, packets: 3, bytes: 300 },
            DropCount { reason_code: 5, direction: ebpf::Direction::Unknown, packets: 1, bytes: 60 },
        ];
        let batch = rx.metrics(&counts, 10, 20);
        let (_, _, packets) = batch.iter_metrics().find(|(_, _, m)| m.name == "network.drop.packets").expect("packets");
        let MetricData::Sum(sum) = &packets.data else { panic!("a sum") };
        assert!(sum.monotonic);
        assert_eq!(sum.points[0].attributes.get_str("drop.reason"), Some("UNKNOWN_5"));
        assert_eq!(sum.points[0].attributes.get_str("network.io.direction"), Some("receive"));
        assert_eq!(sum.points[0].value, Number::Int(3));
        assert_eq!(sum.points[0].start_time_unix_nano, 10);
        assert_eq!(sum.points[1].attributes.get_str("network.io.direction"), Some("unknown"));
    }

    #[test]
    fn records_become_drop_flows() {
        let r = DropRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(2),
            tuple: FlowTuple {
                src: "198.18.0.1".parse::<IpAddr>().expect("ip"),
                dst: "198.18.0.2".parse::<IpAddr>().expect("ip"),
                src_port: 40000,
                dst_port: 9999,
                protocol: 17,
            },
            reason_code: 5,
            ifindex: 3,
            direction: ebpf::Direction::Ingress,
            bytes: 328,
        };
        let f = to_flow(&r, "NETFILTER_DROP".into());
        assert_eq!(f.kind, FlowKind::Drop);
        assert_eq!((f.source_port, f.destination_port, f.protocol), (40000, 9999, 17));
        assert_eq!((f.packets, f.bytes, f.ifindex), (1, 328, 3));
        assert_eq!(f.direction, crate::model::Direction::Receive);
        assert_eq!(f.drop_reason.as_deref(), Some("NETFILTER_DROP"));
        assert_eq!(f.time_unix_nano, 2_000_000_000);
    }
}
