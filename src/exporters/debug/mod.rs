//! The `debug` exporter: prints what reaches it, for trying out pipelines.

mod config;

use std::fmt::Write as _;
use std::io::Write;
use std::time::Instant;

use async_trait::async_trait;

pub use config::{DebugConfig, Stream, Verbosity};

use crate::config::parse_component;
use crate::model::dns::{question_type_name, response_code_name};
use crate::model::{Attributes, FlowBatch, MetricBatch, MetricData, Payload, Signal};
use crate::pipeline::{BuildContext, Built, ComponentError, Exporter, ExporterContext, Factory};
use crate::telemetry::ComponentKind;

/// The registry entry.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Exporter,
        type_name: "debug",
        aliases: &[],
        signals: &[Signal::Metrics, Signal::Flows],
        connects: &[],
        description: "prints metrics and flow records (verbosity basic, normal or detailed)",
        metrics: &[],
        build: |ctx: &BuildContext<'_>| {
            let config: DebugConfig = parse_component(ctx.node, ctx.path)?;
            Ok(Built::Exporter(Box::new(DebugExporter::new(config))))
        },
    }
}

/// Prints batches to stdout or stderr (or a test writer).
pub struct DebugExporter {
    config: DebugConfig,
    sink: Option<Box<dyn Write + Send>>,
    window: Option<(Instant, u32)>,
}

impl DebugExporter {
    /// An exporter printing to the configured stream.
    pub fn new(config: DebugConfig) -> Self {
        DebugExporter { config, sink: None, window: None }
    }

    /// An exporter printing into `sink` (tests).
    pub fn with_sink(config: DebugConfig, sink: Box<dyn Write + Send>) -> Self {
        DebugExporter { config, sink: Some(sink), window: None }
    }

    fn sampled(&mut self) -> bool {
        let (initial, thereafter) = (self.config.sampling_initial, self.config.sampling_thereafter);
        if initial == 0 {
            return true;
        }
        let now = Instant::now();
        let (start, n) = self.window.get_or_insert((now, 0));
        if now.duration_since(*start).as_secs() >= 1 {
            *start = now;
            *n = 0;
        }
        *n += 1;
        *n <= initial || (thereafter > 0 && (*n - initial) % thereafter == 0)
    }

    fn write(&mut self, text: &str) {
        let result = match (&mut self.sink, self.config.output) {
            (Some(sink), _) => sink.write_all(text.as_bytes()),
            (None, Stream::Stdout) => std::io::stdout().lock().write_all(text.as_bytes()),
            (None, Stream::Stderr) => std::io::stderr().lock().write_all(text.as_bytes()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "debug exporter cannot write");
        }
    }
}

/// Renders a metric batch at `verbosity`.
pub fn render_metrics(batch: &MetricBatch, verbosity: Verbosity, out: &mut String) {
    let metrics = batch.iter_metrics().count();
    let _ = writeln!(
        out,
        "Metrics\t{{\"resource metrics\": {}, \"metrics\": {metrics}, \"data points\": {}}}",
        batch.resource_metrics.len(),
        batch.data_points()
    );
    if verbosity == Verbosity::Basic {
        return;
    }
    for rm in &batch.resource_metrics {
        if verbosity == Verbosity::Detailed {
            let _ = writeln!(out, "Resource {}", attrs(&rm.resource.attributes));
        }
        for sm in &rm.scope_metrics {
            if verbosity == Verbosity::Detailed {
                let _ = writeln!(out, "  Scope {} {}", sm.scope.name, sm.scope.version);
            }
            for m in &sm.metrics {
                let kind = match &m.data {
                    MetricData::Gauge(_) => "Gauge".to_string(),
                    MetricData::Sum(s) => format!("Sum({:?}, monotonic={})", s.temporality, s.monotonic),
                    MetricData::Histogram(h) => format!("Histogram({:?})", h.temporality),
                };
                if verbosity == Verbosity::Normal {
                    let _ = writeln!(out, "{} {} unit={} points={}", m.name, kind, m.unit, m.data.len());
                    continue;
                }
                let _ = writeln!(out, "  Metric {} {} unit={} \"{}\"", m.name, kind, m.unit, m.description);
                match &m.data {
                    MetricData::Gauge(points) => {
                        for p in points {
                            let _ = writeln!(out, "    {} = {:?} @{}", attrs(&p.attributes), p.value, p.time_unix_nano);
                        }
                    }
                    MetricData::Sum(s) => {
                        for p in &s.points {
                            let _ = writeln!(
                                out,
                                "    {} = {:?} @{} since {}",
                                attrs(&p.attributes),
                                p.value,
                                p.time_unix_nano,
                                p.start_time_unix_nano
                            );
                        }
                    }
                    MetricData::Histogram(h) => {
                        for p in &h.points {
                            let _ = writeln!(
                                out,
                                "    {} count={} sum={} bounds={:?} buckets={:?} @{}",
                                attrs(&p.attributes),
                                p.count,
                                p.sum,
                                p.explicit_bounds,
                                p.bucket_counts,
                                p.time_unix_nano
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Renders a flow batch at `verbosity`.
pub fn render_flows(batch: &FlowBatch, verbosity: Verbosity, out: &mut String) {
    let _ = writeln!(out, "Flows\t{{\"records\": {}}}", batch.records.len());
    if verbosity == Verbosity::Basic {
        return;
    }
    for r in &batch.records {
        let _ = write!(
            out,
            "{} {} {} -> {} proto={} dir={} if={} packets={} bytes={}",
            r.time_unix_nano,
            r.kind.as_str(),
            std::net::SocketAddr::new(r.source, r.source_port),
            std::net::SocketAddr::new(r.destination, r.destination_port),
            r.protocol,
            r.direction.as_str(),
            r.ifindex,
            r.packets,
            r.bytes
        );
        if !r.interface.is_empty() {
            let _ = write!(out, " iface={} at={}", r.interface, r.observation_point.as_str());
        }
        if r.tcp_flags != 0 {
            let _ = write!(out, " tcp_flags={:#04x}", r.tcp_flags);
        }
        if let Some(mean) = r.handshake.mean_ns() {
            let _ = write!(out, " handshake={}x{}us", r.handshake.count, mean / 1000);
        }
        if let Some(mean) = r.rtt.mean_ns() {
            let _ = write!(out, " rtt={}us", mean / 1000);
        }
        if let Some(reason) = &r.drop_reason {
            let _ = write!(out, " reason={reason}");
        }
        if let Some(state) = r.tcp_state {
            let _ = write!(out, " state={}", state.as_str());
        }
        if let Some(d) = &r.dns {
            let _ = write!(
                out,
                " dns={} id={} name={} qtype={}",
                d.message_type(),
                d.id,
                d.question_name,
                question_type_name(d.question_type)
            );
            if d.response {
                let _ = write!(out, " rcode={} answers={}", response_code_name(d.response_code), d.answer_count);
                for (i, a) in d.addresses().iter().enumerate() {
                    let _ = write!(out, "{}{a}", if i == 0 { " addresses=" } else { "," });
                }
            }
            if d.latency.count > 0 {
                let _ = write!(out, " duration_ns={}", d.latency.sum_ns);
            }
        }
        if verbosity == Verbosity::Detailed && !r.attributes.is_empty() {
            let _ = write!(out, " {}", attrs(&r.attributes));
        }
        out.push('\n');
    }
}

fn attrs(a: &Attributes) -> String {
    let mut s = String::from("{");
    for (i, kv) in a.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={}", kv.key, kv.value);
    }
    s.push('}');
    s
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn run(mut self: Box<Self>, mut ctx: ExporterContext) -> Result<(), ComponentError> {
        let mut text = String::new();
        while let Some(payload) = ctx.input.recv().await {
            payload.acks().accept();
            let (signal, items) = (payload.signal(), payload.items());
            if self.sampled() {
                text.clear();
                match &payload {
                    Payload::Metrics(m) => render_metrics(m, self.config.verbosity, &mut text),
                    Payload::Flows(f) => render_flows(f, self.config.verbosity, &mut text),
                }
                self.write(&text);
            }
            ctx.start.stats.add_sent(signal, items);
        }
        if let Some(sink) = &mut self.sink {
            sink.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::model::semconv::{self, attr};
    use crate::model::{Direction, FlowKind, FlowRecord, Metric, NumberPoint, Resource, Scope};

    fn batch() -> MetricBatch {
        let resource = Arc::new(Resource { attributes: Attributes::from_pairs([(attr::HOST_NAME, "n1")]) });
        let points = vec![
            NumberPoint::int(Attributes::from_pairs([(attr::NETWORK_IO_DIRECTION, "receive")]), 1, 2, 10),
            NumberPoint::int(Attributes::from_pairs([(attr::NETWORK_IO_DIRECTION, "transmit")]), 1, 2, 20),
        ];
        let packets = Metric::from_def(&semconv::NETWORK_FORWARD_PACKETS, points);
        MetricBatch::single(resource, Arc::new(Scope::default()), vec![packets])
    }

    #[test]
    fn verbosity_levels() {
        let mut out = String::new();
        render_metrics(&batch(), Verbosity::Basic, &mut out);
        assert_eq!(out, "Metrics\t{\"resource metrics\": 1, \"metrics\": 1, \"data points\": 2}\n");
        out.clear();
        render_metrics(&batch(), Verbosity::Normal, &mut out);
        assert!(
            out.ends_with("network.forward.packets Sum(Cumulative, monotonic=true) unit={packet} points=2\n"),
            "{out}"
        );
        out.clear();
        render_metrics(&batch(), Verbosity::Detailed, &mut out);
        assert!(out.contains("Resource {host.name=n1}"), "{out}");
        assert!(out.contains("    {network.io.direction=transmit} = Int(20) @2 since 1\n"), "{out}");
    }

    #[test]
    fn flows_one_line_per_record() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let dst: IpAddr = "2001:db8::2".parse().unwrap();
        let mut r = FlowRecord::new(FlowKind::Drop, src, dst);
        r.protocol = 17;
        r.source_port = 5353;
        r.destination_port = 53;
        r.direction = Direction::Receive;
        r.bytes = 60;
        r.drop_reason = Some("NO_SOCKET".into());
        let b = FlowBatch {
            resource: Arc::new(Resource::default()),
            records: vec![r.clone(), r],
            acks: Default::default(),
        };
        let mut out = String::new();
        render_flows(&b, Verbosity::Normal, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            "0 drop 198.18.0.1:5353 -> [2001:db8::2]:53 proto=17 dir=receive if=0 packets=1 bytes=60 reason=NO_SOCKET"
        );
    }

    #[test]
    fn sampling_keeps_the_first_n_per_second_then_every_mth() {
        let config = DebugConfig { sampling_initial: 2, sampling_thereafter: 3, ..DebugConfig::default() };
        let mut e = DebugExporter::new(config);
        let printed: Vec<bool> = (0..8).map(|_| e.sampled()).collect();
        assert_eq!(printed, vec![true, true, false, false, true, false, false, true]);
    }
}
