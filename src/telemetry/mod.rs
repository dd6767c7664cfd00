//! The agent's own telemetry: component counters, collectors, logs, and the
//! `/metrics`, `/healthz`, `/readyz` endpoint.

mod stats;

pub use stats::{Collector, ComponentKind, ComponentStats, StatsRegistry};
