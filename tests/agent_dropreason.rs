//! dropreason through the whole agent: drops caused in a pod's namespace (an nft rule, UDP to a
//! closed port) come out of the real `fovea` binary's Prometheus endpoint with the exact counts
//! the kernel's own counters report (the nft counter, `UdpNoPorts`), under OpenTelemetry and
//! Retina naming, and as 5-tuple flow records on the debug exporter.

#[path = "support/agent.rs"]
mod agent;
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use agent::{Agent, free_port, wait_collections};
use support::netns::{LinkOptions, LinkStats, Pod};

const DROPPED: u16 = 9999;
const CLOSED: u16 = 9998;
const INTERVAL: Duration = Duration::from_secs(1);

/// One drop record as the debug exporter prints it (verbosity normal).
#[derive(Debug)]
struct Printed {
    src: SocketAddr,
    dst: SocketAddr,
    protocol: u8,
    direction: String,
    ifindex: u32,
    bytes: u64,
    reason: String,
}

/// `<time> drop <src:port> -> <dst:port> proto=17 dir=receive if=3 packets=1 bytes=328 reason=X`
fn printed_drops(stdout: &str) -> Vec<Printed> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1) != Some(&"drop") || f.get(3) != Some(&"->") {
                return None;
            }
            let field = |k: &str| f.iter().find_map(|x| x.strip_prefix(k)).map(str::to_string);
            Some(Printed {
                src: f[2].parse().ok()?,
                dst: f[4].parse().ok()?,
                protocol: field("proto=")?.parse().ok()?,
                direction: field("dir=")?,
                ifindex: field("if=")?.parse().ok()?,
                bytes: field("bytes=")?.parse().ok()?,
                reason: field("reason=")?,
            })
        })
        .collect()
}

#[test]
fn agent_drops_equal_nft_and_udp_no_ports() {
    let test = "agent_drops_equal_nft_and_udp_no_ports";
    if !support::require_tools(test, &["ip", "nft", "nstat"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let (host, inside) = (pod.addrs.a4, pod.addrs.b4);
    pod.ns.nft(&format!(
        "table inet fovea_t {{
            counter drops {{}}
            chain input {{
                type filter hook input priority 0; policy accept;
                ip saddr {host} udp dport {DROPPED} counter name \"drops\" drop
            }}
        }}"
    ));
    let retina_port = free_port();
    let agent = Agent::start(&format!(
        "receivers:
  dropreason: {{collection_interval: 1s}}
  packetforward: {{collection_interval: 1s, interfaces: [{iface}]}}
exporters:
  prometheus: {{endpoint: 127.0.0.1:0}}
  prometheus/retina: {{endpoint: 127.0.0.1:{retina_port}, naming: retina}}
  debug: {{verbosity: normal}}
service:
  pipelines:
    metrics: {{receivers: [dropreason, packetforward], exporters: [prometheus, prometheus/retina]}}
    flows: {{receivers: [dropreason], exporters: [debug]}}
",
        iface = pod.host_if
    ));
    let retina: SocketAddr = ([127, 0, 0, 1], retina_port).into();
    wait_collections(INTERVAL, 1);
    let drops = |m: &agent::Exposition, reason: &str| {
        let l = [("drop_reason", reason), ("network_io_direction", "receive")];
        (m.count("network_drop_packets_total", &l), m.count("network_drop_bytes_total", &l))
    };
    let s0 = agent.scrape();
    let (nf0, ns0) = (drops(&s0, "NETFILTER_DROP"), drops(&s0, "NO_SOCKET"));
    let no_ports0 = pod.ns.nstat("UdpNoPorts");

    const M: u64 = 17;
    const K: u64 = 9;
    const PAYLOAD: usize = 300;
    let sock = UdpSocket::bind(SocketAddr::new(host.into(), 0)).expect("bind");
    let src = sock.local_addr().expect("local");
    for _ in 0..M {
        sock.send_to(&[7u8; PAYLOAD], SocketAddr::new(inside.into(), DROPPED)).expect("send");
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..K {
        // ignore ECONNREFUSED: the pod's port unreachable replies reach this socket
        let _ = sock.send_to(&[7u8; PAYLOAD], SocketAddr::new(inside.into(), CLOSED));
        std::thread::sleep(Duration::from_millis(2));
    }
    let link = LinkStats::settled(|| LinkStats::host(&pod.host_if));
    wait_collections(INTERVAL, 2);
    let s1 = agent.scrape();
    let r1 = agent.scrape_at(retina);
    let (nft_packets, nft_bytes) = pod.ns.nft_counter("inet", "fovea_t", "drops");
    let no_ports = pod.ns.nstat("UdpNoPorts") - no_ports0;
    assert_eq!((nft_packets, no_ports), (M, K), "the kernel's own counters saw every datagram");
    let l3 = (20 + 8 + PAYLOAD) as u64;
    assert_eq!(nft_bytes, M * l3);

    // Drops elsewhere on the machine during the test (tracepoints are global): from the records.
    let printed = printed_drops(&agent.stdout());
    let foreign = |reason: &str| {
        printed
            .iter()
            .filter(|r| r.reason == reason && r.direction == "receive" && r.src != src)
            .fold((0, 0), |(p, b), r| (p + 1, b + r.bytes))
    };
    let (fnf, fns) = (foreign("NETFILTER_DROP"), foreign("NO_SOCKET"));
    if fnf.0 + fns.0 > 0 {
        eprintln!("note: drops from elsewhere on this machine: NETFILTER_DROP {fnf:?}, NO_SOCKET {fns:?}");
    }
    let (nf1, ns1) = (drops(&s1, "NETFILTER_DROP"), drops(&s1, "NO_SOCKET"));
    let delta = |a: (u64, u64), b: (u64, u64)| (a.0 - b.0, a.1 - b.1);
    let within = |got: (u64, u64), exact: (u64, u64), extra: (u64, u64)| {
        got.0 >= exact.0 && got.0 <= exact.0 + extra.0 && got.1 >= exact.1 && got.1 <= exact.1 + extra.1
    };
    let got_nf = delta(nf1, nf0);
    assert!(
        within(got_nf, (nft_packets, nft_bytes), fnf),
        "NETFILTER_DROP {got_nf:?} = nft counter ({nft_packets}, {nft_bytes})"
    );
    let got_ns = delta(ns1, ns0);
    assert!(within(got_ns, (no_ports, no_ports * l3), fns), "NO_SOCKET {got_ns:?} = UdpNoPorts {no_ports}");
    if fnf.0 == 0 {
        assert_eq!(got_nf, (M, M * l3));
    }
    assert_eq!(s1.type_of("network_drop_packets_total").as_deref(), Some("counter"));

    // Retina naming: same values, Retina's names and labels, counters.
    let rl = [("reason", "NETFILTER_DROP"), ("direction", "ingress")];
    assert_eq!(r1.count("networkobservability_drop_count", &rl), nf1.0, "{}", r1.0);
    assert_eq!(r1.count("networkobservability_drop_bytes", &rl), nf1.1);
    let rl = [("reason", "NO_SOCKET"), ("direction", "ingress")];
    assert_eq!(r1.count("networkobservability_drop_count", &rl), ns1.0);
    for name in ["networkobservability_drop_count", "networkobservability_forward_count"] {
        assert_eq!(r1.type_of(name).as_deref(), Some("counter"), "{name} is a counter");
    }
    // the pod's veth is the only interface counted, so Retina's node sums are its counts
    let fwd = |dir: &str| {
        let l = [("network_interface_name", pod.host_if.as_str()), ("network_io_direction", dir)];
        (s1.count("network_forward_packets_total", &l), s1.count("network_forward_bytes_total", &l))
    };
    assert_eq!(fwd("transmit"), (link.tx_packets, link.tx_bytes), "forward transmit = ip -s link tx");
    assert_eq!(fwd("receive"), (link.rx_packets, link.rx_bytes), "forward receive = ip -s link rx");
    assert_eq!(r1.count("networkobservability_forward_count", &[("direction", "egress")]), link.tx_packets);
    assert_eq!(r1.count("networkobservability_forward_bytes", &[("direction", "egress")]), link.tx_bytes);
    assert_eq!(r1.count("networkobservability_forward_count", &[("direction", "ingress")]), link.rx_packets);

    // Flow records: the 5-tuples, on the pod's eth0, with reason and bytes.
    let eth0: u32 = pod.ns.exec("cat", &["/sys/class/net/eth0/ifindex"]).trim().parse().expect("ifindex");
    for (port, reason, n) in [(DROPPED, "NETFILTER_DROP", M), (CLOSED, "NO_SOCKET", K)] {
        let ours: Vec<&Printed> = printed.iter().filter(|r| r.src == src && r.dst.port() == port).collect();
        assert_eq!(ours.len() as u64, n, "one record per {reason} drop:\n{}", agent.stdout());
        for r in ours {
            assert_eq!(r.dst, SocketAddr::new(inside.into(), port));
            assert_eq!((r.protocol, r.direction.as_str(), r.reason.as_str()), (17, "receive", reason));
            assert_eq!((r.bytes, r.ifindex), (l3, eth0));
        }
    }
    let own = agent.scrape_at(agent.telemetry);
    let emitted = own.count("fovea_ebpf_records_emitted_total", &[("receiver", "dropreason")]);
    assert!(emitted >= M + K, "records emitted {emitted}:\n{}", own.0);
    assert_eq!(own.count("fovea_ebpf_records_lost_total", &[("receiver", "dropreason")]), 0);
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

/// Without a flows pipeline the probe makes no records at all (the cap is 0 in the kernel, and
/// the ring buffer is one page).
#[test]
fn agent_without_flows_pipeline_emits_no_records() {
    let test = "agent_without_flows_pipeline_emits_no_records";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let agent = Agent::start(
        "receivers:
  dropreason: {collection_interval: 1s}
exporters:
  prometheus: {endpoint: 127.0.0.1:0}
service:
  pipelines:
    metrics: {receivers: [dropreason], exporters: [prometheus]}
",
    );
    let sock = UdpSocket::bind(SocketAddr::new(pod.addrs.a4.into(), 0)).expect("bind");
    for _ in 0..5 {
        let _ = sock.send_to(b"x", SocketAddr::new(pod.addrs.b4.into(), CLOSED));
    }
    wait_collections(INTERVAL, 2);
    let m = agent.scrape();
    assert!(m.count("network_drop_packets_total", &[("drop_reason", "NO_SOCKET")]) >= 5, "{}", m.0);
    let own = agent.scrape_at(agent.telemetry);
    assert_eq!(own.count("fovea_ebpf_records_emitted_total", &[("receiver", "dropreason")]), 0, "{}", own.0);
    assert_eq!(own.count("fovea_ebpf_records_capped_total", &[("receiver", "dropreason")]), 0);
    let ring = own.count("fovea_ebpf_map_max_entries", &[("receiver", "dropreason"), ("map", "records")]);
    assert!(ring <= 65536, "the unused ring is the smallest possible: {ring} bytes");
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}
