//! Exporters: components that deliver data out of the agent.

pub mod prometheus;
