//! The `flows` receiver through the real binary, running inside a node's network namespace with
//! pods on veths and an uplink (tests/support/node.rs): flow records written by the `flowlog`
//! exporter and read back by pyarrow, and the receiver's metrics scraped from the `prometheus`
//! exporter, against the kernel's own counters (`ip -s link`), bytes sent, and what the agent
//! holds in the kernel (its TCX links and map entries, read from /proc/<pid>/fdinfo and bpftool).

#[path = "support/agent.rs"]
mod agent;
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use agent::{Agent, wait_collections};
use serde_json::Value;
use support::netns::{LinkOptions, LinkStats};
use support::node::{Node, NodePod};

const INTERVAL: Duration = Duration::from_secs(1);

fn quiet() -> LinkOptions {
    LinkOptions { ipv6: false, static_neighbours: true }
}

fn config(flowlog: &Path, include_uplink: bool) -> String {
    format!(
        "receivers:
  flows:
    collection_interval: 1s
    include_uplink: {include_uplink}
    forward_metrics: true
exporters:
  prometheus:
    endpoint: 127.0.0.1:0
  flowlog:
    directory: {}
    rotation: {{max_age: 1s}}
service:
  pipelines:
    flows: {{receivers: [flows], exporters: [flowlog]}}
    metrics: {{receivers: [flows], exporters: [prometheus]}}
",
        flowlog.display()
    )
}

fn ready(test: &str) -> bool {
    support::require_tools(test, &["ip", "bpftool"]) && support::require_python_module(test, "pyarrow")
}

/// `network.forward.*` of an interface and direction: (packets, bytes).
fn forward(agent: &Agent, iface: &str, direction: &str) -> (u64, u64) {
    let m = agent.scrape();
    let labels = [("network_interface_name", iface), ("network_io_direction", direction)];
    (m.count("network_forward_packets_total", &labels), m.count("network_forward_bytes_total", &labels))
}

fn udp_send(from: &NodePod, to: SocketAddr, n: u64, payload: usize) -> u16 {
    let src = from.v4();
    from.ns.run_in(move || {
        let s = UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind");
        for _ in 0..n {
            s.send_to(&vec![7u8; payload], to).expect("send");
        }
        s.local_addr().expect("addr").port()
    })
}

/// Sum of `packets`, `bytes` over the rows that match every (column, value).
fn sum(rows: &[Value], filter: &[(&str, Value)]) -> (u64, u64) {
    rows.iter()
        .filter(|r| filter.iter().all(|(k, v)| &r[*k] == v))
        .fold((0, 0), |(p, b), r| (p + r["packets"].as_u64().unwrap_or(0), b + r["bytes"].as_u64().unwrap_or(0)))
}

/// Three pods: N datagrams of S bytes from pod A to pod B and M from pod C to pod B: A's flow at
/// A's interface in the flow log holds exactly N packets and N * (S + 28) bytes, C's exactly M,
/// B's interface carries both as separate flows, and the forward metrics equal `ip -s link`.
#[test]
fn agent_udp_flows_in_the_flow_log_and_forward_metrics_equal_the_kernel() {
    let test = "agent_udp_flows_in_the_flow_log_and_forward_metrics_equal_the_kernel";
    if !ready(test) {
        return;
    }
    let _lock = support::kernel_lock();
    let node = Node::new();
    let (a, b, c) = (node.pod(quiet()), node.pod(quiet()), node.pod(quiet()));
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start_in(&node.ns.name, &config(dir.path(), false));
    let sink = b.ns.run_in({
        let addr = SocketAddr::new(b.v4().into(), 9999);
        move || UdpSocket::bind(addr).expect("sink")
    });
    const N: u64 = 2000;
    const S: usize = 300;
    const M: u64 = 700;
    let sport = udp_send(&a, SocketAddr::new(b.v4().into(), 9999), N, S);
    udp_send(&c, SocketAddr::new(b.v4().into(), 9999), M, S);
    let (la, lb) =
        (LinkStats::settled(|| node.link_stats(&a.host_if)), LinkStats::settled(|| node.link_stats(&b.host_if)));
    wait_collections(INTERVAL, 2);
    // every frame since the programs were attached, which was before the first one
    assert_eq!(forward(&agent, &a.host_if, "receive"), (la.rx_packets, la.rx_bytes), "{test}: A receive");
    assert_eq!(forward(&agent, &a.host_if, "transmit"), (la.tx_packets, la.tx_bytes), "{test}: A transmit");
    assert_eq!(forward(&agent, &b.host_if, "transmit"), (lb.tx_packets, lb.tx_bytes), "{test}: B transmit");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
    drop(sink);

    let read = support::pyarrow_read(dir.path(), "parquet");
    let rows = read["rows"].as_array().expect("rows");
    let a_flow = [
        ("interface_name", Value::from(a.host_if.as_str())),
        ("direction", "receive".into()),
        ("observation_point", "pod".into()),
        ("source_address", a.v4().to_string().into()),
        ("destination_address", b.v4().to_string().into()),
        ("source_port", Value::from(0)), // collapsed: the client's ephemeral port
        ("destination_port", 9999.into()),
        ("protocol", 17.into()),
    ];
    assert!(sport >= 32768, "{test}: the client port {sport} is ephemeral");
    assert_eq!(sum(rows, &a_flow), (N, N * (S as u64 + 28)), "{test}: A's flow at A's interface");
    for (src, n) in [(a.v4(), N), (c.v4(), M)] {
        let at_b = [
            ("interface_name", Value::from(b.host_if.as_str())),
            ("direction", "transmit".into()),
            ("source_address", src.to_string().into()),
            ("destination_port", 9999.into()),
        ];
        assert_eq!(sum(rows, &at_b), (n, n * (S as u64 + 28)), "{test}: {src}'s flow at B's interface");
    }
    let all_a = [("interface_name", Value::from(a.host_if.as_str())), ("direction", "receive".into())];
    let (p, by) = sum(rows, &all_a);
    assert_eq!((p, by + 14 * p), (la.rx_packets, la.rx_bytes), "{test}: every record at A = ip -s link");
}

/// A TCP transfer of M bytes (iperf3 -n): the forward metrics and the flow records at the
/// client's interface equal the kernel's interface counters (iperf3 itself counts what its client
/// wrote, which is not all delivered: its data socket closes with bytes in flight); the records
/// carry every byte the server read; two connections (control and data) give two handshakes in
/// the node histogram and SYNs at both pods' interfaces.
#[test]
fn agent_tcp_transfer_equals_the_interface_counters() {
    let test = "agent_tcp_transfer_equals_the_interface_counters";
    if !ready(test) || !support::require_tools(test, &["iperf3"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start_in(&node.ns.name, &config(dir.path(), false));
    // one test, then the server exits by itself (no process to kill)
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", &b.ns.name, "iperf3", "-s", "-1", "-B", &b.v4().to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    const M: u64 = 20 * 1024 * 1024;
    let report: Value =
        serde_json::from_str(&a.ns.exec("iperf3", &["-c", &b.v4().to_string(), "-n", &M.to_string(), "-J"]))
            .expect("iperf3 -J");
    server.wait().expect("iperf3 server exit");
    // iperf3 counts as sent what its client wrote; what reached the server is the ground truth
    let received = report["end"]["sum_received"]["bytes"].as_u64().expect("bytes received");
    assert!(received > M / 2, "{test}: the transfer ran: {received} of {M} bytes received");
    let la = LinkStats::settled(|| node.link_stats(&a.host_if));
    wait_collections(INTERVAL, 2);
    assert_eq!(forward(&agent, &a.host_if, "receive"), (la.rx_packets, la.rx_bytes), "{test}: A receive");
    assert_eq!(forward(&agent, &a.host_if, "transmit"), (la.tx_packets, la.tx_bytes), "{test}: A transmit");
    let m = agent.scrape();
    assert_eq!(m.count("network_tcp_flags_total", &[("tcp_flag", "SYN")]), 4, "{test}: 2 SYNs, seen at 2 interfaces");
    assert_eq!(m.count("network_tcp_flags_total", &[("tcp_flag", "SYNACK")]), 4, "{test}: 2 SYN-ACKs, seen twice");
    assert_eq!(m.count("network_tcp_handshake_duration_seconds_count", &[]), 2, "{test}: each handshake once");
    assert!(m.count("network_tcp_rtt_seconds_count", &[]) >= 2, "{test}: both sockets of the data connection");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");

    let read = support::pyarrow_read(dir.path(), "parquet");
    let rows = read["rows"].as_array().expect("rows");
    let at_a = [("interface_name", Value::from(a.host_if.as_str())), ("direction", "receive".into())];
    let (p, by) = sum(rows, &at_a);
    assert_eq!((p, by + 14 * p), (la.rx_packets, la.rx_bytes), "{test}: every record at A = ip -s link");
    let to_server = [
        ("interface_name", Value::from(a.host_if.as_str())),
        ("direction", "receive".into()),
        ("destination_port", 5201.into()),
    ];
    let (packets, bytes) = sum(rows, &to_server);
    // every byte the server read crossed A's interface, with at least a 52-byte IP+TCP header
    // (options: timestamps) per packet; nothing else crossed it towards port 5201
    assert!(
        bytes >= received + 52 * packets,
        "{test}: {bytes} bytes in {packets} packets for {received} bytes received"
    );
    let handshakes: u64 = rows
        .iter()
        .filter(|r| r["interface_name"] == a.host_if.as_str())
        .map(|r| r["handshake_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(handshakes, 2, "{test}: the client's interface saw both handshakes");
}

/// The agent's TCX links and the kernel map entries it keeps for `ifindex`.
fn held_for(pid: u32, ifindex: u32) -> (usize, usize, usize) {
    let mut links = (0, 0);
    let mut map_ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo") {
        let info = std::fs::read_to_string(fd.expect("fd").path()).unwrap_or_default();
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        if field("link_type:").as_deref() == Some("tcx") {
            links.0 += 1;
            if field("ifindex:").and_then(|v| v.parse::<u32>().ok()) == Some(ifindex) {
                links.1 += 1;
            }
        }
        if let Some(id) = field("map_id:") {
            map_ids.push(id);
        }
    }
    let mut entries = 0;
    for id in map_ids {
        let show: Value =
            serde_json::from_str(&support::run("bpftool", &["-j", "map", "show", "id", &id])).expect("map show");
        let name = show["name"].as_str().unwrap_or_default();
        if !matches!(name, "flows_a" | "flows_b" | "handshakes" | "iface_counts" | "flow_cache_a" | "flow_cache_b") {
            continue;
        }
        let dump: Value =
            serde_json::from_str(&support::run("bpftool", &["-j", "map", "dump", "id", &id])).expect("dump");
        if name.starts_with("flow_cache") {
            entries += dump.as_array().expect("entries").iter().map(|e| cached_of(e, ifindex)).sum::<usize>();
            continue;
        }
        for e in dump.as_array().expect("entries") {
            let key = if e["key"].is_object() { &e["key"] } else { &e["formatted"]["key"] };
            if key["ifindex"].as_u64() == Some(u64::from(ifindex)) {
                entries += 1;
            }
        }
    }
    (links.0, links.1, entries)
}

/// Non-empty per-CPU flow cache entries (`struct flow_cache_entry`) of `ifindex` in one slot of a
/// bpftool dump: BTF-formatted, or raw bytes (ifindex at 36, the packet count at 48).
fn cached_of(slot: &Value, ifindex: u32) -> usize {
    let values = slot["formatted"]["values"].as_array().or_else(|| slot["values"].as_array()).expect("per-CPU values");
    let mut n = 0;
    for v in values.iter().map(|v| &v["value"]) {
        let (ifi, packets) = if v.is_object() {
            (v["key"]["ifindex"].as_u64().unwrap_or(0), v["v"]["packets"].as_u64().unwrap_or(0))
        } else {
            let bytes: Vec<u8> = v
                .as_array()
                .expect("value bytes")
                .iter()
                .map(|b| u8::from_str_radix(b.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0))
                .collect();
            let ifi = u32::from_le_bytes(bytes[36..40].try_into().expect("4 bytes"));
            (u64::from(ifi), u64::from_le_bytes(bytes[48..56].try_into().expect("8 bytes")))
        };
        n += usize::from(packets != 0 && ifi == u64::from(ifindex));
    }
    n
}

/// A pod created while the agent runs is counted from its first packet (the kernel's own
/// IPv6 chatter at link up included); a pod deleted in the middle of a flood leaves no program
/// attached and no map entry behind, and the agent says so.
#[test]
fn agent_counts_a_new_pod_from_its_first_packet_and_forgets_a_deleted_one() {
    let test = "agent_counts_a_new_pod_from_its_first_packet_and_forgets_a_deleted_one";
    if !ready(test) {
        return;
    }
    let _lock = support::kernel_lock();
    let node = Node::new();
    let a = node.pod(quiet());
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start_in(&node.ns.name, &config(dir.path(), false));
    let pid = agent.pid();
    assert_eq!(held_for(pid, 0).0, 2, "{test}: A's two hooks");

    // created while running, with IPv6 on: router solicitations, MLD reports ... from link up
    let c = node.pod(LinkOptions { ipv6: true, static_neighbours: false });
    let _sink = a.ns.run_in({
        let addr = SocketAddr::new(a.v4().into(), 9400);
        move || UdpSocket::bind(addr).expect("sink")
    });
    udp_send(&c, SocketAddr::new(a.v4().into(), 9400), 300, 100);
    // IPv6 keeps soliciting routers for a few seconds: compare at a moment when the link was
    // quiet for a whole collection
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lc = LinkStats::settled(|| node.link_stats(&c.host_if));
        wait_collections(INTERVAL, 1);
        let ours = (forward(&agent, &c.host_if, "receive"), forward(&agent, &c.host_if, "transmit"));
        let quiet = node.link_stats(&c.host_if) == lc;
        let kernel = ((lc.rx_packets, lc.rx_bytes), (lc.tx_packets, lc.tx_bytes));
        if quiet && ours == kernel {
            assert!(lc.rx_packets >= 300, "{test}: C's datagrams and its IPv6 chatter: {lc:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: C counted from its first packet: ours {ours:?}, ip -s link {kernel:?}"
        );
    }

    // deleted mid-flow
    let ifindex = node.ifindex(&c.host_if);
    assert_eq!(held_for(pid, ifindex).1, 2, "{test}: C's two hooks while it exists");
    let (src, dst) = (c.v4(), SocketAddr::new(a.v4().into(), 9400));
    let flood = c.ns.spawn_in(move || {
        let s = UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind");
        let mut sent = 0u64;
        while s.send_to(&[1u8; 64], dst).is_ok() {
            sent += 1;
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(c); // deletes the veth (and the pod's namespace) while the flood runs
    let sent = flood.join().expect("flood");
    assert!(sent > 1000, "{test}: the flood ran ({sent} datagrams) until the pod went away");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (links, on_c, entries) = held_for(pid, ifindex);
        if (links, on_c, entries) == (2, 0, 0) && agent.stderr().contains("stopped counting flows") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: after deletion: {links} links, {on_c} on C, {entries} map entries of C"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
}

/// An uplink: connections from a pod and from the node itself to a server beyond it (as the
/// kubelet and pods talk to the API server) are each measured once in the handshake histogram
/// (where the SYN leaves the node), and their records carry the uplink's observation point.
#[test]
fn agent_measures_handshakes_through_the_uplink_once() {
    let test = "agent_measures_handshakes_through_the_uplink_once";
    if !ready(test) {
        return;
    }
    let _lock = support::kernel_lock();
    let node = Node::new();
    let remote = node.uplink(quiet());
    let a = node.pod(quiet());
    // the remote routes the pod's /30 back through the node (its 198.18/15 route), and the node
    // needs the remote's neighbour entry for the pod traffic it forwards
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start_in(&node.ns.name, &config(dir.path(), true));
    let server_addr = SocketAddr::new(remote.addrs.b4.into(), 6443);
    let listener = remote.ns.run_in(move || TcpListener::bind(server_addr).expect("listen"));
    const FROM_POD: u32 = 20;
    const FROM_NODE: u32 = 10;
    let server = std::thread::spawn(move || {
        for _ in 0..FROM_POD + FROM_NODE {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).expect("read");
            s.write_all(&buf[..n]).expect("echo");
        }
    });
    let connect = |n: u32| {
        move || {
            for _ in 0..n {
                let mut s = TcpStream::connect_timeout(&server_addr, Duration::from_secs(5)).expect("connect");
                s.write_all(b"ping").expect("write");
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).expect("echo");
            }
        }
    };
    a.ns.run_in(connect(FROM_POD));
    node.ns.run_in(connect(FROM_NODE));
    server.join().expect("server");
    wait_collections(INTERVAL, 2);
    let m = agent.scrape();
    assert_eq!(
        m.count("network_tcp_handshake_duration_seconds_count", &[]),
        u64::from(FROM_POD + FROM_NODE),
        "{test}: every connection once, measured at the uplink"
    );
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
    let read = support::pyarrow_read(dir.path(), "parquet");
    let rows = read["rows"].as_array().expect("rows");
    let handshakes = |iface: &str, point: &str| -> u64 {
        rows.iter()
            .filter(|r| r["interface_name"] == iface && r["observation_point"] == point)
            .map(|r| r["handshake_count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(handshakes("uplink0", "uplink"), u64::from(FROM_POD + FROM_NODE), "{test}: at the uplink");
    assert_eq!(handshakes(&a.host_if, "pod"), u64::from(FROM_POD), "{test}: at the pod's interface (its client side)");
    let remote_ip: IpAddr = remote.addrs.b4.into();
    assert!(
        rows.iter().any(|r| r["destination_address"] == remote_ip.to_string()
            && r["destination_port"] == 6443
            && r["source_port"] == 0),
        "{test}: client ports collapsed, the server's kept"
    );
}

/// A table smaller than the flows of an interval: the records of the flows that fit plus the
/// overflow record add up to exactly what was sent, and the agent's own metric counts exactly the
/// packets that did not fit.
#[test]
fn agent_reports_what_did_not_fit_as_an_overflow_record() {
    let test = "agent_reports_what_did_not_fit_as_an_overflow_record";
    if !ready(test) {
        return;
    }
    let _lock = support::kernel_lock();
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    let dir = tempfile::tempdir().expect("tempdir");
    let body = config(dir.path(), false).replace(
        "    forward_metrics: true\n",
        "    forward_metrics: true\n    max_flows: 16\n    ports: {collapse: false}\n",
    );
    let agent = Agent::start_in(&node.ns.name, &body);
    // more flows than the table and the per-CPU caches in front of it hold: one socket, a
    // destination port per flow (B answers port unreachable, which leaves A's veth: transmit)
    const FLOWS: u64 = 2000;
    const PER_FLOW: u64 = 2;
    let (src, dst) = (a.v4(), b.v4());
    a.ns.run_in(move || {
        let s = UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind");
        for i in 0..FLOWS {
            for _ in 0..PER_FLOW {
                s.send_to(&[0u8; 20], SocketAddr::new(dst.into(), 10_000 + i as u16)).expect("send");
            }
        }
    });
    wait_collections(INTERVAL, 2);
    let own = agent.scrape_at(agent.telemetry);
    let labels = [("network_interface_name", a.host_if.as_str()), ("network_io_direction", "receive")];
    let overflow = own.count("fovea_flows_overflow_packets_total", &labels);
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
    let read = support::pyarrow_read(dir.path(), "parquet");
    let rows = read["rows"].as_array().expect("rows");
    let at_a = |overflow: bool| {
        sum(
            rows,
            &[
                ("interface_name", Value::from(a.host_if.as_str())),
                ("direction", "receive".into()),
                ("flow.overflow", overflow.into()),
            ],
        )
    };
    let (counted, spilled) = (at_a(false), at_a(true));
    let total = FLOWS * PER_FLOW;
    // a drain in the middle of the sends would let more flows in: the split may move, the sum not
    assert_eq!((counted.0 + spilled.0, counted.1 + spilled.1), (total, total * 48), "{test}: records add up");
    assert!(spilled.0 >= PER_FLOW, "{test}: the table overflowed: {spilled:?}");
    assert_eq!(overflow, spilled.0, "{test}: fovea_flows_overflow_packets_total = the packets not counted in flows");
    // the table is shared by both pods' interfaces: A's ingress and B's egress filled it together
    let flows = rows
        .iter()
        .filter(|r| r["destination_port"].as_u64().unwrap_or(0) >= 10_000 && r["flow.overflow"] == false)
        .count();
    assert!(flows >= 16, "{test}: at least a full table of flows: {flows}: counted {counted:?} spilled {spilled:?}");
}

/// One fovea program per hook: packetforward leaves the pods' veths to the flows receiver
/// (`exclude_pod_interfaces`), which counts their totals (`forward_metrics: pods`), and keeps
/// counting the uplink. Every interface and direction is then reported exactly once, by the
/// receiver that watches it, equal to `ip -s link`.
#[test]
fn agent_counts_pod_interfaces_in_flows_and_the_uplink_in_packetforward_once_each() {
    let test = "agent_counts_pod_interfaces_in_flows_and_the_uplink_in_packetforward_once_each";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let node = Node::new();
    let (a, b) = (node.pod(quiet()), node.pod(quiet()));
    let remote = node.uplink(quiet());
    let config = "receivers:
  packetforward: {collection_interval: 1s, exclude_pod_interfaces: ['veth*']}
  flows: {collection_interval: 1s, interfaces: ['veth*'], forward_metrics: pods}
exporters:
  prometheus: {endpoint: 127.0.0.1:0}
service:
  pipelines:
    metrics: {receivers: [packetforward, flows], exporters: [prometheus]}
";
    let agent = Agent::start_in(&node.ns.name, config);
    let b_sink = b.ns.run_in({
        let addr = SocketAddr::new(b.v4().into(), 9999);
        move || UdpSocket::bind(addr).expect("sink")
    });
    let remote_ip = remote.addrs.b4;
    let remote_sink = remote.ns.run_in(move || UdpSocket::bind(SocketAddr::new(remote_ip.into(), 9999)).expect("sink"));
    udp_send(&a, SocketAddr::new(b.v4().into(), 9999), 300, 200);
    udp_send(&a, SocketAddr::new(remote_ip.into(), 9999), 120, 500);
    let stats = |iface: &str| LinkStats::settled(|| node.link_stats(iface));
    let (la, lb, lu) = (stats(&a.host_if), stats(&b.host_if), stats(&remote.uplink));
    assert!(lu.tx_packets >= 120, "{test}: the uplink carried the remote's datagrams: {lu:?}");
    wait_collections(INTERVAL, 2);
    // `forward` fails if an interface and direction has two series (counted by both receivers)
    assert_eq!(forward(&agent, &a.host_if, "receive"), (la.rx_packets, la.rx_bytes), "{test}: A receive");
    assert_eq!(forward(&agent, &a.host_if, "transmit"), (la.tx_packets, la.tx_bytes), "{test}: A transmit");
    assert_eq!(forward(&agent, &b.host_if, "transmit"), (lb.tx_packets, lb.tx_bytes), "{test}: B transmit");
    assert_eq!(forward(&agent, &remote.uplink, "transmit"), (lu.tx_packets, lu.tx_bytes), "{test}: uplink transmit");
    assert_eq!(forward(&agent, &remote.uplink, "receive"), (lu.rx_packets, lu.rx_bytes), "{test}: uplink receive");
    let m = agent.scrape();
    let scope = |iface: &str| -> Vec<String> {
        m.samples("network_forward_packets_total")
            .into_iter()
            .filter(|(l, _)| l.get("network_interface_name").map(String::as_str) == Some(iface))
            .filter_map(|(l, _)| l.get("otel_scope_name").cloned())
            .collect()
    };
    assert_eq!(scope(&a.host_if), ["fovea/flows", "fovea/flows"], "{test}: a pod's veth is the flows receiver's");
    assert_eq!(
        scope(&remote.uplink),
        ["fovea/packetforward", "fovea/packetforward"],
        "{test}: the uplink is packetforward's"
    );

    // A veth made on the node and then given to a pod (how some CNIs build them): packetforward
    // counts it while both ends are on the node, and lets go of it when its peer leaves.
    let logged = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !agent.stderr().contains(what) {
            assert!(Instant::now() < deadline, "{test}: no `{what}` in the log: {}", agent.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    node.ns.ip(&["link", "add", "veth-late", "type", "veth", "peer", "name", "late0"]);
    node.ns.ip(&["link", "set", "veth-late", "up"]);
    logged("interface=veth-late ifindex");
    let late = support::netns::Netns::new();
    node.ns.ip(&["link", "set", "late0", "netns", &late.name]);
    // the kernel tells of the move only through the peer's side; the node's end hears of it when
    // the peer comes up in the pod (its carrier changes), as with a CNI
    late.ip(&["link", "set", "late0", "up"]);
    logged("now a pod interface left to flows");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
    drop((b_sink, remote_sink));
}
