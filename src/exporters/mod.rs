//! Exporters: components at the end of a pipeline that deliver data out of the agent.

pub mod debug;
pub mod flowlog;
pub mod otlp;
pub mod otlphttp;
pub mod prometheus;
pub mod prometheusremotewrite;
