//! Connectors: the exporter of one pipeline and the receiver of another (otelcol's
//! `connectors:` section). `forward` passes data between pipelines of the same signal.

pub mod flowmetrics;
pub mod forward;
