//! A Kubernetes node inside a network namespace, built the way a CNI builds one: each pod is a
//! namespace whose `eth0` is one end of a veth pair, the other end (`veth<n>`) stays in the
//! node's namespace, and the node routes between them (forwarding on, in the node's namespace
//! only). An optional uplink joins the node to a "remote" namespace that stands for the rest of
//! the network and is the node's default route.
//!
//! Running the agent or a probe inside the node's namespace keeps everything a test does away
//! from the machine's own interfaces and sysctls. Addresses come from 198.18.0.0/15 and
//! 2001:db8::/32, unique per process and call.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use super::netns::{LinkAddrs, LinkOptions, LinkStats, Netns, unique};

/// The node: a namespace that routes between its pods and to its uplink.
pub struct Node {
    /// The node's namespace.
    pub ns: Netns,
    next: AtomicU32,
}

/// A pod on a node.
pub struct NodePod {
    /// The pod's namespace.
    pub ns: Netns,
    /// Host-side interface name, in the node's namespace.
    pub host_if: String,
    /// The node's namespace name (to delete the veth).
    node: String,
    /// `a*` on the node side (the pod's gateway), `b*` in the pod.
    pub addrs: LinkAddrs,
}

/// The network beyond the node's uplink.
pub struct Remote {
    /// Its namespace (holds `eth0`, the far end of the uplink).
    pub ns: Netns,
    /// The uplink's name in the node's namespace.
    pub uplink: String,
    /// `a*` on the node's uplink, `b*` in the remote namespace.
    pub addrs: LinkAddrs,
}

fn mac(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("ip -j link");
    v[0]["address"].as_str().expect("address").to_owned()
}

impl Node {
    /// An empty node with IPv4 and IPv6 forwarding on.
    pub fn new() -> Self {
        let ns = Netns::new();
        ns.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
        Node { ns, next: AtomicU32::new(0) }
    }

    /// Builds a veth pair `<node_if>` (node side) / `eth0` (in `peer`) and addresses it.
    fn link(&self, node_if: &str, peer: &Netns, opts: LinkOptions) -> LinkAddrs {
        let (pid, n) = unique();
        let addrs = LinkAddrs::allocate(pid, n);
        self.ns.ip(&["link", "add", node_if, "type", "veth", "peer", "name", "eth0", "netns", &peer.name]);
        if !opts.ipv6 {
            self.ns.sh(&format!("sysctl -qw net.ipv6.conf.{node_if}.disable_ipv6=1"));
            peer.sh("sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1");
        }
        self.ns.ip(&["addr", "add", &format!("{}/30", addrs.a4), "dev", node_if]);
        peer.ip(&["addr", "add", &format!("{}/30", addrs.b4), "dev", "eth0"]);
        if opts.ipv6 {
            self.ns.ip(&["-6", "addr", "add", &format!("{}/64", addrs.a6), "dev", node_if, "nodad"]);
            peer.ip(&["-6", "addr", "add", &format!("{}/64", addrs.b6), "dev", "eth0", "nodad"]);
        }
        if opts.static_neighbours {
            let node_mac = mac(&self.ns.ip(&["-j", "link", "show", "dev", node_if]));
            let peer_mac = mac(&peer.ip(&["-j", "link", "show", "dev", "eth0"]));
            self.ns.ip(&[
                "neigh",
                "replace",
                &addrs.b4.to_string(),
                "lladdr",
                &peer_mac,
                "dev",
                node_if,
                "nud",
                "permanent",
            ]);
            peer.ip(&[
                "neigh",
                "replace",
                &addrs.a4.to_string(),
                "lladdr",
                &node_mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ]);
            if opts.ipv6 {
                let (a6, b6) = (addrs.a6.to_string(), addrs.b6.to_string());
                self.ns.ip(&["-6", "neigh", "replace", &b6, "lladdr", &peer_mac, "dev", node_if, "nud", "permanent"]);
                peer.ip(&["-6", "neigh", "replace", &a6, "lladdr", &node_mac, "dev", "eth0", "nud", "permanent"]);
            }
        }
        self.ns.ip(&["link", "set", node_if, "up"]);
        peer.ip(&["link", "set", "eth0", "up"]);
        addrs
    }

    /// A new pod; its host side is `veth<n>` in the node's namespace.
    pub fn pod(&self, opts: LinkOptions) -> NodePod {
        let host_if = format!("veth{}", self.next.fetch_add(1, Ordering::Relaxed));
        let ns = Netns::new();
        let addrs = self.link(&host_if, &ns, opts);
        ns.ip(&["route", "add", "default", "via", &addrs.a4.to_string()]);
        if opts.ipv6 {
            ns.ip(&["-6", "route", "add", "default", "via", &addrs.a6.to_string()]);
        }
        NodePod { ns, host_if, node: self.ns.name.clone(), addrs }
    }

    /// The uplink `uplink0` to a remote namespace, which becomes the node's default route; the
    /// remote routes the test ranges back through the node.
    pub fn uplink(&self, opts: LinkOptions) -> Remote {
        let ns = Netns::new();
        let uplink = "uplink0".to_string();
        let addrs = self.link(&uplink, &ns, opts);
        self.ns.ip(&["route", "add", "default", "via", &addrs.b4.to_string()]);
        ns.ip(&["route", "add", "198.18.0.0/15", "via", &addrs.a4.to_string()]);
        if opts.ipv6 {
            self.ns.ip(&["-6", "route", "add", "default", "via", &addrs.b6.to_string()]);
            ns.ip(&["-6", "route", "add", "2001:db8::/32", "via", &addrs.a6.to_string()]);
        }
        Remote { ns, uplink, addrs }
    }

    /// `ip -s link` of an interface of the node.
    pub fn link_stats(&self, iface: &str) -> LinkStats {
        self.ns.link_stats(iface)
    }

    /// ifindex of an interface of the node.
    pub fn ifindex(&self, iface: &str) -> u32 {
        let v: serde_json::Value =
            serde_json::from_str(&self.ns.ip(&["-j", "link", "show", "dev", iface])).expect("ip -j link");
        v[0]["ifindex"].as_u64().expect("ifindex") as u32
    }
}

impl NodePod {
    /// The pod's IPv4 address.
    pub fn v4(&self) -> Ipv4Addr {
        self.addrs.b4
    }

    /// The pod's IPv6 address.
    pub fn v6(&self) -> Ipv6Addr {
        self.addrs.b6
    }
}

impl Drop for NodePod {
    fn drop(&mut self) {
        // deleting one end deletes the pair; the namespace goes when `ns` drops
        let _ = std::process::Command::new("ip").args(["-n", &self.node, "link", "del", &self.host_if]).output();
    }
}
