//! `processors::batch` configuration (otelcol's keys and defaults).

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Checks, ComponentConfig};

/// `batch:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items (data points or flow records) that trigger sending a batch; not a cap.
    pub send_batch_size: usize,
    /// Longest time an item waits before its batch is sent anyway; `0` sends at once.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub timeout: Duration,
    /// Upper bound on items per batch (`0` = no bound); larger batches are split.
    pub send_batch_max_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { send_batch_size: 8192, timeout: Duration::from_millis(200), send_batch_max_size: 0 }
    }
}

impl ComponentConfig for BatchConfig {
    fn validate(&self, checks: &mut Checks) {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            checks.fail(
                "send_batch_max_size",
                format!(
                    "must be 0 (no bound) or at least send_batch_size ({}); raise it or lower send_batch_size",
                    self.send_batch_size
                ),
            );
        }
        if self.send_batch_size == 0 {
            checks.fail("send_batch_size", "must be at least 1");
        }
    }
}
