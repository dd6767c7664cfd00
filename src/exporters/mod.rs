//! Exporters: components at the end of a pipeline that deliver data out of the agent.

pub mod debug;
pub mod delivery;
pub mod flowlog;
pub mod http_client;
pub mod otlp;
pub mod otlphttp;
pub mod prometheus;
pub mod prometheusremotewrite;
