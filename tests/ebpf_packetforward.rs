//! packetforward: our per-interface counters equal the kernel's own interface statistics.

mod support;

use fovea::ebpf::tc::Via;
use fovea::ebpf::{AttachMode, Direction, ForwardCount, ForwardOptions, ForwardProbe};
use support::netns::{LinkOptions, LinkStats, Pod};

/// Our counters for one interface, as (ingress, egress).
fn ours(probe: &ForwardProbe, ifindex: u32) -> (ForwardCount, ForwardCount) {
    let counts = probe.counters().expect("counters");
    let pick = |direction| {
        counts.iter().copied().find(|c| c.ifindex == ifindex && c.direction == direction).unwrap_or(ForwardCount {
            ifindex,
            direction,
            packets: 0,
            bytes: 0,
        })
    };
    (pick(Direction::Ingress), pick(Direction::Egress))
}

/// Reads the link's statistics and our counters at a quiet moment: the link statistics must
/// be identical before and after reading ours, so no packet was in flight between the two.
fn quiet_read(probe: &ForwardProbe, pod: &Pod) -> (LinkStats, (ForwardCount, ForwardCount)) {
    for _ in 0..50 {
        let before = LinkStats::settled(|| LinkStats::host(&pod.host_if));
        let counts = ours(probe, pod.host_ifindex());
        if LinkStats::host(&pod.host_if) == before {
            return (before, counts);
        }
    }
    panic!("interface {} never went quiet", pod.host_if);
}

/// Pings the pod from the host and asserts: host-side egress = requests, ingress = replies,
/// and both equal `ip -s link` exactly, packets and bytes.
fn ping_and_compare(mode: AttachMode, ipv6: bool, test: &str) {
    if !support::require_tools(test, &["ip", "ping"]) {
        return;
    }
    let pod = Pod::new(LinkOptions { ipv6, static_neighbours: true });
    let mut probe =
        ForwardProbe::load_with(ForwardOptions { mode, ..ForwardOptions::default() }).expect("load packetforward");
    let ifindex = probe.attach(&pod.host_if).expect("attach");
    assert_eq!(ifindex, pod.host_ifindex());
    let expected_via = match mode {
        AttachMode::Clsact => Via::Clsact,
        _ if fovea::ebpf::preflight::tcx_supported() => Via::Tcx,
        _ => Via::Clsact,
    };
    let hooks = probe.attached();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert!(hooks.iter().all(|h| h.via == expected_via), "{hooks:?}");

    let (link0, (in0, out0)) = quiet_read(&probe, &pod);
    const N: u64 = 25;
    const S: u64 = 200;
    let target = if ipv6 { pod.addrs.b6.to_string() } else { pod.addrs.b4.to_string() };
    support::run("ping", &["-q", "-c", &N.to_string(), "-s", &S.to_string(), "-i", "0.01", "-W", "2", &target]);
    let (link1, (in1, out1)) = quiet_read(&probe, &pod);
    let link = link1.since(&link0);

    // Ethernet 14 + IPv4 20 / IPv6 40 + ICMP 8 + payload
    let frame = 14 + if ipv6 { 40 } else { 20 } + 8 + S;
    let (rx_p, rx_b) = (in1.packets - in0.packets, in1.bytes - in0.bytes);
    let (tx_p, tx_b) = (out1.packets - out0.packets, out1.bytes - out0.bytes);
    assert_eq!((rx_p, rx_b), (link.rx_packets, link.rx_bytes), "ingress vs ip -s link");
    assert_eq!((tx_p, tx_b), (link.tx_packets, link.tx_bytes), "egress vs ip -s link");
    if ipv6 {
        // IPv6 keeps some control traffic (MLD) we cannot silence; it is counted by both
        assert!(tx_p >= N && tx_b >= N * frame, "egress {tx_p}/{tx_b}");
        assert!(rx_p >= N && rx_b >= N * frame, "ingress {rx_p}/{rx_b}");
    } else {
        assert_eq!((tx_p, tx_b), (N, N * frame), "egress = the echo requests");
        assert_eq!((rx_p, rx_b), (N, N * frame), "ingress = the echo replies");
    }
    probe.detach(ifindex).expect("detach");
    assert!(probe.attached().is_empty());
}

#[test]
fn forward_counts_equal_link_stats_ipv4_tcx() {
    ping_and_compare(AttachMode::Auto, false, "forward_counts_equal_link_stats_ipv4_tcx");
}

#[test]
fn forward_counts_equal_link_stats_ipv4_clsact() {
    ping_and_compare(AttachMode::Clsact, false, "forward_counts_equal_link_stats_ipv4_clsact");
}

#[test]
fn forward_counts_equal_link_stats_ipv6() {
    ping_and_compare(AttachMode::Auto, true, "forward_counts_equal_link_stats_ipv6");
}
