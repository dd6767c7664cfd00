//! What the receivers share, kept out of the component folders so `receivers/` lists receivers:
//! the interface watcher ([`links`]), the datapath programs on pod interfaces and uplinks shared
//! by the features that need pod traffic ([`datapath`]), the eBPF receivers' own-metrics collector ([`telemetry`]),
//! the driver of the tracing receivers ([`tracing`]) and the settings several receivers accept
//! ([`settings`]).

pub mod datapath;
pub mod links;
pub mod settings;
pub mod telemetry;
pub mod tracing;
