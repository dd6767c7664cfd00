//! fovea: a Kubernetes network observability agent.
//!
//! eBPF probes count in the kernel; receivers turn the counts into metrics and flow records;
//! processors label and batch them; exporters ship them. The whole graph is configured like an
//! OpenTelemetry Collector (see `config/default.yaml`).

pub mod components;
pub mod config;
pub mod connectors;
pub mod delivery;
pub mod ebpf;
pub mod exporters;
pub mod k8s;
pub mod model;
pub mod otlp;
pub mod pipeline;
pub mod processors;
pub mod prometheus;
pub mod receivers;
pub mod telemetry;
pub mod tls;
