//! The `batch` processor: groups items into batches by size or time, as otelcol's does.

mod config;

use async_trait::async_trait;
use tokio::time::{Instant, sleep_until};

pub use config::BatchConfig;

use crate::config::parse_component;
use crate::model::{Batcher, Signal};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Output, Processor, ProcessorContext};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Processor,
        type_name: "batch",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "groups data points or flow records into batches by size (send_batch_size) or time (timeout)",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: BatchConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Processor(Box::new(BatchProcessor::new(config))))
        },
    }
}

/// Accumulates items until `send_batch_size` or `timeout`, then sends.
pub struct BatchProcessor {
    config: BatchConfig,
    batcher: Batcher,
}

impl BatchProcessor {
    /// A processor with the given settings.
    pub fn new(config: BatchConfig) -> Self {
        let batcher = Batcher::new(config.send_batch_size, config.send_batch_max_size);
        BatchProcessor { config, batcher }
    }

    /// Sends full batches (all pending items when `all`), honouring `send_batch_max_size`.
    async fn flush(&mut self, output: &Output, all: bool) -> Result<(), ComponentError> {
        while let Some(batch) = self.batcher.take(all) {
            output.send(batch).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Processor for BatchProcessor {
    async fn run(mut self: Box<Self>, mut ctx: ProcessorContext) -> Result<(), ComponentError> {
        let mut deadline: Option<Instant> = None;
        loop {
            let timer = async {
                match deadline {
                    Some(d) => sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                payload = ctx.input.recv() => match payload {
                    Some(p) => {
                        if self.batcher.pending() == 0 {
                            deadline = Some(Instant::now() + self.config.timeout);
                        }
                        self.batcher.add(p);
                        if self.config.timeout.is_zero() {
                            self.flush(&ctx.output, true).await?;
                        } else {
                            self.flush(&ctx.output, false).await?;
                        }
                        if self.batcher.pending() == 0 {
                            deadline = None;
                        }
                    }
                    None => {
                        self.flush(&ctx.output, true).await?;
                        return Ok(());
                    }
                },
                _ = timer => {
                    self.flush(&ctx.output, true).await?;
                    deadline = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::model::{Attributes, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope};
    use crate::pipeline::{Input, StartContext};
    use crate::telemetry::{ComponentStats, StatsRegistry};

    fn points(n: usize) -> Payload {
        let pts = (0..n).map(|i| NumberPoint::int(Attributes::new(), 0, 1, i as i64)).collect();
        Payload::from(MetricBatch::single(
            Arc::new(Resource::default()),
            Arc::new(Scope::default()),
            vec![Metric::counter("c", "1", "", pts)],
        ))
    }

    /// Runs the processor on `inputs` sent at once, and returns the sizes of the batches it emits
    /// before `wait` passes (the input stays open meanwhile), then after the input closes.
    async fn run(config: BatchConfig, inputs: &[usize], wait: Duration) -> (Vec<usize>, Vec<usize>) {
        let stats = Arc::new(ComponentStats::new(ComponentKind::Processor, "batch", None));
        let (in_link, input) = Input::channel(64, stats.clone());
        let sink_stats = Arc::new(ComponentStats::new(ComponentKind::Exporter, "sink", None));
        let (out_link, mut out) = Input::channel(64, sink_stats);
        let output = Output::detached(stats.clone(), vec![(Signal::Metrics, out_link)]);
        let start = StartContext {
            id: crate::config::ComponentId::of_type("batch"),
            signals: vec![Signal::Metrics],
            stats,
            telemetry: Arc::new(StatsRegistry::default()),
            services: Default::default(),
        };
        let task = tokio::spawn(Box::new(BatchProcessor::new(config)).run(ProcessorContext { input, output, start }));
        for n in inputs {
            in_link.send(points(*n)).await.unwrap();
        }
        tokio::time::sleep(wait).await;
        let mut early = Vec::new();
        while let Some(p) = out.try_recv() {
            early.push(p.items() as usize);
        }
        drop(in_link);
        task.await.unwrap().unwrap();
        let mut late = Vec::new();
        while let Some(p) = out.recv().await {
            late.push(p.items() as usize);
        }
        (early, late)
    }

    #[tokio::test(start_paused = true)]
    async fn sends_when_the_size_is_reached_and_keeps_the_rest_until_the_timeout() {
        let config = BatchConfig { send_batch_size: 10, timeout: Duration::from_secs(60), send_batch_max_size: 0 };
        let (early, late) = run(config, &[4, 4, 4, 3], Duration::from_secs(1)).await;
        assert_eq!(early, vec![12]);
        assert_eq!(late, vec![3], "the rest is flushed when the input closes");
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_flushes_a_partial_batch() {
        let config = BatchConfig { send_batch_size: 100, timeout: Duration::from_millis(200), send_batch_max_size: 0 };
        let (early, late) = run(config, &[5, 6], Duration::from_millis(500)).await;
        assert_eq!(early, vec![11]);
        assert!(late.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn max_size_splits_large_batches_without_losing_points() {
        let config = BatchConfig { send_batch_size: 10, timeout: Duration::from_secs(60), send_batch_max_size: 10 };
        let (early, late) = run(config, &[25, 3], Duration::from_secs(1)).await;
        assert_eq!(early, vec![10, 10]);
        assert_eq!(late, vec![8]);
    }
}
