//! `receivers::tcpretrans` configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};

/// `tcpretrans:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpretransConfig {
    /// How often to read the in-kernel counter.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub collection_interval: Duration,
    /// Flow records of retransmissions, produced only when a `flows` pipeline consumes this receiver.
    pub flows: FlowsConfig,
}

impl Default for TcpretransConfig {
    fn default() -> Self {
        TcpretransConfig { collection_interval: Duration::from_secs(10), flows: FlowsConfig::default() }
    }
}

/// `flows:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Records per second, all CPUs together; past it records are counted as capped, not sent.
    /// The `network.tcp.retransmits` counter is exact whatever this is.
    pub max_records_per_second: u32,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig { max_records_per_second: 1000 }
    }
}

impl ComponentConfig for TcpretransConfig {
    fn validate(&self, checks: &mut Checks) {
        if self.collection_interval < Duration::from_millis(100) {
            checks.fail("collection_interval", "must be at least 100ms");
        }
        if self.flows.max_records_per_second == 0 {
            checks.fail(
                "flows::max_records_per_second",
                "must be at least 1; to get no records, list the receiver in no flows pipeline",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Result<TcpretransConfig, String> {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), format!("receivers:\n  tcpretrans: {body}\n")).expect("write");
        let sources = crate::config::Sources { files: vec![file.path().to_path_buf()], sets: Vec::new() };
        let doc = crate::config::load_with(&sources, &|_| None).map_err(|e| e.to_string())?;
        let node = doc.root.get("receivers").and_then(|r| r.get("tcpretrans")).expect("node");
        crate::config::parse_component(node, "receivers::tcpretrans").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_errors() {
        let c = config("").expect("valid");
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert_eq!(c.flows.max_records_per_second, 1000);
        let e = config("{collection_interval: 1ms}").expect_err("invalid");
        assert!(e.contains("collection_interval"), "{e}");
        let e = config("{flows: {max_records_per_second: 0}}").expect_err("invalid");
        assert!(e.contains("flows::max_records_per_second"), "{e}");
        let e = config("{family: ipv4}").expect_err("invalid");
        assert!(e.contains("family"), "{e}");
    }
}
