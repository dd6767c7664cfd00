//! Attaching without harming others, through the whole agent: another party's TC filter on a
//! pod's veth keeps working while `fovea` runs, after a graceful stop (SIGTERM), and after a
//! `kill -9` followed by a restart, in TCX and in clsact mode; the agent never leaves its own
//! programs behind after a graceful stop and never doubles them after a restart.

#[path = "support/agent.rs"]
mod agent;
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use agent::{Agent, wait_collections};
use fovea::ebpf::preflight;
use fovea::ebpf::tc::{self, FilterInfo};
use fovea::ebpf::{ClsactOptions, TcHook};
use support::netns::{LinkOptions, LinkStats, Pod};

const OTHER_PORT: u16 = 7777;
const OURS: [&str; 2] = ["fovea_fwd_ingress", "fovea_fwd_egress"];

/// Another party's filter: u32 on ingress, UDP dport 7777 redirected to a sink veth.
struct OtherFilter {
    iface: String,
    sink: String,
}

impl OtherFilter {
    fn install(iface: &str) -> Self {
        let sink = format!("fvs{}", &iface[3..]);
        support::run("ip", &["link", "add", &sink, "type", "veth", "peer", "name", &format!("{sink}p")]);
        // no IPv6 on the sink, so its tx counter only moves with redirected packets
        for end in [sink.clone(), format!("{sink}p")] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{end}/disable_ipv6"), "1");
            support::run("ip", &["link", "set", &end, "up"]);
        }
        support::run("tc", &["qdisc", "add", "dev", iface, "clsact"]);
        support::run(
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
    fn action_packets(&self) -> u64 {
        let json = support::run("tc", &["-s", "-j", "filter", "show", "dev", &self.iface, "ingress"]);
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
    fn assert_working(&self, pod: &Pod, phase: &str) {
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

    fn still_installed(&self) -> bool {
        let qdisc = support::run("tc", &["qdisc", "show", "dev", &self.iface]);
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
fn our_filters(iface: &str) -> Vec<FilterInfo> {
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
fn our_tcx_programs(iface: &str) -> usize {
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

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(iface: &str, mode: &str) -> Agent {
    Agent::start(&format!(
        "receivers:
  packetforward: {{interfaces: [{iface}], attach_mode: {mode}, collection_interval: 1s}}
exporters:
  prometheus: {{endpoint: 127.0.0.1:0}}
service:
  pipelines:
    metrics: {{receivers: [packetforward], exporters: [prometheus]}}
"
    ))
}

fn ours_attached(iface: &str, clsact: bool) -> usize {
    if clsact { our_filters(iface).len() } else { our_tcx_programs(iface) }
}

fn coexistence_through_agent(mode: &str, test: &str) {
    if !support::require_tools(test, &["ip", "tc"]) {
        return;
    }
    let clsact = mode == "clsact";
    let _lock = support::kernel_lock();
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let iface = pod.host_if.clone();
    let other = OtherFilter::install(&iface);
    other.assert_working(&pod, "before fovea");

    // running: both work, and we count the packets the other filter redirects
    let fovea = start(&iface, mode);
    assert_eq!(ours_attached(&iface, clsact), 2, "ingress and egress");
    other.assert_working(&pod, "fovea running");
    wait_collections(Duration::from_secs(1), 2);
    let counted = fovea.scrape().count(
        "network_forward_packets_total",
        &[("network_interface_name", &iface), ("network_io_direction", "receive")],
    );
    assert!(counted >= 5, "fovea counted the redirected packets first: {counted}");

    // graceful stop: only ours goes
    let (status, out) = fovea.terminate();
    assert!(status.success(), "clean exit: {out}");
    assert!(other.still_installed(), "qdisc and other filter survive fovea's stop");
    assert!(our_filters(&iface).is_empty(), "no clsact filter of ours left");
    wait_until("our TCX links are gone", || our_tcx_programs(&iface) == 0);
    other.assert_working(&pod, "after SIGTERM");

    // kill -9: TCX links die with the process; clsact filters stay until the next start
    start(&iface, mode).kill9();
    if clsact {
        assert_eq!(our_filters(&iface).len(), 2, "stale filters after kill -9");
    } else {
        wait_until("TCX links die with the process", || our_tcx_programs(&iface) == 0);
    }
    assert!(other.still_installed());
    other.assert_working(&pod, "after kill -9");

    // restart: stale filters replaced, not doubled
    let fovea = start(&iface, mode);
    assert_eq!(ours_attached(&iface, clsact), 2, "attached once after restart");
    if !clsact {
        assert!(our_filters(&iface).is_empty());
    }
    other.assert_working(&pod, "restarted");
    let (status, out) = fovea.terminate();
    assert!(status.success(), "clean exit: {out}");
    assert!(other.still_installed());
    assert!(our_filters(&iface).is_empty());
    wait_until("our TCX links are gone", || our_tcx_programs(&iface) == 0);
    other.assert_working(&pod, "after the last stop");
}

#[test]
fn agent_keeps_other_filter_working_tcx() {
    let test = "agent_keeps_other_filter_working_tcx";
    if !support::require_root(test) {
        return;
    }
    if !preflight::tcx_supported() {
        support::skip_note(test, "this kernel has no TCX (Linux 6.6+)");
        return;
    }
    coexistence_through_agent("tcx", test);
}

#[test]
fn agent_keeps_other_filter_working_clsact() {
    coexistence_through_agent("clsact", "agent_keeps_other_filter_working_clsact");
}
