//! `linuxutil` receiver: kernel network-stack counters (`/proc/net/snmp`, `/proc/net/netstat`),
//! TCP socket states (netlink sock_diag) and interface statistics (netlink), read every
//! `collection_interval`. No eBPF.

mod config;
pub mod error;
pub mod interfaces;
mod netlink;
pub mod netns;
pub mod netstat;
pub mod sockets;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use smol_str::SmolStr;

pub use config::{DASHBOARD_NETSTAT_KEYS, DEFAULT_INTERFACE_STATISTICS, DEFAULT_NETSTAT_GROUPS, LinuxutilConfig};
use error::LinuxutilError;
use interfaces::{InterfaceStatsReader, LinkStats};
use netstat::NetstatReader;
use sockets::SocketStatsReader;

use crate::config::parse_component;
use crate::config::pattern::any_match;
use crate::model::semconv::{self, attr};
use crate::model::{Attributes, Metric, MetricBatch, NumberPoint, Payload, Resource, Scope, Signal, now_unix_nano};
use crate::pipeline::{BuildContext, Built, ComponentError, Factory, Receiver, ReceiverContext};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Receiver,
        type_name: "linuxutil",
        aliases: &[],
        signals: &[Signal::Metrics],
        connects: &[],
        description: "kernel stack counters (/proc/net/snmp, netstat), TCP socket states (sock_diag), interface statistics (netlink)",
        metrics: &[
            semconv::NETWORK_NETSTAT,
            semconv::NETWORK_INTERFACE_STATS,
            semconv::NETWORK_TCP_CONNECTIONS,
            semconv::NETWORK_TCP_REMOTE_CONNECTIONS,
            semconv::NETWORK_UDP_SOCKETS,
        ],
        build: |ctx: &BuildContext<'_>| {
            let config: LinuxutilConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Receiver(Box::new(Linuxutil::new(config, ctx.resource.clone()))))
        },
    }
}

/// The kernel sources, moved to a blocking thread for each collection and back.
struct Sources {
    netstat: NetstatReader,
    interfaces: Option<InterfaceStatsReader>,
    sockets: Option<SocketStatsReader>,
}

/// What one collection read.
struct Reading {
    netstat: Vec<(SmolStr, SmolStr, i64)>,
    interfaces: Vec<(SmolStr, LinkStats)>,
    tcp: Vec<(&'static str, u64)>,
    udp: Option<u64>,
    /// Established connections of the addresses with the most, and of the others together.
    remote: Vec<(IpAddr, u64)>,
    remote_others: Option<u64>,
}

/// The receiver.
pub struct Linuxutil {
    config: LinuxutilConfig,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    sources: Option<Sources>,
}

impl Linuxutil {
    /// A receiver with the given settings.
    pub fn new(config: LinuxutilConfig, resource: Arc<Resource>) -> Self {
        let scope = Arc::new(Scope { name: "fovea/linuxutil".into(), version: env!("CARGO_PKG_VERSION").into() });
        Linuxutil { config, resource, scope, sources: None }
    }

    fn open(config: &LinuxutilConfig) -> Result<Sources, LinuxutilError> {
        let open = || -> Result<Sources, LinuxutilError> {
            Ok(Sources {
                netstat: NetstatReader::new(),
                interfaces: config.interfaces.enabled.then(InterfaceStatsReader::new),
                sockets: match (config.sockets.enabled, config.sockets.remote_addresses) {
                    (false, _) => None,
                    (true, 0) => Some(SocketStatsReader::new()?),
                    (true, _) => Some(SocketStatsReader::new()?.count_remote_addresses()),
                },
            })
        };
        match &config.netns {
            // Netlink sockets stay in the namespace they were created in.
            Some(path) => netns::run_in_netns(path, open)?,
            None => open(),
        }
    }

    fn read(config: &LinuxutilConfig, sources: &mut Sources) -> Result<Reading, LinuxutilError> {
        let mut reading = Reading {
            netstat: Vec::new(),
            interfaces: Vec::new(),
            tcp: Vec::new(),
            udp: None,
            remote: Vec::new(),
            remote_others: None,
        };
        if config.netstat.enabled {
            let counters = match &config.netns {
                Some(path) => {
                    netns::run_in_netns(path, || sources.netstat.read(Path::new(netns::THREAD_PROC_NET)).map(|_| ()))??;
                    sources.netstat.counters()
                }
                None => sources.netstat.read(Path::new(netstat::DEFAULT_PROC_NET))?,
            };
            let include = &config.netstat.include;
            for c in counters {
                let keep = if include.is_empty() {
                    (c.value != 0 && DEFAULT_NETSTAT_GROUPS.contains(&c.group.as_str()))
                        || DASHBOARD_NETSTAT_KEYS.contains(&(c.group.as_str(), c.name.as_str()))
                } else {
                    include.iter().any(|p| p.matches(&format!("{}:{}", c.group, c.name)))
                };
                if keep {
                    reading.netstat.push((c.group.clone(), c.name.clone(), c.value));
                }
            }
        }
        if let Some(reader) = &mut sources.interfaces {
            let cfg = &config.interfaces;
            for i in reader.read()? {
                if (cfg.include.is_empty() || any_match(&cfg.include, &i.name)) && !any_match(&cfg.exclude, &i.name) {
                    reading.interfaces.push((i.name.clone(), i.stats));
                }
            }
        }
        if let Some(reader) = &mut sources.sockets {
            let counts = reader.read()?;
            reading.tcp = counts.tcp().iter().map(|(state, n)| (state.as_str(), n)).collect();
            reading.udp = counts.udp();
            let top = config.sockets.remote_addresses;
            if top > 0 {
                reading.remote = reader.remote_established().collect();
                // Most connections first; equal counts by address, so the cut is stable.
                reading.remote.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                if reading.remote.len() > top {
                    reading.remote_others = Some(reading.remote.drain(top..).map(|(_, n)| n).sum());
                }
            }
        }
        Ok(reading)
    }

    fn to_metrics(&self, reading: Reading, now: u64) -> MetricBatch {
        let mut metrics = Vec::new();
        if !reading.netstat.is_empty() {
            let points = reading
                .netstat
                .into_iter()
                .map(|(group, name, value)| {
                    NumberPoint::int(
                        Attributes::from_pairs([(attr::NETSTAT_GROUP, group), (attr::NETSTAT_NAME, name)]),
                        0,
                        now,
                        value,
                    )
                })
                .collect();
            metrics.push(Metric::from_def(&semconv::NETWORK_NETSTAT, points));
        }
        if !reading.interfaces.is_empty() {
            let wanted = &self.config.interfaces.statistics;
            let mut points = Vec::with_capacity(reading.interfaces.len() * wanted.len());
            for (name, stats) in &reading.interfaces {
                for (stat, value) in stats.fields() {
                    if wanted.iter().any(|w| w == stat) {
                        let attrs = Attributes::from_pairs([
                            (attr::NETWORK_INTERFACE_NAME, name.clone()),
                            (attr::STATISTIC, SmolStr::new_static(stat)),
                        ]);
                        points.push(NumberPoint::count(attrs, 0, now, value));
                    }
                }
            }
            metrics.push(Metric::from_def(&semconv::NETWORK_INTERFACE_STATS, points));
        }
        if !reading.tcp.is_empty() {
            let points = reading
                .tcp
                .iter()
                .map(|(state, n)| {
                    NumberPoint::int(
                        Attributes::from_pairs([(attr::NETWORK_CONNECTION_STATE, *state)]),
                        0,
                        now,
                        *n as i64,
                    )
                })
                .collect();
            metrics.push(Metric::from_def(&semconv::NETWORK_TCP_CONNECTIONS, points));
        }
        if self.config.sockets.enabled && self.config.sockets.remote_addresses > 0 {
            let mut points: Vec<NumberPoint> = reading
                .remote
                .iter()
                .map(|(address, n)| {
                    let attrs =
                        Attributes::from_pairs([(attr::NETWORK_PEER_ADDRESS, SmolStr::new(address.to_string()))]);
                    NumberPoint::int(attrs, 0, now, *n as i64)
                })
                .collect();
            if let Some(others) = reading.remote_others {
                let attrs = Attributes::from_pairs([(attr::OTEL_METRIC_OVERFLOW, true)]);
                points.push(NumberPoint::int(attrs, 0, now, others as i64));
            }
            if !points.is_empty() {
                metrics.push(Metric::from_def(&semconv::NETWORK_TCP_REMOTE_CONNECTIONS, points));
            }
        }
        if let Some(udp) = reading.udp {
            let point = NumberPoint::int(Attributes::new(), 0, now, udp as i64);
            metrics.push(Metric::from_def(&semconv::NETWORK_UDP_SOCKETS, vec![point]));
        }
        MetricBatch::single(self.resource.clone(), self.scope.clone(), metrics)
    }
}

#[async_trait]
impl Receiver for Linuxutil {
    async fn start(&mut self, _ctx: &crate::pipeline::StartContext) -> Result<(), ComponentError> {
        let config = self.config.clone();
        let sources = tokio::task::spawn_blocking(move || Linuxutil::open(&config)).await??;
        self.sources = Some(sources);
        Ok(())
    }

    async fn run(mut self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let mut sources = self.sources.take().ok_or("linuxutil receiver was not started")?;
        let mut ticker = tokio::time::interval(self.config.collection_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = ctx.shutdown.cancelled() => return Ok(()),
            }
            let config = self.config.clone();
            let (back, result) = tokio::task::spawn_blocking(move || {
                let r = Linuxutil::read(&config, &mut sources);
                (sources, r)
            })
            .await?;
            sources = back;
            match result {
                Ok(reading) => {
                    failures = 0;
                    let batch = self.to_metrics(reading, now_unix_nano());
                    if ctx.output.send(Payload::from(batch)).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    failures += 1;
                    // Log the first failure and then every 10th, so a persistent problem is visible but not noisy.
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(error = %e, failures, "linuxutil collection failed");
                    }
                    ctx.start.stats.add_failed(Signal::Metrics, 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricData;

    #[test]
    fn a_full_reading_becomes_the_five_defined_gauges() {
        let rx = Linuxutil::new(LinuxutilConfig::default(), Arc::new(Resource::default()));
        let reading = Reading {
            netstat: vec![("Tcp".into(), "RetransSegs".into(), 12)],
            interfaces: vec![("eth0".into(), LinkStats { rx_packets: 5, ..LinkStats::default() })],
            tcp: vec![("established", 3)],
            udp: Some(2),
            remote: vec![("198.18.0.1".parse().unwrap(), 2), ("2001:db8::1".parse().unwrap(), 1)],
            remote_others: Some(4),
        };
        let batch = rx.to_metrics(reading, 10);
        semconv::assert_as_defined(factory().metrics, &batch);
        assert_eq!(batch.data_points(), 3 + rx.config.interfaces.statistics.len() + 3);
        let (_, _, remote) =
            batch.iter_metrics().find(|(_, _, m)| m.name == semconv::NETWORK_TCP_REMOTE_CONNECTIONS.name).unwrap();
        let MetricData::Gauge(points) = &remote.data else { panic!("a gauge") };
        let points: Vec<(Option<String>, bool, f64)> = points
            .iter()
            .map(|p| {
                let address = p.attributes.get_str(attr::NETWORK_PEER_ADDRESS).map(String::from);
                (address, p.attributes.get(attr::OTEL_METRIC_OVERFLOW).is_some(), p.value.as_f64())
            })
            .collect();
        assert_eq!(
            points,
            [(Some("198.18.0.1".into()), false, 2.0), (Some("2001:db8::1".into()), false, 1.0), (None, true, 4.0)]
        );
    }
}
