//! Starting, running and stopping a graph: exporters start first, then connectors, processors
//! and receivers; on stop, receivers stop first, processors and connectors drain and flush,
//! exporters flush, all within the shutdown timeout, and whatever is still queued when it passes
//! is logged and counted as dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::PipelineError;
use super::channel::{CHANNEL_CAPACITY, Input, Link, Output};
use super::component::{
    ComponentError, Connector, ConnectorContext, Exporter, ExporterContext, Processor, ProcessorContext, Receiver,
    ReceiverContext, StartContext,
};
use super::component::{ExtensionContext, GraphSummary};
use super::graph::{ComponentNode, ExtensionNode, Graph, Sink, Source};
use super::services::Services;
use crate::config::ComponentId;
use crate::ebpf::preflight::{self, Needs};
use crate::model::Signal;
use crate::telemetry::{ComponentKind, ComponentStats, StatsRegistry};

/// Result of a completed run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Components whose run ended with an error, with the error text.
    pub failed: Vec<(String, String)>,
    /// Items still queued and dropped because the shutdown timeout passed.
    pub dropped_at_shutdown: u64,
}

/// A component of any kind.
enum Component {
    Receiver(Box<dyn Receiver>),
    Processor(Box<dyn Processor>),
    Exporter(Box<dyn Exporter>),
    Connector(Box<dyn Connector>),
}

impl Component {
    fn kind(&self) -> ComponentKind {
        match self {
            Component::Receiver(_) => ComponentKind::Receiver,
            Component::Processor(_) => ComponentKind::Processor,
            Component::Exporter(_) => ComponentKind::Exporter,
            Component::Connector(_) => ComponentKind::Connector,
        }
    }

    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        match self {
            Component::Receiver(c) => c.start(ctx).await,
            Component::Processor(c) => c.start(ctx).await,
            Component::Exporter(c) => c.start(ctx).await,
            Component::Connector(c) => c.start(ctx).await,
        }
    }
}

/// One component with its channels, before it runs.
struct Stage {
    id: ComponentId,
    component: Component,
    stats: Arc<ComponentStats>,
    /// Its input channel (processors, exporters, connectors).
    input: Option<Input>,
    /// Where it sends (receivers, processors, connectors).
    output: Output,
    /// Receivers and connectors: the signals some pipeline consumes from it; processors and
    /// exporters: the signals that reach it.
    signals: Vec<Signal>,
}

impl Stage {
    /// A stage that only sends (a receiver).
    fn source<C: ?Sized>(node: ComponentNode<C>, wrap: fn(Box<C>) -> Component, telemetry: &StatsRegistry) -> Self {
        let component = wrap(node.component);
        let stats = telemetry.component(component.kind(), &node.id.to_string(), None);
        let output = Output::for_receiver(stats.clone());
        Stage { id: node.id, component, stats, input: None, output, signals: Vec::new() }
    }

    /// A stage with an input channel, and the link that sends into it.
    fn with_input<C: ?Sized>(
        node: ComponentNode<C>,
        wrap: fn(Box<C>) -> Component,
        telemetry: &StatsRegistry,
        pipeline: Option<String>,
    ) -> (Self, Link) {
        let component = wrap(node.component);
        let stats = telemetry.component(component.kind(), &node.id.to_string(), pipeline);
        let (link, input) = Input::channel(CHANNEL_CAPACITY, stats.clone());
        stats.add_queue_probe(link.downgrade_probe());
        let output = Output::new(stats.clone());
        (Stage { id: node.id, component, stats, input: Some(input), output, signals: Vec::new() }, link)
    }

    fn route(&mut self, signal: Signal, to: &[Link]) {
        for link in to {
            self.output.add_route(signal, link.clone());
        }
        self.add_signal(signal);
    }

    fn add_signal(&mut self, signal: Signal) {
        if !self.signals.contains(&signal) {
            self.signals.push(signal);
        }
    }
}

/// Every stage of a graph, wired, in start order: exporters, connectors, processors (the
/// pipelines' last stages first), receivers.
struct Wiring {
    stages: Vec<Stage>,
}

impl Wiring {
    fn new(graph: Graph, telemetry: &StatsRegistry) -> Self {
        let Graph { receivers, pipelines, connectors, exporters, .. } = graph;
        let (mut exporter_stages, exporter_links): (Vec<_>, Vec<_>) =
            exporters.into_iter().map(|n| Stage::with_input(n, Component::Exporter, telemetry, None)).unzip();
        let (mut connector_stages, connector_links): (Vec<_>, Vec<_>) =
            connectors.into_iter().map(|n| Stage::with_input(n, Component::Connector, telemetry, None)).unzip();
        let mut receiver_stages: Vec<_> =
            receivers.into_iter().map(|n| Stage::source(n, Component::Receiver, telemetry)).collect();

        // Pipelines come upstream first; each pipeline's processors are collected front to back.
        let mut processor_stages = Vec::new();
        for pipeline in pipelines {
            let signal = pipeline.id.signal;
            let mut next: Vec<Link> = Vec::new();
            for sink in &pipeline.sinks {
                match *sink {
                    Sink::Exporter(i) => {
                        next.push(exporter_links[i].clone());
                        exporter_stages[i].add_signal(signal);
                    }
                    Sink::Connector(i) => next.push(connector_links[i].clone()),
                }
            }
            // Back to front, so each processor knows its successor.
            let mut chain = Vec::new();
            for node in pipeline.processors.into_iter().rev() {
                let (mut stage, link) =
                    Stage::with_input(node, Component::Processor, telemetry, Some(pipeline.id.to_string()));
                stage.route(signal, &next);
                next = vec![link];
                chain.push(stage);
            }
            chain.reverse();
            processor_stages.extend(chain);
            for source in &pipeline.sources {
                match *source {
                    Source::Receiver(i) => receiver_stages[i].route(signal, &next),
                    Source::Connector(i) => connector_stages[i].route(signal, &next),
                }
            }
        }
        // The links kept for wiring go now: an input closes once every upstream stage has stopped.
        drop(exporter_links);
        drop(connector_links);
        // Start downstream first: the last processor of the last pipeline first.
        processor_stages.reverse();
        let stages = exporter_stages.into_iter().chain(connector_stages).chain(processor_stages).chain(receiver_stages);
        Wiring { stages: stages.collect() }
    }

    /// Starts every stage in order; the first failure stops the start (nothing runs yet).
    async fn start(
        &mut self,
        telemetry: &Arc<StatsRegistry>,
        services: &Arc<Services>,
    ) -> Result<Vec<StartContext>, PipelineError> {
        let needs: Vec<(String, Needs)> = self
            .stages
            .iter()
            .filter_map(|stage| match &stage.component {
                Component::Receiver(r) => r.probe_needs().map(|n| (stage.id.to_string(), n)),
                _ => None,
            })
            .collect();
        if !needs.is_empty() {
            preflight::check_all(&needs)?;
        }
        let mut contexts = Vec::with_capacity(self.stages.len());
        for stage in &mut self.stages {
            let ctx = StartContext {
                id: stage.id.clone(),
                signals: stage.signals.clone(),
                stats: stage.stats.clone(),
                telemetry: telemetry.clone(),
                services: services.clone(),
            };
            stage.component.start(&ctx).await.map_err(|source| PipelineError::Start {
                kind: stage.component.kind().as_str(),
                id: stage.id.to_string(),
                source,
            })?;
            contexts.push(ctx);
        }
        Ok(contexts)
    }

    /// Spawns every stage's task.
    fn spawn(self, contexts: Vec<StartContext>, shutdown: &CancellationToken, deadline: &CancellationToken) -> Running {
        let mut running = Running::default();
        for (stage, start) in self.stages.into_iter().zip(contexts) {
            let Stage { id, component, stats, input, output, .. } = stage;
            let kind = component.kind();
            let handle = match (component, input) {
                (Component::Receiver(c), _) => {
                    tokio::spawn(c.run(ReceiverContext { output, shutdown: shutdown.clone(), start }))
                }
                (Component::Processor(c), Some(input)) => {
                    tokio::spawn(c.run(ProcessorContext { input, output, start }))
                }
                (Component::Connector(c), Some(input)) => {
                    tokio::spawn(c.run(ConnectorContext { input, output, start }))
                }
                (Component::Exporter(c), Some(input)) => {
                    tokio::spawn(c.run(ExporterContext { input, deadline: deadline.clone(), start }))
                }
                // Every stage but a receiver is made by `Stage::with_input`.
                (_, None) => continue,
            };
            running.tasks.push(Task { kind, id: id.to_string(), stats, handle });
        }
        running
    }
}

struct Task {
    kind: ComponentKind,
    id: String,
    stats: Arc<ComponentStats>,
    handle: JoinHandle<Result<(), ComponentError>>,
}

/// The running tasks, in start order.
#[derive(Default)]
struct Running {
    tasks: Vec<Task>,
}

impl Running {
    fn count(&self, kind: ComponentKind) -> usize {
        self.tasks.iter().filter(|t| t.kind == kind).count()
    }

    /// Resolves when every receiver has finished on its own.
    async fn receivers_done(&self) {
        while !self.tasks.iter().filter(|t| t.kind == ComponentKind::Receiver).all(|t| t.handle.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the tasks in stop order (receivers first, exporters last) until `timeout`
    /// passes; exporters are told shortly before the end so they can persist or count what is left.
    async fn stop(self, timeout: Duration, deadline: CancellationToken) -> RunReport {
        let end = tokio::time::Instant::now() + timeout;
        let margin = (timeout / 10).min(Duration::from_secs(2));
        let deadline_timer = tokio::spawn(async move {
            tokio::time::sleep_until(end - margin).await;
            deadline.cancel();
        });
        let mut report = RunReport::default();
        // Start order reversed is stop order: receivers, processors, connectors, exporters.
        for task in self.tasks.into_iter().rev() {
            finish(task, end, &mut report).await;
        }
        deadline_timer.abort();
        report
    }
}

impl Graph {
    /// Starts every component (each sees `services`), calls `on_ready`, runs until `stop`
    /// completes (or every receiver has finished on its own), then shuts down in order within
    /// `service.shutdown_timeout`.
    pub async fn run(
        self,
        telemetry: Arc<StatsRegistry>,
        services: Arc<Services>,
        stop: impl Future<Output = ()>,
        on_ready: impl FnOnce(),
    ) -> Result<RunReport, PipelineError> {
        let timeout = self.service.shutdown_timeout;
        let mut graph = self;
        let summary = Arc::new(graph.summary.clone());
        let extensions =
            Extensions::start(std::mem::take(&mut graph.extensions), &services, &telemetry, summary).await?;
        let mut wiring = Wiring::new(graph, &telemetry);
        let contexts = match wiring.start(&telemetry, &services).await {
            Ok(c) => c,
            Err(e) => {
                extensions.stop().await;
                return Err(e);
            }
        };
        let (shutdown, deadline) = (CancellationToken::new(), CancellationToken::new());
        let running = wiring.spawn(contexts, &shutdown, &deadline);
        info!(
            receivers = running.count(ComponentKind::Receiver),
            processors = running.count(ComponentKind::Processor),
            connectors = running.count(ComponentKind::Connector),
            exporters = running.count(ComponentKind::Exporter),
            "pipelines running"
        );
        on_ready();

        tokio::select! {
            _ = stop => info!(timeout = ?timeout, "stopping: receivers first, then processors and connectors, then exporters"),
            _ = running.receivers_done() => info!("all receivers finished; draining pipelines"),
        }
        shutdown.cancel();
        let report = running.stop(timeout, deadline).await;
        extensions.stop().await;
        if report.dropped_at_shutdown > 0 {
            warn!(items = report.dropped_at_shutdown, "shutdown timeout passed; queued data was dropped");
        } else {
            info!("stopped cleanly; everything accepted was flushed");
        }
        Ok(report)
    }
}

/// Longest an extension may take to stop once the pipelines have stopped.
const EXTENSION_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The running extensions: started before every component, stopped after all of them.
struct Extensions {
    shutdown: CancellationToken,
    tasks: Vec<(String, JoinHandle<Result<(), ComponentError>>)>,
}

impl Extensions {
    /// Starts every extension in order and spawns it; the first failure stops those already
    /// running and is returned.
    async fn start(
        nodes: Vec<ExtensionNode>,
        services: &Arc<Services>,
        telemetry: &Arc<StatsRegistry>,
        summary: Arc<GraphSummary>,
    ) -> Result<Self, PipelineError> {
        let mut running = Extensions { shutdown: CancellationToken::new(), tasks: Vec::new() };
        for node in nodes {
            let ctx = ExtensionContext {
                id: node.id.clone(),
                services: services.clone(),
                telemetry: telemetry.clone(),
                summary: summary.clone(),
            };
            let mut extension = node.component;
            if let Err(source) = extension.start(&ctx).await {
                running.stop().await;
                return Err(PipelineError::Start { kind: "extension", id: node.id.to_string(), source });
            }
            let handle = tokio::spawn(extension.run(ctx, running.shutdown.clone()));
            running.tasks.push((node.id.to_string(), handle));
        }
        Ok(running)
    }

    /// Tells every extension to stop and waits for them (each at most [`EXTENSION_STOP_TIMEOUT`]).
    async fn stop(self) {
        self.shutdown.cancel();
        for (id, mut handle) in self.tasks {
            match tokio::time::timeout(EXTENSION_STOP_TIMEOUT, &mut handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => error!(kind = "extension", %id, error = %e, "extension stopped with an error"),
                Ok(Err(e)) => error!(kind = "extension", %id, error = %e, "extension task panicked"),
                Err(_) => {
                    handle.abort();
                    warn!(kind = "extension", %id, "extension did not stop in time; aborted");
                }
            }
        }
    }
}

async fn finish(mut task: Task, end: tokio::time::Instant, report: &mut RunReport) {
    match tokio::time::timeout_at(end, &mut task.handle).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            error!(kind = task.kind.as_str(), id = %task.id, error = %e, "component stopped with an error");
            report.failed.push((task.id.clone(), e.to_string()));
        }
        Ok(Err(join)) => {
            error!(kind = task.kind.as_str(), id = %task.id, error = %join, "component task panicked");
            report.failed.push((task.id.clone(), join.to_string()));
        }
        Err(_) => {
            task.handle.abort();
            let (queued, _) = task.stats.queue();
            let mut items = 0;
            for signal in Signal::ALL {
                let (received, sent, dropped, _) = task.stats.snapshot(signal);
                let pending = received.saturating_sub(sent + dropped) + task.stats.queued_items(signal);
                if pending > 0 {
                    task.stats.add_dropped(signal, pending);
                    items += pending;
                }
            }
            report.dropped_at_shutdown += items;
            warn!(
                kind = task.kind.as_str(),
                id = %task.id,
                queued_batches = queued,
                items_in_component = items,
                "shutdown timeout passed before the component finished; aborted"
            );
        }
    }
}
