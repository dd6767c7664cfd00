//! Receivers: components that produce metrics or flows.

pub mod linuxutil;
pub mod otlp;
