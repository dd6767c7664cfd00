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
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use smol_str::SmolStr;

pub use config::DropreasonConfig;

use super::probe::telemetry::{self as ebpf_telemetry, ProbeHealth};
use super::probe::tracing::{TracingDriver, TracingProbe, TracingReceiver};
use crate::config::parse_component;
use crate::ebpf::{
    self, DropConfig, DropCount, DropError, DropProbe, DropReasons, DropRecord, ProbeTelemetry, RecordStats,
    RecordStream,
};
use crate::model::semconv::{self, attr};
use crate::model::{Attributes, FlowKind, FlowRecord, Metric, MetricBatch, NumberPoint, Resource, Scope, Signal};
use crate::pipeline::{BuildContext, Built, Factory};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "dropreason",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "packets dropped by the kernel per drop reason and direction, with 5-tuple flow records (eBPF, skb:kfree_skb)",
        metrics: &[semconv::NETWORK_DROP_PACKETS, semconv::NETWORK_DROP_BYTES],
        build: |ctx: &BuildContext<'_>| {
            let config: DropreasonConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(TracingDriver::new(Dropreason::new(config, ctx.resource.clone())))))
        },
    }
}

impl ProbeHealth for DropProbe {
    fn probe_telemetry(&self) -> ProbeTelemetry {
        self.telemetry()
    }
}

impl TracingProbe for DropProbe {
    type Config = DropConfig;
    type Counts = Vec<DropCount>;
    type Record = DropRecord;
    type Error = DropError;

    fn load(config: DropConfig) -> Result<Self, DropError> {
        DropProbe::load(config)
    }

    fn counts(&self) -> Result<Vec<DropCount>, DropError> {
        self.counters()
    }

    fn take_records(&mut self) -> Result<RecordStream<DropRecord>, DropError> {
        DropProbe::take_records(self)
    }

    fn record_stats(&self) -> RecordStats {
        DropProbe::record_stats(self)
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
    f.start_time_unix_nano = f.time_unix_nano;
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

/// The receiver: what is its own; [`TracingDriver`] runs it.
pub struct Dropreason {
    config: DropreasonConfig,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    reasons: ReasonNames,
}

impl Dropreason {
    /// A receiver with the given settings.
    pub fn new(config: DropreasonConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/dropreason".into(), version: env!("CARGO_PKG_VERSION").into() });
        let reasons = ReasonNames { kernel: DropReasons::default(), cache: HashMap::new() };
        Dropreason { config, resource, scope, reasons }
    }
}

impl TracingReceiver for Dropreason {
    type Probe = DropProbe;
    const NAME: &'static str = "dropreason";
    const RECORDS: &'static str = "drop";

    fn collection_interval(&self) -> Duration {
        self.config.collection_interval
    }

    fn probe_config(&self, flows: bool) -> DropConfig {
        DropConfig {
            include_unspecified: self.config.include_unspecified,
            // No flows pipeline: no records at all, so the kernel never even reserves one.
            record_rate_per_sec: if flows { self.config.flows.max_records_per_second } else { 0 },
            ring_bytes: if flows { DropConfig::default().ring_bytes } else { ebpf_telemetry::smallest_ring() },
            ..DropConfig::default()
        }
    }

    fn loaded(&mut self, probe: &DropProbe, flows: bool) {
        tracing::info!(hook = ?probe.hook(), reasons = probe.reasons().len(), flows, "dropreason attached");
        self.reasons.kernel = probe.reasons().clone();
    }

    fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }

    fn to_metrics(&mut self, counts: Vec<DropCount>, start: u64, now: u64) -> MetricBatch {
        let mut packets = Vec::with_capacity(counts.len());
        let mut bytes = Vec::with_capacity(counts.len());
        for c in &counts {
            let attrs = Attributes::from_pairs([
                (attr::DROP_REASON, self.reasons.name(c.reason_code)),
                (attr::NETWORK_IO_DIRECTION, SmolStr::new_static(c.direction.as_otel())),
            ]);
            packets.push(NumberPoint::count(attrs.clone(), start, now, c.packets));
            bytes.push(NumberPoint::count(attrs, start, now, c.bytes));
        }
        let metrics = vec![
            Metric::from_def(&semconv::NETWORK_DROP_PACKETS, packets),
            Metric::from_def(&semconv::NETWORK_DROP_BYTES, bytes),
        ];
        MetricBatch::single(self.resource.clone(), self.scope.clone(), metrics)
    }

    fn to_flow(&mut self, record: &DropRecord) -> Option<FlowRecord> {
        let reason = self.reasons.name(record.reason_code);
        Some(to_flow(record, reason))
    }
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
        let batch = rx.to_metrics(counts.to_vec(), 10, 20);
        let (_, _, packets) =
            batch.iter_metrics().find(|(_, _, m)| m.name == semconv::NETWORK_DROP_PACKETS.name).expect("packets");
        let MetricData::Sum(sum) = &packets.data else { panic!("a sum") };
        assert!(sum.monotonic);
        assert_eq!(sum.points[0].attributes.get_str(attr::DROP_REASON), Some("UNKNOWN_5"));
        assert_eq!(sum.points[0].attributes.get_str(attr::NETWORK_IO_DIRECTION), Some("receive"));
        assert_eq!(sum.points[0].value, Number::Int(3));
        assert_eq!(sum.points[0].start_time_unix_nano, 10);
        assert_eq!(sum.points[1].attributes.get_str(attr::NETWORK_IO_DIRECTION), Some("unknown"));
        semconv::assert_as_defined(factory().metrics, &batch);
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
