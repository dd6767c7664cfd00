//! `exporters::flowlog` configuration (rotation keys as otelcol's `file` exporter names them).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};

/// The file format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Apache Parquet (`.parquet`): columnar, for data lakes, DuckDB, Spark.
    #[default]
    Parquet,
    /// Apache Arrow IPC stream (`.arrows`): record batches as they came, cheap to write.
    Arrow,
}

impl Format {
    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Arrow => "arrows",
        }
    }
}

/// Column compression.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (Parquet pages, Arrow IPC record-batch buffers).
    #[default]
    Zstd,
    /// None.
    None,
}

/// `rotation:` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Complete a file once it holds this many megabytes (MiB; fractions allowed).
    pub max_megabytes: f64,
    /// Complete a file once it has been open this long, even if it is small.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub max_age: Duration,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig { max_megabytes: 64.0, max_age: Duration::from_secs(300) }
    }
}

/// `flowlog:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowlogConfig {
    /// Where files are written (created if missing). Required.
    pub directory: PathBuf,
    /// `parquet` or `arrow` (Arrow IPC stream).
    pub format: Format,
    /// `zstd` or `none`.
    pub compression: Compression,
    /// When a file is completed.
    pub rotation: RotationConfig,
    /// Disk budget for completed files plus the open one (MiB): past it the oldest completed
    /// files are deleted (and counted).
    pub max_total_megabytes: f64,
    /// Parquet: rows per row group (a group is also written when the open file is rotated).
    pub row_group_size: usize,
}

impl Default for FlowlogConfig {
    fn default() -> Self {
        FlowlogConfig {
            directory: PathBuf::new(),
            format: Format::Parquet,
            compression: Compression::Zstd,
            rotation: RotationConfig::default(),
            max_total_megabytes: 1024.0,
            row_group_size: 65536,
        }
    }
}

/// Bytes in `mib` MiB.
pub fn mib_bytes(mib: f64) -> u64 {
    (mib * 1024.0 * 1024.0) as u64
}

impl ComponentConfig for FlowlogConfig {
    fn validate(&self, checks: &mut Checks) {
        if self.directory.as_os_str().is_empty() {
            checks.fail(
                "directory",
                "required: the directory flow log files are written to (e.g. /var/lib/fovea/flowlogs)",
            );
        }
        if !(self.rotation.max_megabytes.is_finite() && mib_bytes(self.rotation.max_megabytes) >= 4096) {
            checks.fail("rotation::max_megabytes", "must be at least 0.004 (4 KiB)");
        }
        if self.rotation.max_age < Duration::from_secs(1) {
            checks.fail("rotation::max_age", "must be at least 1s");
        }
        if !(self.max_total_megabytes.is_finite() && self.max_total_megabytes >= 2.0 * self.rotation.max_megabytes) {
            checks.fail(
                "max_total_megabytes",
                format!(
                    "must be at least twice rotation::max_megabytes ({}), so one completed file fits next to the open one",
                    self.rotation.max_megabytes
                ),
            );
        }
        if self.row_group_size == 0 {
            checks.fail("row_group_size", "must be at least 1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Result<FlowlogConfig, String> {
        let doc = crate::config::load_str("test.yaml", &format!("exporters:\n  flowlog: {body}\n"))
            .map_err(|e| e.to_string())?;
        let node = doc.root.get("exporters").and_then(|r| r.get("flowlog")).expect("node");
        crate::config::parse_component(node, "exporters::flowlog").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_zstd_parquet_rotated_at_64_mib_or_5_minutes() {
        let c = config("{directory: /tmp/x}").expect("valid");
        assert_eq!((c.format, c.compression), (Format::Parquet, Compression::Zstd));
        assert_eq!(c.rotation, RotationConfig { max_megabytes: 64.0, max_age: Duration::from_secs(300) });
        assert_eq!((c.max_total_megabytes, c.row_group_size), (1024.0, 65536));
        let c = config("{directory: /tmp/x, format: arrow, compression: none, rotation: {max_megabytes: 0.5}, max_total_megabytes: 2}")
            .expect("valid");
        assert_eq!((c.format.extension(), mib_bytes(c.rotation.max_megabytes)), ("arrows", 512 * 1024));
    }

    #[test]
    fn errors_name_the_field() {
        let e = config("{}").expect_err("no directory");
        assert!(e.contains("directory") && e.contains("required"), "{e}");
        let e = config("{directory: /x, rotation: {max_megabytes: 10}, max_total_megabytes: 15}").expect_err("budget");
        assert!(e.contains("max_total_megabytes") && e.contains("twice"), "{e}");
        let e = config("{directory: /x, format: csv}").expect_err("format");
        assert!(e.contains("format") && e.contains("parquet"), "{e}");
        let e = config("{directory: /x, rotation: {max_size: 3}}").expect_err("unknown");
        assert!(e.contains("max_size"), "{e}");
    }
}
