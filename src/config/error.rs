//! Configuration problems: each one names where it is (file, line, column), which key
//! (`exporters::prometheus::endpiont`) and what to do about it.

use std::borrow::Cow;
use std::fmt;

use super::env::UnsetVariable;
use super::node::Origin;

/// Longest value (in bytes) quoted whole in a message; longer ones are cut with [`shorten`].
pub const MAX_QUOTED_BYTES: usize = 120;

/// Longest message or path a problem keeps; anything longer is cut in the middle, so a huge
/// value that slipped into a message cannot flood the terminal or the log.
const MAX_MESSAGE_BYTES: usize = 2048;

/// `text` when short, else its start and how long it was: `aaaa… (52428800 bytes)`.
pub fn shorten(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_QUOTED_BYTES {
        return Cow::Borrowed(text);
    }
    let cut = floor_char_boundary(text, MAX_QUOTED_BYTES - 20);
    Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len()))
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Cuts the middle out of an over-long message, keeping its start and its end (the advice).
fn bound(text: String) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text;
    }
    let head = floor_char_boundary(&text, MAX_MESSAGE_BYTES / 2);
    let mut tail = text.len() - MAX_MESSAGE_BYTES / 4;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{} … ({} bytes left out) … {}", &text[..head], tail - head, &text[tail..])
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Where in which file the offending key or value is, when known.
    pub origin: Option<Origin>,
    /// Full `::`-joined path of the key (`exporters::otlp::sending_queue::queue_size`).
    pub path: String,
    /// What is wrong and, where possible, the valid choices.
    pub message: String,
}

impl Problem {
    /// A problem at `path`, located at `origin`.
    pub fn new(origin: Option<Origin>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { origin, path: bound(path.into()), message: bound(message.into()) }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Errors of the configuration module. Every variant carries enough context to fix the input.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read config file {path}: {source}; check that the path exists and is readable")]
    Read {
        /// The path given with `--config`.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration was read but is invalid; all problems found are listed.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems (empty for read errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            ConfigError::Read { .. } => &[],
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    let mut out =
        format!("invalid configuration: {} problem{}", problems.len(), if problems.len() == 1 { "" } else { "s" });
    for p in problems {
        out.push_str("\n  - ");
        out.push_str(&p.to_string());
    }
    out
}

/// Collects problems while walking a configuration, so all of them are reported together.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records one problem.
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    /// Records every problem of another error.
    pub fn extend(&mut self, err: ConfigError) {
        match err {
            ConfigError::Invalid(p) => self.0.extend(p),
            other => self.0.push(Problem::new(None, "", other.to_string())),
        }
    }

    /// Says, in each problem about a value that came from an unset `${env:VAR}`, which variable
    /// it was and where it is used.
    pub fn explain_unset(&mut self, unset: &[UnsetVariable]) {
        explain_unset(&mut self.0, unset);
    }

    /// Number of problems recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, otherwise all problems.
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            return Ok(value);
        }
        // Report in reading order: by file, then line, then column.
        self.0.sort_by(|a, b| {
            let key = |p: &Problem| p.origin.as_ref().map(|o| (o.file.clone(), o.line, o.column));
            key(a).cmp(&key(b))
        });
        Err(ConfigError::Invalid(self.0))
    }
}

/// Appends to each problem caused by an empty value from an unset variable which variable it was.
pub(super) fn explain_unset(problems: &mut [Problem], unset: &[UnsetVariable]) {
    for p in problems.iter_mut() {
        let cause = unset.iter().find(|u| {
            p.origin.as_ref() == Some(&u.origin) || p.path == u.path || p.path.starts_with(&format!("{}::", u.path))
        });
        if let Some(u) = cause {
            p.message = bound(format!("{}; {}", p.message, u.explain()));
        }
    }
}
