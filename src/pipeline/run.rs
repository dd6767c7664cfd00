//! Starting, running and stopping a graph: exporters start first and receivers last; on stop,
//! receivers stop first, processors drain and flush, exporters flush, all within the shutdown
//! timeout, and whatever is still queued when it passes is logged and counted as dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::PipelineError;
use super::channel::{CHANNEL_CAPACITY, Input, Link, Output};
use super::component::{ComponentError, ExporterContext, ProcessorContext, ReceiverContext, StartContext};
use super::graph::Graph;
use super::services::Services;
use crate::model::Signal;
use crate::telemetry::{ComponentKind, ComponentStats, StatsRegistry};

struct Task {
    kind: ComponentKind,
    id: String,
    stats: Arc<ComponentStats>,
    handle: JoinHandle<Result<(), ComponentError>>,
}

/// Result of a completed run.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Components whose run ended with an error, with the error text.
    pub failed: Vec<(String, String)>,
    /// Items still queued and dropped because the shutdown timeout passed.
    pub dropped_at_shutdown: u64,
}

fn channel(stats: &Arc<ComponentStats>) -> (Link, Input) {
    let (link, input) = Input::channel(CHANNEL_CAPACITY, stats.clone());
    stats.add_queue_probe(link.downgrade_probe());
    (link, input)
}

impl Graph {
    /// Starts every component (each sees `services`), calls `on_ready`, runs until `stop` completes (or every receiver
    /// has finished on its own), then shuts down in order within `service.shutdown_timeout`.
    pub async fn run(
        self,
        telemetry: Arc<StatsRegistry>,
        services: Arc<Services>,
        stop: impl Future<Output = ()>,
        on_ready: impl FnOnce(),
    ) -> Result<RunReport, PipelineError> {
        let Graph { receivers, pipelines, exporters, service, .. } = self;

        // Exporter inputs.
        let mut exporter_tx = Vec::new();
        let mut exporter_parts = Vec::new();
        for node in exporters {
            let stats = telemetry.component(ComponentKind::Exporter, &node.id.to_string(), None);
            let (tx, input) = channel(&stats);
            exporter_tx.push(tx);
            exporter_parts.push((node, stats, input));
        }

        // Receiver outputs, filled while wiring pipelines.
        let mut receiver_parts: Vec<_> = receivers
            .into_iter()
            .map(|node| {
                let stats = telemetry.component(ComponentKind::Receiver, &node.id.to_string(), None);
                let output = Output::new(stats.clone());
                (node, stats, output, Vec::<Signal>::new())
            })
            .collect();

        let mut exporter_signals: Vec<Vec<Signal>> = vec![Vec::new(); exporter_parts.len()];
        let mut processor_parts = Vec::new();
        for pipeline in pipelines {
            let signal = pipeline.id.signal;
            for &e in &pipeline.exporters {
                if !exporter_signals[e].contains(&signal) {
                    exporter_signals[e].push(signal);
                }
            }
            // Build the chain back to front so each processor knows its successor.
            let mut next: Vec<Link> = pipeline.exporters.iter().map(|&e| exporter_tx[e].clone()).collect();
            let mut chain = Vec::new();
            for node in pipeline.processors.into_iter().rev() {
                let stats =
                    telemetry.component(ComponentKind::Processor, &node.id.to_string(), Some(pipeline.id.to_string()));
                let (tx, input) = channel(&stats);
                let mut output = Output::new(stats.clone());
                for n in &next {
                    output.add_route(signal, n.clone());
                }
                chain.push((node, stats, input, output, signal));
                next = vec![tx];
            }
            processor_parts.extend(chain);
            for &r in &pipeline.receivers {
                let part = &mut receiver_parts[r];
                for n in &next {
                    part.2.add_route(signal, n.clone());
                }
                if !part.3.contains(&signal) {
                    part.3.push(signal);
                }
            }
        }
        drop(exporter_tx);

        // Start: exporters, then processors, then receivers. Any failure stops everything.
        let start_ctx = |stats: &Arc<ComponentStats>, signals: Vec<Signal>, node_id| StartContext {
            id: node_id,
            signals,
            stats: stats.clone(),
            telemetry: telemetry.clone(),
            services: services.clone(),
        };
        let mut exporter_ctx = Vec::new();
        for (i, (node, stats, _)) in exporter_parts.iter_mut().enumerate() {
            let ctx = start_ctx(stats, exporter_signals[i].clone(), node.id.clone());
            node.component.start(&ctx).await.map_err(|source| PipelineError::Start {
                kind: "exporter",
                id: node.id.to_string(),
                source,
            })?;
            exporter_ctx.push(ctx);
        }
        let mut processor_ctx = Vec::new();
        for (node, stats, _, _, signal) in processor_parts.iter_mut() {
            let ctx = start_ctx(stats, vec![*signal], node.id.clone());
            node.component.start(&ctx).await.map_err(|source| PipelineError::Start {
                kind: "processor",
                id: node.id.to_string(),
                source,
            })?;
            processor_ctx.push(ctx);
        }
        let mut receiver_ctx = Vec::new();
        for (node, stats, _, signals) in receiver_parts.iter_mut() {
            let ctx = start_ctx(stats, signals.clone(), node.id.clone());
            node.component.start(&ctx).await.map_err(|source| PipelineError::Start {
                kind: "receiver",
                id: node.id.to_string(),
                source,
            })?;
            receiver_ctx.push(ctx);
        }

        // Run.
        let deadline = CancellationToken::new();
        let shutdown = CancellationToken::new();
        let mut exporter_tasks = Vec::new();
        for ((node, stats, input), start) in exporter_parts.into_iter().zip(exporter_ctx) {
            let ctx = ExporterContext { input, deadline: deadline.clone(), start };
            exporter_tasks.push(Task {
                kind: ComponentKind::Exporter,
                id: node.id.to_string(),
                stats,
                handle: tokio::spawn(node.component.run(ctx)),
            });
        }
        let mut processor_tasks = Vec::new();
        for ((node, stats, input, output, _), start) in processor_parts.into_iter().zip(processor_ctx) {
            let ctx = ProcessorContext { input, output, start };
            processor_tasks.push(Task {
                kind: ComponentKind::Processor,
                id: node.id.to_string(),
                stats,
                handle: tokio::spawn(node.component.run(ctx)),
            });
        }
        let mut receiver_tasks = Vec::new();
        for ((node, stats, output, _), start) in receiver_parts.into_iter().zip(receiver_ctx) {
            let ctx = ReceiverContext { output, shutdown: shutdown.clone(), start };
            receiver_tasks.push(Task {
                kind: ComponentKind::Receiver,
                id: node.id.to_string(),
                stats,
                handle: tokio::spawn(node.component.run(ctx)),
            });
        }
        info!(
            receivers = receiver_tasks.len(),
            processors = processor_tasks.len(),
            exporters = exporter_tasks.len(),
            "pipelines running"
        );
        on_ready();

        let receivers_done = async {
            while !receiver_tasks.iter().all(|t| t.handle.is_finished()) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = stop => info!(timeout = ?service.shutdown_timeout, "stopping: receivers first, then processors, then exporters"),
            _ = receivers_done => info!("all receivers finished; draining pipelines"),
        }
        shutdown.cancel();

        let end = tokio::time::Instant::now() + service.shutdown_timeout;
        // Exporters get a signal shortly before the end so they can persist or count what is left.
        let margin = (service.shutdown_timeout / 10).min(Duration::from_secs(2));
        let deadline_timer = {
            let deadline = deadline.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(end - margin).await;
                deadline.cancel();
            })
        };
        let mut report = RunReport::default();
        for group in [receiver_tasks, processor_tasks, exporter_tasks] {
            for task in group {
                finish(task, end, &mut report).await;
            }
        }
        deadline_timer.abort();
        if report.dropped_at_shutdown > 0 {
            warn!(items = report.dropped_at_shutdown, "shutdown timeout passed; queued data was dropped");
        } else {
            info!("stopped cleanly; everything accepted was flushed");
        }
        Ok(report)
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
