//! Turns a configuration document into a graph of built components, checking everything that
//! can be checked without starting anything: types, configs, references and signals.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::component::{BuildContext, Built, Exporter, Processor, Receiver};
use super::registry::Registry;
use crate::config::{
    self, ComponentId, ConfigError, Document, Entry, Node, PipelineId, Problem, Problems, ServiceConfig,
};
use crate::model::{Resource, Signal};
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

/// A pipeline: indexes of its receivers and exporters, and its own processors in order.
pub(crate) struct PipelineNode {
    pub id: PipelineId,
    pub receivers: Vec<usize>,
    pub processors: Vec<ProcessorNode>,
    pub exporters: Vec<usize>,
}

/// A fully built, validated, not yet started component graph.
pub struct Graph {
    pub(crate) receivers: Vec<ReceiverNode>,
    pub(crate) pipelines: Vec<PipelineNode>,
    pub(crate) exporters: Vec<ExporterNode>,
    /// The typed `service` section.
    pub service: ServiceConfig,
    /// Non-fatal notes (unused components, unset variables ...).
    pub warnings: Vec<String>,
}

impl Graph {
    /// Ids of the pipelines, in order.
    pub fn pipeline_ids(&self) -> Vec<String> {
        self.pipelines.iter().map(|p| p.id.to_string()).collect()
    }

    /// Number of (receivers, processor instances, exporters).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.receivers.len(), self.pipelines.iter().map(|p| p.processors.len()).sum(), self.exporters.len())
    }
}

fn kind_section(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Receiver => "receivers",
        ComponentKind::Processor => "processors",
        ComponentKind::Exporter => "exporters",
    }
}

struct Refs<'a> {
    service_node: Option<&'a Node>,
}

impl Refs<'_> {
    fn origin(&self, path: &str) -> Option<config::Origin> {
        self.service_node.map(|n| n.locate(path).origin.clone())
    }
}

/// What building any component needs besides its own entry.
struct Builder<'a> {
    registry: &'a Registry,
    resource: &'a Arc<Resource>,
    refs: &'a Refs<'a>,
    pipeline_ids: &'a [(PipelineId, String)],
    pipelines_cfg: &'a BTreeMap<String, config::service::PipelineConfig>,
}

/// Builds the graph. All problems are collected and returned together.
pub fn build(doc: &Document, registry: &Registry, resource: Arc<Resource>) -> Result<Graph, ConfigError> {
    let mut problems = Problems::default();
    let spec = config::spec(doc, &mut problems);
    let mut warnings = doc.warnings.clone();
    let refs = Refs { service_node: spec.service_node.as_ref() };

    let receiver_entries = index(&spec.receivers);
    let processor_entries = index(&spec.processors);
    let exporter_entries = index(&spec.exporters);

    let service = spec.service.clone();
    let pipelines_cfg = service.as_ref().map(|s| s.pipelines.clone()).unwrap_or_default();
    if let Some(s) = &service {
        if !s.extensions.is_empty() {
            problems.push(Problem::new(
                refs.origin("extensions"),
                "service::extensions",
                "fovea has no extensions; remove this key",
            ));
        }
        if s.pipelines.is_empty() {
            problems.push(Problem::new(
                refs.origin("pipelines"),
                "service::pipelines",
                "at least one pipeline is required, e.g. `metrics: {receivers: [linuxutil], exporters: [prometheus]}`",
            ));
        }
    }

    // Which signals each receiver/exporter id is used with, checked against reference lists.
    let mut pipeline_ids: Vec<(PipelineId, String)> = Vec::new();
    for name in pipelines_cfg.keys() {
        match PipelineId::parse(name) {
            Ok(id) => pipeline_ids.push((id, name.clone())),
            Err(msg) => problems.push(Problem::new(
                refs.origin(&format!("pipelines::{name}")),
                format!("service::pipelines::{name}"),
                msg,
            )),
        }
    }

    let mut receiver_signals: BTreeMap<String, Vec<Signal>> = BTreeMap::new();
    let mut exporter_signals: BTreeMap<String, Vec<Signal>> = BTreeMap::new();
    for (pid, name) in &pipeline_ids {
        let cfg = &pipelines_cfg[name];
        let base = format!("pipelines::{name}");
        for (list, label, entries) in [
            (&cfg.receivers, "receivers", &receiver_entries),
            (&cfg.processors, "processors", &processor_entries),
            (&cfg.exporters, "exporters", &exporter_entries),
        ] {
            if list.is_empty() && label != "processors" {
                problems.push(Problem::new(
                    refs.origin(&base),
                    format!("service::{base}::{label}"),
                    format!("a pipeline needs at least one {}", &label[..label.len() - 1]),
                ));
            }
            let mut seen = HashSet::new();
            for (i, reference) in list.iter().enumerate() {
                let path = format!("{base}::{label}::{i}");
                if !entries.contains_key(reference.as_str()) {
                    let mut defined: Vec<&str> = entries.keys().map(String::as_str).collect();
                    defined.sort_unstable();
                    problems.push(Problem::new(
                        refs.origin(&path),
                        format!("service::{base}::{label}"),
                        format!(
                            "references {} `{reference}` which is not configured under `{label}:`; configured: [{}]",
                            &label[..label.len() - 1],
                            defined.join(", ")
                        ),
                    ));
                    continue;
                }
                if !seen.insert(reference.as_str()) {
                    problems.push(Problem::new(
                        refs.origin(&path),
                        format!("service::{base}::{label}"),
                        format!("`{reference}` is listed twice in this pipeline; list it once"),
                    ));
                }
                match label {
                    "receivers" => receiver_signals.entry(reference.clone()).or_default().push(pid.signal),
                    "exporters" => exporter_signals.entry(reference.clone()).or_default().push(pid.signal),
                    _ => {}
                }
            }
        }
    }

    let builder = Builder {
        registry,
        resource: &resource,
        refs: &refs,
        pipeline_ids: &pipeline_ids,
        pipelines_cfg: &pipelines_cfg,
    };
    // Build every configured receiver and exporter (unused ones are validated too).
    let (receivers, receiver_index) = builder.build_shared(
        ComponentKind::Receiver,
        &spec.receivers,
        &receiver_signals,
        |built| match built {
            Built::Receiver(component) => Some(component),
            _ => None,
        },
        &mut problems,
        &mut warnings,
    );
    let (exporters, exporter_index) = builder.build_shared(
        ComponentKind::Exporter,
        &spec.exporters,
        &exporter_signals,
        |built| match built {
            Built::Exporter(component) => Some(component),
            _ => None,
        },
        &mut problems,
        &mut warnings,
    );

    // Processors: one instance per pipeline; a config error is reported once per processor.
    let mut pipelines = Vec::new();
    let mut failed_processors: HashSet<String> = HashSet::new();
    let mut used_processors: HashSet<String> = HashSet::new();
    for (pid, name) in &pipeline_ids {
        let cfg = &pipelines_cfg[name];
        let mut processors = Vec::new();
        for reference in &cfg.processors {
            used_processors.insert(reference.clone());
            let Some(entry) = processor_entries.get(reference.as_str()) else { continue };
            if failed_processors.contains(reference) {
                continue;
            }
            let before = problems.len();
            match builder.build_one(ComponentKind::Processor, entry, Some(pid), Some(&[pid.signal]), &mut problems) {
                Some(Built::Processor(component)) => processors.push(ProcessorNode { id: entry.id.clone(), component }),
                _ => {
                    if problems.len() > before {
                        failed_processors.insert(reference.clone());
                    }
                }
            }
        }
        pipelines.push(PipelineNode {
            id: pid.clone(),
            receivers: cfg.receivers.iter().filter_map(|r| receiver_index.get(r).copied()).collect(),
            processors,
            exporters: cfg.exporters.iter().filter_map(|e| exporter_index.get(e).copied()).collect(),
        });
    }
    for entry in &spec.processors {
        if !used_processors.contains(&entry.id.to_string()) {
            // Validate the config of unused processors against their first signal.
            builder.build_one(ComponentKind::Processor, entry, None, None, &mut problems);
            warnings.push(format!("processors::{} is configured but not used in any pipeline", entry.id));
        }
    }

    let service = match service {
        Some(s) => s,
        None => return Err(finish_err(problems)),
    };
    problems.finish(Graph { receivers, pipelines, exporters, service, warnings })
}

fn finish_err(problems: Problems) -> ConfigError {
    match problems.finish(()) {
        Err(e) => e,
        Ok(()) => ConfigError::Invalid(vec![Problem::new(None, "service", "missing or invalid service section")]),
    }
}

fn index(entries: &[Entry]) -> HashMap<String, &Entry> {
    entries.iter().map(|e| (e.id.to_string(), e)).collect::<HashMap<_, _>>()
}

impl Builder<'_> {
    /// Builds every configured receiver or exporter, `used` with the signals of the pipelines that
    /// list it, and keeps those some pipeline uses (unused ones are validated, then dropped with a
    /// warning). Returns them with their index by id; `take` unboxes the kind being built.
    fn build_shared<C: ?Sized>(
        &self,
        kind: ComponentKind,
        entries: &[Entry],
        used: &BTreeMap<String, Vec<Signal>>,
        take: impl Fn(Built) -> Option<Box<C>>,
        problems: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> (Vec<ComponentNode<C>>, HashMap<String, usize>) {
        let mut nodes = Vec::new();
        let mut index = HashMap::new();
        for entry in entries {
            let used = used.get(&entry.id.to_string());
            let Some(component) = self.build_one(kind, entry, None, used.map(Vec::as_slice), problems).and_then(&take)
            else {
                continue;
            };
            if used.is_some() {
                index.insert(entry.id.to_string(), nodes.len());
                nodes.push(ComponentNode { id: entry.id.clone(), component });
            } else {
                warnings.push(format!(
                    "{}::{} is configured but not used in any pipeline",
                    kind_section(kind),
                    entry.id
                ));
            }
        }
        (nodes, index)
    }

    fn build_one(
        &self,
        kind: ComponentKind,
        entry: &Entry,
        pipeline: Option<&PipelineId>,
        used_with: Option<&[Signal]>,
        problems: &mut Problems,
    ) -> Option<Built> {
        let Builder { registry, resource, refs, pipeline_ids, pipelines_cfg } = *self;
        let section = kind_section(kind);
        let path = format!("{section}::{}", entry.id);
        let Some(factory) = registry.find(kind, &entry.id.kind_type) else {
            let hint = if kind == ComponentKind::Exporter && entry.id.kind_type == "logging" {
                "; the logging exporter was replaced by `debug`".to_string()
            } else {
                String::new()
            };
            problems.push(Problem::new(
                Some(entry.origin.clone()),
                path,
                format!(
                    "unknown {} type `{}`{hint}; valid types: {}",
                    kind.as_str(),
                    entry.id.kind_type,
                    registry.type_names(kind).join(", ")
                ),
            ));
            return None;
        };
        let mut ok = true;
        for signal in used_with.unwrap_or(&[]) {
            if !factory.signals.contains(signal) {
                ok = false;
                // Point at each pipeline reference of this component with the wrong signal.
                for (pid, name) in pipeline_ids.iter().filter(|(p, _)| p.signal == *signal) {
                    let cfg = &pipelines_cfg[name];
                    let list = match kind {
                        ComponentKind::Receiver => &cfg.receivers,
                        ComponentKind::Processor => &cfg.processors,
                        ComponentKind::Exporter => &cfg.exporters,
                    };
                    if pipeline.is_some_and(|p| p != pid) {
                        continue;
                    }
                    if let Some(i) = list.iter().position(|r| *r == entry.id.to_string()) {
                        let at = format!("pipelines::{name}::{section}::{i}");
                        problems.push(Problem::new(
                            refs.origin(&at),
                            format!("service::pipelines::{name}::{section}"),
                            format!(
                                "{} `{}` cannot handle {} (it supports: {}); use it in a {} pipeline",
                                kind.as_str(),
                                entry.id,
                                signal,
                                factory.signals.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                                factory.signals.first().map(|s| s.as_str()).unwrap_or("other"),
                            ),
                        ));
                    }
                }
            }
        }
        let ctx = BuildContext { id: &entry.id, path: &path, node: &entry.body, pipeline, resource: resource.clone() };
        match (factory.build)(&ctx) {
            Ok(built) if ok => Some(built),
            Ok(_) => None,
            Err(e) => {
                problems.extend(e);
                None
            }
        }
    }
}
