//! The `forward` connector (otelcol's forwardconnector): what the pipelines that export to it
//! deliver goes unchanged, and without a copy, into every pipeline that lists it as a receiver.
//! Fan-in (several pipelines into one) and fan-out (one into several) are both just routing.

mod config;

use async_trait::async_trait;

pub use config::ForwardConfig;

use crate::config::parse_component;
use crate::model::Signal;
use crate::pipeline::{BuildContext, Built, ComponentError, Connector, ConnectorContext, Factory};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Connector,
        type_name: "forward",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[(Signal::Metrics, Signal::Metrics), (Signal::Flows, Signal::Flows)],
        description: "passes data unchanged from the pipelines that export to it into the pipelines it feeds",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let _: ForwardConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Connector(Box::new(ForwardConnector)))
        },
    }
}

/// Passes every batch on as it is; its acknowledgements travel with it.
pub struct ForwardConnector;

#[async_trait]
impl Connector for ForwardConnector {
    async fn run(self: Box<Self>, mut ctx: ConnectorContext) -> Result<(), ComponentError> {
        while let Some(payload) = ctx.input.recv().await {
            // A batch the fed pipelines can no longer take is counted as failed by the output
            // (and its acknowledgements fail); keep draining so upstream never blocks.
            let _ = ctx.output.send(payload).await;
        }
        Ok(())
    }
}
