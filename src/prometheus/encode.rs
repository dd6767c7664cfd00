//! The text exposition: Prometheus text format 0.0.4 and OpenMetrics 1.0 text.
//!
//! [`encode_metrics`] is the entry point for metrics that have no resource (the agent's own
//! telemetry); the scrape exporter encodes its [`Store`] with [`Store::encode`].

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::Instant;

use super::options::StoreOptions;
use super::store::{Family, Labels, Merged, PromKind, Scratch, Store};
use crate::model::Metric;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format to answer a scrape with, from its `Accept` header: OpenMetrics only when
    /// enabled and asked for.
    pub fn negotiate(accept: Option<&str>, open_metrics_enabled: bool) -> Format {
        match accept {
            Some(a) if open_metrics_enabled && a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

/// Encodes metrics without a resource (the agent's own telemetry) in the Prometheus text format,
/// with the OpenTelemetry translation (`fovea.exporter.sent_items` -> `fovea_exporter_sent_items_total`).
pub fn encode_metrics(metrics: &[Metric], out: &mut String) {
    encode_metrics_with(metrics, StoreOptions::plain(), out);
}

/// Like [`encode_metrics`] with other naming choices (a `pull` reader's scope labels and suffixes).
pub fn encode_metrics_with(metrics: &[Metric], options: StoreOptions, out: &mut String) {
    let mut store = Store::new(options);
    store.fold_unattributed(metrics, Instant::now());
    store.encode(Format::Text, false, out);
}

/// The largest integer below which every integer is exactly an f64.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A sample value: integers as integers, special values as Prometheus spells them.
fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < EXACT_INTEGER {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A float the way Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it, as client_golang does
/// for `le`: shortest digits, exponent form below 1e-4 and from 1e6 (`1e+06`), so `le` values
/// match what otelcol exposes. OpenMetrics wants a `.0` on integral values (`1.0`).
pub fn write_go_float(out: &mut String, v: f64, open_metrics: bool) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let start = out.len();
    // Shortest digits in scientific form first (`1.5e-5`), written in place to avoid allocating.
    let _ = write!(out, "{v:e}");
    let e = out[start..].find('e').map_or(out.len(), |i| start + i);
    let exp: i32 = out.get(e + 1..).and_then(|x| x.parse().ok()).unwrap_or(0);
    if v != 0.0 && !(-4..6).contains(&exp) {
        out.truncate(e);
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else {
        out.truncate(start);
        let _ = write!(out, "{v}");
    }
    if open_metrics && !out[start..].contains(['.', 'e']) {
        out.push_str(".0");
    }
}

fn escape_help(text: &str, format: Format, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Writes one sample line: `name{labels,extra} value timestamp`.
fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
    value: f64,
    timestamp: Option<(u64, Format)>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some((k, v)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    if let Some((ns, format)) = timestamp {
        let ms = ns / 1_000_000;
        let _ = match format {
            Format::Text => write!(out, " {ms}"),
            Format::OpenMetrics => write!(out, " {}.{:03}", ms / 1000, ms % 1000),
        };
    }
    out.push('\n');
}

impl Store {
    /// Writes the whole exposition: `target_info` first, then every family in name order.
    pub fn encode(&self, format: Format, send_timestamps: bool, out: &mut String) {
        out.reserve(self.len() * 96);
        self.encode_target_info(out);
        let mut scratch = Scratch::default();
        for family in self.families_in_order() {
            self.encode_family(family, format, send_timestamps, &mut scratch, out);
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
    }

    fn encode_target_info(&self, out: &mut String) {
        if self.options().resource_labels {
            return;
        }
        let seen: BTreeSet<String> = self
            .resource_ids()
            .filter_map(|i| self.target_info_labels(i))
            .map(|labels| Labels::new(labels).text().to_string())
            .collect();
        if seen.is_empty() {
            return;
        }
        let name = self.target_info_name();
        // A gauge in both formats, as otelcol exposes it, so it is stored as `target_info` either way.
        let _ = writeln!(out, "# HELP {name} Target metadata");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for labels in &seen {
            write_sample(out, &name, "", labels, None, 1.0, None);
        }
    }

    fn encode_family(&self, family: &Family, format: Format, send_timestamps: bool, s: &mut Scratch, out: &mut String) {
        let name = family.name.as_str();
        // OpenMetrics names a counter family without `_total`; its samples carry it.
        let meta = match (format, family.kind) {
            (Format::OpenMetrics, PromKind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        if !family.help.is_empty() {
            let _ = write!(out, "# HELP {meta} ");
            escape_help(&family.help, format, out);
            out.push('\n');
        }
        let type_name = match family.kind {
            PromKind::Counter => "counter",
            PromKind::Gauge => "gauge",
            PromKind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# TYPE {meta} {type_name}");
        for output in self.outputs_of(family) {
            let Some((merged, time)) = self.merge(family.merge, &output.members, s) else { continue };
            let ts = send_timestamps.then_some((time, format));
            let labels = output.labels.text();
            match merged {
                Merged::Number(v) => write_sample(out, name, "", labels, None, v * family.scale, ts),
                Merged::Hist(h) => {
                    let (count, sum) = (h.count, h.sum);
                    let hist = Buckets { bounds: &h.bounds, buckets: &h.buckets, count, sum, scale: family.scale };
                    write_histogram(out, name, labels, &hist, ts, format, &mut s.le);
                }
                Merged::SummedHist(bounds) => {
                    let buckets = std::mem::take(&mut s.buckets);
                    let hist =
                        Buckets { bounds: &bounds, buckets: &buckets, count: s.count, sum: s.sum, scale: family.scale };
                    write_histogram(out, name, labels, &hist, ts, format, &mut s.le);
                    s.buckets = buckets;
                }
            }
        }
    }
}

/// A histogram's values as exposed: bounds and sum times `scale`.
struct Buckets<'a> {
    bounds: &'a [f64],
    buckets: &'a [u64],
    count: u64,
    sum: f64,
    scale: f64,
}

fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &Buckets<'_>,
    ts: Option<(u64, Format)>,
    format: Format,
    le: &mut String,
) {
    let open_metrics = format == Format::OpenMetrics;
    if h.buckets.len() == h.bounds.len() + 1 {
        let mut cumulative = 0u64;
        for (bound, n) in h.bounds.iter().zip(h.buckets) {
            cumulative += n;
            le.clear();
            write_go_float(le, *bound * h.scale, open_metrics);
            write_sample(out, name, "_bucket", labels, Some(("le", le)), cumulative as f64, ts);
        }
    }
    write_sample(out, name, "_bucket", labels, Some(("le", "+Inf")), h.count as f64, ts);
    write_sample(out, name, "_sum", labels, None, h.sum * h.scale, ts);
    write_sample(out, name, "_count", labels, None, h.count as f64, ts);
}
