//! docs/metrics.md's metric tables come from the code: the `MetricDef`s every component's
//! `Factory` lists (`fovea::components::builtin()`), the agent's own `semconv::own::METRICS` and
//! the flow-log attributes `semconv::flow_log::ATTRIBUTES`. This test renders each generated
//! section and fails with a diff when the file disagrees.
//!
//! `FOVEA_BLESS=1 cargo test --test docs_metrics` rewrites the sections between the
//! `<!-- generated: NAME ... -->` and `<!-- end generated: NAME -->` markers; everything outside
//! them is hand-written prose and stays as it is.

use fovea::model::semconv::{flow_log, own};
use fovea::model::{Instrument, MetricDef};
use fovea::prometheus::{MetricKind, metric_name, retina_metric_name};
use fovea::telemetry::ComponentKind;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
const BLESS: &str = "FOVEA_BLESS=1 cargo test --test docs_metrics";

/// One metric of a table and the components that emit it.
struct Row {
    def: &'static MetricDef,
    emitted_by: Vec<String>,
}

/// A column of a generated metric table.
struct Column {
    header: &'static str,
    cell: fn(&Row) -> String,
}

fn code(text: &str) -> String {
    format!("`{text}`")
}

fn code_list(items: &[&str]) -> String {
    if items.is_empty() { "none".to_string() } else { items.iter().map(|i| code(i)).collect::<Vec<_>>().join(", ") }
}

const NAME: Column = Column { header: "OpenTelemetry name", cell: (|r| code(r.def.name)) };
const TYPE: Column = Column { header: "type", cell: (|r| r.def.instrument.as_str().to_string()) };
const UNIT: Column =
    Column { header: "unit", cell: (|r| if r.def.unit.is_empty() { "none".to_string() } else { code(r.def.unit) }) };
const ATTRIBUTES: Column = Column { header: "attributes", cell: (|r| code_list(r.def.attributes)) };
const EMITTED_BY: Column = Column { header: "receiver", cell: (|r| r.emitted_by.join(", ")) };
const DESCRIPTION: Column = Column { header: "description", cell: (|r| r.def.description.to_string()) };
const PROMETHEUS: Column = Column { header: "Prometheus name", cell: (|r| code(&prometheus_name(r.def))) };
const RETINA: Column = Column { header: "Retina name (`naming: retina`)", cell: (|r| retina_names(r.def)) };

/// The name the Prometheus exporters give a metric by default (the shared translation).
fn prometheus_name(def: &MetricDef) -> String {
    let kind = match def.instrument {
        Instrument::Counter => MetricKind::Counter,
        Instrument::Gauge => MetricKind::Gauge,
        Instrument::Histogram => MetricKind::Histogram,
    };
    metric_name(def.name, def.unit, kind, "", true)
}

/// Retina's names of a metric from the Retina table: node level, then pod level.
fn retina_names(def: &MetricDef) -> String {
    let (node, pod) = retina_metric_name(def.name);
    let mut parts: Vec<String> = node.iter().map(|n| code(n)).collect();
    parts.extend(pod.iter().map(|n| format!("{} (pod level)", code(n))));
    if parts.is_empty() { "none (OpenTelemetry name)".to_string() } else { parts.join(", ") }
}

/// A generated part of docs/metrics.md.
enum Section {
    /// A table of metrics, one row per definition.
    Table { name: &'static str, columns: &'static [Column], rows: fn() -> Vec<Row> },
    /// A comma-separated list of names on one line.
    List { name: &'static str, items: fn() -> Vec<&'static str> },
}

impl Section {
    fn name(&self) -> &'static str {
        match self {
            Section::Table { name, .. } | Section::List { name, .. } => name,
        }
    }
}

const SECTIONS: &[Section] = &[
    Section::Table {
        name: "component metrics",
        columns: &[NAME, TYPE, UNIT, ATTRIBUTES, EMITTED_BY, DESCRIPTION, PROMETHEUS, RETINA],
        rows: component_rows,
    },
    Section::List { name: "flow log attributes", items: || flow_log::ATTRIBUTES.to_vec() },
    Section::Table {
        name: "own metrics",
        columns: &[NAME, TYPE, UNIT, ATTRIBUTES, DESCRIPTION, PROMETHEUS],
        rows: || own::METRICS.iter().map(|def| Row { def, emitted_by: vec![] }).collect(),
    },
];

/// Every metric some component lists, in registry order, with the components that emit it.
fn component_rows() -> Vec<Row> {
    let registry = fovea::components::builtin();
    let mut rows: Vec<Row> = Vec::new();
    for f in registry.factories() {
        let who = if f.kind == ComponentKind::Receiver {
            f.type_name.to_string()
        } else {
            format!("{} ({})", f.type_name, f.kind.as_str())
        };
        for def in f.metrics {
            match rows.iter_mut().find(|r| r.def.name == def.name) {
                Some(row) => {
                    assert_eq!(row.def, def, "{} is defined twice, differently", def.name);
                    row.emitted_by.push(who.clone());
                }
                None => rows.push(Row { def, emitted_by: vec![who.clone()] }),
            }
        }
    }
    rows
}

fn begin_marker(name: &str) -> String {
    format!("<!-- generated: {name} (from the code; {BLESS} rewrites it) -->")
}

fn end_marker(name: &str) -> String {
    format!("<!-- end generated: {name} -->")
}

/// The byte range of section `name`'s body (between the markers' lines) in `doc`.
fn body_range(doc: &str, name: &str) -> Result<std::ops::Range<usize>, String> {
    let (begin, end) = (begin_marker(name), end_marker(name));
    let missing =
        || format!("docs/metrics.md has no `{begin}` ... `{end}` pair; put the markers where the section belongs");
    let start = doc.find(&begin).ok_or_else(missing)? + begin.len() + 1;
    let stop = start + doc[start..].find(&end).ok_or_else(missing)?;
    Ok(start..stop)
}

/// Cells of a markdown table row.
fn cells(line: &str) -> Vec<String> {
    line.trim().trim_start_matches('|').trim_end_matches('|').split('|').map(|c| c.trim().to_string()).collect()
}

/// Renders `section`.
fn render(section: &Section) -> String {
    match section {
        Section::List { items, .. } => format!("{}\n", code_list(&items())),
        Section::Table { columns, rows, .. } => {
            let mut lines = vec![
                format!("| {} |", columns.iter().map(|c| c.header).collect::<Vec<_>>().join(" | ")),
                format!("|{}", "---|".repeat(columns.len())),
            ];
            for row in rows() {
                let cells: Vec<String> = columns.iter().map(|c| (c.cell)(&row)).collect();
                lines.push(format!("| {} |", cells.join(" | ")));
            }
            lines.join("\n") + "\n"
        }
    }
}

/// A line diff of `file` against `code` (`-` only in the file, `+` only from the code).
fn diff(file: &str, code: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (file.lines().collect(), code.lines().collect());
    // Longest common subsequence table, from the ends.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

#[test]
fn docs_metrics_md_agrees_with_the_metric_definitions() {
    let bless = std::env::var("FOVEA_BLESS").is_ok_and(|v| v == "1");
    let mut doc = std::fs::read_to_string(DOCS).expect("docs/metrics.md");
    let mut failures = Vec::new();
    for section in SECTIONS {
        let range = match body_range(&doc, section.name()) {
            Ok(r) => r,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let want = render(section);
        if doc[range.clone()] == want {
            continue;
        }
        if bless {
            doc.replace_range(range, &want);
        } else {
            failures.push(format!(
                "docs/metrics.md section `{}` disagrees with the code (- in the file, + from the code); \
                 `{BLESS}` rewrites it:\n{}",
                section.name(),
                diff(&doc[range], &want)
            ));
        }
    }
    if bless {
        std::fs::write(DOCS, &doc).expect("write docs/metrics.md");
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn the_retina_table_names_only_defined_metrics() {
    let doc = std::fs::read_to_string(DOCS).expect("docs/metrics.md");
    let start = doc.find("## Retina naming").expect("docs/metrics.md has a `## Retina naming` section");
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let known: Vec<&str> = component_rows().iter().map(|r| r.def.name).collect();
    let mut named = 0;
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let row = cells(line);
        let name = row[0].split('`').nth(1).unwrap_or_default();
        assert!(known.contains(&name), "the Retina table names `{name}`, which no component emits");
        let retina = row[1].trim_matches('`');
        let (node, pod) = retina_metric_name(name);
        assert!(
            node.contains(&retina) || pod.contains(&retina),
            "the Retina table maps `{name}` to `{retina}`; the code maps it to {node:?} / {pod:?}"
        );
        named += 1;
    }
    assert!(named > 0, "no rows found in the Retina table");
}
