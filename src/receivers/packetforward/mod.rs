//! `packetforward` receiver: packets and bytes per interface and direction, counted in the kernel
//! at TC/TCX and read every `collection_interval`.
//!
//! * `network.forward.packets` (`{packet}`) and `network.forward.bytes` (`By`, frame bytes with
//!   the L2 header, as `ip -s link` counts them): cumulative monotonic sums with
//!   `network.interface.name` and `network.io.direction` (`receive` / `transmit`). Each series
//!   starts when its interface was attached.
//! * Interfaces come from netlink link events ([`LinkWatcher`]): one that appears (a pod's veth)
//!   is attached as soon as it is up; one that is deleted is detached, reported one last time,
//!   and forgotten.

mod config;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use smol_str::SmolStr;

pub use config::{AttachModeConfig, PacketforwardConfig};

use super::probe::links::{LinkChange, LinkError, LinkWatcher};
use super::probe::telemetry::{self as ebpf_telemetry, EbpfCollector, ProbeHealth};
use crate::config::parse_component;
use crate::ebpf::{AttachMode, Direction, ForwardCount, ForwardError, ForwardOptions, ForwardProbe, ProbeTelemetry};
use crate::model::semconv::{self, attr};
use crate::model::{Attributes, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope, Signal, now_unix_nano};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, StartContext};
use crate::telemetry::ComponentKind;

/// The initial link dump answers at once; this only guards against a silent socket.
const DUMP_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the packetforward receiver.
#[derive(Debug, thiserror::Error)]
pub enum PacketforwardError {
    /// Loading, attaching or reading the probe failed (a missing capability is listed here).
    #[error(transparent)]
    Probe(#[from] ForwardError),
    /// Watching the interfaces failed.
    #[error(transparent)]
    Links(#[from] LinkError),
    /// `attach_mode: tcx` on a kernel without TCX.
    #[error("attach_mode is tcx but this kernel has no TCX (Linux 6.6+); use attach_mode: auto or clsact")]
    NoTcx,
    /// The kernel did not finish listing the interfaces.
    #[error("the kernel did not list the interfaces within {0:?} (RTM_GETLINK dump)")]
    DumpTimeout(Duration),
    /// A blocking eBPF call panicked or was cancelled.
    #[error("the packetforward worker thread failed: {0}")]
    Worker(String),
    /// `run` without a successful `start`.
    #[error("the packetforward receiver was not started")]
    NotStarted,
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "packetforward",
        aliases: &[],
        signals: &[Signal::Metrics],
        connects: &[],
        description: "packets and bytes per interface and direction, counted in the kernel at TC/TCX (eBPF)",
        metrics: &[semconv::NETWORK_FORWARD_PACKETS, semconv::NETWORK_FORWARD_BYTES],
        build: |ctx: &BuildContext<'_>| {
            let config: PacketforwardConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(Packetforward::new(config, ctx.resource.clone()))))
        },
    }
}

/// An interface we count on.
#[derive(Debug, Clone)]
struct Attached {
    name: SmolStr,
    /// When it was attached (ns since the epoch): the start of its cumulative series.
    since: u64,
}

/// One interface's counts for one direction, ready to become points.
#[derive(Debug, Clone)]
struct Reading {
    name: SmolStr,
    since: u64,
    count: ForwardCount,
}

/// The probe and where it is attached; only touched from blocking threads.
struct Forwarder {
    probe: ForwardProbe,
    attached: BTreeMap<u32, Attached>,
    /// Last counts of interfaces that went away, reported once by the next collection.
    finals: Vec<Reading>,
}

impl ProbeHealth for Forwarder {
    fn probe_telemetry(&self) -> ProbeTelemetry {
        self.probe.telemetry()
    }
}

impl Forwarder {
    fn apply(&mut self, config: &PacketforwardConfig, change: &LinkChange) {
        match change {
            LinkChange::Changed(link) => {
                if let Some(a) = self.attached.get_mut(&link.index) {
                    if !config.selects_link(link) {
                        // renamed out of the selection, or its peer moved into a pod
                        let why = if config.selects(&link.name) {
                            "now a pod interface left to flows"
                        } else {
                            "renamed to an interface not selected"
                        };
                        self.retire(link.index, why);
                    } else if a.name != link.name {
                        tracing::info!(from = %a.name, to = %link.name, ifindex = link.index, "interface renamed");
                        a.name = link.name.clone();
                    }
                } else if link.up && config.selects_link(link) {
                    match self.probe.attach_index(link.index) {
                        Ok(()) => {
                            tracing::info!(interface = %link.name, ifindex = link.index, "counting packets");
                            self.attached
                                .insert(link.index, Attached { name: link.name.clone(), since: now_unix_nano() });
                        }
                        Err(e) => {
                            tracing::warn!(interface = %link.name, error = %e, "cannot count packets on interface")
                        }
                    }
                }
            }
            LinkChange::Removed(index) => {
                if self.attached.contains_key(index) {
                    self.retire(*index, "interface removed");
                }
            }
            // only a watcher opened with routes reports these
            LinkChange::DefaultRoutes => {}
        }
    }

    /// Detaches from `index`, keeps its last counts for the next collection, forgets it.
    fn retire(&mut self, index: u32, why: &str) {
        let Some(a) = self.attached.remove(&index) else {
            return;
        };
        if let Err(e) = self.probe.detach(index) {
            tracing::warn!(interface = %a.name, error = %e, "cannot detach");
        }
        match self.probe.counters() {
            Ok(counts) => self.finals.extend(counts.into_iter().filter(|c| c.ifindex == index).map(|count| Reading {
                name: a.name.clone(),
                since: a.since,
                count,
            })),
            Err(e) => tracing::warn!(interface = %a.name, error = %e, "cannot read the last counts"),
        }
        if let Err(e) = self.probe.forget(index) {
            tracing::warn!(interface = %a.name, error = %e, "cannot drop the counters");
        }
        tracing::info!(interface = %a.name, ifindex = index, reason = why, "stopped counting packets");
    }

    /// Counts of every attached interface and direction (0 before its first packet, so every
    /// interface has its series from the moment it is attached), then the final ones.
    fn read(&mut self) -> Result<Vec<Reading>, ForwardError> {
        let counts = self.probe.counters()?;
        let mut out = std::mem::take(&mut self.finals);
        for (&ifindex, a) in &self.attached {
            for direction in [Direction::Ingress, Direction::Egress] {
                let count = counts.iter().find(|c| c.ifindex == ifindex && c.direction == direction).copied();
                let count = count.unwrap_or(ForwardCount { ifindex, direction, packets: 0, bytes: 0 });
                out.push(Reading { name: a.name.clone(), since: a.since, count });
            }
        }
        Ok(out)
    }
}

/// Runs `f` on the forwarder on a blocking thread.
async fn on_forwarder<T: Send + 'static>(
    forwarder: &Arc<Mutex<Forwarder>>,
    f: impl FnOnce(&mut Forwarder) -> T + Send + 'static,
) -> Result<T, PacketforwardError> {
    let forwarder = forwarder.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = forwarder.lock().map_err(|_| PacketforwardError::Worker("a previous call panicked".into()))?;
        Ok(f(&mut guard))
    })
    .await
    .map_err(|e| PacketforwardError::Worker(e.to_string()))?
}

/// What `start` acquired.
struct Started {
    forwarder: Arc<Mutex<Forwarder>>,
    links: LinkWatcher,
    _run_time_stats: Option<crate::ebpf::RunTimeStats>,
}

/// The receiver.
pub struct Packetforward {
    config: Arc<PacketforwardConfig>,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    started: Option<Started>,
}

impl Packetforward {
    /// A receiver with the given settings.
    pub fn new(config: PacketforwardConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/packetforward".into(), version: env!("CARGO_PKG_VERSION").into() });
        Packetforward { config: Arc::new(config), resource, scope, started: None }
    }

    fn to_metrics(&self, readings: &[Reading], now: u64) -> MetricBatch {
        let mut packets = Vec::with_capacity(readings.len());
        let mut bytes = Vec::with_capacity(readings.len());
        for r in readings {
            let direction = match r.count.direction {
                Direction::Ingress => "receive",
                Direction::Egress => "transmit",
                Direction::Unknown => continue,
            };
            let attrs = Attributes::from_pairs([
                (attr::NETWORK_INTERFACE_NAME, r.name.clone()),
                (attr::NETWORK_IO_DIRECTION, SmolStr::new_static(direction)),
            ]);
            packets.push(NumberPoint::count(attrs.clone(), r.since, now, r.count.packets));
            bytes.push(NumberPoint::count(attrs, r.since, now, r.count.bytes));
        }
        let metrics = vec![
            Metric::from_def(&semconv::NETWORK_FORWARD_PACKETS, packets),
            Metric::from_def(&semconv::NETWORK_FORWARD_BYTES, bytes),
        ];
        MetricBatch::single(self.resource.clone(), self.scope.clone(), metrics)
    }

    /// Reads the counters and sends them; false when the pipeline has stopped.
    async fn collect(&self, forwarder: &Arc<Mutex<Forwarder>>, ctx: &ReceiverContext) -> bool {
        match on_forwarder(forwarder, Forwarder::read).await {
            Ok(Ok(readings)) if readings.is_empty() => true,
            Ok(Ok(readings)) => {
                let batch = self.to_metrics(&readings, now_unix_nano());
                ctx.output.send(Payload::from(batch)).await.is_ok()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "packetforward collection failed");
                ctx.start.stats.add_failed(Signal::Metrics, 1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "packetforward collection failed");
                true
            }
        }
    }
}

#[async_trait]
impl Receiver for Packetforward {
    fn probe_needs(&self) -> Option<crate::ebpf::preflight::Needs> {
        Some(crate::ebpf::preflight::Needs::TC)
    }

    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        let options = ForwardOptions { mode: self.config.attach_mode.into(), ..ForwardOptions::default() };
        let probe = tokio::task::spawn_blocking(move || ForwardProbe::load_with(options))
            .await
            .map_err(|e| PacketforwardError::Worker(e.to_string()))?
            .map_err(PacketforwardError::from)?;
        if options.mode == AttachMode::Tcx && !crate::ebpf::preflight::tcx_supported() {
            return Err(PacketforwardError::NoTcx.into());
        }
        let loaded_at = now_unix_nano();
        let run_time_stats = ebpf_telemetry::run_time_stats(ctx.telemetry.level(), ctx.id.to_string().as_str());
        let forwarder = Arc::new(Mutex::new(Forwarder { probe, attached: BTreeMap::new(), finals: Vec::new() }));

        // Subscribe before listing, so an interface created meanwhile is not missed.
        let mut links = LinkWatcher::open().map_err(PacketforwardError::from)?;
        let mut changes = Vec::new();
        while links.dumping() {
            tokio::time::timeout(DUMP_TIMEOUT, links.changes(&mut changes))
                .await
                .map_err(|_| PacketforwardError::DumpTimeout(DUMP_TIMEOUT))?
                .map_err(PacketforwardError::from)?;
        }
        let config = self.config.clone();
        let attached = on_forwarder(&forwarder, move |f| {
            for change in &changes {
                f.apply(&config, change);
            }
            f.attached.values().map(|a| a.name.to_string()).collect::<Vec<_>>()
        })
        .await?;
        for p in self.config.interfaces.iter().filter(|p| p.is_literal()) {
            if !attached.iter().any(|a| a == p.as_str()) {
                tracing::warn!(interface = p.as_str(), "interface not present or not up yet; it is counted once it is");
            }
        }
        tracing::info!(interfaces = ?attached, "packetforward attached");
        if ebpf_telemetry::reports(ctx.telemetry.level()) {
            let collector = EbpfCollector::new(&ctx.id.to_string(), Arc::downgrade(&forwarder), false, loaded_at);
            ctx.telemetry.register(Arc::new(collector));
        }
        self.started = Some(Started { forwarder, links, _run_time_stats: run_time_stats });
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let Started { forwarder, mut links, _run_time_stats } =
            self.started.take().ok_or(PacketforwardError::NotStarted)?;
        let mut ticker = tokio::time::interval(self.config.collection_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = Vec::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if !self.collect(&forwarder, &ctx).await {
                        break;
                    }
                }
                result = links.changes(&mut changes) => match result {
                    Ok(0) => {}
                    Ok(_) => {
                        let config = self.config.clone();
                        let batch = std::mem::take(&mut changes);
                        on_forwarder(&forwarder, move |f| {
                            for change in &batch {
                                f.apply(&config, change);
                            }
                        })
                        .await?;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching interfaces failed; retrying in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                _ = ctx.shutdown.cancelled() => {
                    // One last reading, so a delta-based backend sees the final counts.
                    self.collect(&forwarder, &ctx).await;
                    break;
                }
            }
        }
        // Detach everywhere before returning (the collector only holds a weak reference).
        drop(links);
        tokio::task::spawn_blocking(move || drop(forwarder))
            .await
            .map_err(|e| PacketforwardError::Worker(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_become_the_two_defined_counters_per_interface_and_direction() {
        let rx = Packetforward::new(PacketforwardConfig::default(), Arc::new(Resource::default()));
        let reading = |direction, packets| Reading {
            name: "veth0".into(),
            since: 5,
            count: ForwardCount { ifindex: 7, direction, packets, bytes: packets * 100 },
        };
        let readings = [reading(Direction::Ingress, 3), reading(Direction::Egress, 4), reading(Direction::Unknown, 9)];
        let batch = rx.to_metrics(&readings, 10);
        semconv::assert_as_defined(factory().metrics, &batch);
        let (_, _, bytes) = batch.iter_metrics().nth(1).expect("bytes");
        let crate::model::MetricData::Sum(sum) = &bytes.data else { panic!("a sum") };
        let values: Vec<_> = sum
            .points
            .iter()
            .map(|p| (p.attributes.get_str(attr::NETWORK_IO_DIRECTION), p.value, p.start_time_unix_nano))
            .collect();
        let int = crate::model::Number::Int;
        assert_eq!(values, [(Some("receive"), int(300), 5), (Some("transmit"), int(400), 5)]);
    }
}
