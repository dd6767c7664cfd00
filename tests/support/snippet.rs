//! Config snippets through the real config path: `fovea::config::load_str` (errors name the
//! snippet `test.yaml`), the component parser and the graph build; and an idle receiver for graphs
//! whose test is about another component.
//!
//! Include it with `#[path = "support/snippet.rs"] mod snippet;`.

#![allow(dead_code)]

use std::sync::Arc;

use fovea::config::{self, ComponentConfig, ConfigError, Document, parse_component};
use fovea::model::{Resource, Signal};
use fovea::pipeline::{self, BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, Registry};
use fovea::telemetry::ComponentKind;
use serde::Deserialize;

/// The name errors give the snippet's position in.
pub const NAME: &str = "test.yaml";

/// Loads `yaml` as a config file (no environment).
pub fn load(yaml: &str) -> Result<Document, ConfigError> {
    config::load_str(NAME, yaml)
}

/// Loads `yaml` and builds its graph from `registry`.
pub fn build(yaml: &str, registry: &Registry) -> Result<pipeline::Graph, ConfigError> {
    pipeline::build(&load(yaml)?, registry, Arc::new(Resource::default()))
}

/// Parses and validates the component config at `path` (`exporters::otlp`) of `doc`.
pub fn component<C: ComponentConfig>(doc: &Document, path: &str) -> Result<C, ConfigError> {
    parse_component(doc.root.locate(path), path)
}

/// Every problem of `err`, as (path, line, message).
pub fn problems(err: &ConfigError) -> Vec<(String, u32, String)> {
    err.problems()
        .iter()
        .map(|p| (p.path.clone(), p.origin.as_ref().map_or(0, |o| o.line), p.message.clone()))
        .collect()
}

/// The idle receiver's config: nothing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IdleConfig {}

impl ComponentConfig for IdleConfig {}

/// A receiver that does nothing until stopped (the graph needs one).
struct Idle;

#[async_trait::async_trait]
impl Receiver for Idle {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// The `idle` receiver type, for metrics and flows pipelines.
pub fn idle_receiver() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "idle",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "does nothing",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let _: IdleConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(Idle)))
        },
    }
}
