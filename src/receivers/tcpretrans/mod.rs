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

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

pub use config::TcpretransConfig;

use super::probe::telemetry::{self as ebpf_telemetry, ProbeHealth};
use super::probe::tracing::{TracingDriver, TracingProbe, TracingReceiver};
use crate::config::parse_component;
use crate::ebpf::{
    ProbeTelemetry, RecordStats, RecordStream, RetransConfig, RetransError, RetransKind, RetransRecord, TcpRetransProbe,
};
use crate::model::semconv;
use crate::model::{
    Attributes, Direction, FlowKind, FlowRecord, Metric, MetricBatch, NumberPoint, Resource, Scope, Signal,
};
use crate::pipeline::{BuildContext, Built, Factory};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "tcpretrans",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "TCP retransmitted segments as the kernel counts them, with 5-tuple flow records (eBPF, tcp:tcp_retransmit_skb)",
        metrics: &[semconv::NETWORK_TCP_RETRANSMITS],
        build: |ctx: &BuildContext<'_>| {
            let config: TcpretransConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(TracingDriver::new(Tcpretrans::new(config, ctx.resource.clone())))))
        },
    }
}

impl ProbeHealth for TcpRetransProbe {
    fn probe_telemetry(&self) -> ProbeTelemetry {
        self.telemetry()
    }
}

impl TracingProbe for TcpRetransProbe {
    type Config = RetransConfig;
    /// Retransmitted segments since load.
    type Counts = u64;
    type Record = RetransRecord;
    type Error = RetransError;

    fn load(config: RetransConfig) -> Result<Self, RetransError> {
        TcpRetransProbe::load(config)
    }

    fn counts(&self) -> Result<u64, RetransError> {
        self.total()
    }

    fn take_records(&mut self) -> Result<RecordStream<RetransRecord>, RetransError> {
        TcpRetransProbe::take_records(self)
    }

    fn record_stats(&self) -> RecordStats {
        TcpRetransProbe::record_stats(self)
    }
}

/// A retransmission as a flow record, `None` for attempts the kernel did not count.
fn to_flow(r: &RetransRecord) -> Option<FlowRecord> {
    if !r.counted() {
        return None;
    }
    let mut f = FlowRecord::new(FlowKind::Retransmit, r.tuple.src, r.tuple.dst);
    f.time_unix_nano = r.time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
    f.start_time_unix_nano = f.time_unix_nano;
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

/// The receiver: what is its own; [`TracingDriver`] runs it.
pub struct Tcpretrans {
    config: TcpretransConfig,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
}

impl Tcpretrans {
    /// A receiver with the given settings.
    pub fn new(config: TcpretransConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/tcpretrans".into(), version: env!("CARGO_PKG_VERSION").into() });
        Tcpretrans { config, resource, scope }
    }
}

impl TracingReceiver for Tcpretrans {
    type Probe = TcpRetransProbe;
    const NAME: &'static str = "tcpretrans";
    const RECORDS: &'static str = "retransmit";

    fn collection_interval(&self) -> Duration {
        self.config.collection_interval
    }

    fn probe_config(&self, flows: bool) -> RetransConfig {
        RetransConfig {
            record_rate_per_sec: if flows { self.config.flows.max_records_per_second } else { 0 },
            ring_bytes: if flows { RetransConfig::default().ring_bytes } else { ebpf_telemetry::smallest_ring() },
            ..RetransConfig::default()
        }
    }

    fn loaded(&mut self, _probe: &TcpRetransProbe, flows: bool) {
        tracing::info!(flows, "tcpretrans attached");
    }

    fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }

    fn to_metrics(&mut self, segments: u64, start: u64, now: u64) -> MetricBatch {
        let point = NumberPoint::count(Attributes::new(), start, now, segments);
        let metric = Metric::from_def(&semconv::NETWORK_TCP_RETRANSMITS, vec![point]);
        MetricBatch::single(self.resource.clone(), self.scope.clone(), vec![metric])
    }

    fn to_flow(&mut self, record: &RetransRecord) -> Option<FlowRecord> {
        to_flow(record)
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
        let mut rx = Tcpretrans::new(TcpretransConfig::default(), Arc::new(Resource::default()));
        let batch = rx.to_metrics(42, 7, 9);
        let (_, _, m) = batch.iter_metrics().next().expect("metric");
        assert_eq!(m.name, "network.tcp.retransmits");
        assert_eq!(m.unit, "{segment}");
        let crate::model::MetricData::Sum(s) = &m.data else { panic!("a sum") };
        assert!(s.monotonic);
        assert_eq!(s.points[0].value, crate::model::Number::Int(42));
        semconv::assert_as_defined(factory().metrics, &batch);
    }
}
