//! Receivers: components that produce metrics or flows.
//!
//! `packetforward`, `dropreason` and `tcpretrans` are the node-level eBPF receivers over
//! [`crate::ebpf`]; `flows` aggregates pod traffic per flow and `dns` parses DNS messages, both on
//! the shared datapath programs.
//! They share the plumbing in [`probe`] (interface watcher, the shared datapath attachment,
//! own-metrics collector, the driver of the tracing receivers). `linuxutil` reads the kernel's counters
//! without eBPF; `otlp` receives OTLP metrics from other agents.

pub mod dns;
pub mod dropreason;
pub mod flows;
pub mod linuxutil;
pub mod otlp;
pub mod packetforward;
pub mod probe;
pub mod tcpretrans;
