//! OpenTelemetry -> Prometheus name translation, as otelcol's `prometheus` exporter does it with
//! the `UnderscoreEscapingWithSuffixes` strategy (prometheus/otlptranslator): metric names are
//! split on every character outside `[a-zA-Z0-9:]`, the unit and type suffixes are added as
//! tokens, and the tokens are joined with `_`; label names have invalid characters replaced.

use crate::model::AttrValue;

/// What an OpenTelemetry metric is, as far as its Prometheus name and type are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A gauge: Prometheus `gauge`, unit `1` becomes `_ratio`.
    Gauge,
    /// A monotonic sum: Prometheus `counter` with `_total`.
    Counter,
    /// A non-monotonic sum: Prometheus `gauge`, no `_total`, no `_ratio`.
    UpDownCounter,
    /// An explicit-bucket histogram: `_bucket{le}`, `_sum`, `_count`.
    Histogram,
}

/// UCUM units and the Prometheus base-unit words they become.
const UNITS: &[(&str, &str)] = &[
    ("d", "days"),
    ("h", "hours"),
    ("min", "minutes"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
    ("By", "bytes"),
    ("KiBy", "kibibytes"),
    ("MiBy", "mebibytes"),
    ("GiBy", "gibibytes"),
    ("TiBy", "tebibytes"),
    ("kBy", "kilobytes"),
    ("KBy", "kilobytes"),
    ("MBy", "megabytes"),
    ("GBy", "gigabytes"),
    ("TBy", "terabytes"),
    ("m", "meters"),
    ("V", "volts"),
    ("A", "amperes"),
    ("J", "joules"),
    ("W", "watts"),
    ("g", "grams"),
    ("Cel", "celsius"),
    ("Hz", "hertz"),
    ("1", ""),
    ("%", "percent"),
];

/// The denominators of `a/b` units, in the singular (`By/s` -> `bytes_per_second`).
const PER_UNITS: &[(&str, &str)] =
    &[("s", "second"), ("m", "minute"), ("h", "hour"), ("d", "day"), ("w", "week"), ("mo", "month"), ("y", "year")];

fn lookup(table: &[(&str, &'static str)], unit: &str) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == unit).map(|(_, v)| *v)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The main and `per_` suffix words of a UCUM unit; `{annotations}` give nothing.
fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let per = parts.next().map(str::trim).unwrap_or("");
    let main = if main.is_empty() || main.contains(['{', '}']) {
        String::new()
    } else {
        clean_unit(lookup(UNITS, main).unwrap_or(main))
    };
    let per = if per.is_empty() || per.contains(['{', '}']) {
        String::new()
    } else {
        clean_unit(&format!("per_{}", lookup(PER_UNITS, per).unwrap_or(per)))
    };
    (main, per)
}

/// Invalid characters become `_`, runs of `_` collapse, a leading `_` goes.
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        let c = if is_name_char(c) { c } else { '_' };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    out
}

/// The Prometheus metric name of an OpenTelemetry metric.
///
/// With `add_suffixes` (otelcol's default) the unit words and `_total` / `_ratio` are appended
/// unless already present as a token; without, the name is only sanitized. The namespace, when
/// not empty, is sanitized and prepended. Returns an empty string when nothing valid remains.
pub fn metric_name(name: &str, unit: &str, kind: MetricKind, namespace: &str, add_suffixes: bool) -> String {
    let namespace: Vec<&str> = namespace.split(|c: char| !is_name_char(c)).filter(|t| !t.is_empty()).collect();
    let mut tokens: Vec<&str>;
    let main_unit;
    let per_unit;
    if add_suffixes {
        tokens = name.split(|c: char| !is_name_char(c)).filter(|t| !t.is_empty()).collect();
        (main_unit, per_unit) = unit_suffixes(unit);
        let mut main = main_unit.as_str();
        let mut per = per_unit.as_str();
        if tokens.contains(&main) {
            main = "";
        }
        if per == "per_" {
            per = "";
        } else {
            per = per.trim_end_matches('_');
            if tokens.contains(&per) {
                per = "";
            }
        }
        if !per.is_empty() {
            main = main.trim_end_matches('_');
        }
        for suffix in [main, per] {
            if !suffix.is_empty() {
                tokens.push(suffix);
            }
        }
        if kind == MetricKind::Counter {
            tokens.retain(|t| *t != "total");
            tokens.push("total");
        }
        if unit == "1" && kind == MetricKind::Gauge {
            tokens.retain(|t| *t != "ratio");
            tokens.push("ratio");
        }
    } else {
        tokens = name.split(|c: char| !(is_name_char(c) || c == '_')).filter(|t| !t.is_empty()).collect();
    }
    let mut out = namespace.join("_");
    for t in tokens {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(t);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.chars().all(|c| c == '_') {
        out.clear();
    }
    out
}

/// The Prometheus label name of an attribute key: invalid characters become `_`; a leading digit
/// gets `key_`, a single leading `_` gets `key` (`__reserved` is kept). Empty when nothing valid
/// remains (the attribute cannot be a label).
pub fn label_name(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.chars().all(|c| c == '_') {
        return String::new();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// True when `name` is a valid Prometheus label name that Prometheus does not reserve.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// An attribute value as label text (what pdata's `AsString` gives).
pub fn attr_text(value: &AttrValue, out: &mut String) {
    use std::fmt::Write;
    match value {
        AttrValue::Str(s) => out.push_str(s),
        AttrValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        AttrValue::Double(d) => {
            let _ = write!(out, "{d}");
        }
        AttrValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}
