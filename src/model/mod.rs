//! The data that travels through pipelines: OpenTelemetry metrics and network flow records.
//!
//! Batches travel as `Arc`s inside a [`Payload`], so fan-out to several exporters shares one
//! allocation; a component that changes data copies it only when someone else still holds it.

mod ack;
mod attributes;
mod batcher;
pub mod dns;
#[cfg(test)]
pub(crate) mod fixtures;
mod flows;
mod histogram;
mod metrics;
pub mod semconv;
mod tcp_state;

use std::fmt;
use std::sync::Arc;

pub use ack::{AckWaiter, Acks};
pub use attributes::{AttrValue, Attributes, KeyValue};
pub use batcher::Batcher;
pub use dns::DnsInfo;
pub use flows::{Direction, FlowBatch, FlowKind, FlowRecord, LatencySummary, ObservationPoint, TcpFlag, TcpFlagCounts};
pub use histogram::LatencyHistogram;
pub use metrics::{
    HistogramData, HistogramPoint, Metric, MetricBatch, MetricData, Number, NumberPoint, Resource, ResourceMetrics,
    Scope, ScopeMetrics, SumData, Temporality,
};
pub use semconv::{Instrument, MetricDef};
pub use tcp_state::TcpState;

/// The two kinds of data pipelines carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// OpenTelemetry metrics.
    Metrics,
    /// Network flow records.
    Flows,
}

impl Signal {
    /// Every signal, in a fixed order (`signal as usize` indexes arrays of [`Signal::COUNT`]).
    pub const ALL: [Signal; Signal::COUNT] = [Signal::Metrics, Signal::Flows];

    /// How many signals there are.
    pub const COUNT: usize = 2;

    /// The name used in pipeline ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Flows => "flows",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One unit of data moving between components.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A batch of metrics.
    Metrics(Arc<MetricBatch>),
    /// A batch of flow records.
    Flows(Arc<FlowBatch>),
}

impl Payload {
    /// The signal of this payload.
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Flows(_) => Signal::Flows,
        }
    }

    /// The delivery acknowledgements the batch carries.
    pub fn acks(&self) -> &Acks {
        match self {
            Payload::Metrics(m) => &m.acks,
            Payload::Flows(f) => &f.acks,
        }
    }

    /// Items for accounting: data points for metrics, records for flows.
    pub fn items(&self) -> u64 {
        match self {
            Payload::Metrics(m) => m.data_points() as u64,
            Payload::Flows(f) => f.records.len() as u64,
        }
    }
}

impl From<MetricBatch> for Payload {
    fn from(b: MetricBatch) -> Self {
        Payload::Metrics(Arc::new(b))
    }
}

impl From<FlowBatch> for Payload {
    fn from(b: FlowBatch) -> Self {
        Payload::Flows(Arc::new(b))
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
