//! Receivers: components at the start of a pipeline that produce or receive data.

pub mod otlp;
