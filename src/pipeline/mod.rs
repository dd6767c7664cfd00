//! The pipeline engine: component traits, the factory registry, graph building and the
//! run-time lifecycle (bounded channels, fan-out, ordered start and shutdown).

mod channel;
mod component;
mod graph;
mod registry;
mod run;
mod services;

pub use channel::{CHANNEL_CAPACITY, Closed, Input, Link, Output};
pub use component::{
    BuildContext, Built, ComponentError, Connector, ConnectorContext, Exporter, ExporterContext, Extension,
    ExtensionContext, Factory, GraphSummary, PipelineSummary, Processor, ProcessorContext, Receiver, ReceiverContext,
    StartContext,
};
pub use graph::{Graph, GraphSizes, build};
pub use registry::{ReceiverCheck, ReceiverUse, Registry};
pub use run::RunReport;
pub use services::Services;

/// Errors of the pipeline engine.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A component failed to start; nothing was left running.
    #[error("{kind} `{id}` failed to start: {source}")]
    Start {
        /// receiver, processor, exporter or connector.
        kind: &'static str,
        /// The component id.
        id: String,
        /// Why.
        source: ComponentError,
    },
    /// What the receivers' eBPF probes need is missing; nothing was started.
    #[error("{0}")]
    Preflight(#[from] crate::ebpf::PreflightError),
}
