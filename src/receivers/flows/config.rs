//! `receivers::flows` configuration.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::pattern::{Pattern, any_match};
use crate::config::{Checks, ComponentConfig};
use crate::receivers::probe::settings::{AttachModeConfig, check_collection_interval, check_interface_selection};

pub use crate::receivers::probe::settings::DEFAULT_POD_INTERFACES;
/// Where the kernel keeps the range of ports it hands out to clients.
pub const LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// The fewest flows a table may hold.
const MIN_FLOWS: u32 = 16;

/// `flows:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// How often to drain the kernel's flow tables (every record covers one interval).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub collection_interval: Duration,
    /// Host-side pod interface names or globs; an interface is a pod's when its name matches
    /// and its peer lives in another network namespace.
    pub interfaces: Vec<Pattern>,
    /// Names or globs never to attach to (pods or uplinks).
    pub exclude: Vec<Pattern>,
    /// Also watch the node's uplinks: the interfaces of the default routes (IPv4 and IPv6).
    pub include_uplink: bool,
    /// Flows the kernel table holds per collection interval; packets of flows beyond it are
    /// counted per interface and direction as overflow (never lost).
    pub max_flows: u32,
    /// A flow not seen for this long is forgotten: its next packet starts a new flow (new start
    /// time). Also how long a quiet socket's RTT is kept.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub idle_timeout: Duration,
    /// Count packets per TCP flag (`network.tcp.flags`, per-flow counts).
    pub tcp_flags: bool,
    /// Measure TCP handshakes and the sockets' smoothed RTT (`network.tcp.handshake.duration`,
    /// `network.tcp.rtt`, per-flow values).
    pub latency: bool,
    /// Client port collapsing.
    pub ports: PortsConfig,
    /// Also emit `network.forward.packets` / `network.forward.bytes` per watched interface and
    /// direction (what the packetforward receiver counts, from the same programs).
    pub forward_metrics: ForwardMetrics,
    /// `auto` (TCX on Linux 6.6+, else clsact), `tcx`, or `clsact`.
    pub attach_mode: AttachModeConfig,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            collection_interval: Duration::from_secs(10),
            interfaces: DEFAULT_POD_INTERFACES.iter().map(|p| Pattern::new(*p)).collect(),
            exclude: Vec::new(),
            include_uplink: true,
            max_flows: 65536,
            idle_timeout: Duration::from_secs(60),
            tcp_flags: true,
            latency: true,
            ports: PortsConfig::default(),
            forward_metrics: ForwardMetrics::Off,
            attach_mode: AttachModeConfig::Auto,
        }
    }
}

/// `forward_metrics:` which watched interfaces get `network.forward.*` from the flows programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMetrics {
    /// `false`: none (packetforward counts interfaces).
    Off,
    /// `true`: every watched interface, pods and uplinks.
    All,
    /// `pods`: pod interfaces only, the ones packetforward leaves out with
    /// `exclude_pod_interfaces`; uplinks stay packetforward's, so nothing is counted twice.
    Pods,
}

impl ForwardMetrics {
    /// Whether an interface in this role gets the metrics.
    pub fn covers(self, role: crate::model::ObservationPoint) -> bool {
        match self {
            ForwardMetrics::Off => false,
            ForwardMetrics::All => true,
            ForwardMetrics::Pods => role == crate::model::ObservationPoint::Pod,
        }
    }
}

impl<'de> Deserialize<'de> for ForwardMetrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ForwardMetrics;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or pods")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ForwardMetrics, E> {
                Ok(if v { ForwardMetrics::All } else { ForwardMetrics::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ForwardMetrics, E> {
                match v {
                    "pods" => Ok(ForwardMetrics::Pods),
                    // a quoted `"true"` (or `"${env:X}"`): meant as the boolean
                    "true" => Ok(ForwardMetrics::All),
                    "false" => Ok(ForwardMetrics::Off),
                    _ => Err(E::custom(format!(
                        "`{v}` is not a choice: write true (every watched interface), false, or pods (pod interfaces only)"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `ports:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortsConfig {
    /// Keep only the server's port: a port inside `ephemeral_range` whose peer port is outside it
    /// is the client's and becomes 0, so every connection to a service is one flow. With both
    /// ports inside the range, or both outside it, both are kept.
    pub collapse: bool,
    /// The ports clients get: `auto` (the node's `net.ipv4.ip_local_port_range`, read at start)
    /// or `"low-high"`.
    pub ephemeral_range: PortRange,
}

impl Default for PortsConfig {
    fn default() -> Self {
        PortsConfig { collapse: true, ephemeral_range: PortRange::Auto }
    }
}

/// A port range, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRange {
    /// The kernel's `ip_local_port_range`.
    Auto,
    /// Inclusive bounds.
    Range(u16, u16),
    /// Not a range (reported by `validate`, with the text).
    Invalid,
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(parse_range(&text).unwrap_or(PortRange::Invalid))
    }
}

fn parse_range(text: &str) -> Option<PortRange> {
    if text == "auto" {
        return Some(PortRange::Auto);
    }
    let (lo, hi) = text.split_once('-').or_else(|| text.split_once(char::is_whitespace))?;
    let (lo, hi) = (lo.trim().parse::<u16>().ok()?, hi.trim().parse::<u16>().ok()?);
    (lo >= 1 && lo <= hi).then_some(PortRange::Range(lo, hi))
}

impl PortRange {
    /// The bounds: `Range` as given, `Auto` from `LOCAL_PORT_RANGE` (the kernel's default
    /// 32768-60999 when it cannot be read).
    pub fn resolve(self) -> (u16, u16) {
        match self {
            PortRange::Range(lo, hi) => (lo, hi),
            PortRange::Auto | PortRange::Invalid => std::fs::read_to_string(LOCAL_PORT_RANGE)
                .ok()
                .and_then(|t| match parse_range(t.trim()) {
                    Some(PortRange::Range(lo, hi)) => Some((lo, hi)),
                    _ => None,
                })
                .unwrap_or((32768, 60999)),
        }
    }
}

impl FlowsConfig {
    /// The `ports` setting in force: the ephemeral range, or `None` when ports are kept.
    pub fn collapse_range(&self) -> Option<(u16, u16)> {
        self.ports.collapse.then(|| self.ports.ephemeral_range.resolve())
    }

    /// True when `name` is selected as a pod interface name (the peer check aside).
    pub fn selects(&self, name: &str) -> bool {
        any_match(&self.interfaces, name) && !any_match(&self.exclude, name)
    }
}

impl ComponentConfig for FlowsConfig {
    fn validate(&self, checks: &mut Checks) {
        check_collection_interval(self.collection_interval, checks);
        if self.max_flows < MIN_FLOWS {
            checks.fail("max_flows", format!("must be at least {MIN_FLOWS}"));
        }
        if self.idle_timeout < self.collection_interval {
            checks
                .fail("idle_timeout", "must be at least collection_interval (a flow is only seen once per collection)");
        }
        if self.ports.ephemeral_range == PortRange::Invalid {
            checks.fail("ports::ephemeral_range", "must be `auto` or `low-high` with 1 <= low <= high <= 65535");
        }
        check_interface_selection(&self.interfaces, &self.exclude, self.include_uplink, "flows", checks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Result<FlowsConfig, String> {
        crate::receivers::probe::settings::parse_receiver("flows", body)
    }

    #[test]
    fn defaults_watch_cni_interfaces_and_the_uplink_with_everything_on() {
        let c = config("{}").expect("valid");
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert!(c.selects("veth1234") && c.selects("lxc99") && c.selects("cali0a") && c.selects("eni3"));
        assert!(!c.selects("eth0") && !c.selects("docker0"));
        assert!(c.include_uplink && c.tcp_flags && c.latency && c.ports.collapse);
        assert_eq!(c.forward_metrics, ForwardMetrics::Off);
        assert_eq!((c.max_flows, c.idle_timeout), (65536, Duration::from_secs(60)));
        assert_eq!(c.ports.ephemeral_range, PortRange::Auto);
    }

    #[test]
    fn port_ranges_parse_or_are_reported() {
        let c = config("{ports: {ephemeral_range: '40000-50000'}}").expect("valid");
        assert_eq!(c.collapse_range(), Some((40000, 50000)));
        let c = config("{ports: {collapse: false}}").expect("valid");
        assert_eq!(c.collapse_range(), None);
        let e = config("{ports: {ephemeral_range: '50000-40000'}}").expect_err("invalid");
        assert!(e.contains("ports::ephemeral_range") && e.contains("low-high"), "{e}");
        assert_eq!(parse_range("32768\t60999"), Some(PortRange::Range(32768, 60999)), "the /proc format");
        let (lo, hi) = PortRange::Auto.resolve();
        assert!(lo >= 1 && lo <= hi, "{lo}-{hi}");
    }

    #[test]
    fn forward_metrics_for_every_interface_or_pods_only() {
        use crate::model::ObservationPoint::{Pod, Uplink};
        let f = |v: &str| config(&format!("{{forward_metrics: {v}}}")).map(|c| c.forward_metrics);
        assert_eq!(f("true"), Ok(ForwardMetrics::All));
        assert_eq!(f("false"), Ok(ForwardMetrics::Off));
        assert_eq!(f("pods"), Ok(ForwardMetrics::Pods));
        assert!(ForwardMetrics::Pods.covers(Pod) && !ForwardMetrics::Pods.covers(Uplink));
        assert!(ForwardMetrics::All.covers(Uplink) && !ForwardMetrics::Off.covers(Pod));
        let e = f("uplinks").expect_err("invalid");
        assert!(e.contains("forward_metrics") && e.contains("pods (pod interfaces only)"), "{e}");
        assert_eq!(f("'true'"), Ok(ForwardMetrics::All), "quoted, as from an env reference in a string");
    }

    #[test]
    fn errors_name_the_field() {
        let e = config("{max_flows: 3}").expect_err("invalid");
        assert!(e.contains("max_flows") && e.contains("at least 16"), "{e}");
        let e = config("{collection_interval: 30s, idle_timeout: 10s}").expect_err("invalid");
        assert!(e.contains("idle_timeout") && e.contains("collection_interval"), "{e}");
        let e = config("{interfaces: [], include_uplink: false}").expect_err("invalid");
        assert!(e.contains("watch nothing"), "{e}");
        let e = config("{port: {}}").expect_err("invalid");
        assert!(e.contains("port"), "{e}");
    }
}
