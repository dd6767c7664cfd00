//! Turns a configuration document into a graph of built components, checking everything that
//! can be checked without starting anything: types, configs, references, signals, connectors and
//! cycles through connectors.

mod builder;
mod references;

use std::sync::Arc;

use builder::{Builder, BuiltSet};
use references::{Defined, Layout, List, Locator};

use super::component::{Built, Connector, Exporter, Extension, GraphSummary, PipelineSummary, Processor, Receiver};
use super::registry::{ReceiverUse, Registry};
use crate::config::service::MetricsLevel;
use crate::config::{self, ComponentId, ConfigError, Document, PipelineId, Problem, Problems, ServiceConfig};
use crate::model::Resource;
use crate::server::ListenAddress;
use crate::telemetry::ComponentKind;

/// A built component instance and its id.
pub(crate) struct ComponentNode<C: ?Sized> {
    pub id: ComponentId,
    pub component: Box<C>,
}

/// A receiver instance, shared by every pipeline that lists it.
pub(crate) type ReceiverNode = ComponentNode<dyn Receiver>;

/// A processor instance (one per pipeline, as in otelcol).
pub(crate) type ProcessorNode = ComponentNode<dyn Processor>;

/// An exporter instance, shared by every pipeline that lists it.
pub(crate) type ExporterNode = ComponentNode<dyn Exporter>;

/// A connector instance, shared by every pipeline that lists it on either side.
pub(crate) type ConnectorNode = ComponentNode<dyn Connector>;

/// An enabled extension.
pub(crate) type ExtensionNode = ComponentNode<dyn Extension>;

/// Where a pipeline's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Index into [`Graph::receivers`].
    Receiver(usize),
    /// Index into [`Graph::connectors`].
    Connector(usize),
}

/// Where a pipeline's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    /// Index into [`Graph::exporters`].
    Exporter(usize),
    /// Index into [`Graph::connectors`].
    Connector(usize),
}

/// A pipeline: where its data comes from, its own processors in order, where it goes.
pub(crate) struct PipelineNode {
    pub id: PipelineId,
    pub sources: Vec<Source>,
    pub processors: Vec<ProcessorNode>,
    pub sinks: Vec<Sink>,
}

/// A fully built, validated, not yet started component graph.
pub struct Graph {
    pub(crate) receivers: Vec<ReceiverNode>,
    /// Pipelines in an order where each comes after the pipelines feeding it through connectors.
    pub(crate) pipelines: Vec<PipelineNode>,
    pub(crate) connectors: Vec<ConnectorNode>,
    pub(crate) exporters: Vec<ExporterNode>,
    /// Enabled extensions, in `service::extensions` order.
    pub(crate) extensions: Vec<ExtensionNode>,
    /// Pipelines and extensions by id, for pages that describe the agent.
    pub summary: GraphSummary,
    /// The typed `service` section.
    pub service: ServiceConfig,
    /// Non-fatal notes (unused components, unset variables ...).
    pub warnings: Vec<String>,
}

/// How many components a graph has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphSizes {
    /// Receiver instances.
    pub receivers: usize,
    /// Processor instances (one per pipeline that lists a processor).
    pub processors: usize,
    /// Connector instances.
    pub connectors: usize,
    /// Exporter instances.
    pub exporters: usize,
}

impl Graph {
    /// Ids of the pipelines, in order.
    pub fn pipeline_ids(&self) -> Vec<String> {
        self.pipelines.iter().map(|p| p.id.to_string()).collect()
    }

    /// Number of components of each kind.
    pub fn sizes(&self) -> GraphSizes {
        GraphSizes {
            receivers: self.receivers.len(),
            processors: self.pipelines.iter().map(|p| p.processors.len()).sum(),
            connectors: self.connectors.len(),
            exporters: self.exporters.len(),
        }
    }
}

/// Builds the graph. All problems are collected and returned together.
pub fn build(doc: &Document, registry: &Registry, resource: Arc<Resource>) -> Result<Graph, ConfigError> {
    let mut problems = Problems::default();
    let spec = config::spec(doc, &mut problems);
    let mut warnings = doc.warnings.clone();
    let locator = Locator { service: spec.service_node.as_ref() };
    let pipelines_cfg = spec.service.as_ref().map(|s| s.pipelines.clone()).unwrap_or_default();
    if let Some(service) = &spec.service {
        check_service(service, &locator, &mut problems);
    }

    let defined = Defined::new([
        (ComponentKind::Receiver, &spec.receivers),
        (ComponentKind::Processor, &spec.processors),
        (ComponentKind::Exporter, &spec.exporters),
        (ComponentKind::Connector, &spec.connectors),
    ]);
    defined.check_ambiguous(&mut problems);
    let layout = references::resolve(&pipelines_cfg, &defined, &locator, &mut problems);

    let builder = Builder { registry, resource: &resource, locator: &locator, layout: &layout };
    let receivers =
        builder.build_shared(ComponentKind::Receiver, &spec.receivers, take_receiver, &mut problems, &mut warnings);
    let exporters =
        builder.build_shared(ComponentKind::Exporter, &spec.exporters, take_exporter, &mut problems, &mut warnings);
    let connectors =
        builder.build_shared(ComponentKind::Connector, &spec.connectors, take_connector, &mut problems, &mut warnings);
    let processors = builder.build_processors(&spec.processors, &mut problems, &mut warnings);
    let enabled = spec.service.as_ref().map(|s| s.extensions.clone()).unwrap_or_default();
    let extensions = builder.build_extensions(&spec.extensions, &enabled, &mut problems, &mut warnings);
    // checks across receivers, registered with the component types
    let uses: Vec<ReceiverUse<'_>> = spec
        .receivers
        .iter()
        .map(|entry| ReceiverUse {
            entry,
            signals: layout.uses(ComponentKind::Receiver, &entry.id.to_string()).iter().map(|u| u.signal).collect(),
        })
        .collect();
    for check in registry.receiver_checks() {
        warnings.extend(check(&uses));
    }
    let summary = GraphSummary {
        pipelines: pipelines_cfg
            .iter()
            .map(|(id, p)| PipelineSummary {
                id: id.clone(),
                receivers: p.receivers.clone(),
                processors: p.processors.clone(),
                exporters: p.exporters.clone(),
            })
            .collect(),
        extensions: extensions.iter().map(|e| e.id.to_string()).collect(),
    };

    // Connectors: both sides used with signals they join, and no cycle through them.
    let mut joins = std::collections::HashMap::new();
    for entry in &spec.connectors {
        let Some(factory) = registry.find(ComponentKind::Connector, &entry.id.kind_type) else { continue };
        references::check_connector_uses(entry, factory.connects, &layout, &locator, &mut problems);
        joins.insert(entry.id.to_string(), factory.connects);
    }
    let connects = |id: &str| joins.get(id).copied().unwrap_or(&[]);
    let order = references::order_pipelines(&layout, &connects, &locator, &mut problems);

    problems.explain_unset(&doc.unset);
    let Some(service) = spec.service else {
        return Err(problems.finish(()).err().unwrap_or_else(|| {
            ConfigError::Invalid(vec![Problem::new(None, "service", "missing or invalid service section")])
        }));
    };
    let pipelines = wire_pipelines(&layout, processors, order.unwrap_or_default(), &receivers, &exporters, &connectors);
    problems.finish(Graph {
        receivers: receivers.nodes,
        pipelines,
        connectors: connectors.nodes,
        exporters: exporters.nodes,
        extensions,
        summary,
        service,
        warnings,
    })
}

/// Checks of `service:` that concern no single pipeline.
fn check_service(service: &ServiceConfig, locator: &Locator<'_>, problems: &mut Problems) {
    let own = &service.telemetry.metrics;
    if own.level != MetricsLevel::None {
        if let Some(address) = &own.address
            && let Err(e) = ListenAddress::parse(address)
        {
            problems.push(Problem::new(
                locator.origin("telemetry::metrics::address"),
                "service::telemetry::metrics::address",
                e,
            ));
        }
        for (field, message) in own.problems() {
            let path = format!("telemetry::metrics::{field}");
            problems.push(Problem::new(locator.origin(&path), format!("service::{path}"), message));
        }
    }
    if service.pipelines.is_empty() {
        problems.push(Problem::new(
            locator.origin("pipelines"),
            "service::pipelines",
            "at least one pipeline is required, e.g. `metrics: {receivers: [linuxutil], exporters: [prometheus]}`",
        ));
    }
}

/// The pipeline nodes in `order`, their references turned into indexes of built components.
fn wire_pipelines(
    layout: &Layout,
    processors: Vec<Vec<ProcessorNode>>,
    order: Vec<usize>,
    receivers: &BuiltSet<dyn Receiver>,
    exporters: &BuiltSet<dyn Exporter>,
    connectors: &BuiltSet<dyn Connector>,
) -> Vec<PipelineNode> {
    let mut processors: Vec<Option<Vec<ProcessorNode>>> = processors.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| {
            let p = &layout.pipelines[i];
            let find = |set: &HashIndex, id: &str| set.get(id).copied();
            let sources = p
                .refs_of(List::Receivers, ComponentKind::Receiver)
                .filter_map(|r| find(&receivers.index, r).map(Source::Receiver))
                .chain(
                    p.refs_of(List::Receivers, ComponentKind::Connector)
                        .filter_map(|c| find(&connectors.index, c).map(Source::Connector)),
                )
                .collect();
            let sinks = p
                .refs_of(List::Exporters, ComponentKind::Exporter)
                .filter_map(|e| find(&exporters.index, e).map(Sink::Exporter))
                .chain(
                    p.refs_of(List::Exporters, ComponentKind::Connector)
                        .filter_map(|c| find(&connectors.index, c).map(Sink::Connector)),
                )
                .collect();
            PipelineNode { id: p.id.clone(), sources, processors: processors[i].take().unwrap_or_default(), sinks }
        })
        .collect()
}

type HashIndex = std::collections::HashMap<String, usize>;

fn take_receiver(built: Built) -> Option<Box<dyn Receiver>> {
    match built {
        Built::Receiver(c) => Some(c),
        _ => None,
    }
}

fn take_exporter(built: Built) -> Option<Box<dyn Exporter>> {
    match built {
        Built::Exporter(c) => Some(c),
        _ => None,
    }
}

fn take_connector(built: Built) -> Option<Box<dyn Connector>> {
    match built {
        Built::Connector(c) => Some(c),
        _ => None,
    }
}
