//! dns, kernel side: the datapath programs' DNS feature against what was sent. A node in a
//! network namespace with pods on veth pairs (tests/support/node.rs), the probe inside the node's
//! namespace with only DNS on, and the copies read from its record ring: each message copied
//! exactly once per node (where it first meets a watched hook), with its ports behind IPv6
//! extension headers, TCP's length prefix skipped, and nothing else copied.

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use fovea::ebpf::{DatapathOptions, DatapathProbe, Direction, DnsCapture, Features, LinkLayer, RecordStream};
use fovea::receivers::dns::message;
use support::netns::LinkOptions;
use support::node::{Node, NodePod};

const DNS_ONLY: Features =
    Features { flows: false, tcp_flags: false, handshake: false, collapse_ports: None, dns: Some(100_000) };

/// The probe in the node's namespace, DNS on, attached to `ifaces`, and its record ring.
fn probe(node: &Node, rt: &tokio::runtime::Runtime, ifaces: &[&str]) -> (DatapathProbe, RecordStream<DnsCapture>) {
    let ifaces: Vec<String> = ifaces.iter().map(|s| s.to_string()).collect();
    let handle = rt.handle().clone();
    node.ns.run_in(move || {
        let _runtime = handle.enter();
        let mut p = DatapathProbe::load(DatapathOptions::default()).expect("load the datapath probe");
        p.set_features(DNS_ONLY).expect("features");
        for i in &ifaces {
            p.attach(i, LinkLayer::Ethernet).expect("attach");
        }
        let ring = p.take_dns_records().expect("the ring").expect("a stream");
        (p, ring)
    })
}

fn copies(ring: &mut RecordStream<DnsCapture>) -> Vec<DnsCapture> {
    std::thread::sleep(Duration::from_millis(100));
    let mut out = Vec::new();
    ring.try_drain(&mut out);
    out
}

/// A DNS query for `name` (type A) with transaction id `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

fn ready(test: &str) -> bool {
    support::require_tools(test, &["ip"])
}

fn quiet() -> LinkOptions {
    LinkOptions { ipv6: false, static_neighbours: true }
}

fn udp_queries(from: &NodePod, to: SocketAddr, n: u16) {
    let src = from.v4();
    from.ns.run_in(move || {
        let s = UdpSocket::bind((src, 40000)).expect("bind");
        for id in 0..n {
            s.send_to(&query(id, "web.test"), to).expect("send");
        }
    });
}

/// Pod A asks pod B (both watched): each query is copied once, at A's interface as it enters the
/// node, not again at B's as it leaves; the node's own queries to B are copied once, at B's
/// interface as they leave (they entered no watched interface). Nothing else is copied.
#[test]
fn each_query_is_copied_once_where_it_enters_the_node() {
    let test = "each_query_is_copied_once_where_it_enters_the_node";
    if !ready(test) {
        return;
    }
    let _lock = support::kernel_lock();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    let _sink = b.ns.run_in({
        let addr = SocketAddr::new(b.v4().into(), 53);
        move || UdpSocket::bind(addr).expect("sink")
    });
    let (_p, mut ring) = probe(&node, &rt, &[&a.host_if, &b.host_if]);
    let (ia, ib) = (node.ifindex(&a.host_if), node.ifindex(&b.host_if));
    const N: u16 = 20;
    udp_queries(&a, SocketAddr::new(b.v4().into(), 53), N);
    let from_pod = copies(&mut ring);
    assert_eq!(from_pod.len(), usize::from(N), "{test}: {from_pod:?}");
    assert!(from_pod.iter().all(|c| c.ifindex == ia && c.direction == Direction::Ingress), "{test}: {from_pod:?}");
    let ids: Vec<u16> =
        from_pod.iter().map(|c| message::parse(c.message(), c.truncated()).expect("parses").id).collect();
    assert_eq!(ids, (0..N).collect::<Vec<_>>(), "{test}: in order, each once");

    let dst = SocketAddr::new(b.v4().into(), 53);
    node.ns.run_in(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for id in 0..N {
            s.send_to(&query(id, "host.test"), dst).expect("send");
        }
    });
    let from_node = copies(&mut ring);
    assert_eq!(from_node.len(), usize::from(N), "{test}: {from_node:?}");
    assert!(from_node.iter().all(|c| c.ifindex == ib && c.direction == Direction::Egress), "{test}: {from_node:?}");

    // other traffic between the same pods, and a port near 53, are not copied
    let other = SocketAddr::new(b.v4().into(), 54);
    let src = a.v4();
    a.ns.run_in(move || {
        let s = UdpSocket::bind((src, 0)).expect("bind");
        for _ in 0..N {
            s.send_to(&query(1, "web.test"), other).expect("send");
        }
    });
    assert!(copies(&mut ring).is_empty(), "{test}: only DNS ports");
}

/// A query over TCP: the handshake and the ACKs carry no payload and are not copied; the query's
/// segment is, without its 2-byte length prefix, which becomes the message length.
#[test]
fn a_tcp_query_is_copied_without_its_length_prefix() {
    let test = "a_tcp_query_is_copied_without_its_length_prefix";
    if !ready(test) {
        return;
    }
    let _lock = support::kernel_lock();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    let listener = b.ns.run_in({
        let addr = SocketAddr::new(b.v4().into(), 53);
        move || TcpListener::bind(addr).expect("listen")
    });
    let (_p, mut ring) = probe(&node, &rt, &[&a.host_if]);
    let to = SocketAddr::new(b.v4().into(), 53);
    let q = query(77, "tcp.test");
    let sent = q.clone();
    a.ns.run_in(move || {
        let mut s = TcpStream::connect(to).expect("connect");
        let mut framed = (sent.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&sent);
        s.write_all(&framed).expect("write");
    });
    let (_conn, _) = listener.accept().expect("accept");
    let copied = copies(&mut ring);
    assert_eq!(copied.len(), 1, "{test}: {copied:?}");
    let c = &copied[0];
    assert_eq!((c.msg_len, c.seg_len, c.message()), (q.len() as u16, q.len() as u16 + 2, q.as_slice()), "{test}");
    assert_eq!((c.tuple.protocol, c.tuple.dst_port), (6, 53), "{test}");
}

/// Behind IPv6 hop-by-hop and destination-options headers the ports are found and the query is
/// copied whole.
#[test]
fn ipv6_extension_headers_are_walked_to_the_dns_port() {
    let test = "ipv6_extension_headers_are_walked_to_the_dns_port";
    if !ready(test) {
        return;
    }
    let _lock = support::kernel_lock();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let node = Node::new();
    let opts = LinkOptions { ipv6: true, static_neighbours: true };
    let (a, b) = (node.pod(opts), node.pod(opts));
    let (_p, mut ring) = probe(&node, &rt, &[&a.host_if]);
    std::thread::sleep(Duration::from_millis(300));
    copies(&mut ring); // nothing of IPv6's own chatter is DNS, but start clean
    let q = query(4242, "v6.test");
    let mut udp = 40000u16.to_be_bytes().to_vec();
    udp.extend_from_slice(&53u16.to_be_bytes());
    udp.extend_from_slice(&((8 + q.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&q);
    let chain = [vec![60, 0, 1, 4, 0, 0, 0, 0], vec![17, 0, 1, 4, 0, 0, 0, 0], udp].concat(); // HBH -> DSTOPTS -> UDP
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&(chain.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 64]); // next header: hop-by-hop
    packet.extend_from_slice(&a.v6().octets());
    packet.extend_from_slice(&b.v6().octets());
    packet.extend(chain);
    const N: u64 = 5;
    let dst = IpAddr::V6(b.v6());
    a.ns.run_in(move || support::netns::raw_send(&[packet], dst, N));
    let copied = copies(&mut ring);
    assert_eq!(copied.len() as u64, N, "{test}: {copied:?}");
    for c in &copied {
        assert_eq!((c.tuple.src_port, c.tuple.dst_port, c.tuple.protocol), (40000, 53, 17), "{test}");
        assert_eq!(c.message(), q.as_slice(), "{test}");
        let info = message::parse(c.message(), c.truncated()).expect("parses");
        assert_eq!((info.id, info.question_name.as_str()), (4242, "v6.test"), "{test}");
    }
}
