//! What a component is: factories that build receivers, processors, exporters and connectors
//! from config, and the traits those components implement.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::channel::{Input, Output};
use super::services::Services;
use crate::config::{ComponentId, ConfigError, Node, PipelineId};
use crate::model::{MetricDef, Resource, Signal};
use crate::telemetry::{ComponentKind, ComponentStats, StatsRegistry};

/// Errors from a running component; any error type converts with `?`.
pub type ComponentError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a factory gets to build a component. Building must have no side effects (no
/// sockets, no eBPF): `fovea validate` builds the whole graph without starting it.
pub struct BuildContext<'a> {
    /// The component id.
    pub id: &'a ComponentId,
    /// Full config path (`exporters::otlp/backup`), the prefix for error paths.
    pub path: &'a str,
    /// The component's config body (null = defaults).
    pub node: &'a Node,
    /// For processors: the pipeline this instance belongs to.
    pub pipeline: Option<&'a PipelineId>,
    /// Resource attributes of this agent (node, host, service).
    pub resource: Arc<Resource>,
}

/// A built component, ready to start.
pub enum Built {
    /// A receiver.
    Receiver(Box<dyn Receiver>),
    /// A processor.
    Processor(Box<dyn Processor>),
    /// An exporter.
    Exporter(Box<dyn Exporter>),
    /// A connector.
    Connector(Box<dyn Connector>),
    /// An extension.
    Extension(Box<dyn Extension>),
}

/// How a component type is made: one registry line per component.
pub struct Factory {
    /// Receiver, processor, exporter or connector.
    pub kind: ComponentKind,
    /// The type name used in ids (`prometheusremotewrite`).
    pub type_name: &'static str,
    /// Other accepted names (otelcol's snake_case spellings, e.g. `prometheus_remote_write`).
    pub aliases: &'static [&'static str],
    /// Signals the component can produce (receivers) or consume (processors, exporters,
    /// connectors).
    pub signals: &'static [Signal],
    /// Connectors only: the `(consumed, produced)` signal pairs the connector joins, e.g.
    /// `(Flows, Metrics)`; empty for every other kind.
    pub connects: &'static [(Signal, Signal)],
    /// One line for `fovea components`.
    pub description: &'static str,
    /// The metrics the component emits (receivers, connectors), the source of docs/metrics.md.
    pub metrics: &'static [MetricDef],
    /// Parses and validates the config and builds the component.
    pub build: fn(&BuildContext<'_>) -> Result<Built, ConfigError>,
}

impl Factory {
    /// True if `name` is this factory's type name or an alias.
    pub fn answers_to(&self, name: &str) -> bool {
        self.type_name == name || self.aliases.contains(&name)
    }
}

/// What every component gets when it starts.
#[derive(Clone)]
pub struct StartContext {
    /// The component id.
    pub id: ComponentId,
    /// For receivers: the signals some pipeline consumes from it (do no work for the others).
    pub signals: Vec<Signal>,
    /// This component's counters.
    pub stats: Arc<ComponentStats>,
    /// Registry for extra own-metrics collectors.
    pub telemetry: Arc<StatsRegistry>,
    /// Process-wide shared services (the Kubernetes cache, health ...), found by type.
    pub services: Arc<Services>,
}

/// A receiver produces data until told to stop.
#[async_trait]
pub trait Receiver: Send {
    /// What loading its eBPF probes needs (capabilities, kernel features), if it loads any. The
    /// engine checks the needs of every receiver together before starting anything, so one
    /// message lists everything that is missing for every receiver.
    fn probe_needs(&self) -> Option<crate::ebpf::preflight::Needs> {
        None
    }

    /// Acquires resources (binds sockets, loads probes). An error stops the agent from starting.
    async fn start(&mut self, _ctx: &StartContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Produces data into `output` until `shutdown` is cancelled, then returns (dropping `output`).
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError>;
}

/// What a running receiver gets.
pub struct ReceiverContext {
    /// Where produced data goes, routed by signal.
    pub output: Output,
    /// Cancelled when the agent stops.
    pub shutdown: CancellationToken,
    /// This component's counters and registry.
    pub start: StartContext,
}

/// A processor transforms its pipeline's data.
#[async_trait]
pub trait Processor: Send {
    /// Acquires resources. An error stops the agent from starting.
    async fn start(&mut self, _ctx: &StartContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Reads `input` until it closes, passing results to `output`; flushes anything held, then returns.
    async fn run(self: Box<Self>, ctx: ProcessorContext) -> Result<(), ComponentError>;
}

/// What a running processor gets.
pub struct ProcessorContext {
    /// Incoming data; `None` from `recv` means upstream has stopped.
    pub input: Input,
    /// The next component(s).
    pub output: Output,
    /// This component's counters and registry.
    pub start: StartContext,
}

/// An exporter delivers data out of the agent.
#[async_trait]
pub trait Exporter: Send {
    /// Acquires resources (binds the scrape endpoint, opens the persistent queue ...).
    async fn start(&mut self, _ctx: &StartContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Reads `input` until it closes, delivers, flushes, then returns. For each payload it calls
    /// `payload.acks().accept()` once the data is durably taken (queued, persisted or delivered),
    /// or `.fail()` when it cannot be taken, so receivers that wait for acknowledgements can answer.
    async fn run(self: Box<Self>, ctx: ExporterContext) -> Result<(), ComponentError>;
}

/// What a running exporter gets.
pub struct ExporterContext {
    /// Incoming data from every pipeline that lists this exporter.
    pub input: Input,
    /// Cancelled when the shutdown timeout is about to pass: stop retrying, persist or count what is left.
    pub deadline: CancellationToken,
    /// This component's counters and registry.
    pub start: StartContext,
}

/// A connector is the exporter of some pipelines and the receiver of others: it reads what those
/// pipelines deliver to it and sends what it makes (the same data, or new data of another signal)
/// into the pipelines that list it as a receiver. Acknowledgements travel with the data: a
/// connector that passes a batch on passes its acknowledgements with it; one that folds data
/// into something new accepts the batch once it has folded it.
#[async_trait]
pub trait Connector: Send {
    /// Acquires resources. An error stops the agent from starting.
    async fn start(&mut self, _ctx: &StartContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Reads `input` until it closes, sending results to `output` (routed by signal to the
    /// pipelines the connector feeds); flushes anything held, then returns.
    async fn run(self: Box<Self>, ctx: ConnectorContext) -> Result<(), ComponentError>;
}

/// What a running connector gets: like a processor, but its output may carry other signals than
/// its input.
pub type ConnectorContext = ProcessorContext;

/// An extension is a service next to the pipelines (otelcol's `extensions:`): a health check
/// endpoint, a profiler ... It starts before every component and stops after all of them.
#[async_trait]
pub trait Extension: Send {
    /// Acquires resources (binds its port). An error stops the agent from starting.
    async fn start(&mut self, _ctx: &ExtensionContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Serves until `shutdown` is cancelled.
    async fn run(self: Box<Self>, ctx: ExtensionContext, shutdown: CancellationToken) -> Result<(), ComponentError>;
}

/// What an extension gets.
#[derive(Clone)]
pub struct ExtensionContext {
    /// The extension's id.
    pub id: ComponentId,
    /// Process-wide shared services (the agent's health ...).
    pub services: Arc<Services>,
    /// The agent's own metrics.
    pub telemetry: Arc<StatsRegistry>,
    /// What the agent runs, for pages that describe it.
    pub summary: Arc<GraphSummary>,
}

/// The shape of the running graph: pipelines and extensions, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphSummary {
    /// Each pipeline: its id and the ids of its receivers, processors and exporters, in order.
    pub pipelines: Vec<PipelineSummary>,
    /// The enabled extensions, in start order.
    pub extensions: Vec<String>,
}

/// One pipeline of a [`GraphSummary`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineSummary {
    /// `metrics`, `flows/dns` ...
    pub id: String,
    /// Receiver (and connector) ids.
    pub receivers: Vec<String>,
    /// Processor ids, in order.
    pub processors: Vec<String>,
    /// Exporter (and connector) ids.
    pub exporters: Vec<String>,
}
