//! `flows` receiver: pod traffic aggregated per flow in the kernel, on the host side of every
//! pod interface and on the node's uplinks, drained once per `collection_interval`.
//!
//! * Flows (`kind: forward`): one record per flow and interval, observed per interface and
//!   direction: addresses, ports (the client's ephemeral port collapsed by default), protocol,
//!   packets, network-layer bytes, per-flag TCP counts, TCP handshakes and the RTT of the
//!   connection's sockets on this node. Packets that did not fit in the kernel's table come as
//!   one overflow record per interface and direction, so records always add up to the traffic.
//! * Metrics: `network.tcp.flags` (`tcp.flag`), `network.tcp.handshake.duration` and
//!   `network.tcp.rtt` (histograms, seconds), and with `forward_metrics` the `network.forward.*`
//!   counters per watched interface and direction.
//!
//! The kernel side is the shared datapath ([`crate::receivers::probe::datapath`]); this receiver
//! switches on its flows feature and drains its tables. See docs/ebpf.md for the kernel design
//! (double-buffered tables, overflow accounting, handshake and RTT hooks).

mod config;
mod latency;
mod state;
mod table;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

pub use config::{DEFAULT_POD_INTERFACES, FlowsConfig, ForwardMetrics, PortRange, PortsConfig};
pub use state::OverflowTotals;

use self::state::{FlowState, Forget, Reading};
use super::probe::datapath::{Datapath, DatapathHandle, DatapathServiceError, InterfaceSelection, Subscription};
use super::probe::telemetry::{self as ebpf_telemetry, EbpfCollector};
use crate::config::parse_component;
use crate::ebpf::{DatapathOptions, Features, FlowMaps};
use crate::model::semconv::{self, own};
use crate::model::{Attributes, Metric, NumberPoint, Payload, Resource, Scope, Signal, now_unix_nano};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, StartContext};
use crate::telemetry::{Collector, ComponentKind};

/// Errors of the flows receiver.
#[derive(Debug, thiserror::Error)]
pub enum FlowsError {
    /// The shared datapath failed (loading, attaching, a missing capability ...).
    #[error(transparent)]
    Datapath(#[from] DatapathServiceError),
    /// Reading the kernel's flow maps failed.
    #[error("cannot drain the flow tables: {0}")]
    Map(#[from] aya::maps::MapError),
    /// A blocking call panicked or was cancelled.
    #[error("the flows worker thread failed: {0}")]
    Worker(String),
    /// `run` without a successful `start`.
    #[error("the flows receiver was not started")]
    NotStarted,
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "flows",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "pod traffic per flow aggregated in the kernel on pod interfaces and uplinks: flow records, TCP flags, handshake and RTT (eBPF, TC/TCX)",
        metrics: &[
            semconv::NETWORK_TCP_FLAGS,
            semconv::NETWORK_TCP_HANDSHAKE_DURATION,
            semconv::NETWORK_TCP_RTT,
            semconv::NETWORK_FORWARD_PACKETS,
            semconv::NETWORK_FORWARD_BYTES,
        ],
        build: |ctx: &BuildContext<'_>| {
            let config: FlowsConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(Flows::new(config, ctx.resource.clone()))))
        },
    }
}

/// The agent's own metrics about overflow and drains.
struct FlowsTelemetry {
    receiver: String,
    totals: Arc<Mutex<OverflowTotals>>,
    loaded_at: u64,
}

impl Collector for FlowsTelemetry {
    fn collect(&self, _start: u64, now: u64, out: &mut Vec<Metric>) {
        let Ok(t) = self.totals.lock() else { return };
        let receiver = self.receiver.as_str();
        let mut packets = Vec::with_capacity(t.by_interface.len());
        let mut bytes = Vec::with_capacity(t.by_interface.len());
        for ((iface, direction), (p, b)) in &t.by_interface {
            let attrs = Attributes::from_pairs([
                (own::attr::RECEIVER, receiver),
                (semconv::attr::NETWORK_INTERFACE_NAME, iface.as_str()),
                (semconv::attr::NETWORK_IO_DIRECTION, direction),
            ]);
            packets.push(NumberPoint::count(attrs.clone(), self.loaded_at, now, *p));
            bytes.push(NumberPoint::count(attrs, self.loaded_at, now, *b));
        }
        let drained = NumberPoint::count(
            Attributes::from_pairs([(own::attr::RECEIVER, receiver)]),
            self.loaded_at,
            now,
            t.drained,
        );
        out.push(Metric::from_def(&own::FLOWS_DRAINED, vec![drained]));
        out.push(Metric::from_def(&own::FLOWS_OVERFLOW_PACKETS, packets));
        out.push(Metric::from_def(&own::FLOWS_OVERFLOW_BYTES, bytes));
    }
}

/// What `start` acquired.
struct Started {
    handle: DatapathHandle,
    state: FlowState,
    _run_time_stats: Option<crate::ebpf::RunTimeStats>,
}

/// The receiver.
pub struct Flows {
    config: Arc<FlowsConfig>,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    started: Option<Started>,
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, FlowsError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| FlowsError::Worker(e.to_string()))
}

/// Reads what one drain needs, under the flow maps' lock (kept short: processing happens later).
fn read(maps: &mut FlowMaps, r: &mut Reading, latency: bool) -> Result<(), aya::maps::MapError> {
    r.deltas.clear();
    let deltas = &mut r.deltas;
    maps.drain(|d| deltas.push(d))?;
    r.ifaces = maps.interface_counts()?;
    r.sockets.clear();
    if latency {
        r.handshakes = maps.handshake_histogram()?;
        let sockets = &mut r.sockets;
        maps.sockets(|s| sockets.push(s))?;
    }
    Ok(())
}

impl Flows {
    /// A receiver with the given settings.
    pub fn new(config: FlowsConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/flows".into(), version: env!("CARGO_PKG_VERSION").into() });
        Flows { config: Arc::new(config), resource, scope, started: None }
    }

    fn subscription(&self, receiver: String) -> Subscription {
        let c = &self.config;
        Subscription {
            receiver,
            features: Features {
                flows: true,
                tcp_flags: c.tcp_flags,
                handshake: c.latency,
                collapse_ports: c.collapse_range(),
                dns: None,
            },
            selection: InterfaceSelection {
                interfaces: c.interfaces.clone(),
                exclude: c.exclude.clone(),
                include_uplink: c.include_uplink,
            },
            options: Some(DatapathOptions {
                mode: c.attach_mode.into(),
                max_flows: c.max_flows,
                rtt: c.latency,
                ..DatapathOptions::default()
            }),
        }
    }

    /// One drain: interface changes first (so a detached interface's last flows are named and
    /// then forgotten), then the kernel reads, the records and metrics, and the kernel's
    /// forgetting. Returns false when the pipeline has stopped.
    async fn collect(
        &self,
        handle: &mut DatapathHandle,
        state: &mut Option<FlowState>,
        reading: &mut Option<Reading>,
        ctx: &ReceiverContext,
    ) -> Result<bool, FlowsError> {
        let (Some(mut s), Some(r)) = (state.take(), reading.take()) else {
            return Err(FlowsError::NotStarted);
        };
        let mut events = Vec::new();
        handle.pending_events(&mut events);
        for e in events {
            s.interface_event(e);
        }
        let latency = self.config.latency;
        let (r, result) = handle
            .with_flows(move |maps| {
                let mut r = r;
                let result = read(maps, &mut r, latency);
                (r, result)
            })
            .await?;
        if let Err(e) = result {
            tracing::warn!(error = %e, "draining the flow tables failed");
            ctx.start.stats.add_failed(Signal::Flows, 1);
            *state = Some(s);
            *reading = Some(r);
            return Ok(true);
        }
        // accounting and records on blocking threads, one batch at a time
        let (mut s, mut r, mut drain, mut forget) = blocking(move || {
            let mut forget = Forget::default();
            let d = s.begin(&r, &mut forget);
            (s, r, d, forget)
        })
        .await?;
        let mut open = true;
        loop {
            let (s2, r2, d2, batch) = blocking(move || {
                let b = s.next_batch(&r, &mut drain);
                (s, r, drain, b)
            })
            .await?;
            (s, r, drain) = (s2, r2, d2);
            match batch {
                None => break,
                Some(None) => {}
                Some(Some(batch)) => open &= ctx.output.send(Payload::from(batch)).await.is_ok(),
            }
        }
        let (s, r, forget, (flows, metrics)) = blocking(move || {
            let out = s.finish(&r, drain, &mut forget);
            (s, r, forget, out)
        })
        .await?;
        *state = Some(s);
        *reading = Some(r);
        if let Some(batch) = flows {
            open &= ctx.output.send(Payload::from(batch)).await.is_ok();
        }
        if let Some(batch) = metrics {
            open &= ctx.output.send(Payload::from(batch)).await.is_ok();
        }
        if !forget.sockets.is_empty() || !forget.interfaces.is_empty() {
            handle
                .with_flows(move |maps| {
                    if let Err(e) = maps.forget_sockets(&forget.sockets) {
                        tracing::warn!(error = %e, "cannot forget quiet sockets");
                    }
                    for ifindex in forget.interfaces {
                        if let Err(e) = maps.forget_interface(ifindex) {
                            tracing::warn!(ifindex, error = %e, "cannot forget a detached interface's counters");
                        }
                    }
                })
                .await?;
        }
        Ok(open)
    }
}

#[async_trait]
impl Receiver for Flows {
    fn probe_needs(&self) -> Option<crate::ebpf::preflight::Needs> {
        // TC programs on interfaces; the RTT programs are tracepoints
        Some(crate::ebpf::preflight::Needs { tc: true, tracing: self.config.latency, ring_buffers: false })
    }

    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        let id = ctx.id.to_string();
        let datapath = Datapath::shared(&ctx.services);
        let mut handle = datapath.subscribe(self.subscription(id.clone())).await.map_err(FlowsError::from)?;
        let loaded_at = now_unix_nano();
        let totals = Arc::new(Mutex::new(OverflowTotals::default()));
        let mut state = FlowState::new(
            self.config.clone(),
            self.resource.clone(),
            self.scope.clone(),
            ctx.signals.contains(&Signal::Flows),
            ctx.signals.contains(&Signal::Metrics),
            totals.clone(),
        );
        let mut events = Vec::new();
        handle.pending_events(&mut events);
        for e in events {
            state.interface_event(e);
        }
        let watched: Vec<String> = state.interfaces().map(|n| n.to_string()).collect();
        tracing::info!(interfaces = ?watched, ports = ?state.collapse(), "flows attached");
        let run_time_stats = ebpf_telemetry::run_time_stats(ctx.telemetry.level(), &id);
        if ebpf_telemetry::reports(ctx.telemetry.level()) {
            ctx.telemetry.register(Arc::new(EbpfCollector::new(&id, handle.health(), false, loaded_at)));
            ctx.telemetry.register(Arc::new(FlowsTelemetry { receiver: id, totals, loaded_at }));
        }
        self.started = Some(Started { handle, state, _run_time_stats: run_time_stats });
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let Started { mut handle, state, _run_time_stats } = self.started.take().ok_or(FlowsError::NotStarted)?;
        let mut state = Some(state);
        let mut reading = Some(Reading::default());
        let mut ticker = tokio::time::interval(self.config.collection_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate: nothing to drain yet
        let result = loop {
            tokio::select! {
                _ = ticker.tick() => match self.collect(&mut handle, &mut state, &mut reading, &ctx).await {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                },
                event = handle.next_event() => {
                    // a detached interface is only marked: the next drain reports its last flows
                    // (all counted before the event was sent), then forgets it
                    if let (Some(e), Some(s)) = (event, state.as_mut()) {
                        s.interface_event(e);
                    }
                }
                _ = ctx.shutdown.cancelled() => {
                    // One last drain, so nothing counted since the previous one is lost.
                    let last = self.collect(&mut handle, &mut state, &mut reading, &ctx).await;
                    break last.map(|_| ());
                }
            }
        };
        handle.release().await;
        result.map_err(ComponentError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_follows_the_config() {
        let config = FlowsConfig { tcp_flags: false, max_flows: 1024, ..FlowsConfig::default() };
        let rx = Flows::new(config, Arc::new(Resource::default()));
        let s = rx.subscription("flows".into());
        assert!(s.features.flows && !s.features.tcp_flags && s.features.handshake);
        assert!(s.features.collapse_ports.is_some());
        let options = s.options.expect("flows pins its map sizes");
        assert_eq!((options.max_flows, options.rtt), (1024, true));
        assert!(s.selection.include_uplink);
    }
}
