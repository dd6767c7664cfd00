//! Receivers: components that produce metrics or flows.
//!
//! `packetforward`, `dropreason` and `tcpretrans` are the node-level eBPF receivers over
//! [`crate::ebpf`]; they share the interface watcher ([`links`]) and their own-metrics
//! collector ([`ebpf_telemetry`]), and `dropreason` and `tcpretrans` are both driven by
//! [`tracing_probe`]. `linuxutil` reads the kernel's counters without eBPF; `otlp`
//! receives OTLP metrics from other agents.

pub mod config;
pub mod dropreason;
pub mod ebpf_telemetry;
pub mod links;
pub mod linuxutil;
pub mod otlp;
pub mod packetforward;
pub mod tcpretrans;
pub mod tracing_probe;
