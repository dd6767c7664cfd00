//! The agent's own telemetry: component counters, collectors, logs, resource detection, and the
//! `/metrics`, `/healthz`, `/readyz` endpoint.

pub mod logs;
mod process;
pub mod readers;
pub mod resource;
mod server;
mod stats;

pub use process::{ProcessCollector, read_self, release_freed_memory};
pub use server::{Health, ReadinessCheck, Render, ServerError, TelemetryServer};
pub use stats::{Collector, ComponentKind, ComponentStats, StatsRegistry};
