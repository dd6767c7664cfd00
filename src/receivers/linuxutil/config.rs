//! `receivers::linuxutil` configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::interfaces::LinkStats;
use crate::config::pattern::Pattern;
use crate::config::{Checks, ComponentConfig};
use crate::receivers::probe::settings::check_collection_interval;

/// Groups reported by default (their non-zero keys).
pub const DEFAULT_NETSTAT_GROUPS: [&str; 5] = ["Tcp", "TcpExt", "Ip", "IpExt", "Udp"];

/// Keys reported zero or not while `netstat.include` is empty: the stack counters Retina's
/// "Clusters" dashboard plots as rates (TCP timeouts, resets, reorders), so a node that had none
/// shows 0 rather than no data.
pub const DASHBOARD_NETSTAT_KEYS: [(&str, &str); 3] =
    [("TcpExt", "TCPTimeouts"), ("TcpExt", "TCPTSReorder"), ("Tcp", "EstabResets")];

/// Remote addresses with their own `network.tcp.remote_connections` point, by default.
pub const DEFAULT_REMOTE_ADDRESSES: usize = 10;

/// Interface statistics reported by default.
pub const DEFAULT_INTERFACE_STATISTICS: [&str; 8] =
    ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped"];

/// `linuxutil:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinuxutilConfig {
    /// How often to read the kernel's counters.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub collection_interval: Duration,
    /// Read another network namespace (`/var/run/netns/x` or `/proc/<pid>/ns/net`) instead of the agent's.
    pub netns: Option<PathBuf>,
    /// `network.netstat` from /proc/net/snmp, /proc/net/netstat and /proc/net/snmp6.
    pub netstat: NetstatConfig,
    /// `network.interface.stats` from netlink.
    pub interfaces: InterfacesConfig,
    /// `network.tcp.connections` (and `network.udp.sockets`) from netlink sock_diag.
    pub sockets: SocketsConfig,
}

impl Default for LinuxutilConfig {
    fn default() -> Self {
        LinuxutilConfig {
            collection_interval: Duration::from_secs(10),
            netns: None,
            netstat: NetstatConfig::default(),
            interfaces: InterfacesConfig::default(),
            sockets: SocketsConfig::default(),
        }
    }
}

/// `netstat:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetstatConfig {
    /// Report stack counters.
    pub enabled: bool,
    /// `Group:Name` patterns to report (`TcpExt:TCPTimeouts`, `Icmp:*`, `Tcp*:*Retrans*`), zero or not.
    /// Empty = every non-zero key of Tcp, TcpExt, Ip, IpExt and Udp, and [`DASHBOARD_NETSTAT_KEYS`].
    pub include: Vec<Pattern>,
}

impl Default for NetstatConfig {
    fn default() -> Self {
        NetstatConfig { enabled: true, include: Vec::new() }
    }
}

/// `interfaces:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterfacesConfig {
    /// Report interface statistics.
    pub enabled: bool,
    /// Interface name patterns to report; empty = all.
    pub include: Vec<Pattern>,
    /// Interface name patterns to leave out (applied after `include`).
    pub exclude: Vec<Pattern>,
    /// Statistics to report (kernel names such as `rx_packets`, `tx_dropped`, `rx_missed_errors`).
    pub statistics: Vec<String>,
}

impl Default for InterfacesConfig {
    fn default() -> Self {
        InterfacesConfig {
            enabled: true,
            include: Vec::new(),
            exclude: Vec::new(),
            statistics: DEFAULT_INTERFACE_STATISTICS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// `sockets:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketsConfig {
    /// Report socket counts by state.
    pub enabled: bool,
    /// `network.tcp.remote_connections`: established connections of the addresses with the most
    /// of them, this many addresses; the others are summed in one overflow point. 0 = off.
    pub remote_addresses: usize,
}

impl Default for SocketsConfig {
    fn default() -> Self {
        SocketsConfig { enabled: true, remote_addresses: DEFAULT_REMOTE_ADDRESSES }
    }
}

impl ComponentConfig for LinuxutilConfig {
    fn validate(&self, checks: &mut Checks) {
        check_collection_interval(self.collection_interval, checks);
        for (i, stat) in self.interfaces.statistics.iter().enumerate() {
            if !LinkStats::NAMES.contains(&stat.as_str()) {
                checks.fail(
                    &format!("interfaces::statistics::{i}"),
                    format!("unknown statistic `{stat}`; valid statistics: {}", LinkStats::NAMES.join(", ")),
                );
            }
        }
        for (i, p) in self.netstat.include.iter().enumerate() {
            if !p.as_str().contains(':') {
                checks.fail(
                    &format!("netstat::include::{i}"),
                    format!("`{}` must be Group:Name, e.g. `TcpExt:TCPTimeouts` or `{}:*`", p.as_str(), p.as_str()),
                );
            }
        }
        if !(self.netstat.enabled || self.interfaces.enabled || self.sockets.enabled) {
            checks.fail("", "netstat, interfaces and sockets are all disabled; enable at least one");
        }
    }
}
