//! `receivers::tcpretrans` configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};
use crate::receivers::probe::settings::{FlowsConfig, check_collection_interval};

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

impl ComponentConfig for TcpretransConfig {
    fn validate(&self, checks: &mut Checks) {
        check_collection_interval(self.collection_interval, checks);
        self.flows.validate(checks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Result<TcpretransConfig, String> {
        crate::receivers::probe::settings::parse_receiver("tcpretrans", body)
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
