//! `dns` receiver: every DNS query and response the node's pods and the node itself exchange,
//! copied by the shared datapath programs on pod interfaces and uplinks (their DNS feature,
//! ebpf/dns.bpf.h) and parsed here.
//!
//! * Metrics: `network.dns.requests` (`dns.question.type`), `network.dns.responses`
//!   (`dns.question.type`, `dns.response.code`, `dns.answer.count`), `network.dns.duration`
//!   (query to response, seconds), `network.dns.unanswered` (no response within
//!   `response_timeout`); `dns.question.name` and `dns.answers` when configured.
//! * Flow records (`kind: dns`), one per message: addresses, ports, interface, and what the
//!   message said ([`crate::model::DnsInfo`]: query or response, question, code, answers, and for
//!   a response its duration), for `k8sattributes` and the `flowmetrics` connector.
//!
//! Each message is counted once per node (docs/ebpf.md, "DNS"): where it first meets a watched
//! hook. The kernel copies at most `max_messages_per_second`; what it could not copy is in
//! `fovea.ebpf.records.capped` / `.lost`, never silently missing.
//!
//! The receiver joins the datapath when it runs, after every receiver has started: a `flows`
//! receiver in the same agent then has loaded the programs with its own map sizes, and DNS rides
//! on them (DNS has no load-time settings of its own).

mod config;
mod counters;
pub mod message;
mod state;
mod transactions;

use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;

use super::probe::datapath::{Core, Datapath, DatapathServiceError, InterfaceSelection, Subscription};
use super::probe::telemetry::ProbeHealth;
use super::probe::telemetry::{self as ebpf_telemetry, EbpfCollector};
use crate::config::parse_component;
use crate::ebpf::clock::clock_ns;
use crate::ebpf::{DatapathError, DnsCapture, Features, RecordError};
use crate::model::semconv::{self, own};
use crate::model::{
    Attributes, FlowBatch, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope, Signal, now_unix_nano,
};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext, StartContext};
use crate::telemetry::{Collector, ComponentKind};
pub use config::DnsConfig;
pub use counters::Detail;
pub use state::{DnsState, DnsTotals};

/// Errors of the dns receiver.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The shared datapath failed (loading, attaching, a missing capability ...).
    #[error(transparent)]
    Datapath(#[from] DatapathServiceError),
    /// The record ring could not be opened or read.
    #[error("cannot read the DNS record ring: {0}")]
    Records(#[from] RecordError),
    /// The ring was taken before (a second dns receiver).
    #[error("the DNS record ring is already read by another dns receiver")]
    RingTaken,
    /// `run` without `start`.
    #[error("the dns receiver was not started")]
    NotStarted,
}

impl From<DatapathError> for DnsError {
    fn from(e: DatapathError) -> Self {
        DnsError::Datapath(e.into())
    }
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "dns",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "DNS queries and responses on pod interfaces and uplinks: counts per type and code, durations, unanswered queries, flow records (eBPF, shared TC/TCX programs)",
        metrics: &[
            semconv::NETWORK_DNS_REQUESTS,
            semconv::NETWORK_DNS_RESPONSES,
            semconv::NETWORK_DNS_DURATION,
            semconv::NETWORK_DNS_UNANSWERED,
        ],
        build: |ctx: &BuildContext<'_>| {
            let config: DnsConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(Dns::new(config, ctx.resource.clone()))))
        },
    }
}

/// The agent's own metrics about what could not be counted; with `ring` (the programs were
/// loaded by another receiver, which reports them), also the kernel's record accounting.
struct DnsTelemetry {
    receiver: String,
    totals: Arc<Mutex<DnsTotals>>,
    ring: Option<Weak<Mutex<Core>>>,
    since: u64,
}

impl Collector for DnsTelemetry {
    fn collect(&self, _start: u64, now: u64, out: &mut Vec<Metric>) {
        let Ok(t) = self.totals.lock().map(|t| *t) else { return };
        let point = |v: u64| {
            let attrs = Attributes::from_pairs([(own::attr::RECEIVER, self.receiver.as_str())]);
            vec![NumberPoint::count(attrs, self.since, now, v)]
        };
        out.push(Metric::from_def(&own::DNS_MALFORMED, point(t.malformed)));
        out.push(Metric::from_def(&own::DNS_TRANSACTIONS_EVICTED, point(t.evicted)));
        out.push(Metric::from_def(&own::DNS_SERIES_OVERFLOW, point(t.overflowed)));
        let records = self.ring.as_ref().and_then(Weak::upgrade).and_then(|core| {
            let core = core.lock().ok()?;
            Some(core.probe_telemetry().records)
        });
        if let Some(r) = records {
            out.push(Metric::from_def(&own::EBPF_RECORDS_EMITTED, point(r.emitted)));
            out.push(Metric::from_def(&own::EBPF_RECORDS_CAPPED, point(r.capped)));
            out.push(Metric::from_def(&own::EBPF_RECORDS_LOST, point(r.lost)));
        }
    }
}

/// The receiver.
pub struct Dns {
    config: Arc<DnsConfig>,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    signals: Option<(bool, bool)>,
}

impl Dns {
    /// A receiver with the given settings.
    pub fn new(config: DnsConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/dns".into(), version: env!("CARGO_PKG_VERSION").into() });
        Dns { config: Arc::new(config), resource, scope, signals: None }
    }

    fn subscription(&self, receiver: String) -> Subscription {
        let c = &self.config;
        Subscription {
            receiver,
            features: Features { dns: Some(c.max_messages_per_second), ..Features::default() },
            selection: InterfaceSelection {
                interfaces: c.interfaces.clone(),
                exclude: c.exclude.clone(),
                include_uplink: c.include_uplink,
            },
            options: None,
        }
    }

    fn emit_metrics(&self, state: &DnsState, start: u64) -> Payload {
        let metrics = state.counters.metrics(start, now_unix_nano());
        Payload::from(MetricBatch::single(self.resource.clone(), self.scope.clone(), metrics))
    }
}

#[async_trait]
impl Receiver for Dns {
    fn probe_needs(&self) -> Option<crate::ebpf::preflight::Needs> {
        Some(crate::ebpf::preflight::Needs { tc: true, tracing: false, ring_buffers: true })
    }

    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        self.signals = Some((ctx.signals.contains(&Signal::Metrics), ctx.signals.contains(&Signal::Flows)));
        Ok(())
    }

    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let (metrics, flows) = self.signals.ok_or(DnsError::NotStarted)?;
        let id = ctx.start.id.to_string();
        let datapath = Datapath::shared(&ctx.start.services);
        let mut handle = datapath.subscribe(self.subscription(id.clone())).await.map_err(DnsError::from)?;
        let mut stream = match handle.with_probe(|p| p.take_dns_records()).await.map_err(DnsError::from)? {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                handle.release().await;
                return Err(DnsError::from(e).into());
            }
            None => {
                handle.release().await;
                return Err(DnsError::RingTaken.into());
            }
        };
        let start = now_unix_nano();
        let totals = Arc::new(Mutex::new(DnsTotals::default()));
        let c = &self.config;
        let detail = Detail { question_name: c.question_name, answers: c.answers };
        let mut state = DnsState::new(detail, c.max_series as usize, c.max_pending as usize, flows, totals.clone());
        let mut events = Vec::new();
        handle.pending_events(&mut events);
        for e in events {
            state.interface_event(e);
        }
        if ebpf_telemetry::reports(ctx.start.telemetry.level()) {
            // the programs' run time and maps once, by the receiver that loaded them
            let ring = if handle.loaded_by().as_deref() == Some(id.as_str()) {
                ctx.start.telemetry.register(Arc::new(EbpfCollector::new(&id, handle.health(), true, start)));
                None
            } else {
                Some(handle.health())
            };
            let telemetry = DnsTelemetry { receiver: id.clone(), totals, ring, since: start };
            ctx.start.telemetry.register(Arc::new(telemetry));
        }
        let watched: Vec<&str> = state.interfaces().collect();
        tracing::info!(receiver = %id, interfaces = ?watched, "dns attached");

        let timeout_ns = u64::try_from(c.response_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut ticker = tokio::time::interval(c.collection_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut batch: Vec<DnsCapture> = Vec::with_capacity(256);
        let mut open = true;
        let result = loop {
            tokio::select! {
                read = stream.next_batch(&mut batch) => {
                    if let Err(e) = read {
                        break Err(DnsError::from(e));
                    }
                    for capture in batch.drain(..) {
                        state.capture(&capture);
                    }
                    if !state.records.is_empty() {
                        let records = std::mem::take(&mut state.records);
                        let out = FlowBatch { resource: self.resource.clone(), records, acks: Default::default() };
                        open &= ctx.output.send(Payload::from(out)).await.is_ok();
                    }
                }
                _ = ticker.tick() => {
                    state.expire(boot_ns(), timeout_ns);
                    if metrics {
                        open &= ctx.output.send(self.emit_metrics(&state, start)).await.is_ok();
                    }
                }
                event = handle.next_event() => {
                    if let Some(e) = event {
                        state.interface_event(e);
                    }
                }
                _ = ctx.shutdown.cancelled() => {
                    // what is in the ring now, then the last counts
                    stream.try_drain(&mut batch);
                    for capture in batch.drain(..) {
                        state.capture(&capture);
                    }
                    if !state.records.is_empty() {
                        let records = std::mem::take(&mut state.records);
                        let out = FlowBatch { resource: self.resource.clone(), records, acks: Default::default() };
                        let _ = ctx.output.send(Payload::from(out)).await;
                    }
                    state.expire(boot_ns(), timeout_ns);
                    if metrics {
                        let _ = ctx.output.send(self.emit_metrics(&state, start)).await;
                    }
                    break Ok(());
                }
            }
            if !open {
                break Ok(());
            }
        };
        handle.release().await;
        result.map_err(ComponentError::from)
    }
}

/// CLOCK_BOOTTIME now, the clock of the captures' `kernel_ns`.
fn boot_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_asks_for_dns_only_and_takes_the_loaded_sizes() {
        let config = DnsConfig { max_messages_per_second: 250, include_uplink: false, ..DnsConfig::default() };
        let rx = Dns::new(config, Arc::new(Resource::default()));
        let s = rx.subscription("dns".into());
        assert_eq!(s.features, Features { dns: Some(250), ..Features::default() });
        assert!(s.options.is_none() && !s.selection.include_uplink);
    }
}
