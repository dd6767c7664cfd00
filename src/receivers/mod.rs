//! Receivers: components that produce metrics or flows.
//!
//! `packetforward`, `dropreason` and `tcpretrans` are the node-level eBPF receivers over
//! [`crate::ebpf`]; they share the plumbing in [`probe`] (interface watcher, own-metrics
//! collector, the driver of the tracing receivers). `linuxutil` reads the kernel's counters
//! without eBPF; `otlp` receives OTLP metrics from other agents.

pub mod dropreason;
pub mod linuxutil;
pub mod otlp;
pub mod packetforward;
pub mod probe;
pub mod tcpretrans;
