//! The `flowmetrics` connector: labelled flow records in, pod-level metrics out, in Retina's
//! context modes (`basic`, `remote`, `local`), with a series cap and expiry Retina lacks.
//!
//! - `config.rs`: the settings (Retina's option and metric names, otelcol's connector shape).
//! - `spec.rs`: what is made right now (metrics, labels per end, namespaces, expiry); it can
//!   change while running (annotations, MetricsConfiguration).
//! - `fold.rs`: which records count where, and the attributes of each sample.
//! - `series.rs`: the series of one metric, capped, with an overflow series, expiring.
//!
//! Records are folded as they arrive and accepted once folded; every `metrics_flush_interval`
//! the cumulative series go out as one metric batch (and a last time when the agent stops).

mod cluster;
mod config;
mod fold;
mod series;
mod spec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use smol_str::SmolStr;

pub use config::{FlowMetricsConfig, LabelOption, MetricName, Mode, Selection};
pub use spec::{LabelSet, MetricSpec, Namespaces, Spec};

use self::cluster::{Cluster, Needs};
use self::fold::{End, KeyBuilder, Local, Sample};
use self::series::SeriesTable;
use crate::config::parse_component;
use crate::model::semconv::{self, attr, own};
use crate::model::{
    Attributes, FlowBatch, FlowRecord, Metric, MetricBatch, MetricDef, NumberPoint, Payload, Resource, Scope, Signal,
    now_unix_nano,
};
use crate::pipeline::{
    BuildContext, Built, ComponentError, Connector, ConnectorContext, Factory, Services, StartContext,
};
use crate::telemetry::{Collector, ComponentKind};

/// The metrics the connector makes.
const METRICS: &[MetricDef] = &[
    semconv::NETWORK_FORWARD_PACKETS,
    semconv::NETWORK_FORWARD_BYTES,
    semconv::NETWORK_DROP_PACKETS,
    semconv::NETWORK_DROP_BYTES,
    semconv::NETWORK_TCP_FLAGS,
    semconv::NETWORK_TCP_RETRANSMITS,
    semconv::NETWORK_DNS_REQUESTS,
    semconv::NETWORK_DNS_RESPONSES,
    semconv::NETWORK_APISERVER_RTT,
    semconv::NETWORK_APISERVER_HANDSHAKE_DURATION,
    semconv::NETWORK_APISERVER_NO_RESPONSE,
];

/// The definition behind each of Retina's metric names.
fn def_of(metric: MetricName) -> &'static MetricDef {
    match metric {
        MetricName::ForwardCount => &semconv::NETWORK_FORWARD_PACKETS,
        MetricName::ForwardBytes => &semconv::NETWORK_FORWARD_BYTES,
        MetricName::DropCount => &semconv::NETWORK_DROP_PACKETS,
        MetricName::DropBytes => &semconv::NETWORK_DROP_BYTES,
        MetricName::TcpFlagGauges => &semconv::NETWORK_TCP_FLAGS,
        MetricName::TcpRetransmissionCount => &semconv::NETWORK_TCP_RETRANSMITS,
        MetricName::DnsRequestCount => &semconv::NETWORK_DNS_REQUESTS,
        MetricName::DnsResponseCount => &semconv::NETWORK_DNS_RESPONSES,
        MetricName::NodeApiserverLatency => &semconv::NETWORK_APISERVER_RTT,
        MetricName::NodeApiserverHandshakeLatency => &semconv::NETWORK_APISERVER_HANDSHAKE_DURATION,
        MetricName::NodeApiserverNoResponse => &semconv::NETWORK_APISERVER_NO_RESPONSE,
    }
}

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Connector,
        type_name: "flowmetrics",
        aliases: &[],
        signals: &[Signal::Flows],
        connects: &[(Signal::Flows, Signal::Metrics)],
        description: "turns labelled flow records into pod-level metrics in Retina's context modes (basic, remote, local)",
        metrics: METRICS,
        build: |ctx: &BuildContext<'_>| {
            let config: FlowMetricsConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Connector(Box::new(FlowMetrics::new(config, ctx.resource.clone()))))
        },
    }
}

/// Per metric: series held, points folded into overflow, series expired.
type Figures = Vec<(&'static str, usize, u64, u64)>;

/// The connector's own metrics, as of the last flush.
struct FlowMetricsTelemetry {
    connector: String,
    figures: Arc<Mutex<(Figures, u64)>>,
    started: u64,
}

impl Collector for FlowMetricsTelemetry {
    fn collect(&self, _start: u64, now: u64, out: &mut Vec<Metric>) {
        let Ok(guard) = self.figures.lock() else { return };
        let (figures, reconfigurations) = &*guard;
        let (mut series, mut overflow, mut expired) = (Vec::new(), Vec::new(), Vec::new());
        for (metric, held, overflowed, gone) in figures {
            let attrs =
                Attributes::from_pairs([(own::attr::CONNECTOR, self.connector.as_str()), (own::attr::METRIC, metric)]);
            series.push(NumberPoint::count(attrs.clone(), self.started, now, *held as u64));
            overflow.push(NumberPoint::count(attrs.clone(), self.started, now, *overflowed));
            expired.push(NumberPoint::count(attrs, self.started, now, *gone));
        }
        let connector = Attributes::from_pairs([(own::attr::CONNECTOR, self.connector.as_str())]);
        let changes = NumberPoint::count(connector, self.started, now, *reconfigurations);
        out.push(Metric::from_def(&own::FLOWMETRICS_SERIES, series));
        out.push(Metric::from_def(&own::FLOWMETRICS_OVERFLOW_POINTS, overflow));
        out.push(Metric::from_def(&own::FLOWMETRICS_EXPIRED, expired));
        out.push(Metric::from_def(&own::FLOWMETRICS_RECONFIGURATIONS, vec![changes]));
    }
}

/// A metric's series and what it costs in own telemetry.
struct Table {
    series: SeriesTable,
    expired: u64,
}

/// The connector.
pub struct FlowMetrics {
    config: FlowMetricsConfig,
    spec: Spec,
    resource: Arc<Resource>,
    node: SmolStr,
    tables: BTreeMap<MetricName, Table>,
    keys: KeyBuilder,
    samples: Vec<(Sample, Local)>,
    figures: Arc<Mutex<(Figures, u64)>>,
    reconfigurations: u64,
    /// The API server's addresses.
    apiserver: HashSet<IpAddr>,
    /// SYNs sent to and SYN-ACKs received from the API server, since the start.
    syns: u64,
    synacks: u64,
    /// SYNs sent as of the last flush: a SYN still unanswered one flush later got no response.
    syns_at_flush: u64,
    no_response: u64,
    /// The Kubernetes cache, once found, and what is wanted from it.
    cluster: Cluster,
    needs: Needs,
    services: Option<Arc<Services>>,
}

impl FlowMetrics {
    /// A connector with this config; `resource` names this node (`k8s.node.name`).
    pub fn new(config: FlowMetricsConfig, resource: Arc<Resource>) -> Self {
        let spec = match config.selection {
            Selection::Annotations => Spec::annotations(
                config.mode,
                (!config.metric_expiration.is_zero()).then_some(config.metric_expiration),
            ),
            Selection::Config | Selection::MetricsConfiguration => Spec::from_config(&config),
        };
        let apiserver_metrics = [
            MetricName::NodeApiserverLatency,
            MetricName::NodeApiserverHandshakeLatency,
            MetricName::NodeApiserverNoResponse,
        ];
        let needs = Needs {
            api_server: config.apiserver_addresses.is_empty()
                && apiserver_metrics.iter().any(|m| spec.metrics.contains_key(m)),
            metrics_configuration: config.selection == Selection::MetricsConfiguration,
            annotations: config.selection == Selection::Annotations,
        };
        let node = resource.attributes.get_str(attr::K8S_NODE_NAME).map(SmolStr::from).unwrap_or_default();
        let mut connector = FlowMetrics {
            config,
            spec: spec.clone(),
            resource,
            node,
            tables: BTreeMap::new(),
            keys: KeyBuilder::default(),
            samples: Vec::new(),
            figures: Arc::default(),
            reconfigurations: 0,
            apiserver: HashSet::new(),
            syns: 0,
            synacks: 0,
            syns_at_flush: 0,
            no_response: 0,
            cluster: Cluster::default(),
            needs,
            services: None,
        };
        connector.apiserver = connector.config.apiserver_addresses.iter().copied().collect();
        connector.apply(spec);
        connector
    }

    /// The selection in force.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Makes `spec` the selection: tables of metrics no longer made are dropped, new ones
    /// created, and those that stay keep counting (unlike Retina, which resets every series).
    pub fn apply(&mut self, spec: Spec) {
        let max_series = self.config.max_series;
        self.tables.retain(|metric, _| spec.metrics.contains_key(metric));
        for metric in spec.metrics.keys() {
            self.tables.entry(*metric).or_insert_with(|| {
                let def = def_of(*metric);
                let bounds = (def.instrument == semconv::Instrument::Histogram)
                    .then(|| Arc::from(semconv::LATENCY_BOUNDS_S.as_slice()));
                Table { series: SeriesTable::new(def, bounds, max_series), expired: 0 }
            });
        }
        // Series whose label names changed start afresh: the old ones would never be updated.
        // Series of pods no longer observed go at once rather than after their TTL, so the
        // output shows only the selected pods (where the namespace is a label).
        let namespaces_changed = self.spec.namespaces != spec.namespaces;
        for (metric, table) in self.tables.iter_mut() {
            if self.spec.metrics.get(metric) != spec.metrics.get(metric) || self.spec.mode != spec.mode {
                table.series.retain(|_, _| false);
            } else if namespaces_changed {
                table.series.retain(|key, _| fold::still_observed(&spec, key));
            }
        }
        if self.spec != spec {
            self.reconfigurations += 1;
        }
        self.spec = spec;
    }

    /// Folds every record of `batch` in.
    pub fn fold(&mut self, batch: &FlowBatch, now: u64) {
        let FlowMetrics { config, spec, node, tables, keys, samples, apiserver, syns, synacks, cluster, .. } = self;
        let none = Attributes::new();
        // Which ends are observed: by namespace, or (annotation mode) by the pods' annotations,
        // read under one lock for the whole batch.
        let annotations = match config.selection {
            Selection::Annotations => Some(cluster.annotations()),
            Selection::Config | Selection::MetricsConfiguration => None,
        };
        let observed = |r: &FlowRecord, end: End| match &annotations {
            None => spec.namespaces.admits(fold::namespace(r, end)),
            Some(Some((reader, view))) => cluster::observed(reader, *view, end.address(r)),
            Some(None) => false,
        };
        for record in &batch.records {
            keys.next_record();
            fold::samples(record, samples);
            for (sample, local) in samples.iter() {
                let Some(table) = tables.get_mut(&sample.metric) else { continue };
                fold::place(spec, node, record, sample, *local, &observed, keys, |key| {
                    table.series.add(key, sample.amount, now)
                });
            }
            if let Some(a) = fold::apiserver(record, apiserver) {
                *syns += a.syns;
                *synacks += a.synacks;
                for (metric, summary) in [
                    (MetricName::NodeApiserverHandshakeLatency, a.handshake),
                    (MetricName::NodeApiserverLatency, a.rtt),
                ] {
                    if let Some(table) = tables.get_mut(&metric) {
                        table.series.observe(&none, &summary, now);
                    }
                }
            }
        }
    }

    /// Counts the SYNs of the previous flush that no SYN-ACK has answered since.
    fn count_no_response(&mut self, now: u64) {
        let unanswered = self.syns_at_flush.saturating_sub(self.synacks);
        self.syns_at_flush = self.syns;
        if unanswered <= self.no_response {
            return;
        }
        let more = unanswered - self.no_response;
        self.no_response = unanswered;
        if let Some(table) = self.tables.get_mut(&MetricName::NodeApiserverNoResponse) {
            table.series.add(&Attributes::new(), more, now);
        }
    }

    /// Removes expired series and returns the cumulative metrics at `now`.
    pub fn flush(&mut self, now: u64) -> MetricBatch {
        self.count_no_response(now);
        let mut metrics = Vec::new();
        let mut figures = Vec::with_capacity(self.tables.len());
        for (metric, table) in self.tables.iter_mut() {
            if let Some(ttl) = self.spec.metrics.get(metric).and_then(|m| m.ttl) {
                table.expired += table.series.expire(now.saturating_sub(ttl.as_nanos() as u64)) as u64;
            }
            if let Some(m) = table.series.metric(now) {
                metrics.push(m);
            }
            figures.push((table.series.def().name, table.series.len(), table.series.overflowed(), table.expired));
        }
        if let Ok(mut f) = self.figures.lock() {
            *f = (figures, self.reconfigurations);
        }
        let scope = Arc::new(Scope { name: "fovea/flowmetrics".into(), version: env!("CARGO_PKG_VERSION").into() });
        MetricBatch::single(self.resource.clone(), scope, metrics)
    }

    /// Finds the Kubernetes cache and applies what changed there: the API server's addresses
    /// (unless configured) and, with `selection: metrics_configuration`, the MetricsConfiguration
    /// (this config again when there is none; an invalid one is refused and the previous one
    /// kept).
    async fn follow_cluster(&mut self) {
        let (needs, services) = (self.needs, self.services.clone());
        if !(needs.api_server || needs.metrics_configuration || needs.annotations) {
            return;
        }
        let Some(services) = services else { return };
        if !self.cluster.connect(&services, needs).await {
            return;
        }
        let Some(changes) = self.cluster.changes() else { return };
        if needs.api_server {
            self.apiserver = changes.api_server.into_iter().collect();
        }
        if needs.metrics_configuration {
            let wanted = match &changes.metrics_configuration {
                None => Ok(Spec::from_config(&self.config)),
                Some(c) => Spec::from_metrics_configuration(self.config.mode, c).map_err(|e| (c.name.clone(), e)),
            };
            match wanted {
                Ok(spec) if spec != self.spec => {
                    let name = changes
                        .metrics_configuration
                        .as_ref()
                        .map_or("(none: the connector's config)", |c| c.name.as_str());
                    tracing::info!(metrics_configuration = name, "flowmetrics: applying a new selection");
                    self.apply(spec);
                }
                Ok(_) => {}
                Err((name, e)) => {
                    tracing::warn!(metrics_configuration = %name, "flowmetrics: MetricsConfiguration refused, keeping the previous selection: {e}")
                }
            }
        }
    }

    async fn send(&mut self, ctx: &ConnectorContext) {
        let batch = self.flush(now_unix_nano());
        if batch.data_points() > 0 {
            // A batch the fed pipelines cannot take is counted by the output as failed.
            let _ = ctx.output.send(Payload::from(batch)).await;
        }
    }
}

#[async_trait]
impl Connector for FlowMetrics {
    async fn start(&mut self, ctx: &StartContext) -> Result<(), ComponentError> {
        self.services = Some(ctx.services.clone());
        ctx.telemetry.register(Arc::new(FlowMetricsTelemetry {
            connector: ctx.id.to_string(),
            figures: self.figures.clone(),
            started: now_unix_nano(),
        }));
        Ok(())
    }

    async fn run(mut self: Box<Self>, mut ctx: ConnectorContext) -> Result<(), ComponentError> {
        let mut ticker = tokio::time::interval(self.config.metrics_flush_interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        // How soon a MetricsConfiguration or endpoint change applies.
        let mut cluster = tokio::time::interval(Duration::from_millis(500));
        cluster.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cluster.tick() => self.follow_cluster().await,
                payload = ctx.input.recv() => match payload {
                    Some(Payload::Flows(batch)) => {
                        self.fold(&batch, now_unix_nano());
                        // Folded into the series: taken.
                        batch.acks.accept();
                    }
                    Some(other) => {
                        // The graph feeds this connector flows only; anything else is not ours.
                        other.acks().accept();
                        ctx.start.stats.add_dropped(other.signal(), other.items());
                    }
                    None => break,
                },
                _ = ticker.tick() => self.send(&ctx).await,
            }
        }
        self.send(&ctx).await;
        Ok(())
    }
}
