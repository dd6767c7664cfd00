//! flows, kernel side: the datapath programs' in-kernel flow aggregation against ground truth.
//!
//! Every test builds a node in a network namespace with pods on veth pairs (tests/support/node.rs)
//! and runs the probe inside the node's namespace. Ground truth: `ip -s link` of the veths, bytes
//! actually sent, and `tcpdump` captures of the same interface read back with filters.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use fovea::ebpf::{
    DatapathOptions, DatapathProbe, Direction, FLOW_CACHE_SLOTS, Features, FlowDelta, IfaceCount, IfaceCountKind,
    LinkLayer, RTT_COPY_EVERY, SocketRtt,
};
use support::netns::{LinkOptions, LinkStats};
use support::node::{Node, NodePod};

fn quiet() -> LinkOptions {
    LinkOptions { ipv6: false, static_neighbours: true }
}

const ALL: Features = Features { flows: true, tcp_flags: true, handshake: true, collapse_ports: None, dns: None };

/// Loads the probe in the node's namespace and attaches it to `ifaces`.
fn probe(node: &Node, features: Features, options: DatapathOptions, ifaces: &[&str]) -> DatapathProbe {
    let ifaces: Vec<String> = ifaces.iter().map(|s| s.to_string()).collect();
    node.ns.run_in(move || {
        let mut p = DatapathProbe::load(options).expect("load the datapath probe");
        p.set_features(features).expect("features");
        for i in &ifaces {
            p.attach(i, LinkLayer::Ethernet).expect("attach");
        }
        p
    })
}

fn drain(p: &DatapathProbe) -> Vec<FlowDelta> {
    let mut out = Vec::new();
    p.flows().lock().expect("flows lock").drain(|d| out.push(d)).expect("drain");
    out
}

fn iface_counts(p: &DatapathProbe) -> Vec<IfaceCount> {
    p.flows().lock().expect("flows lock").interface_counts().expect("interface counts")
}

/// (packets, network-layer bytes) of the flows at `ifindex` ingress to `dst` with this protocol and
/// these ports.
fn ingress_to(deltas: &[FlowDelta], ifindex: u32, dst: IpAddr, protocol: u8, sport: u16, dport: u16) -> (u64, u64) {
    deltas
        .iter()
        .filter(|d| d.key.ifindex == ifindex && d.key.direction == Direction::Ingress && d.key.tuple.dst == dst)
        .filter(|d| (d.key.tuple.protocol, d.key.tuple.src_port, d.key.tuple.dst_port) == (protocol, sport, dport))
        .fold((0, 0), |(p, b), d| (p + d.packets, b + d.bytes))
}

/// A node with pods A and B (IPv6 on, static neighbours), the probe attached to A, and A's
/// ifindex; after IPv6's own chatter and a first drain, so the next drain is the test's traffic.
fn two_pods_watching_a() -> (Node, NodePod, NodePod, DatapathProbe, u32) {
    let node = Node::new();
    let opts = LinkOptions { ipv6: true, static_neighbours: true };
    let (a, b) = (node.pod(opts), node.pod(opts));
    let p = probe(&node, ALL, DatapathOptions::default(), &[&a.host_if]);
    let ia = node.ifindex(&a.host_if);
    std::thread::sleep(Duration::from_millis(300));
    drain(&p);
    (node, a, b, p, ia)
}

/// (packets, network-layer bytes) of every flow at `ifindex` in `direction`.
fn total(deltas: &[FlowDelta], ifindex: u32, direction: Direction) -> (u64, u64) {
    deltas
        .iter()
        .filter(|d| d.key.ifindex == ifindex && d.key.direction == direction)
        .fold((0, 0), |(p, b), d| (p + d.packets, b + d.bytes))
}

fn udp_flood(from: &NodePod, to: SocketAddr, n: u64, payload: usize) -> u16 {
    let src = match to.ip() {
        IpAddr::V4(_) => IpAddr::V4(from.v4()),
        IpAddr::V6(_) => IpAddr::V6(from.v6()),
    };
    from.ns.run_in(move || {
        let s = UdpSocket::bind(SocketAddr::new(src, 0)).expect("bind");
        let buf = vec![0x5a; payload];
        for _ in 0..n {
            s.send_to(&buf, to).expect("send");
        }
        s.local_addr().expect("addr").port()
    })
}

/// Binds a UDP sink in `pod` so datagrams are not answered with ICMP errors.
fn udp_sink(pod: &NodePod, addr: IpAddr, port: u16) -> UdpSocket {
    pod.ns.run_in(move || UdpSocket::bind(SocketAddr::new(addr, port)).expect("bind sink"))
}

fn settled(node: &Node, iface: &str) -> LinkStats {
    LinkStats::settled(|| node.link_stats(iface))
}

/// Drains until the interfaces' statistics did not move during a drain: everything drained is
/// then exactly what the statistics counted (IPv6 keeps a little chatter of its own).
fn quiet_drain(node: &Node, p: &DatapathProbe, ifaces: &[&str]) -> (Vec<LinkStats>, Vec<FlowDelta>, Vec<IfaceCount>) {
    let mut all = Vec::new();
    for _ in 0..50 {
        let before: Vec<LinkStats> = ifaces.iter().map(|i| settled(node, i)).collect();
        all.extend(drain(p));
        let counts = iface_counts(p);
        let after: Vec<LinkStats> = ifaces.iter().map(|i| node.link_stats(i)).collect();
        if before == after {
            return (before, all, counts);
        }
    }
    panic!("the interfaces never went quiet");
}

/// N datagrams of S bytes from pod A to pod B: A's flow at A's interface has exactly N packets
/// and N * (S + 28) bytes (IPv4; + 48 for IPv6), and A's and B's interfaces' own statistics agree.
fn udp_counts(ipv6: bool, test: &str) {
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let node = Node::new();
    let opts = LinkOptions { ipv6, static_neighbours: true };
    let (a, b) = (node.pod(opts), node.pod(opts));
    let p = probe(&node, ALL, DatapathOptions::default(), &[&a.host_if, &b.host_if]);
    let (ia, ib) = (node.ifindex(&a.host_if), node.ifindex(&b.host_if));
    let dst: IpAddr = if ipv6 { b.v6().into() } else { b.v4().into() };
    let _sink = udp_sink(&b, dst, 9999);
    std::thread::sleep(Duration::from_millis(300)); // IPv6's own chatter after link up
    let (l0, _, nic0) = quiet_drain(&node, &p, &[&a.host_if, &b.host_if]);
    let (a0, b0) = (l0[0], l0[1]);

    const N: u64 = 1000;
    const S: usize = 200;
    let sport = udp_flood(&a, SocketAddr::new(dst, 9999), N, S);
    let (l1, deltas, nic1) = quiet_drain(&node, &p, &[&a.host_if, &b.host_if]);
    let (a1, b1) = (l1[0], l1[1]);
    let l3 = if ipv6 { 48 } else { 28 };

    let flow = |ifindex, direction| {
        deltas
            .iter()
            .find(|d| {
                d.key.ifindex == ifindex
                    && d.key.direction == direction
                    && d.key.tuple.dst == dst
                    && (d.key.tuple.src_port, d.key.tuple.dst_port, d.key.tuple.protocol) == (sport, 9999, 17)
            })
            .unwrap_or_else(|| panic!("{test}: no flow at {ifindex} {direction}: {deltas:#?}"))
    };
    for (ifindex, direction) in [(ia, Direction::Ingress), (ib, Direction::Egress)] {
        let f = flow(ifindex, direction);
        assert_eq!((f.packets, f.bytes), (N, N * (S as u64 + l3)), "{test}: A's flow at {ifindex} {direction}");
    }
    // every packet on the interfaces: flows (network-layer bytes + Ethernet) + non-IP frames
    let not_ip = |ifindex, direction| {
        let count = |c: &[IfaceCount]| {
            c.iter()
                .filter(|c| c.ifindex == ifindex && c.direction == direction && c.kind == IfaceCountKind::NotIp)
                .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))
        };
        let (now, before) = (count(&nic1), count(&nic0));
        (now.0 - before.0, now.1 - before.1)
    };
    let link = |l1: LinkStats, l0: LinkStats| l1.since(&l0);
    let (la, lb) = (link(a1, a0), link(b1, b0));
    for (ifindex, direction, want) in [
        (ia, Direction::Ingress, (la.rx_packets, la.rx_bytes)),
        (ia, Direction::Egress, (la.tx_packets, la.tx_bytes)),
        (ib, Direction::Ingress, (lb.rx_packets, lb.rx_bytes)),
        (ib, Direction::Egress, (lb.tx_packets, lb.tx_bytes)),
    ] {
        let (fp, fb) = total(&deltas, ifindex, direction);
        let (np, nb) = not_ip(ifindex, direction);
        assert_eq!((fp + np, fb + 14 * fp + nb), want, "{test}: everything at {ifindex} {direction} = ip -s link");
    }
    if !ipv6 {
        // IPv6 adds neighbour discovery of its own, counted above on both sides
        assert_eq!((la.rx_packets, lb.tx_packets), (N, N), "{test}: only our datagrams crossed the veths");
    }
}

#[test]
fn udp_v4_flow_counts_equal_bytes_sent_and_link_stats() {
    udp_counts(false, "udp_v4_flow_counts_equal_bytes_sent_and_link_stats");
}

#[test]
fn udp_v6_flow_counts_equal_bytes_sent_and_link_stats() {
    udp_counts(true, "udp_v6_flow_counts_equal_bytes_sent_and_link_stats");
}

/// ICMP and ICMPv6 are flows too; type and code travel in the destination port (type << 8 | code).
#[test]
fn icmp_echo_is_two_flows_with_type_and_code() {
    let test = "icmp_echo_is_two_flows_with_type_and_code";
    if !support::require_tools(test, &["ip", "ping"]) {
        return;
    }
    let (_node, a, b, p, ia) = two_pods_watching_a();
    const N: u64 = 7;
    a.ns.exec("ping", &["-q", "-c", &N.to_string(), "-i", "0.01", "-s", "100", &b.v4().to_string()]);
    a.ns.exec("ping", &["-q", "-6", "-c", &N.to_string(), "-i", "0.01", "-s", "100", &b.v6().to_string()]);
    let deltas = drain(&p);
    let find = |src: IpAddr, dst: IpAddr, protocol: u8, dport: u16, direction| {
        deltas
            .iter()
            .find(|d| {
                d.key.ifindex == ia
                    && d.key.direction == direction
                    && (d.key.tuple.src, d.key.tuple.dst, d.key.tuple.protocol, d.key.tuple.dst_port)
                        == (src, dst, protocol, dport)
            })
            .map(|d| (d.packets, d.bytes, d.key.tuple.src_port))
    };
    let (a4, b4, a6, b6): (IpAddr, IpAddr, IpAddr, IpAddr) =
        (a.v4().into(), b.v4().into(), a.v6().into(), b.v6().into());
    // IPv4: 20 + 8 + 100; IPv6: 40 + 8 + 100
    assert_eq!(find(a4, b4, 1, 8 << 8, Direction::Ingress), Some((N, N * 128, 0)), "echo requests: {deltas:#?}");
    assert_eq!(find(b4, a4, 1, 0, Direction::Egress), Some((N, N * 128, 0)), "echo replies");
    assert_eq!(find(a6, b6, 58, 128 << 8, Direction::Ingress), Some((N, N * 148, 0)), "ICMPv6 echo requests");
    assert_eq!(find(b6, a6, 58, 129 << 8, Direction::Egress), Some((N, N * 148, 0)), "ICMPv6 echo replies");
}

/// IPv4 and IPv6 fragments: the first fragment carries the ports, the others are counted in a
/// flow of the same protocol without ports.
#[test]
fn fragments_first_with_ports_rest_without() {
    let test = "fragments_first_with_ports_rest_without";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let (_node, a, b, p, ia) = two_pods_watching_a();
    let (_s4, _s6) = (udp_sink(&b, b.v4().into(), 9100), udp_sink(&b, b.v6().into(), 9100));
    const N: u64 = 20;
    // 3000 bytes of UDP payload over a 1500-byte MTU: three fragments each
    let p4 = udp_flood(&a, SocketAddr::new(b.v4().into(), 9100), N, 3000);
    let p6 = udp_flood(&a, SocketAddr::new(b.v6().into(), 9100), N, 3000);
    let deltas = drain(&p);
    let at = |dst: IpAddr, sport: u16, dport: u16| ingress_to(&deltas, ia, dst, 17, sport, dport);
    // IPv4: 3008 bytes of IP payload in fragments of 1480, 1480, 48 (+20 header each)
    assert_eq!(at(b.v4().into(), p4, 9100), (N, N * 1500), "first fragments carry the ports");
    assert_eq!(at(b.v4().into(), 0, 0), (2 * N, N * (1500 + 68)), "later fragments: no ports");
    // IPv6: fragments of 1448, 1448, 112 bytes of payload (+40 header, +8 fragment header)
    assert_eq!(at(b.v6().into(), p6, 9100), (N, N * 1496), "IPv6 first fragments carry the ports");
    assert_eq!(at(b.v6().into(), 0, 0), (2 * N, N * (1496 + 160)), "IPv6 later fragments: no ports");
}

/// Raw IPv6 packets with extension headers: hop-by-hop, routing (type 0, no segments left),
/// destination options, AH, and an atomic fragment header before UDP; the walk finds the UDP
/// ports behind all of them. A non-first fragment has no ports; ESP hides everything behind it.
#[test]
fn ipv6_extension_headers_are_walked_to_the_ports() {
    let test = "ipv6_extension_headers_are_walked_to_the_ports";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let (_node, a, b, p, ia) = two_pods_watching_a();

    // (next header, the header's bytes) in the order they follow the IPv6 header
    let hbh = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0]; // PadN
    let routing = |next: u8| vec![next, 0, 0, 0, 0, 0, 0, 0]; // type 0, segments left 0
    let dstopts = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let ah = |next: u8| vec![next, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]; // len 1: 12 bytes
    let frag = |next: u8, offset_units: u16| {
        let fo = (offset_units << 3).to_be_bytes();
        vec![next, 0, fo[0], fo[1], 0, 0, 0x12, 0x34]
    };
    let udp = |sport: u16, dport: u16, payload: usize| {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend(std::iter::repeat_n(0x42, payload));
        u
    };
    let packet = |first: u8, chain: Vec<u8>| {
        let mut pkt = vec![0x60, 0, 0, 0];
        pkt.extend_from_slice(&(chain.len() as u16).to_be_bytes());
        pkt.push(first);
        pkt.push(64);
        pkt.extend_from_slice(&a.v6().octets());
        pkt.extend_from_slice(&b.v6().octets());
        pkt.extend(chain);
        pkt
    };
    let walked = packet(0, [hbh(43), routing(60), dstopts(51), ah(44), frag(17, 0), udp(4321, 5678, 100)].concat());
    let later_fragment = packet(44, [frag(17, 100), vec![0x42; 64]].concat());
    let esp = packet(60, [dstopts(50), vec![0, 0, 0, 1, 0, 0, 0, 1], vec![0x42; 40]].concat());
    const N: u64 = 5;
    let dst = b.v6();
    let sent = vec![walked, later_fragment, esp];
    let lens: Vec<u64> = sent.iter().map(|p| p.len() as u64).collect();
    a.ns.run_in(move || support::netns::raw_send(&sent, IpAddr::V6(dst), N));
    let deltas = drain(&p);
    let at = |protocol: u8, sport: u16, dport: u16| ingress_to(&deltas, ia, IpAddr::V6(dst), protocol, sport, dport);
    assert_eq!(
        at(17, 4321, 5678),
        (N, N * lens[0]),
        "UDP found behind HBH, routing, dstopts, AH, fragment: {deltas:#?}"
    );
    assert_eq!(at(17, 0, 0), (N, N * lens[1]), "a later fragment: UDP without ports");
    assert_eq!(at(50, 0, 0), (N, N * lens[2]), "ESP: protocol 50, no ports");
}

/// A table smaller than the number of flows: exactly the packets of the flows that did not fit
/// are counted as overflow, and flows + overflow equal the interface's statistics.
///
/// With the per-CPU caches in front of the table, which packets get in depends on how the flows
/// meet in the caches (a flow may have its first packet overflow and the rest cached), so the
/// test checks what must hold whatever the order: the table is full, the flows drained are the
/// table's plus at most what the caches hold, no flow has more than was sent, overflow is not
/// empty, and flows + overflow equal `ip -s link` exactly.
#[test]
fn a_full_table_counts_exactly_what_it_could_not_hold() {
    let test = "a_full_table_counts_exactly_what_it_could_not_hold";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    const MAX: u32 = 64;
    const FLOWS: u64 = 2000;
    const PER_FLOW: u64 = 3;
    let p = probe(&node, ALL, DatapathOptions { max_flows: MAX, ..DatapathOptions::default() }, &[&a.host_if]);
    let ia = node.ifindex(&a.host_if);
    drain(&p);
    let before = iface_counts(&p);
    let l0 = settled(&node, &a.host_if);
    let (src, dst) = (a.v4(), b.v4());
    a.ns.run_in(move || {
        // one socket, a destination port per flow (B answers with port unreachable: egress here)
        let s = UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind");
        for i in 0..FLOWS {
            for _ in 0..PER_FLOW {
                s.send_to(&[0u8; 10], SocketAddr::new(dst.into(), 10_000 + i as u16)).expect("send");
            }
        }
    });
    let link = settled(&node, &a.host_if).since(&l0);
    let deltas = drain(&p);
    let overflow = |c: &[IfaceCount]| {
        c.iter()
            .find(|c| c.ifindex == ia && c.direction == Direction::Ingress && c.kind == IfaceCountKind::Overflow)
            .map_or((0, 0), |c| (c.packets, c.bytes))
    };
    let (o1, o0) = (overflow(&iface_counts(&p)), overflow(&before));
    let overflowed = (o1.0 - o0.0, o1.1 - o0.1);
    let ours: Vec<&FlowDelta> =
        deltas.iter().filter(|d| d.key.ifindex == ia && d.key.direction == Direction::Ingress).collect();
    for d in &ours {
        assert!(d.packets <= PER_FLOW && d.bytes == d.packets * 38, "{test}: no more than was sent: {d:?}");
    }
    let table = p.flows().lock().expect("flows lock").fill();
    assert_eq!(table[0].entries, MAX, "{test}: the table filled up: {table:?}");
    let cpus = aya::util::nr_cpus().expect("possible CPUs") as u64;
    let flows = ours.len() as u64;
    assert!(
        flows >= u64::from(MAX) && flows <= u64::from(MAX) + FLOW_CACHE_SLOTS * cpus,
        "{test}: {flows} flows: the table's {MAX} and at most what the caches hold"
    );
    let counted = total(&deltas, ia, Direction::Ingress);
    assert!(overflowed.0 > 0 && overflowed.1 == overflowed.0 * 38, "{test}: overflow {overflowed:?}");
    assert_eq!(
        (counted.0 + overflowed.0, counted.1 + overflowed.1 + 14 * (counted.0 + overflowed.0)),
        (link.rx_packets, link.rx_bytes),
        "{test}: flows + overflow = ip -s link"
    );
    assert_eq!(counted.0 + overflowed.0, FLOWS * PER_FLOW, "{test}: every datagram once");
}

/// Drains while traffic flows: the sum over every drain equals the interface's statistics
/// exactly (no packet counted twice or lost at a swap of the tables and caches).
#[test]
fn sums_over_many_drains_equal_the_interface_counters() {
    let test = "sums_over_many_drains_equal_the_interface_counters";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    let p = probe(&node, ALL, DatapathOptions::default(), &[&a.host_if]);
    let ia = node.ifindex(&a.host_if);
    let _sink = udp_sink(&b, b.v4().into(), 9300);
    drain(&p);
    let l0 = settled(&node, &a.host_if);
    let dst = SocketAddr::new(b.v4().into(), 9300);
    let src = a.v4();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let sender = a.ns.spawn_in(move || {
        let socks: Vec<UdpSocket> =
            (0..16).map(|_| UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind")).collect();
        let mut sent = 0u64;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            for s in &socks {
                s.send_to(&[1u8; 64], dst).expect("send");
            }
            sent += socks.len() as u64;
        }
        sent
    });
    let mut sum = (0u64, 0u64);
    const DRAINS: usize = 20;
    for _ in 0..DRAINS {
        let (p_, b_) = total(&drain(&p), ia, Direction::Ingress);
        sum = (sum.0 + p_, sum.1 + b_);
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    let link = settled(&node, &a.host_if).since(&l0);
    let (p_, b_) = total(&drain(&p), ia, Direction::Ingress);
    sum = (sum.0 + p_, sum.1 + b_);
    assert!(sent > 1000, "{test}: {sent} datagrams sent during {DRAINS} drains");
    assert_eq!(sum.0, sent, "{test}: every datagram once");
    assert_eq!((sum.0, sum.1 + 14 * sum.0), (link.rx_packets, link.rx_bytes), "{test}: = ip -s link");
}

/// Client connections to a server pod, some closed with FIN and some with RST.
fn connections(client: &NodePod, server: &NodePod, fin: u32, rst: u32) {
    let addr = SocketAddr::new(server.v4().into(), 7000);
    let listener = server.ns.run_in(move || TcpListener::bind(addr).expect("listen"));
    let accept = std::thread::spawn(move || {
        for _ in 0..fin + rst {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 64];
            // read until the client closes (EOF) or resets
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
    });
    client.ns.run_in(move || {
        for i in 0..fin + rst {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            s.write_all(b"hello").expect("write");
            if i >= fin {
                // SO_LINGER 0: close sends RST
                let l = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: setsockopt on a socket we own with a valid linger struct.
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(&s),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        std::ptr::from_ref(&l).cast(),
                        size_of::<libc::linger>() as u32,
                    );
                }
            } else {
                s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                let mut buf = [0u8; 8];
                let _ = s.read(&mut buf); // the server's FIN
            }
        }
    });
    accept.join().expect("accept thread");
}

/// Packets matching a tcpdump filter in a capture.
fn tcpdump_count(file: &str, filter: &str) -> u64 {
    let out = support::run("tcpdump", &["-r", file, "-nn", filter]);
    out.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// A capture of one of the node's interfaces, stopped (and flushed) on `stop`.
struct Capture {
    child: std::process::Child,
    file: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Capture {
    fn start(node: &Node, iface: &str, file: &str) -> Self {
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &node.ns.name, "tcpdump", "-i", iface, "-U", "--immediate-mode", "-n"])
            .args(["-B", "65536", "-w", file])
            .args(["--time-stamp-precision=nano", "tcp"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let mut c = Capture { child, file: file.to_string(), stderr: None };
        // tcpdump says "listening on" once the capture is open
        let mut err = c.child.stderr.take().expect("stderr");
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while !seen.contains("listening on") {
            let n = err.read(&mut buf).expect("tcpdump stderr");
            assert!(n > 0, "tcpdump exited: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            rest
        });
        c.stderr = Some(rest);
        c
    }

    /// Stops the capture once tcpdump has caught up (the file stopped growing: with -U every
    /// packet is written as it is processed), so no captured packet is lost at exit. `Err` with
    /// tcpdump's statistics when it lost packets all the same.
    fn stop(mut self) -> Result<String, String> {
        let size = || std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
        let mut last = size();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = size();
            if now == last {
                break;
            }
            last = now;
        }
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().expect("tcpdump exit");
        let stats = self.stderr.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        let count =
            |what: &str| stats.lines().find_map(|l| l.strip_suffix(what)).and_then(|n| n.trim().parse::<u64>().ok());
        let (captured, received) = (count("packets captured"), count("packets received by filter"));
        if captured.is_some() && captured == received && count("packets dropped by kernel") == Some(0) {
            Ok(self.file.clone())
        } else {
            Err(format!("tcpdump lost packets: {}", stats.trim()))
        }
    }
}

/// 500 short connections: the per-flag counts at the client's interface equal a tcpdump capture
/// of it, packet for packet (500 SYN, 500 SYN-ACK, the FINs and RSTs), no handshake is longer
/// than the SYN / SYN-ACK timestamps in the capture and 99 % are within 50 µs of them (see the
/// round for why not all), and the node histogram counts each
/// handshake once (at the server pod's interface, where the SYN left towards the server).
///
/// tcpdump is the ground truth here; when it falls behind on a busy machine and loses packets
/// (its own statistics say so), or the machine delays more than 1 % of the SYNs by over 50 µs
/// between the capture and our hook, the round proves nothing and is run again, at most three
/// times.
#[test]
fn tcp_flags_and_handshakes_equal_a_tcpdump_capture() {
    let test = "tcp_flags_and_handshakes_equal_a_tcpdump_capture";
    if !support::require_tools(test, &["ip", "tcpdump"]) {
        return;
    }
    for round in 1..=3 {
        match flags_and_handshakes_round(test) {
            Ok(()) => return,
            Err(lost) if round < 3 => eprintln!("{test}: round {round}: {lost}; again"),
            Err(lost) => panic!("{test}: three rounds, the capture was disturbed in each: {lost}"),
        }
    }
}

/// One round of [`tcp_flags_and_handshakes_equal_a_tcpdump_capture`] on a fresh node; `Err`
/// only when tcpdump lost packets or too many SYNs waited (every other difference fails the test).
fn flags_and_handshakes_round(test: &str) -> Result<(), String> {
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    let p = probe(&node, ALL, DatapathOptions::default(), &[&a.host_if, &b.host_if]);
    let ia = node.ifindex(&a.host_if);
    drain(&p);
    let hist0 = p.flows().lock().expect("lock").handshake_histogram().expect("histogram");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.pcap").display().to_string();
    let capture = Capture::start(&node, &a.host_if, &file);
    const FIN: u32 = 400;
    const RST: u32 = 100;
    connections(&a, &b, FIN, RST);
    let file = capture.stop()?;
    let deltas = drain(&p);
    let hist = p.flows().lock().expect("lock").handshake_histogram().expect("histogram");

    let ours = |flag: usize| -> u64 {
        deltas.iter().filter(|d| d.key.ifindex == ia).map(|d| u64::from(d.tcp_flags[flag])).sum()
    };
    let filters = [
        (0, "SYN", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"),
        (1, "SYNACK", "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)"),
        (2, "ACK", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-ack"),
        (3, "FIN", "tcp[tcpflags] & tcp-fin != 0"),
        (4, "RST", "tcp[tcpflags] & tcp-rst != 0"),
        (5, "PSH", "tcp[tcpflags] & tcp-push != 0"),
        (6, "URG", "tcp[tcpflags] & tcp-urg != 0"),
        (7, "ECE", "tcp[tcpflags] & tcp-ece != 0"),
        (8, "CWR", "tcp[tcpflags] & tcp-cwr != 0"),
    ];
    // every flag in one message: (name, ours, the capture's)
    let counts: Vec<(&str, u64, u64)> =
        filters.iter().map(|&(i, name, filter)| (name, ours(i), tcpdump_count(&file, filter))).collect();
    assert!(counts.iter().all(|(_, o, c)| o == c), "{test}: flags (name, ours, capture): {counts:?}");
    assert_eq!((ours(0), ours(1)), (500, 500), "{test}: one SYN and one SYN-ACK per connection");
    // a reset connection can show a second RST (the kernel answers a segment already on its way
    // to the closed socket with one), so count connections: exactly the reset ones have a RST
    let reset: std::collections::HashSet<String> =
        support::run("tcpdump", &["-r", &file, "-nn", "tcp[tcpflags] & tcp-rst != 0"])
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (src, dst) = (f.get(2)?, f.get(4)?.trim_end_matches(':'));
                // the client's end: the one that is not the server's port 7000
                [*src, dst].into_iter().find(|e| !e.ends_with(".7000")).map(str::to_owned)
            })
            .collect();
    assert_eq!(reset.len(), RST as usize, "{test}: the reset connections, and only they, show a RST");
    assert!(ours(4) >= u64::from(RST), "{test}: at least one RST per reset connection");

    // handshakes: SYN (client port p) -> SYN-ACK (to port p) in the capture, per client port
    let stamps = support::run(
        "tcpdump",
        &["-r", &file, "-nn", "-tt", "--time-stamp-precision=nano", "tcp[tcpflags] & tcp-syn != 0"],
    );
    let mut syn = std::collections::HashMap::<u16, Vec<u64>>::new();
    let mut synack = std::collections::HashMap::<u16, Vec<u64>>::new();
    for line in stamps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (ts, src, dst) = (f[0], f[2], f[4].trim_end_matches(':'));
        let (s, ns) = ts.split_once('.').expect("timestamp");
        let t = s.parse::<u64>().expect("s") * 1_000_000_000 + ns.parse::<u64>().expect("ns");
        let port = |a: &str| a.rsplit_once('.').and_then(|(_, p)| p.parse::<u16>().ok()).expect("port");
        if line.contains("Flags [S.") {
            synack.entry(port(dst)).or_default().push(t);
        } else {
            syn.entry(port(src)).or_default().push(t);
        }
    }
    // tcpdump stamps the SYN as it enters the interface, before our ingress hook, and the
    // SYN-ACK as it leaves, after our egress hook: ours can only be shorter than the capture's.
    // On a busy machine the SYN can wait between the two (seen in CI: 2 of 500 handshakes
    // 55-60 µs shorter than the capture), so: never longer than the capture (10 µs of clock
    // slack), within 50 µs of it for at least 99 % of the handshakes, and the same count.
    let mut checked = 0;
    let (mut wrong, mut late) = (Vec::new(), Vec::new());
    for d in deltas.iter().filter(|d| d.key.ifindex == ia && d.handshake.count > 0) {
        // the SYN-ACK's flow: server -> client, egress on the client's interface
        let port = d.key.tuple.dst_port;
        let none = Vec::new();
        let (s, sa) = (syn.get(&port).unwrap_or(&none), synack.get(&port).unwrap_or(&none));
        let capture: u64 = sa.iter().zip(s).map(|(sa, s)| sa.saturating_sub(*s)).sum();
        let n = u64::from(d.handshake.count);
        let seen = (port, d.handshake.count, d.handshake.sum_ns, s.len(), sa.len(), capture);
        if d.handshake.count as usize != sa.len() || s.len() != sa.len() || d.handshake.sum_ns > capture + 10_000 * n {
            wrong.push(seen);
        } else if capture - d.handshake.sum_ns.min(capture) > 50_000 * n {
            late.push(seen);
        }
        checked += d.handshake.count;
    }
    let what = "(client port, ours: count, ns; capture: SYNs, SYN-ACKs, ns)";
    assert!(
        wrong.is_empty(),
        "{test}: {} of {checked} handshakes disagree with the capture {what}: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(checked, 500, "{test}: every handshake measured at the client's interface");
    assert_eq!(hist.count - hist0.count, 500, "{test}: the node histogram counts each handshake once");
    // the capture stamps a SYN when the veth queues it, our hook sees it when the backlog is
    // processed: under load (other tests on both CPUs) that wait exceeds 50 µs for more than a
    // few SYNs, which says nothing about us; such a round is run again like one with losses
    if late.len() * 100 > checked as usize {
        return Err(format!(
            "{} of {checked} handshakes more than 50 µs shorter than the capture {what}: {:?}",
            late.len(),
            &late[..late.len().min(10)]
        ));
    }
    Ok(())
}

/// The socket `local` names among the RTT programs' sockets.
fn socket_of(p: &DatapathProbe, local: SocketAddr) -> Option<SocketRtt> {
    let mut ours = None;
    p.flows()
        .lock()
        .expect("lock")
        .sockets(|s| {
            if s.tuple.src == local.ip() && s.tuple.src_port == local.port() {
                ours = Some(s);
            }
        })
        .expect("sockets");
    ours
}

/// An echo server on `addr` in `pod` for one connection.
fn echo_once(pod: &NodePod, addr: SocketAddr) -> std::thread::JoinHandle<()> {
    let listener = pod.ns.run_in(move || TcpListener::bind(addr).expect("listen"));
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// The RTT tests' world: two pods, a tbf of `rate` on A's egress (its data queues: an RTT of
/// milliseconds), the RTT programs attached, an echo server in B on `port` and A's connection to
/// it with its local address. Bind every part: the node and pods must outlive the connection.
fn rtt_world(
    rate: &str,
    port: u16,
) -> (Node, NodePod, NodePod, DatapathProbe, std::thread::JoinHandle<()>, TcpStream, SocketAddr) {
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    a.ns.exec("tc", &["qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "4kb", "latency", "100ms"]);
    let p = probe(&node, ALL, DatapathOptions { rtt: true, ..DatapathOptions::default() }, &[&a.host_if]);
    let addr = SocketAddr::new(b.v4().into(), port);
    let server = echo_once(&b, addr);
    let (client, local) = a.ns.run_in(move || {
        let s = TcpStream::connect(addr).expect("connect");
        let local = s.local_addr().expect("local");
        (s, local)
    });
    (node, a, b, p, server, client, local)
}

/// The kernel's smoothed RTT and its variation (µs) of `s`, from TCP_INFO.
fn tcp_info_rtt(s: &TcpStream) -> (u32, u32) {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain integers; getsockopt writes at most `len` bytes into it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid socket fd, a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    (info.tcpi_rtt, info.tcpi_rttvar)
}

/// The RTT programs copy the kernel's smoothed RTT of a socket exactly as `ss -ti` shows it, at
/// most once per RTT_COPY_EVERY per socket.
#[test]
fn socket_rtt_equals_ss() {
    let test = "socket_rtt_equals_ss";
    if !support::require_tools(test, &["ip", "ss"]) {
        return;
    }
    let (_node, a, _b, p, server, mut client, local) = rtt_world("2mbit", 7100);
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut calls = 0;
    for _ in 0..20 {
        client.write_all(&buf).expect("write");
        client.read_exact(&mut buf).expect("echo");
        calls += 2;
    }
    std::thread::sleep(RTT_COPY_EVERY * 3); // quiet: no segment changes srtt now
    let ss = a.ns.exec("ss", &["-tin", "src", &local.to_string()]);
    let rtt = ss.split_whitespace().find_map(|w| w.strip_prefix("rtt:")).unwrap_or_else(|| panic!("no rtt in {ss}"));
    let (srtt, rttvar) = rtt.split_once('/').expect("rtt:srtt/rttvar");
    let ms_to_us = |v: &str| (v.parse::<f64>().expect("ms") * 1000.0).round() as u32;
    // more than RTT_COPY_EVERY after the last copy: this write is copied, with the srtt ss saw
    // (the echo's ACK changes srtt after it, and no read follows to copy that)
    client.write_all(&buf[..1]).expect("write");
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(50));
    let ours = socket_of(&p, local).unwrap_or_else(|| panic!("{test}: the client socket is tracked"));
    assert!(ours.srtt_us > 1000, "{test}: the tbf made the RTT a millisecond or more: {ours:?}");
    assert_eq!((ours.srtt_us, ours.rttvar_us), (ms_to_us(srtt), ms_to_us(rttvar)), "{test}: ss says {rtt}");
    // one copy per RTT_COPY_EVERY at most (plus the first and the last), not one per call
    let most = (elapsed.as_millis() / RTT_COPY_EVERY.as_millis()) as u32 + 2;
    assert!(
        ours.samples <= most && most < calls,
        "{test}: {} copies in {elapsed:?} over {calls}+ calls (at most {most})",
        ours.samples
    );
    drop(client);
    server.join().expect("server");
}

/// A connection shorter than RTT_COPY_EVERY is copied at its first call and once more when it
/// closes, so its final RTT is the one kept.
#[test]
fn a_short_connection_keeps_its_final_rtt() {
    let test = "a_short_connection_keeps_its_final_rtt";
    if !support::require_tools(test, &["ip", "tc"]) {
        return;
    }
    let (_node, _a, _b, p, server, mut client, local) = rtt_world("8mbit", 7101);
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4 * 1024];
    let mut first = None;
    for _ in 0..5 {
        client.write_all(&buf).expect("write");
        client.read_exact(&mut buf).expect("echo");
        first.get_or_insert_with(|| socket_of(&p, local).expect("copied at its first call"));
    }
    let last = tcp_info_rtt(&client);
    let elapsed = started.elapsed();
    // SO_LINGER 0: close sends a RST and the socket is closed at once, no ACK changes srtt after
    let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket fd and a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(client);
    server.join().expect("server");
    let first = first.expect("rounds ran");
    let closed = socket_of(&p, local).unwrap_or_else(|| panic!("{test}: the socket's entry outlives it"));
    assert!(elapsed < RTT_COPY_EVERY, "{test}: the connection must be shorter than the copy interval: {elapsed:?}");
    assert_ne!(first.srtt_us, last.0, "{test}: srtt moved after the first copy (else this test proves nothing)");
    assert_eq!((closed.srtt_us, closed.rttvar_us), last, "{test}: the final RTT, copied at close ({first:?})");
    assert_eq!(closed.samples, first.samples + 1, "{test}: the first copy and the one at close");
}
