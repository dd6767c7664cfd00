//! TC on a pod's veth as other parties and fovea leave it: another party's clsact filter that
//! must keep working next to ours ([`OtherFilter`]), and fovea's own clsact filters and TCX
//! programs as the kernel lists them.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use fovea::ebpf::tc::{self, FilterInfo};
use fovea::ebpf::{ClsactOptions, TcHook};

use super::netns::{LinkStats, Pod};

/// The UDP port the other party's filter redirects.
pub const OTHER_PORT: u16 = 7777;
/// Names of fovea's TC programs.
pub const OURS: [&str; 2] = ["fovea_fwd_ingress", "fovea_fwd_egress"];

/// Another party's filter: u32 on ingress, UDP dport 7777 redirected to a sink veth.
pub struct OtherFilter {
    iface: String,
    sink: String,
}

impl OtherFilter {
    /// Installs it on `iface` (a clsact qdisc, a u32 filter at prio 10 handle 800::7) with its sink veth.
    pub fn install(iface: &str) -> Self {
        let sink = format!("fvs{}", &iface[3..]);
        super::run("ip", &["link", "add", &sink, "type", "veth", "peer", "name", &format!("{sink}p")]);
        // no IPv6 on the sink, so its tx counter only moves with redirected packets
        for end in [sink.clone(), format!("{sink}p")] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{end}/disable_ipv6"), "1");
            super::run("ip", &["link", "set", &end, "up"]);
        }
        super::run("tc", &["qdisc", "add", "dev", iface, "clsact"]);
        super::run(
            "tc",
            &[
                "filter",
                "add",
                "dev",
                iface,
                "ingress",
                "protocol",
                "ip",
                "prio",
                "10",
                "handle",
                "800::7",
                "u32",
                "match",
                "ip",
                "dport",
                &OTHER_PORT.to_string(),
                "0xffff",
                "action",
                "mirred",
                "egress",
                "redirect",
                "dev",
                &sink,
            ],
        );
        Self { iface: iface.into(), sink }
    }

    /// Packets its mirred action has redirected.
    pub fn action_packets(&self) -> u64 {
        let json = super::run("tc", &["-s", "-j", "filter", "show", "dev", &self.iface, "ingress"]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("tc json");
        v.as_array()
            .expect("array")
            .iter()
            .find(|f| f["options"]["fh"] == "800::7")
            .and_then(|f| f["options"]["actions"][0]["stats"]["packets"].as_u64())
            .expect("the other filter is still installed")
    }

    /// Sends K datagrams from the pod to the host's port 7777 and checks that all K were
    /// redirected by the other filter (its counter and the sink interface agree) and none
    /// reached the host socket.
    pub fn assert_working(&self, pod: &Pod, phase: &str) {
        const K: u64 = 5;
        let addr = SocketAddr::new(pod.addrs.a4.into(), OTHER_PORT);
        let host = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("{phase}: bind {addr}: {e}"));
        host.set_nonblocking(true).expect("nonblocking");
        let before = (self.action_packets(), LinkStats::host(&self.sink).tx_packets);
        let (src, dst) = (pod.addrs.b4, pod.addrs.a4);
        pod.ns.run_in(move || {
            let s = UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind in pod");
            for _ in 0..K {
                s.send_to(b"other", SocketAddr::new(dst.into(), OTHER_PORT)).expect("send");
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let after = (self.action_packets(), LinkStats::host(&self.sink).tx_packets);
        assert_eq!(after.0 - before.0, K, "{phase}: the other filter's counter");
        assert_eq!(after.1 - before.1, K, "{phase}: the other filter's effect (sink tx)");
        let mut buf = [0u8; 16];
        assert!(host.recv_from(&mut buf).is_err(), "{phase}: redirected, not delivered");
    }

    /// True while its qdisc and filter are both still on the interface.
    pub fn still_installed(&self) -> bool {
        let qdisc = super::run("tc", &["qdisc", "show", "dev", &self.iface]);
        qdisc.contains("clsact")
            && tc::list_filters(&self.iface, TcHook::Ingress)
                .expect("list")
                .iter()
                .any(|f| f.kind == "u32" && f.priority == 10 && f.handle == 0x8000_0007)
    }
}

impl Drop for OtherFilter {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.sink]).output();
    }
}

/// Our clsact filters on `iface` (both hooks).
pub fn our_filters(iface: &str) -> Vec<FilterInfo> {
    let ours = ClsactOptions::default();
    [TcHook::Ingress, TcHook::Egress]
        .into_iter()
        .flat_map(|h| tc::list_filters(iface, h).expect("list filters"))
        .filter(|f| {
            f.kind == "bpf"
                && f.priority == ours.priority
                && f.handle == ours.handle
                && f.name.as_deref().is_some_and(|n| OURS.contains(&n))
        })
        .collect()
}

/// Our TCX programs on `iface` (both hooks), by kernel program name (truncated to 15 bytes).
pub fn our_tcx_programs(iface: &str) -> usize {
    use aya::programs::{SchedClassifier, TcAttachType};
    [TcAttachType::Ingress, TcAttachType::Egress]
        .into_iter()
        .map(|t| {
            SchedClassifier::query_tcx(iface, t)
                .map(|(_, progs)| {
                    progs.iter().filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("fovea_fwd_"))).count()
                })
                .unwrap_or(0)
        })
        .sum()
}
