//! `receivers::dns` configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config::pattern::Pattern;
use crate::config::{Checks, ComponentConfig};
use crate::receivers::probe::settings::{DEFAULT_POD_INTERFACES, check_collection_interval, check_interface_selection};

/// The fewest queries the transaction table may hold.
const MIN_PENDING: u32 = 16;

/// `dns:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// How often the metrics are emitted (and unanswered queries looked for).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub collection_interval: Duration,
    /// A query without a response this long after it is counted in `network.dns.unanswered`
    /// (a response that comes later counts as a response, without a duration).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub response_timeout: Duration,
    /// Add `dns.question.name` to the request, response and unanswered metrics (bounded by
    /// `max_series`); flow records always carry the name.
    pub question_name: bool,
    /// Add `dns.answers` (the A/AAAA addresses, comma-separated) to the response metric (bounded
    /// by `max_series`); flow records always carry the first four.
    pub answers: bool,
    /// Series per metric; DNS messages beyond it are counted in one series marked
    /// `otel.metric.overflow=true`.
    pub max_series: u32,
    /// Queries waiting for their response; when full, the oldest is counted as unanswered.
    pub max_pending: u32,
    /// DNS messages the kernel copies per second (all CPUs together); beyond it they are counted
    /// in `fovea.ebpf.records.capped`, not parsed (none of the metrics sees them).
    pub max_messages_per_second: u32,
    /// Host-side pod interface names or globs (as the `flows` receiver's).
    pub interfaces: Vec<Pattern>,
    /// Names or globs never to watch.
    pub exclude: Vec<Pattern>,
    /// Also watch the node's uplinks (the interfaces of the default routes).
    pub include_uplink: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            collection_interval: Duration::from_secs(10),
            response_timeout: Duration::from_secs(5),
            question_name: false,
            answers: false,
            max_series: 4096,
            max_pending: 65536,
            max_messages_per_second: 10_000,
            interfaces: DEFAULT_POD_INTERFACES.iter().map(|p| Pattern::new(*p)).collect(),
            exclude: Vec::new(),
            include_uplink: true,
        }
    }
}

impl ComponentConfig for DnsConfig {
    fn validate(&self, checks: &mut Checks) {
        check_collection_interval(self.collection_interval, checks);
        if self.response_timeout < Duration::from_millis(10) {
            checks.fail("response_timeout", "must be at least 10ms");
        }
        if self.max_pending < MIN_PENDING {
            checks.fail("max_pending", format!("must be at least {MIN_PENDING}"));
        }
        if self.max_series == 0 {
            checks.fail("max_series", "must be at least 1");
        }
        if self.max_messages_per_second == 0 {
            checks.fail(
                "max_messages_per_second",
                "must be at least 1; to count no DNS, remove the dns receiver from the pipelines",
            );
        }
        check_interface_selection(&self.interfaces, &self.exclude, self.include_uplink, "dns", checks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Result<DnsConfig, String> {
        crate::receivers::probe::settings::parse_receiver("dns", body)
    }

    #[test]
    fn defaults_count_every_pod_and_the_uplink_without_names() {
        let c = config("{}").expect("valid");
        assert_eq!((c.collection_interval, c.response_timeout), (Duration::from_secs(10), Duration::from_secs(5)));
        assert!(!c.question_name && !c.answers && c.include_uplink);
        assert_eq!((c.max_series, c.max_pending, c.max_messages_per_second), (4096, 65536, 10_000));
        assert_eq!(c.interfaces.len(), DEFAULT_POD_INTERFACES.len());
    }

    #[test]
    fn errors_name_the_field() {
        let e = config("{max_pending: 3}").expect_err("invalid");
        assert!(e.contains("max_pending") && e.contains("at least 16"), "{e}");
        let e = config("{response_timeout: 1ms}").expect_err("invalid");
        assert!(e.contains("response_timeout"), "{e}");
        let e = config("{max_messages_per_second: 0}").expect_err("invalid");
        assert!(e.contains("max_messages_per_second"), "{e}");
        let e = config("{interfaces: [], include_uplink: false}").expect_err("invalid");
        assert!(e.contains("watch nothing"), "{e}");
        let e = config("{question_names: true}").expect_err("invalid");
        assert!(e.contains("question_names"), "{e}");
    }
}
