//! Building components from their entries: the factory of each type, its config checked, and
//! the signals of the pipelines that use it checked against what it supports.

use std::collections::HashMap;
use std::sync::Arc;

use super::references::{Layout, List, Locator, Use};
use super::{ComponentNode, ProcessorNode};
use crate::config::{ComponentId, Entry, PipelineId, Problem, Problems};
use crate::model::{Resource, Signal};
use crate::pipeline::component::{BuildContext, Built, Extension, Factory};
use crate::pipeline::registry::Registry;
use crate::telemetry::ComponentKind;

/// What building any component needs besides its own entry.
pub(super) struct Builder<'a> {
    pub registry: &'a Registry,
    pub resource: &'a Arc<Resource>,
    pub locator: &'a Locator<'a>,
    pub layout: &'a Layout,
}

/// Built components of one kind and their index by id.
pub(super) struct BuiltSet<C: ?Sized> {
    pub nodes: Vec<ComponentNode<C>>,
    pub index: HashMap<String, usize>,
}

impl Builder<'_> {
    /// Builds every configured component of `kind` (receivers, exporters, connectors: one
    /// instance shared by all pipelines), keeping those some pipeline uses; unused ones are
    /// validated, then dropped with a warning. `take` unboxes the kind being built.
    pub fn build_shared<C: ?Sized>(
        &self,
        kind: ComponentKind,
        entries: &[Entry],
        take: impl Fn(Built) -> Option<Box<C>>,
        problems: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> BuiltSet<C> {
        let mut set = BuiltSet { nodes: Vec::new(), index: HashMap::new() };
        for entry in entries {
            let id = entry.id.to_string();
            let uses = self.layout.uses(kind, &id);
            let Some(component) = self.build_one(kind, entry, None, uses, problems).and_then(&take) else {
                continue;
            };
            if uses.is_empty() {
                warnings.push(format!("{}::{id} is configured but not used in any pipeline", kind.section()));
            } else {
                set.index.insert(id, set.nodes.len());
                set.nodes.push(ComponentNode { id: entry.id.clone(), component });
            }
        }
        set
    }

    /// Processors: one instance per pipeline that lists them, as in otelcol; a config error is
    /// reported once per processor. Returns the instances per pipeline, in list order.
    pub fn build_processors(
        &self,
        entries: &[Entry],
        problems: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> Vec<Vec<ProcessorNode>> {
        let by_id: HashMap<String, &Entry> = entries.iter().map(|e| (e.id.to_string(), e)).collect();
        let mut failed: Vec<&str> = Vec::new();
        let mut per_pipeline = Vec::new();
        for (index, pipeline) in self.layout.pipelines.iter().enumerate() {
            let mut processors = Vec::new();
            for reference in pipeline.refs_of(List::Processors, ComponentKind::Processor) {
                let Some(entry) = by_id.get(reference) else { continue };
                if failed.contains(&reference) {
                    continue;
                }
                let uses: Vec<Use> = self
                    .layout
                    .uses(ComponentKind::Processor, reference)
                    .iter()
                    .filter(|u| u.pipeline == index)
                    .copied()
                    .collect();
                let before = problems.len();
                match self.build_one(ComponentKind::Processor, entry, Some(&pipeline.id), &uses, problems) {
                    Some(Built::Processor(component)) => {
                        processors.push(ProcessorNode { id: entry.id.clone(), component })
                    }
                    _ if problems.len() > before => failed.push(reference),
                    _ => {}
                }
            }
            per_pipeline.push(processors);
        }
        for entry in entries {
            let id = entry.id.to_string();
            if self.layout.uses(ComponentKind::Processor, &id).is_empty() {
                // Validate the config of unused processors too.
                self.build_one(ComponentKind::Processor, entry, None, &[], problems);
                warnings.push(format!("processors::{id} is configured but not used in any pipeline"));
            }
        }
        per_pipeline
    }

    /// The factory of an entry, or a problem naming the valid types.
    pub fn factory(&self, kind: ComponentKind, entry: &Entry, problems: &mut Problems) -> Option<&Factory> {
        if let Some(factory) = self.registry.find(kind, &entry.id.kind_type) {
            return Some(factory);
        }
        let hint = match (kind, entry.id.kind_type.as_str()) {
            (ComponentKind::Exporter, "logging") => "; the logging exporter was replaced by `debug`",
            (ComponentKind::Extension, "file_storage") => {
                "; fovea keeps persistent queues itself: set sending_queue::storage::directory on the exporter"
            }
            (ComponentKind::Extension, "basicauth" | "bearertokenauth" | "oauth2client" | "headers_setter") => {
                "; send credentials with the exporter's `headers`"
            }
            (ComponentKind::Extension, "memory_limiter" | "memory_ballast") => "; fovea's queues are bounded by size",
            _ => "",
        };
        let types = self.registry.type_names(kind);
        let valid = if types.is_empty() { "none".to_string() } else { types.join(", ") };
        let message = if kind == ComponentKind::Extension {
            format!(
                "the `{}` extension is not supported by fovea{hint}; supported extensions: {valid}",
                entry.id.kind_type
            )
        } else {
            format!("unknown {} type `{}`{hint}; valid types: {valid}", kind.as_str(), entry.id.kind_type)
        };
        problems.push(Problem::new(Some(entry.origin.clone()), format!("{}::{}", kind.section(), entry.id), message));
        None
    }

    /// Builds every configured extension and returns those `service::extensions` enables, in
    /// its order; the others are validated, then dropped with a warning.
    pub fn build_extensions(
        &self,
        entries: &[Entry],
        enabled: &[String],
        problems: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> Vec<ComponentNode<dyn Extension>> {
        let mut built: HashMap<String, (ComponentId, Box<dyn Extension>)> = HashMap::new();
        for entry in entries {
            if let Some(Built::Extension(e)) = self.build_one(ComponentKind::Extension, entry, None, &[], problems) {
                built.insert(entry.id.to_string(), (entry.id.clone(), e));
            }
        }
        let configured: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
        let mut nodes: Vec<ComponentNode<dyn Extension>> = Vec::new();
        for (i, name) in enabled.iter().enumerate() {
            let at = || self.locator.origin(&format!("extensions::{i}"));
            if enabled[..i].contains(name) {
                problems.push(Problem::new(
                    at(),
                    format!("service::extensions::{i}"),
                    format!("`{name}` is listed twice"),
                ));
            } else if let Some((id, component)) = built.remove(name) {
                nodes.push(ComponentNode { id, component });
            } else if !configured.contains(name) {
                problems.push(Problem::new(
                    at(),
                    format!("service::extensions::{i}"),
                    format!(
                        "references extension `{name}` which is not configured under `extensions:`; configured: [{}]",
                        configured.join(", ")
                    ),
                ));
            }
        }
        for id in configured.iter().filter(|id| !enabled.contains(id)) {
            warnings.push(format!("extensions::{id} is configured but not enabled in service::extensions"));
        }
        nodes
    }

    /// Builds one component, checking each of its `uses` has a signal it supports (connectors'
    /// signal pairs are checked separately). `pipeline` is set for processor instances.
    fn build_one(
        &self,
        kind: ComponentKind,
        entry: &Entry,
        pipeline: Option<&PipelineId>,
        uses: &[Use],
        problems: &mut Problems,
    ) -> Option<Built> {
        let factory = self.factory(kind, entry, problems)?;
        let mut ok = true;
        if kind != ComponentKind::Connector {
            for u in uses.iter().filter(|u| !factory.signals.contains(&u.signal)) {
                ok = false;
                problems.push(self.locator.at_use(
                    &self.layout.pipelines[u.pipeline],
                    u,
                    wrong_signal(factory, entry, u.signal),
                ));
            }
        }
        let path = format!("{}::{}", kind.section(), entry.id);
        let ctx =
            BuildContext { id: &entry.id, path: &path, node: &entry.body, pipeline, resource: self.resource.clone() };
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

fn wrong_signal(factory: &Factory, entry: &Entry, signal: Signal) -> String {
    format!(
        "{} `{}` cannot handle {signal} (it supports: {}); use it in a {} pipeline",
        factory.kind.as_str(),
        entry.id,
        factory.signals.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        factory.signals.first().map(|s| s.as_str()).unwrap_or("other"),
    )
}
