//! packetforward through the whole agent: the real `fovea` binary counts packets on a pod's
//! veth, and what its Prometheus endpoint (and a real Prometheus scraping it) reports equals
//! the interface's own statistics (`ip -s link`) packet for packet and byte for byte. A veth
//! created after the agent started is attached within a second, from netlink events.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/prometheus.rs"]
mod prometheus_server;
mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use agent::{Agent, wait_collections};
use support::netns::{LinkOptions, LinkStats, Pod};

const PORT: u16 = 9400;
const INTERVAL: Duration = Duration::from_secs(1);
/// Ethernet 14 + IPv4 20 + UDP 8.
const HEADERS: u64 = 42;

fn quiet_pod() -> Pod {
    // no IPv6 (no ND, MLD, autoconf) and static neighbours (no ARP): only our packets cross
    Pod::new(LinkOptions { ipv6: false, static_neighbours: true })
}

fn config(interfaces: &str, expiration: &str) -> String {
    format!(
        "receivers:
  packetforward:
    collection_interval: 1s
    interfaces: [{interfaces}]
exporters:
  prometheus:
    endpoint: 127.0.0.1:0
    metric_expiration: {expiration}
service:
  pipelines:
    metrics: {{receivers: [packetforward], exporters: [prometheus]}}
"
    )
}

/// Sends `n` datagrams of `payload` bytes from `src` to `dst`, where a socket is bound.
fn udp(src: IpAddr, dst: SocketAddr, n: u64, payload: usize) {
    let s = UdpSocket::bind(SocketAddr::new(src, 0)).expect("bind sender");
    let buf = vec![0x42; payload];
    for _ in 0..n {
        s.send_to(&buf, dst).expect("send");
    }
}

/// The host side receives `rx_n` datagrams from the pod and transmits `tx_n` to it.
fn traffic(pod: &Pod, rx_n: u64, tx_n: u64, payload: usize) {
    let (host, inside) = (pod.addrs.a4, pod.addrs.b4);
    let sink = UdpSocket::bind(SocketAddr::new(host.into(), PORT)).expect("bind host sink");
    let pod_sink = pod.ns.run_in(move || UdpSocket::bind(SocketAddr::new(inside.into(), PORT)).expect("bind pod sink"));
    pod.ns.run_in(move || udp(inside.into(), SocketAddr::new(host.into(), PORT), rx_n, payload));
    udp(host.into(), SocketAddr::new(inside.into(), PORT), tx_n, payload);
    drop((sink, pod_sink));
}

fn forward(agent: &Agent, iface: &str, direction: &str) -> (u64, u64) {
    let m = agent.scrape();
    let labels = [("network_interface_name", iface), ("network_io_direction", direction)];
    (m.count("network_forward_packets_total", &labels), m.count("network_forward_bytes_total", &labels))
}

fn counts_equal_link_statistics(interfaces: &str, pod: &Pod, test: &str) {
    let agent = Agent::start(&config(interfaces, "5m"));
    wait_collections(INTERVAL, 1);
    let iface = pod.host_if.as_str();
    let link0 = LinkStats::host(iface);
    let (rx0, tx0) = (forward(&agent, iface, "receive"), forward(&agent, iface, "transmit"));
    assert_eq!(
        (rx0, tx0),
        ((link0.rx_packets, link0.rx_bytes), (link0.tx_packets, link0.tx_bytes)),
        "{test}: before traffic, fovea and the interface agree (nothing crossed the quiet veth)"
    );

    const RX: u64 = 1000;
    const TX: u64 = 700;
    const PAYLOAD: usize = 200;
    traffic(pod, RX, TX, PAYLOAD);
    let link = LinkStats::settled(|| LinkStats::host(iface));
    wait_collections(INTERVAL, 2);
    let (rx, tx) = (forward(&agent, iface, "receive"), forward(&agent, iface, "transmit"));
    assert_eq!(rx, (link.rx_packets, link.rx_bytes), "{test}: receive equals ip -s link rx");
    assert_eq!(tx, (link.tx_packets, link.tx_bytes), "{test}: transmit equals ip -s link tx");
    let frame = HEADERS + PAYLOAD as u64;
    assert_eq!((rx.0 - rx0.0, rx.1 - rx0.1), (RX, RX * frame), "{test}: N x frame size received");
    assert_eq!((tx.0 - tx0.0, tx.1 - tx0.1), (TX, TX * frame), "{test}: N x frame size sent");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
}

#[test]
fn agent_forward_counts_equal_ip_link_by_name() {
    let test = "agent_forward_counts_equal_ip_link_by_name";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pod = quiet_pod();
    counts_equal_link_statistics(&pod.host_if.clone(), &pod, test);
}

#[test]
fn agent_forward_counts_equal_ip_link_by_glob() {
    let test = "agent_forward_counts_equal_ip_link_by_glob";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pod = quiet_pod();
    // every pod veth of this test process: `fvh<pid>x<n>`
    let glob = format!("'{}*'", &pod.host_if[..pod.host_if.find('x').expect("x") + 1]);
    counts_equal_link_statistics(&glob, &pod, test);
}

/// A veth created while the agent runs is attached from the RTM_NEWLINK event: the pod sends a
/// datagram every 5 ms from the moment its link is up; the datagrams fovea did not count are
/// exactly those sent before it attached, which gives the time from link creation to the first
/// counted packet. Everything sent 1 s after creation is counted exactly. Deleting the veth
/// detaches it and its series disappear.
#[test]
fn agent_attaches_new_veth_within_a_second() {
    let test = "agent_attaches_new_veth_within_a_second";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let probe = quiet_pod(); // only to learn this process's veth name prefix
    let prefix = probe.host_if[..probe.host_if.find('x').expect("x") + 1].to_string();
    drop(probe);
    let agent = Agent::start(&config(&format!("'{prefix}*'"), "3s"));

    let created = Instant::now();
    let pod = quiet_pod();
    let iface = pod.host_if.clone();
    let (host, inside) = (pod.addrs.a4, pod.addrs.b4);
    let sink = UdpSocket::bind(SocketAddr::new(host.into(), PORT)).expect("bind host sink");
    const GAP: Duration = Duration::from_millis(5);
    const PAYLOAD: usize = 100;
    let (early, up_after) = pod.ns.run_in(move || {
        let s = UdpSocket::bind(SocketAddr::new(inside.into(), 0)).expect("bind");
        let up_after = created.elapsed();
        let mut n = 0u64;
        while created.elapsed() < Duration::from_secs(1) {
            s.send_to(&[0u8; PAYLOAD], SocketAddr::new(host.into(), PORT)).expect("send");
            n += 1;
            std::thread::sleep(GAP);
        }
        (n, up_after)
    });
    const LATE: u64 = 500;
    pod.ns.run_in(move || udp(inside.into(), SocketAddr::new(host.into(), PORT), LATE, PAYLOAD));
    drop(sink);
    let link = LinkStats::settled(|| LinkStats::host(&iface));
    wait_collections(INTERVAL, 2);
    let (packets, bytes) = forward(&agent, &iface, "receive");
    assert_eq!(link.rx_packets, early + LATE, "the kernel received every datagram");
    let missed = early + LATE - packets;
    assert!(
        missed < early,
        "attached before the traffic 1 s after creation: {missed} of {early} early datagrams missed, {packets} counted"
    );
    assert_eq!(bytes, packets * (HEADERS + PAYLOAD as u64), "bytes of exactly the counted datagrams");
    // sends are paced GAP apart from `up_after`, so the first counted one left at about:
    let first_counted = up_after + GAP * missed as u32;
    eprintln!(
        "{test}: link up {up_after:?} after creation; first counted datagram ~{first_counted:?} after creation \
         ({missed} of {early} early datagrams sent before the attach)"
    );
    assert!(first_counted < Duration::from_secs(1), "attached within 1 s of creation: {first_counted:?}");

    // removal: the series stop (and expire from the endpoint)
    drop(pod);
    let deadline = Instant::now() + Duration::from_secs(15);
    let present = |m: &agent::Exposition| {
        m.samples("network_forward_packets_total").iter().any(|(l, _)| l["network_interface_name"] == iface)
    };
    while present(&agent.scrape()) {
        assert!(Instant::now() < deadline, "the deleted veth's series never disappeared");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(agent.stderr().contains("stopped counting packets"), "{}", agent.stderr());
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

/// A real Prometheus scrapes the agent; PromQL returns the exact forward count.
#[test]
fn agent_prometheus_query_returns_exact_forward_count() {
    let test = "agent_prometheus_query_returns_exact_forward_count";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pod = quiet_pod();
    let agent = Agent::start(&config(&pod.host_if, "5m"));
    let Some(prom) = prometheus_server::Prometheus::start(prometheus_server::Options {
        targets: vec![prometheus_server::ScrapeTarget::new("fovea", agent.metrics)],
        ..prometheus_server::Options::default()
    }) else {
        return;
    };
    prom.wait_targets_up(1, Duration::from_secs(30));
    const N: u64 = 321;
    traffic(&pod, N, 0, 64);
    let link = LinkStats::settled(|| LinkStats::host(&pod.host_if));
    assert_eq!(link.rx_packets, N);
    let q = format!(
        "network_forward_packets_total{{network_interface_name=\"{}\",network_io_direction=\"receive\"}}",
        pod.host_if
    );
    let r = prom.wait_for(&q, Duration::from_secs(20), |r| r.len() == 1 && r[0].1 == N as f64);
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    assert_eq!(r[0].1, N as f64, "PromQL {q} equals ip -s link rx_packets");
    let bytes = prom.query(&q.replace("packets_total", "bytes_total"));
    assert_eq!(bytes[0].1, link.rx_bytes as f64);
    assert_eq!(prom.metadata_types("network_forward_packets_total"), vec!["counter".to_string()]);
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}
