//! Configuration: YAML files shaped like an OpenTelemetry Collector config, merged in order,
//! with `${env:VAR:-default}` substitution, `--set` overrides and precise, collected errors.

pub mod de;
pub mod duration;
mod env;
mod error;
mod id;
mod merge;
mod node;
pub mod pattern;
mod print;
pub mod service;
mod yaml;

use std::path::PathBuf;

use serde::de::DeserializeOwned;

pub use env::UnsetVariable;
pub use error::{ConfigError, MAX_QUOTED_BYTES, Problem, Problems, shorten};
pub use id::{ComponentId, PipelineId};
pub use node::{Key, Node, Origin, Resolved, Scalar, Style, Value};
pub use print::render_redacted;
pub use service::ServiceConfig;

/// The embedded default configuration used when `fovea run` gets no `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");

/// Name shown in error positions for the embedded default configuration.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded config/default.yaml>";

/// Where configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Files merged in order; empty means the embedded default.
    pub files: Vec<PathBuf>,
    /// `--set key.path=value` overrides applied after merging.
    pub sets: Vec<String>,
}

/// The merged configuration tree, before component configs are interpreted.
#[derive(Debug, Clone)]
pub struct Document {
    /// The merged root mapping.
    pub root: Node,
    /// Non-fatal notes (unset environment variables ...), to be logged.
    pub warnings: Vec<String>,
    /// `${env:VAR}` references to unset variables, to explain the problems their empty values cause.
    pub unset: Vec<UnsetVariable>,
}

/// Reads, substitutes and merges all sources.
pub fn load(sources: &Sources) -> Result<Document, ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    load_with(sources, &lookup)
}

/// Like [`load`] with an explicit environment (tests).
pub fn load_with(sources: &Sources, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Document, ConfigError> {
    let mut texts = Vec::new();
    if sources.files.is_empty() {
        texts.push((DEFAULT_CONFIG_NAME.to_string(), DEFAULT_CONFIG.to_string()));
    }
    let mut problems = Vec::new();
    for file in &sources.files {
        match read_file(file) {
            Ok(text) => texts.push((file.display().to_string(), text)),
            Err(ConfigError::Invalid(p)) => problems.extend(p),
            Err(e) => return Err(e),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    load_texts(texts, &sources.sets, lookup)
}

/// Largest config file read, in bytes. A Kubernetes ConfigMap holds at most 1 MiB; anything
/// much larger is a mistake (a log or a binary passed with `--config`) that must not be parsed.
pub const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// Reads one config file: at most [`MAX_CONFIG_BYTES`], and UTF-8.
fn read_file(path: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let name = path.display().to_string();
    let read_error = |source| ConfigError::Read { path: name.clone(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    // Read one byte past the cap to tell "at the cap" from "over it" without trusting metadata
    // (pipes and /proc files report no size).
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    let origin = |line, column| Some(Origin { file: std::sync::Arc::from(name.as_str()), line, column });
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::Invalid(vec![Problem::new(
            origin(1, 1),
            "",
            format!(
                "the file is larger than {} MiB, the most a config file may be; check that --config names the right file",
                MAX_CONFIG_BYTES / (1024 * 1024)
            ),
        )]));
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        // Valid UTF-8 up to the offset, so counting chars of the line gives the column.
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        ConfigError::Invalid(vec![Problem::new(
            origin(line as u32, column as u32),
            "",
            format!(
                "not valid UTF-8 at byte offset {offset} (byte 0x{:02x}); config files must be UTF-8: \
                 convert the file, e.g. with `iconv -t UTF-8`",
                e.as_bytes()[offset]
            ),
        )])
    })
}

/// Loads one YAML text as if it were a file called `name` (errors name it), with no
/// environment: the one way tests and benchmarks turn a config snippet into a document.
pub fn load_str(name: &str, text: &str) -> Result<Document, ConfigError> {
    load_texts(vec![(name.to_string(), text.to_string())], &[], &|_| None)
}

/// Substitutes and merges already-read texts `(name, text)` in order, then applies `sets`.
fn load_texts(
    texts: Vec<(String, String)>,
    sets: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, ConfigError> {
    let mut problems = Vec::new();
    let mut unset = Vec::new();
    let mut root: Option<Node> = None;
    for (name, text) in texts {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            let origin = Origin { file: std::sync::Arc::from(name.as_str()), line: 1, column: 1 };
            problems.push(Problem::new(
                Some(origin),
                "",
                format!(
                    "the configuration is larger than {} MiB, the most it may be",
                    MAX_CONFIG_BYTES / (1024 * 1024)
                ),
            ));
            continue;
        }
        let mut node = match yaml::parse(&name, &text) {
            Ok(n) => n,
            Err(e) => {
                problems.extend(e.problems().iter().cloned());
                continue;
            }
        };
        if !node.is_null() && node.as_map().is_none() {
            problems.push(Problem::new(
                Some(node.origin.clone()),
                "",
                "a config file must be a mapping of sections (receivers, processors, exporters, service)",
            ));
            continue;
        }
        env::substitute(&mut node, "", lookup, &mut unset, &mut problems);
        match &mut root {
            None => root = Some(node),
            Some(r) => merge::merge(r, node),
        }
    }
    let mut root = root.unwrap_or_else(|| Node::null(Origin { file: "--set".into(), line: 1, column: 1 }));
    for set in sets {
        if let Err(p) = merge::apply_set(&mut root, set) {
            problems.push(p);
        }
    }
    let warnings = unset.iter().map(|u| format!("{}: {}", u.path, u.explain())).collect();
    if problems.is_empty() {
        Ok(Document { root, warnings, unset })
    } else {
        error::explain_unset(&mut problems, &unset);
        Err(ConfigError::Invalid(problems))
    }
}

/// A component's config: deserialized with unknown keys rejected, then checked as a whole.
pub trait ComponentConfig: DeserializeOwned {
    /// Cross-field checks; report each problem with its relative field path (`sending_queue::queue_size`).
    fn validate(&self, _checks: &mut Checks) {}
}

/// Problems found by [`ComponentConfig::validate`], with field paths relative to the component.
#[derive(Debug, Default)]
pub struct Checks(Vec<(String, String)>);

impl Checks {
    /// Records that `field` (relative path, `::`-separated) is wrong, and why / what to do.
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_string(), message.into()));
    }
}

/// Deserializes and validates a component config from its node, reporting every problem located:
/// all unknown keys, every wrong value, and the checks of [`ComponentConfig::validate`] (those
/// about a field whose wrong value was left out are not repeated). A null body means "all defaults".
pub fn parse_component<C: ComponentConfig>(node: &Node, path: &str) -> Result<C, ConfigError> {
    let collected = de::from_node_all::<C>(node, path);
    let mut problems = collected.problems;
    let Some(config) = collected.value else { return Err(ConfigError::Invalid(problems)) };
    let mut checks = Checks::default();
    config.validate(&mut checks);
    let about_left_out = |field: &str, message: &str| {
        collected.left_out.iter().any(|l| {
            let name = l.rsplit("::").next().unwrap_or(l);
            field == l || field.starts_with(&format!("{l}::")) || message.contains(name)
        })
    };
    for (field, message) in checks.0 {
        if about_left_out(&field, &message) {
            continue;
        }
        let at = node.locate(&field);
        let full = if field.is_empty() { path.to_string() } else { format!("{path}::{field}") };
        problems.push(Problem::new(Some(at.origin.clone()), full, message));
    }
    if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
}

/// The sections of a configuration, split into component entries and the typed service section.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// `receivers:` entries.
    pub receivers: Vec<Entry>,
    /// `processors:` entries.
    pub processors: Vec<Entry>,
    /// `exporters:` entries.
    pub exporters: Vec<Entry>,
    /// `connectors:` entries.
    pub connectors: Vec<Entry>,
    /// `extensions:` entries.
    pub extensions: Vec<Entry>,
    /// `service:`; `None` if it failed to parse (the problems are reported).
    pub service: Option<ServiceConfig>,
    /// Where `service:` is, for locating pipeline problems.
    pub service_node: Option<Node>,
}

/// One configured component.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its id.
    pub id: ComponentId,
    /// Where its key is written.
    pub origin: Origin,
    /// Its config body (null = defaults).
    pub body: Node,
}

const SECTIONS: [&str; 6] = ["receivers", "processors", "exporters", "extensions", "connectors", "service"];

/// Splits the document into sections, recording structural problems in `problems`.
pub fn spec(doc: &Document, problems: &mut Problems) -> Spec {
    let mut spec = Spec::default();
    let Some(entries) = doc.root.as_map() else {
        problems.push(Problem::new(
            Some(doc.root.origin.clone()),
            "",
            "the configuration is empty; it needs receivers, exporters and service::pipelines",
        ));
        return spec;
    };
    for (key, value) in entries {
        match key.name.as_str() {
            "receivers" => spec.receivers = section_entries(&key.name, value, problems),
            "processors" => spec.processors = section_entries(&key.name, value, problems),
            "exporters" => spec.exporters = section_entries(&key.name, value, problems),
            "connectors" => spec.connectors = section_entries(&key.name, value, problems),
            "extensions" => spec.extensions = section_entries(&key.name, value, problems),
            "service" => {
                spec.service_node = Some(value.clone());
                spec.service = Some(service_config(value, problems));
            }
            other => problems.push(Problem::new(
                Some(key.origin.clone()),
                other,
                format!("unknown section; valid sections: {}", SECTIONS.join(", ")),
            )),
        }
    }
    if spec.service_node.is_none() {
        problems.push(Problem::new(
            Some(doc.root.origin.clone()),
            "service",
            "missing section; add service::pipelines",
        ));
    }
    spec
}

fn section_entries(section: &str, node: &Node, problems: &mut Problems) -> Vec<Entry> {
    if node.is_null() {
        return Vec::new();
    }
    let Some(map) = node.as_map() else {
        problems.push(Problem::new(
            Some(node.origin.clone()),
            section,
            format!("expected a mapping of component ids, found {}", node.kind_name()),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, body) in map {
        match ComponentId::parse(&key.name) {
            Ok(id) => out.push(Entry { id, origin: key.origin.clone(), body: body.clone() }),
            Err(msg) => problems.push(Problem::new(Some(key.origin.clone()), format!("{section}::{}", key.name), msg)),
        }
    }
    out
}

/// Parses `service:` key by key, so a problem in one part does not hide problems in another.
fn service_config(node: &Node, problems: &mut Problems) -> ServiceConfig {
    let mut config: ServiceConfig = match de::from_node(&Node::null(node.origin.clone()), "service") {
        Ok(c) => c,
        Err(p) => {
            problems.push(p);
            return ServiceConfig::default();
        }
    };
    let Some(entries) = node.as_map() else {
        if !node.is_null() {
            problems.push(Problem::new(
                Some(node.origin.clone()),
                "service",
                format!("expected a mapping, found {}", node.kind_name()),
            ));
        }
        return config;
    };
    for (key, value) in entries {
        let path = format!("service::{}", key.name);
        match key.name.as_str() {
            "extensions" => all(value, &path, problems, |v| config.extensions = v),
            "pipelines" => all(value, &path, problems, |v| config.pipelines = v),
            "telemetry" => all(value, &path, problems, |v| config.telemetry = v),
            "resource" => all(value, &path, problems, |v| config.resource = v),
            "shutdown_timeout" => match duration_from_node(value, &path) {
                Ok(v) => config.shutdown_timeout = v,
                Err(p) => problems.push(p),
            },
            other => problems.push(Problem::new(
                Some(key.origin.clone()),
                format!("service::{}", shorten(other)),
                format!("unknown field `{}`; valid fields: {}", shorten(other), service::SERVICE_FIELDS.join(", ")),
            )),
        }
    }
    config
}

/// Reads one part of `service:` with every problem recorded; `set` takes the value when there is one.
fn all<T: DeserializeOwned>(node: &Node, path: &str, problems: &mut Problems, set: impl FnOnce(T)) {
    let collected = de::from_node_all::<T>(node, path);
    for p in collected.problems {
        problems.push(p);
    }
    if let Some(v) = collected.value {
        set(v);
    }
}

fn duration_from_node(node: &Node, path: &str) -> Result<std::time::Duration, Problem> {
    #[derive(serde::Deserialize)]
    struct D(#[serde(deserialize_with = "duration::deserialize")] std::time::Duration);
    de::from_node::<D>(node, path).map(|d| d.0)
}

/// Checks, without creating anything, that the agent can write in `dir`: it is a writable
/// directory, or it does not exist yet and its nearest existing parent is one (so it can be
/// created at start). The error says what is wrong and what to do.
pub fn writable_directory(dir: &std::path::Path) -> Result<(), String> {
    let shown = dir.display();
    let mut existing = dir;
    let created = loop {
        match std::fs::metadata(existing) {
            Ok(m) if m.is_dir() => break existing != dir,
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory, so {shown} cannot be used; choose another path",
                    existing.display()
                ));
            }
            Err(e) => match existing.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
                // A relative path: the current directory is its parent.
                _ if existing != std::path::Path::new(".") => existing = std::path::Path::new("."),
                _ => return Err(format!("cannot check {shown}: {e}")),
            },
        }
    };
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{shown} contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        let what = if created {
            format!("{shown} does not exist and cannot be created in {}", existing.display())
        } else {
            format!("{shown} is not writable")
        };
        return Err(format!(
            "{what} ({e}); give the agent write access (a hostPath or emptyDir volume in Kubernetes) or choose another path"
        ));
    }
    Ok(())
}
