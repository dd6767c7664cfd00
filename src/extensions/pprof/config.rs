//! `extensions::pprof` configuration (otelcol's pprofextension keys and defaults).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};
use crate::server::ListenAddress;

/// `pprof:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PprofConfig {
    /// `host:port` to serve on; loopback by default, since a profile shows the agent's internals.
    pub endpoint: String,
    /// Go's block profile rate: only `0` (off) is accepted, fovea is not a Go program.
    pub block_profile_fraction: i64,
    /// Go's mutex profile rate: only `0` (off) is accepted.
    pub mutex_profile_fraction: i64,
    /// Profile the CPU from start to stop and write the profile to this file.
    pub save_to_file: Option<PathBuf>,
}

impl Default for PprofConfig {
    fn default() -> Self {
        PprofConfig {
            endpoint: "localhost:1777".into(),
            block_profile_fraction: 0,
            mutex_profile_fraction: 0,
            save_to_file: None,
        }
    }
}

impl ComponentConfig for PprofConfig {
    fn validate(&self, checks: &mut Checks) {
        if let Err(e) = ListenAddress::parse(&self.endpoint) {
            checks.fail("endpoint", e);
        }
        for (field, value) in [
            ("block_profile_fraction", self.block_profile_fraction),
            ("mutex_profile_fraction", self.mutex_profile_fraction),
        ] {
            if value != 0 {
                checks.fail(
                    field,
                    "a Go runtime setting with no equivalent in fovea; set 0 or remove it (CPU profiles are served)",
                );
            }
        }
        if let Some(file) = &self.save_to_file {
            match file.parent().filter(|p| !p.as_os_str().is_empty()) {
                _ if file.as_os_str().is_empty() || file.is_dir() => {
                    checks.fail("save_to_file", "must name a file, e.g. /tmp/fovea.cpu.pprof");
                }
                Some(dir) => {
                    if let Err(e) = crate::config::writable_directory(dir) {
                        checks.fail("save_to_file", e);
                    }
                }
                None => {}
            }
        }
    }
}
