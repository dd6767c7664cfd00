//! The `k8sattributes` processor (alias `k8s_attributes`): names the Kubernetes objects behind
//! the addresses of flows (both ends, `source.` / `destination.` prefixed) and, like otelcol's,
//! adds the attributes of the pod a metrics resource belongs to (`pod_association`).
//!
//! Every instance shares the process's one metadata cache (`crate::k8s`). A batch is labelled
//! under one read lock, released before the batch is passed on.

mod config;
mod render;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use smol_str::format_smolstr;

pub use config::{
    Association, AssociationFrom, AssociationSource, AuthType, DEFAULT_METADATA, Exclude, ExcludePod, Extract,
    Extraction, Filter, K8sAttributesConfig, SelectorOp, SelectorTerm,
};
pub use render::{Renderer, Selection};

use crate::config::{ConfigError, Problem, parse_component};
use crate::k8s::{Auth, CacheSettings, Field, Found, K8sCache, K8sError, KeyMatch, Reader, Rule, Source};
use crate::model::semconv::{End, attr};
use crate::model::{FlowBatch, KeyValue, MetricBatch, Payload, Resource, Signal};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Processor, ProcessorContext, StartContext};
use crate::telemetry::{ComponentKind, Health};

/// Errors starting a `k8sattributes` instance.
#[derive(Debug, thiserror::Error)]
pub enum K8sAttributesError {
    /// `filter.node_from_env_var` names an unset variable.
    #[error(
        "filter::node_from_env_var: the environment variable {variable} is not set or empty; set it from the \
         downward API (fieldRef spec.nodeName) or use filter::node"
    )]
    NodeEnv {
        /// The variable.
        variable: String,
    },
    /// Two instances want different caches.
    #[error(
        "{id}: its auth_type, filter, exclude or delete_grace_period differ from another k8sattributes instance's; \
         fovea keeps one Kubernetes cache per process, so every instance must agree on them"
    )]
    DifferentCache {
        /// This instance.
        id: String,
    },
    /// The cache could not start.
    #[error(transparent)]
    Cache(#[from] K8sError),
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Processor,
        type_name: "k8sattributes",
        aliases: &["k8s_attributes"],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "adds Kubernetes pod, workload, namespace, node and service names to both ends of flows and to the resources of pods' metrics",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: K8sAttributesConfig = parse_component(ctx.node, ctx.path)?;
            let processor = K8sAttributesProcessor::new(ctx, config)?;
            Ok(Built::Processor(Box::new(processor)))
        },
    }
}

/// Where a `pod_association` value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Connection,
    PodIp,
    PodUid,
}

/// One instance.
pub struct K8sAttributesProcessor {
    id: String,
    config: K8sAttributesConfig,
    rules: Vec<Rule>,
    selection: Selection,
    associations: Vec<Vec<Key>>,
    cache: Option<Arc<K8sCache>>,
    renderer: Option<Renderer>,
}

impl K8sAttributesProcessor {
    /// Compiles a validated config (no side effects: nothing connects before `start`).
    pub fn new(ctx: &BuildContext<'_>, config: K8sAttributesConfig) -> Result<Self, ConfigError> {
        let problem = |field: &str, message: String| {
            let at = ctx.node.locate(field);
            ConfigError::Invalid(vec![Problem::new(Some(at.origin.clone()), format!("{}::{field}", ctx.path), message)])
        };
        if config.passthrough && ctx.pipeline.is_some_and(|p| p.signal == Signal::Flows) {
            return Err(problem(
                "passthrough",
                "only applies to metrics pipelines (flow records carry both addresses already); remove it".into(),
            ));
        }
        let mut rules = Vec::new();
        for (what, field, list) in [
            ("labels", Field::Label, &config.extract.labels),
            ("annotations", Field::Annotation, &config.extract.annotations),
        ] {
            for (i, e) in list.iter().enumerate() {
                let source = match e.from.as_str() {
                    "namespace" => Source::Namespace,
                    "node" => Source::Node,
                    _ => Source::Pod,
                };
                let key = match (&e.key, &e.key_regex) {
                    (Some(k), _) => KeyMatch::Exact(k.as_str().into()),
                    (None, Some(re)) => KeyMatch::regex(re)
                        .map_err(|err| problem(&format!("extract::{what}::{i}::key_regex"), err.to_string()))?,
                    (None, None) => continue,
                };
                rules.push(Rule { source, field, key, tag_name: e.tag_name.clone() });
            }
        }
        let selection = match &config.extract.metadata {
            Some(names) => Selection::of(names.iter().map(String::as_str)),
            None => Selection::of(DEFAULT_METADATA.iter().copied()),
        };
        let mut associations: Vec<Vec<Key>> = config
            .pod_association
            .iter()
            .map(|rule| {
                rule.sources
                    .iter()
                    .map(|s| match (s.from, s.name.as_deref()) {
                        (AssociationFrom::Connection, _) => Key::Connection,
                        (AssociationFrom::ResourceAttribute, Some(attr::K8S_POD_UID)) => Key::PodUid,
                        (AssociationFrom::ResourceAttribute, _) => Key::PodIp,
                    })
                    .collect()
            })
            .collect();
        if associations.is_empty() {
            // otelcol's default: the address of the client that sent the data.
            associations.push(vec![Key::Connection]);
        }
        Ok(K8sAttributesProcessor {
            id: ctx.id.to_string(),
            config,
            rules,
            selection,
            associations,
            cache: None,
            renderer: None,
        })
    }

    /// What the shared cache must be for this instance.
    pub fn cache_settings(&self) -> Result<CacheSettings, K8sAttributesError> {
        let c = &self.config;
        let node = match (&c.filter.node, &c.filter.node_from_env_var) {
            (Some(node), _) => Some(node.clone()),
            (None, Some(variable)) => match std::env::var(variable) {
                Ok(node) if !node.is_empty() => Some(node),
                _ => return Err(K8sAttributesError::NodeEnv { variable: variable.clone() }),
            },
            (None, None) => None,
        };
        let join = |terms: &[config::SelectorTerm]| {
            (!terms.is_empty()).then(|| terms.iter().map(config::SelectorTerm::render).collect::<Vec<_>>().join(","))
        };
        Ok(CacheSettings {
            auth: match c.auth_type {
                AuthType::ServiceAccount => Auth::ServiceAccount,
                AuthType::KubeConfig => {
                    Auth::KubeConfig { path: c.kube_config_path.clone(), context: c.context.clone() }
                }
                AuthType::None => Auth::None,
            },
            node,
            namespace: c.filter.namespace.clone(),
            pod_label_selector: join(&c.filter.labels),
            pod_field_selector: join(&c.filter.fields),
            delete_grace_period: c.delete_grace_period,
            exclude_pods: c.exclude.pods.iter().map(|p| p.name.clone()).collect(),
        })
    }

    /// Labels both ends of every record.
    fn label_flows(&self, mut batch: FlowBatch, scratch: &mut Vec<KeyValue>) -> FlowBatch {
        let (Some(cache), Some(renderer)) = (&self.cache, &self.renderer) else { return batch };
        let mut counts = Counts::default();
        {
            let reader = cache.reader();
            for record in &mut batch.records {
                scratch.clear();
                // Destination first: every `destination.*` key sorts before every `source.*` one.
                for (end, ip) in [(End::Destination, record.destination), (End::Source, record.source)] {
                    let Some(found) = counts.note(reader.ip(ip)) else { continue };
                    let address = self.selection.pod_ip().then(|| format_smolstr!("{ip}"));
                    renderer.render(&reader, found, address.as_ref(), end, scratch);
                }
                if !scratch.is_empty() {
                    record.attributes.extend(scratch.drain(..));
                }
            }
        }
        cache.stats().add_lookups(counts.hit, counts.grace, counts.miss);
        batch
    }

    /// Adds the associated pod's attributes to each resource (keeping attributes it already has).
    fn label_metrics(&self, mut batch: MetricBatch, scratch: &mut Vec<KeyValue>) -> MetricBatch {
        if self.config.passthrough {
            if let Some(client) = batch.client {
                let address = format_smolstr!("{client}");
                for rm in &mut batch.resource_metrics {
                    if rm.resource.attributes.get(attr::K8S_POD_IP).is_none() {
                        let mut resource = Resource::clone(&rm.resource);
                        resource.attributes.insert(attr::K8S_POD_IP, address.clone());
                        rm.resource = Arc::new(resource);
                    }
                }
            }
            return batch;
        }
        let (Some(cache), Some(renderer)) = (&self.cache, &self.renderer) else { return batch };
        let mut counts = Counts::default();
        {
            let reader = cache.reader();
            for rm in &mut batch.resource_metrics {
                let Some((found, ip)) = self.associate(&reader, &rm.resource, batch.client) else { continue };
                let Some(found) = counts.note(Some(found)) else { continue };
                scratch.clear();
                let ip = ip.or_else(|| match found {
                    Found::Pod { pod, .. } => pod.ips.first().copied(),
                    _ => None,
                });
                let address = ip.filter(|_| self.selection.pod_ip()).map(|ip| format_smolstr!("{ip}"));
                renderer.render(&reader, found, address.as_ref(), End::Plain, scratch);
                scratch.retain(|kv| rm.resource.attributes.get(&kv.key).is_none());
                if !scratch.is_empty() {
                    let mut resource = Resource::clone(&rm.resource);
                    resource.attributes.extend(scratch.drain(..));
                    rm.resource = Arc::new(resource);
                }
            }
        }
        cache.stats().add_lookups(counts.hit, counts.grace, counts.miss);
        batch
    }

    /// The pod a resource belongs to: the first rule whose sources are all present decides
    /// (later rules are not tried even if it names no pod, as in otelcol), and every source
    /// must name the same pod. Also returns the address used, if any.
    fn associate<'r>(
        &self,
        reader: &'r Reader<'_>,
        resource: &Resource,
        client: Option<IpAddr>,
    ) -> Option<(Found<'r>, Option<IpAddr>)> {
        let attribute_ip = || resource.attributes.get_str(attr::K8S_POD_IP).and_then(|t| t.parse::<IpAddr>().ok());
        for rule in &self.associations {
            let present = rule.iter().all(|key| match key {
                Key::Connection => client.is_some(),
                Key::PodIp => attribute_ip().is_some(),
                Key::PodUid => resource.attributes.get_str(attr::K8S_POD_UID).is_some(),
            });
            if !present {
                continue;
            }
            let mut matched: Option<(Found<'r>, Option<IpAddr>)> = None;
            for key in rule {
                let (found, ip) = match key {
                    Key::Connection => (client.and_then(|ip| reader.ip(ip)), client),
                    Key::PodIp => {
                        let ip = attribute_ip();
                        (ip.and_then(|ip| reader.ip(ip)), ip)
                    }
                    Key::PodUid => {
                        (resource.attributes.get_str(attr::K8S_POD_UID).and_then(|uid| reader.uid(uid)), None)
                    }
                };
                let Some(found @ Found::Pod { pod, .. }) = found else { return None };
                match &matched {
                    Some((Found::Pod { pod: earlier, .. }, _)) if earlier.uid != pod.uid => return None,
                    Some(_) => {}
                    None => matched = Some((found, ip)),
                }
            }
            return matched;
        }
        None
    }
}

/// Lookups of one batch, added to the cache's counters once.
#[derive(Default)]
struct Counts {
    hit: u64,
    grace: u64,
    miss: u64,
}

impl Counts {
    fn note<'a>(&mut self, found: Option<Found<'a>>) -> Option<Found<'a>> {
        match found {
            Some(Found::Pod { grace: true, .. }) => self.grace += 1,
            Some(_) => self.hit += 1,
            None => self.miss += 1,
        }
        found
    }
}

#[async_trait]
impl Processor for K8sAttributesProcessor {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        if self.config.passthrough {
            return Ok(());
        }
        let settings = self.cache_settings()?;
        let mut created = false;
        let cache = ctx.services.get_or_try_init(|| {
            created = true;
            K8sCache::new(settings.clone())
        })?;
        if cache.settings() != &settings {
            return Err(K8sAttributesError::DifferentCache { id: self.id.clone() }.into());
        }
        if created {
            ctx.telemetry.register(cache.collector());
            if let Some(health) = ctx.services.get::<Health>() {
                let weak = Arc::downgrade(&cache);
                health.add_check("kubernetes metadata cache", move || weak.upgrade().map_or(Ok(()), |c| c.readiness()));
            }
        }
        let view = cache.register_view(self.rules.clone()).await;
        cache.start().await.map_err(K8sAttributesError::from)?;
        if self.config.wait_for_metadata {
            cache.wait_synced(self.config.wait_for_metadata_timeout).await.map_err(K8sAttributesError::from)?;
        }
        self.renderer = Some(Renderer::new(self.selection, view, &self.rules));
        self.cache = Some(cache);
        Ok(())
    }

    async fn run(self: Box<Self>, mut ctx: ProcessorContext) -> Result<(), ComponentError> {
        let mut scratch: Vec<KeyValue> = Vec::with_capacity(64);
        while let Some(payload) = ctx.input.recv().await {
            let labelled = match payload {
                Payload::Flows(f) => Payload::from(self.label_flows(Arc::unwrap_or_clone(f), &mut scratch)),
                Payload::Metrics(m) => Payload::from(self.label_metrics(Arc::unwrap_or_clone(m), &mut scratch)),
            };
            ctx.output.send(labelled).await?;
        }
        Ok(())
    }
}
