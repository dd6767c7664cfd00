//! `receivers::dropreason` configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};
use crate::receivers::probe::settings::{FlowsConfig, check_collection_interval};

/// `dropreason:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropreasonConfig {
    /// How often to read the in-kernel counters.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub collection_interval: Duration,
    /// Also count `NOT_SPECIFIED` drops (frees by kernel code that gives no reason; noisy).
    pub include_unspecified: bool,
    /// Flow records of drops, produced only when a `flows` pipeline consumes this receiver.
    pub flows: FlowsConfig,
}

impl Default for DropreasonConfig {
    fn default() -> Self {
        DropreasonConfig {
            collection_interval: Duration::from_secs(10),
            include_unspecified: false,
            flows: FlowsConfig::default(),
        }
    }
}

impl ComponentConfig for DropreasonConfig {
    fn validate(&self, checks: &mut Checks) {
        check_collection_interval(self.collection_interval, checks);
        self.flows.validate(checks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Result<DropreasonConfig, String> {
        crate::receivers::probe::settings::parse_receiver("dropreason", body)
    }

    #[test]
    fn defaults() {
        let c = config("").expect("valid");
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert!(!c.include_unspecified);
        assert_eq!(c.flows.max_records_per_second, 1000);
    }

    #[test]
    fn keys_and_errors() {
        let c = config("{include_unspecified: true, flows: {max_records_per_second: 50}, collection_interval: 1s}")
            .expect("valid");
        assert!(c.include_unspecified);
        assert_eq!(c.flows.max_records_per_second, 50);
        let e = config("{flows: {max_records_per_second: 0}}").expect_err("invalid");
        assert!(e.contains("flows::max_records_per_second"), "{e}");
        let e = config("{flows: {max_record_per_second: 5}}").expect_err("invalid");
        assert!(e.contains("max_record_per_second"), "{e}");
    }
}
