//! `receivers::packetforward` configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config::pattern::{Pattern, any_match};
use crate::config::{Checks, ComponentConfig};
use crate::receivers::probe::links::Link;
pub use crate::receivers::probe::settings::AttachModeConfig;
use crate::receivers::probe::settings::check_collection_interval;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// `packetforward:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacketforwardConfig {
    /// How often to read the in-kernel counters.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub collection_interval: Duration,
    /// Interface names or globs (`eth0`, `veth*`) to count on; empty = every interface that is up.
    /// Interfaces that appear later are attached as soon as the kernel announces them.
    pub interfaces: Vec<Pattern>,
    /// Interface names or globs never to count on (applied after `interfaces`).
    pub exclude: Vec<Pattern>,
    /// Pod interfaces (the host side of a veth or netkit pair whose peer lives in another network
    /// namespace) with these names or globs are not counted here: the `flows` receiver, attached
    /// to the same interfaces, counts their totals with `forward_metrics: pods`, so each packet
    /// meets one fovea program per hook instead of two. Give both the same globs.
    pub exclude_pod_interfaces: Vec<Pattern>,
    /// `auto` (TCX on Linux 6.6+, else clsact), `tcx`, or `clsact`.
    pub attach_mode: AttachModeConfig,
}

impl Default for PacketforwardConfig {
    fn default() -> Self {
        PacketforwardConfig {
            collection_interval: Duration::from_secs(10),
            interfaces: Vec::new(),
            exclude: vec![Pattern::new("lo")],
            exclude_pod_interfaces: Vec::new(),
            attach_mode: AttachModeConfig::Auto,
        }
    }
}

impl PacketforwardConfig {
    /// True when the interface called `name` is one to count on (its up state aside).
    pub fn selects(&self, name: &str) -> bool {
        (self.interfaces.is_empty() || any_match(&self.interfaces, name)) && !any_match(&self.exclude, name)
    }

    /// True when `link` is one to count on: its name is selected and it is not a pod interface
    /// left to the flows receiver (`exclude_pod_interfaces`). Its up state aside.
    pub fn selects_link(&self, link: &Link) -> bool {
        self.selects(&link.name) && !(link.peer_in_other_netns && any_match(&self.exclude_pod_interfaces, &link.name))
    }
}

impl ComponentConfig for PacketforwardConfig {
    fn validate(&self, checks: &mut Checks) {
        check_collection_interval(self.collection_interval, checks);
        for (field, patterns) in [
            ("interfaces", &self.interfaces),
            ("exclude", &self.exclude),
            ("exclude_pod_interfaces", &self.exclude_pod_interfaces),
        ] {
            for (i, p) in patterns.iter().enumerate() {
                if p.as_str().is_empty() {
                    checks.fail(&format!("{field}::{i}"), "empty interface name; remove it or write a name or glob");
                } else if p.is_literal() && p.as_str().len() > MAX_IFNAME {
                    checks.fail(
                        &format!("{field}::{i}"),
                        format!(
                            "`{}` is longer than {MAX_IFNAME} bytes, so no interface can have that name",
                            p.as_str()
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::AttachMode;

    fn config(body: &str) -> Result<PacketforwardConfig, String> {
        crate::receivers::probe::settings::parse_receiver("packetforward", body)
    }

    #[test]
    fn defaults_count_every_interface_but_loopback() {
        let c = config("{}").expect("valid");
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert_eq!(c.attach_mode, AttachModeConfig::Auto);
        assert!(c.selects("eth0") && c.selects("veth1234"));
        assert!(!c.selects("lo"));
    }

    #[test]
    fn globs_select_and_exclude() {
        let c =
            config("{interfaces: [eth0, 'veth-test*'], exclude: ['veth-test9'], attach_mode: clsact}").expect("valid");
        assert!(c.selects("eth0") && c.selects("veth-test1"));
        assert!(!c.selects("eth1") && !c.selects("veth-test9"));
        assert_eq!(AttachMode::from(c.attach_mode), AttachMode::Clsact);
    }

    #[test]
    fn pod_interfaces_left_to_flows_are_those_with_their_peer_elsewhere() {
        let c = config("{exclude_pod_interfaces: ['veth*', 'lxc*']}").expect("valid");
        let link = |name: &str, peer_in_other_netns| Link::test_veth(7, name, peer_in_other_netns);
        assert!(!c.selects_link(&link("veth12", true)), "a pod's veth: flows counts it");
        assert!(!c.selects_link(&link("lxc9", true)));
        assert!(c.selects_link(&link("veth12", false)), "both ends on the host: not a pod interface");
        assert!(c.selects_link(&link("eth0", false)) && c.selects_link(&link("uplink0", true)), "not named");
        assert!(config("{}").expect("valid").selects_link(&link("veth12", true)), "off by default");
        let e = config("{exclude_pod_interfaces: ['']}").expect_err("invalid");
        assert!(e.contains("exclude_pod_interfaces::0"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = config("{interfaces: ['a-name-far-too-long-for-linux']}").expect_err("invalid");
        assert!(e.contains("interfaces::0") && e.contains("longer than 15 bytes"), "{e}");
        let e = config("{collection_interval: 10ms}").expect_err("invalid");
        assert!(e.contains("collection_interval") && e.contains("at least 100ms"), "{e}");
        let e = config("{attach_mode: xdp}").expect_err("invalid");
        assert!(e.contains("attach_mode"), "{e}");
        let e = config("{interface: [eth0]}").expect_err("invalid");
        assert!(e.contains("interface"), "{e}");
    }
}
