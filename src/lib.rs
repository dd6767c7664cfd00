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
pub mod extensions;
pub mod k8s;
pub mod model;
pub mod otlp;
pub mod pipeline;
pub mod processors;
pub mod prometheus;
pub mod receivers;
pub mod server;
pub mod telemetry;
pub mod tls;

/// Cases a property test runs: `default` (the bounded run of `cargo test` and CI, about a
/// minute for all of them), times `FOVEA_FUZZ_SCALE` for longer runs.
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    let scale = std::env::var("FOVEA_FUZZ_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    default.saturating_mul(scale.max(1))
}
