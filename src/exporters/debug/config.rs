//! `exporters::debug` configuration (otelcol's keys).

use serde::Deserialize;

use crate::config::ComponentConfig;

/// How much the debug exporter prints.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per batch.
    #[default]
    Basic,
    /// One line per metric or flow record.
    Normal,
    /// Every data point with attributes, resource and scope.
    Detailed,
}

/// Where the output goes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

/// `debug:` settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// `basic`, `normal` or `detailed`.
    pub verbosity: Verbosity,
    /// Print the first N batches of each second (0 = all), like otelcol's `sampling_initial`.
    pub sampling_initial: u32,
    /// After that, print every Nth batch within the second (0 = none), like `sampling_thereafter`.
    pub sampling_thereafter: u32,
    /// `stdout` (default) or `stderr`.
    pub output: Stream,
}

impl ComponentConfig for DebugConfig {}
