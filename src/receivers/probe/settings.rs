//! Configuration several receivers share: the lower bound of `collection_interval` (every
//! receiver that reads counters on a timer), `attach_mode` (the TC receivers) and the `flows:`
//! block of the receivers that also write flow records (`dropreason`, `tcpretrans`).

use std::time::Duration;

use serde::Deserialize;

use crate::config::Checks;
use crate::config::pattern::Pattern;
use crate::ebpf::AttachMode;

/// The host-side interface names of pods under the common CNIs: plain veth (bridge, kindnet,
/// flannel), Cilium (`lxc`), Calico (`cali`), Azure (`azv`), `cni` prefixed, AWS VPC CNI (`eni`).
pub const DEFAULT_POD_INTERFACES: [&str; 6] = ["veth*", "lxc*", "cali*", "azv*", "cni*", "eni*"];

/// The shortest `collection_interval` a receiver accepts.
const MIN_COLLECTION_INTERVAL: Duration = Duration::from_millis(100);

/// Reports a `collection_interval` shorter than 100ms.
pub fn check_collection_interval(collection_interval: Duration, checks: &mut Checks) {
    if collection_interval < MIN_COLLECTION_INTERVAL {
        checks.fail("collection_interval", "must be at least 100ms");
    }
}

/// Reports empty names in `interfaces` / `exclude` and a selection of nothing (no pod interfaces
/// and no uplink), for the receivers on the datapath programs (`receiver` names it).
pub fn check_interface_selection(
    interfaces: &[Pattern],
    exclude: &[Pattern],
    include_uplink: bool,
    receiver: &str,
    checks: &mut Checks,
) {
    for (field, patterns) in [("interfaces", interfaces), ("exclude", exclude)] {
        for (i, p) in patterns.iter().enumerate() {
            if p.as_str().is_empty() {
                checks.fail(&format!("{field}::{i}"), "empty interface name; remove it or write a name or glob");
            }
        }
    }
    if interfaces.is_empty() && !include_uplink {
        checks.fail(
            "interfaces",
            format!("no pod interfaces and include_uplink is false: {receiver} would watch nothing"),
        );
    }
}

/// `flows:` settings shared by the receivers that emit per-event flow records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Records per second, all CPUs together; past it records are counted as capped, not sent.
    /// Counters (metrics) are exact whatever this is.
    pub max_records_per_second: u32,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig { max_records_per_second: 1000 }
    }
}

impl FlowsConfig {
    /// Reports problems under `flows::`.
    pub fn validate(&self, checks: &mut Checks) {
        if self.max_records_per_second == 0 {
            checks.fail(
                "flows::max_records_per_second",
                "must be at least 1; to get no records, list the receiver in no flows pipeline",
            );
        }
    }
}

/// How the programs attach to interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachModeConfig {
    /// TCX where the kernel has it (6.6+), else clsact.
    #[default]
    Auto,
    /// TCX only; fails to start on older kernels.
    Tcx,
    /// A clsact `bpf` filter at fovea's own priority and handle, even where TCX exists.
    Clsact,
}

impl From<AttachModeConfig> for AttachMode {
    fn from(m: AttachModeConfig) -> Self {
        match m {
            AttachModeConfig::Auto => AttachMode::Auto,
            AttachModeConfig::Tcx => AttachMode::Tcx,
            AttachModeConfig::Clsact => AttachMode::Clsact,
        }
    }
}

/// Parses `receivers: {<type_name>: <body>}` the way the agent does (loader, validation), for
/// config tests; the error is the full message a user would see.
#[cfg(test)]
pub(crate) fn parse_receiver<C: crate::config::ComponentConfig>(type_name: &str, body: &str) -> Result<C, String> {
    let doc = crate::config::load_str("test.yaml", &format!("receivers:\n  {type_name}: {body}\n"))
        .map_err(|e| e.to_string())?;
    let node = doc.root.get("receivers").and_then(|r| r.get(type_name)).expect("node");
    crate::config::parse_component(node, &format!("receivers::{type_name}")).map_err(|e| e.to_string())
}
