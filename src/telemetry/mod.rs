//! The agent's own telemetry: component counters, collectors, logs, resource detection, and the
//! `/metrics`, `/healthz`, `/readyz` endpoint.

pub mod logs;
pub mod resource;
mod stats;

pub use stats::{Collector, ComponentKind, ComponentStats, StatsRegistry};
