//! The `linuxutil` data sources against the real kernel: each test makes a fresh network
//! namespace, sends known traffic or opens known sockets in it, and checks the numbers read
//! through fovea against what was sent and against the kernel's own tools (`nstat`, `ip -s`).
//!
//! Needs root, `ip` and `nstat` (iproute2) and `ping` (iputils-ping). Without them a test prints
//! why it skipped; with `CI=true` it fails instead.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fovea::model::TcpState;
use fovea::receivers::linuxutil::interfaces::{InterfaceStats, InterfaceStatsReader, LinkStats};
use fovea::receivers::linuxutil::netns::{THREAD_PROC_NET, run_in_netns};
use fovea::receivers::linuxutil::netstat::NetstatReader;
use fovea::receivers::linuxutil::sockets::{SocketStatsReader, TcpStateCounts};

// ---------------------------------------------------------------------------------------------
// netstat

/// N echo requests over lo: each is one echo in and one reply out, counted exactly once.
#[test]
fn netstat_counts_every_ping_and_agrees_with_nstat() {
    if !prerequisites("netstat_counts_every_ping_and_agrees_with_nstat", &["ip", "nstat", "ping"]) {
        return;
    }
    const N: i64 = 25;
    let mut ns = TestNetns::new();
    let pid = ns.spawn_sleeper();
    let dir = PathBuf::from(format!("/proc/{pid}/net"));
    let mut reader = NetstatReader::new();

    let before = snapshot(reader.read(&dir).expect("read /proc/<pid>/net"));
    ns.exec(&["ping", "-q", "-c", &N.to_string(), "-i", "0.01", "127.0.0.1"]);
    let after = snapshot(reader.read(&dir).expect("read /proc/<pid>/net"));

    let delta = |group: &str, name: &str| {
        let key = (group.to_owned(), name.to_owned());
        after[&key] - before.get(&key).copied().unwrap_or(0)
    };
    assert_eq!(delta("Icmp", "InEchos"), N);
    assert_eq!(delta("Icmp", "OutEchoReps"), N);
    assert_eq!(delta("Icmp", "OutEchos"), N);
    assert_eq!(delta("Icmp", "InEchoReps"), N);
    assert_eq!(delta("Icmp", "InMsgs"), 2 * N);
    assert_eq!(delta("Icmp", "OutMsgs"), 2 * N);
    // IcmpMsg appears only once a type was seen, so it is absent from `before`.
    assert_eq!(delta("IcmpMsg", "InType8"), N);
    assert_eq!(delta("IcmpMsg", "OutType0"), N);
    assert_eq!(delta("Ip", "InReceives"), 2 * N);
    assert_eq!(delta("Ip", "InDelivers"), 2 * N);
    assert_eq!(delta("Ip", "OutRequests"), 2 * N);

    // The same namespace seen from a thread that joined it.
    let from_thread = run_in_netns(&ns.path, || NetstatReader::new().read(Path::new(THREAD_PROC_NET)).map(snapshot))
        .expect("join the namespace")
        .expect("read /proc/thread-self/net");
    assert_eq!(from_thread, after);

    // nstat prints group+name for every counter of snmp, netstat and snmp6, except the
    // settings and the one gauge (CurrEstab) of snmp, which nstat leaves out.
    let nstat = nstat_absolute(&ns);
    let ours: BTreeMap<String, i64> = after.iter().map(|((g, n), v)| (format!("{g}{n}"), *v)).collect();
    for (key, value) in &nstat {
        assert_eq!(ours.get(key), Some(value), "{key}: fovea vs nstat");
    }
    let only_ours: BTreeSet<&str> = ours.keys().filter(|k| !nstat.contains_key(*k)).map(String::as_str).collect();
    assert_eq!(
        only_ours,
        BTreeSet::from([
            "IpDefaultTTL",
            "IpForwarding",
            "TcpCurrEstab",
            "TcpMaxConn",
            "TcpRtoAlgorithm",
            "TcpRtoMax",
            "TcpRtoMin"
        ])
    );
    assert_eq!(ours["TcpMaxConn"], -1);
    // Nothing moved while nstat ran: the comparison above is of the same instant.
    assert_eq!(snapshot(reader.read(&dir).expect("reread")), after);
}

fn snapshot(counters: &[fovea::receivers::linuxutil::netstat::NetstatCounter]) -> BTreeMap<(String, String), i64> {
    counters.iter().map(|c| ((c.group.to_string(), c.name.to_string()), c.value)).collect()
}

fn nstat_absolute(ns: &TestNetns) -> BTreeMap<String, i64> {
    // -a: absolute values, -s: leave nstat's history file alone, -z: zeros too.
    let out = ns.exec(&["nstat", "-asz", "-j"]);
    let json: serde_json::Value = serde_json::from_slice(&out).expect("nstat -j prints JSON");
    json["kernel"]
        .as_object()
        .expect("nstat JSON has a kernel object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().expect("nstat value is an integer")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// interfaces

/// An ICMP echo over lo is one packet out and one in; with `ping -s S` it counts S bytes of data,
/// 8 of ICMP header and 20 of IPv4 header. Not the 14-byte Ethernet header: `loopback_xmit`
/// takes the length after `eth_type_trans` has pulled it (a veth or NIC counts it).
#[test]
fn interface_stats_count_ping_bytes_exactly_and_agree_with_ip_and_sysfs() {
    if !prerequisites("interface_stats_count_ping_bytes_exactly_and_agree_with_ip_and_sysfs", &["ip", "ping"]) {
        return;
    }
    const N: u64 = 20;
    const S: u64 = 300;
    let ns = TestNetns::new();
    let mut reader = run_in_netns(&ns.path, InterfaceStatsReader::new).expect("join the namespace");

    let before = lo(reader.read_netlink().expect("RTM_GETLINK dump"));
    assert_eq!(before.stats, ip_link_lo(&ns), "before: fovea vs ip -s link");
    ns.exec(&["ping", "-q", "-c", &N.to_string(), "-i", "0.01", "-s", &S.to_string(), "127.0.0.1"]);
    let after = lo(reader.read().expect("read"));
    assert_eq!(after.stats, ip_link_lo(&ns), "after: fovea vs ip -s link");

    let per_direction_packets = 2 * N; // requests and replies both cross lo
    let per_direction_bytes = per_direction_packets * (S + 8 + 20);
    assert_eq!(after.stats.rx_packets - before.stats.rx_packets, per_direction_packets);
    assert_eq!(after.stats.tx_packets - before.stats.tx_packets, per_direction_packets);
    assert_eq!(after.stats.rx_bytes - before.stats.rx_bytes, per_direction_bytes);
    assert_eq!(after.stats.tx_bytes - before.stats.tx_bytes, per_direction_bytes);
    assert_eq!(after.stats.rx_errors + after.stats.tx_errors + after.stats.rx_dropped, 0);
    assert_eq!(after.index, 1);
    assert_eq!(after.oper_state.as_str(), "unknown", "lo has no carrier to report");

    // sysfs mounted by a thread in the namespace shows that namespace's devices.
    let sysfs = tempfile::tempdir().expect("tempdir");
    let _mount = SysfsMount::new(&ns, sysfs.path());
    let mut sysfs_reader = InterfaceStatsReader::with_sysfs_root(&sysfs.path().join("class/net"));
    let from_sysfs = sysfs_reader.read_sysfs().expect("read sysfs").to_vec();
    let from_netlink = reader.read_netlink().expect("RTM_GETLINK dump").to_vec();
    let names = |list: &[InterfaceStats]| list.iter().map(|i| i.name.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(names(&from_sysfs), names(&from_netlink));
    assert_eq!(lo(&from_sysfs), lo(&from_netlink));
}

/// Two namespaces joined by a veth pair, as a CNI joins a pod to its node: N pings of S bytes
/// are N frames each way of S+8+20 bytes plus the 14-byte Ethernet header, which a veth counts.
/// IPv6 is off on the pair and the neighbours are static, so nothing else crosses it.
#[test]
fn veth_stats_count_frames_with_their_ethernet_header() {
    if !prerequisites("veth_stats_count_frames_with_their_ethernet_header", &["ip", "ping"]) {
        return;
    }
    const N: u64 = 10;
    const S: u64 = 1000;
    let a = TestNetns::new();
    let b = TestNetns::new();
    run(Command::new("ip")
        .args(["link", "add", "va", "netns", &a.name, "type", "veth", "peer", "name", "vb", "netns", &b.name]));
    for (ns, dev, addr) in [(&a, "va", "198.18.0.1/30"), (&b, "vb", "198.18.0.2/30")] {
        ns.exec(&["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
        run(Command::new("ip").args(["-n", &ns.name, "addr", "add", addr, "dev", dev]));
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", dev, "up"]));
    }
    for (ns, dev, peer_ns, peer_dev, peer_ip) in
        [(&a, "va", &b, "vb", "198.18.0.2"), (&b, "vb", &a, "va", "198.18.0.1")]
    {
        let mac = link_json(peer_ns, peer_dev)["address"].as_str().expect("veth has a MAC").to_owned();
        run(Command::new("ip").args([
            "-n",
            &ns.name,
            "neigh",
            "replace",
            peer_ip,
            "lladdr",
            &mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]));
    }
    let mut reader_a = run_in_netns(&a.path, InterfaceStatsReader::new).expect("join a");
    let mut reader_b = run_in_netns(&b.path, InterfaceStatsReader::new).expect("join b");
    let find =
        |list: &[InterfaceStats], name: &str| list.iter().find(|i| i.name == name).cloned().expect("veth listed");

    let va_before = find(reader_a.read_netlink().expect("dump a"), "va");
    let vb_before = find(reader_b.read_netlink().expect("dump b"), "vb");
    a.exec(&["ping", "-q", "-c", &N.to_string(), "-i", "0.01", "-s", &S.to_string(), "198.18.0.2"]);
    let va = find(reader_a.read_netlink().expect("dump a"), "va");
    let vb = find(reader_b.read_netlink().expect("dump b"), "vb");

    let frame = S + 8 + 20 + 14;
    for (side, before, after) in [("va", &va_before, &va), ("vb", &vb_before, &vb)] {
        assert_eq!(after.stats.tx_packets - before.stats.tx_packets, N, "{side} tx packets");
        assert_eq!(after.stats.rx_packets - before.stats.rx_packets, N, "{side} rx packets");
        assert_eq!(after.stats.tx_bytes - before.stats.tx_bytes, N * frame, "{side} tx bytes");
        assert_eq!(after.stats.rx_bytes - before.stats.rx_bytes, N * frame, "{side} rx bytes");
        assert_eq!(after.oper_state.as_str(), "up", "{side}");
    }
    assert_eq!(va.stats, ip_link_stats(&a, "va"), "va: fovea vs ip -s link");
    assert_eq!(vb.stats, ip_link_stats(&b, "vb"), "vb: fovea vs ip -s link");
}

fn lo(interfaces: &[InterfaceStats]) -> InterfaceStats {
    interfaces.iter().find(|i| i.name == "lo").cloned().expect("every namespace has lo")
}

fn ip_link_lo(ns: &TestNetns) -> LinkStats {
    ip_link_stats(ns, "lo")
}

/// `ip -s -j link show DEV`, the first (only) object.
fn link_json(ns: &TestNetns, dev: &str) -> serde_json::Value {
    let out = run(Command::new("ip").args(["-n", &ns.name, "-s", "-j", "link", "show", dev]));
    let mut json: serde_json::Value = serde_json::from_slice(&out).expect("ip -j prints JSON");
    json[0].take()
}

/// `ip -s -j link show DEV`'s stats64 in fovea's struct; the fields ip does not print stay zero
/// (they are on the test's idle devices).
fn ip_link_stats(ns: &TestNetns, dev: &str) -> LinkStats {
    let json = link_json(ns, dev);
    let stats = &json["stats64"];
    let n = |dir: &str, key: &str| stats[dir][key].as_u64().unwrap_or_else(|| panic!("{dir}.{key} in {stats}"));
    LinkStats {
        rx_packets: n("rx", "packets"),
        rx_bytes: n("rx", "bytes"),
        rx_errors: n("rx", "errors"),
        rx_dropped: n("rx", "dropped"),
        rx_over_errors: n("rx", "over_errors"),
        multicast: n("rx", "multicast"),
        tx_packets: n("tx", "packets"),
        tx_bytes: n("tx", "bytes"),
        tx_errors: n("tx", "errors"),
        tx_dropped: n("tx", "dropped"),
        tx_carrier_errors: n("tx", "carrier_errors"),
        collisions: n("tx", "collisions"),
        ..LinkStats::default()
    }
}

/// sysfs mounted at a temporary directory by a thread inside the namespace; unmounted on drop.
struct SysfsMount {
    target: CString,
}

impl SysfsMount {
    fn new(ns: &TestNetns, target: &Path) -> Self {
        let target = CString::new(target.as_os_str().as_encoded_bytes()).expect("path has no NUL");
        let rc = run_in_netns(&ns.path, || {
            // SAFETY: all pointers are NUL-terminated strings alive for the call.
            unsafe { libc::mount(c"sysfs".as_ptr(), target.as_ptr(), c"sysfs".as_ptr(), 0, std::ptr::null()) }
        })
        .expect("join the namespace");
        assert_eq!(rc, 0, "mount sysfs: {}", std::io::Error::last_os_error());
        Self { target }
    }
}

impl Drop for SysfsMount {
    fn drop(&mut self) {
        // SAFETY: `target` is a NUL-terminated path.
        unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
    }
}

// ---------------------------------------------------------------------------------------------
// sockets

/// Listening, established, half-closed, time-wait and half-open sockets, IPv4 and IPv6, counted
/// exactly; every other state reads zero.
#[test]
fn socket_counts_by_state_are_exact() {
    if !prerequisites("socket_counts_by_state_are_exact", &["ip"]) {
        return;
    }
    let ns = TestNetns::new();
    let in_ns = |f: &(dyn Fn() -> Sockets + Sync)| run_in_netns(&ns.path, f).expect("join the namespace");
    let mut reader =
        run_in_netns(&ns.path, SocketStatsReader::new).expect("join the namespace").expect("open NETLINK_SOCK_DIAG");

    // K listeners per family, M connections per family to the first listener, U UDP sockets.
    const K: usize = 3;
    const M: usize = 4;
    const U: usize = 2;
    let v4 = in_ns(&|| Sockets::open("127.0.0.1:0", K, M, U));
    let v6 = in_ns(&|| Sockets::open("[::1]:0", K, M, U));

    let counts = reader.read().expect("sock_diag dump");
    assert_eq!(table(&counts.tcp_v4), expect(&[(TcpState::Listen, K as u64), (TcpState::Established, 2 * M as u64)]));
    assert_eq!(table(&counts.tcp_v6), expect(&[(TcpState::Listen, K as u64), (TcpState::Established, 2 * M as u64)]));
    assert_eq!((counts.udp_v4, counts.udp_v6), (Some(U as u64), Some(U as u64)));
    assert_eq!(counts.udp(), Some(2 * U as u64));
    assert_eq!(counts.tcp().get(TcpState::Established), 4 * M as u64);
    assert_eq!(counts.tcp().iter().count(), 11, "all states, zeros included");

    // Half-close H IPv4 connections from the client: client FIN_WAIT2, server CLOSE_WAIT.
    const H: usize = 2;
    for (client, _) in &v4.connections[..H] {
        client.shutdown(Shutdown::Write).expect("shutdown");
    }
    let half_closed = expect(&[
        (TcpState::Listen, K as u64),
        (TcpState::Established, 2 * (M - H) as u64),
        (TcpState::FinWait2, H as u64),
        (TcpState::CloseWait, H as u64),
    ]);
    let counts = settle(&mut reader, |c| table(&c.tcp_v4) == half_closed);
    assert_eq!(table(&counts.tcp_v4), half_closed);

    // The servers close too: their LAST_ACK is acknowledged at once, the clients sit in TIME_WAIT.
    let mut v4 = v4;
    let closed: Vec<_> = v4.connections.drain(..H).collect();
    let mut clients = Vec::new();
    for (client, server) in closed {
        drop(server);
        clients.push(client);
    }
    let time_wait = expect(&[
        (TcpState::Listen, K as u64),
        (TcpState::Established, 2 * (M - H) as u64),
        (TcpState::TimeWait, H as u64),
    ]);
    let counts = settle(&mut reader, |c| table(&c.tcp_v4) == time_wait);
    assert_eq!(table(&counts.tcp_v4), time_wait);
    drop(clients);

    // With TCP_DEFER_ACCEPT the server keeps a finished handshake as a request socket until data
    // arrives: the client is ESTABLISHED, the server side counts as syn_received.
    const D: usize = 3;
    let deferred = in_ns(&|| Sockets::deferred("127.0.0.1:0", D));
    let with_deferred = expect(&[
        (TcpState::Listen, K as u64 + 1),
        (TcpState::Established, 2 * (M - H) as u64 + D as u64),
        (TcpState::TimeWait, H as u64),
        (TcpState::SynReceived, D as u64),
    ]);
    let counts = settle(&mut reader, |c| table(&c.tcp_v4) == with_deferred);
    assert_eq!(table(&counts.tcp_v4), with_deferred);
    assert_eq!(counts.tcp_v4.unknown + counts.tcp_v6.unknown, 0);
    drop((v4, v6, deferred));
}

#[test]
fn established_connections_are_counted_per_remote_address_exactly() {
    if !prerequisites("established_connections_are_counted_per_remote_address_exactly", &["ip"]) {
        return;
    }
    let ns = TestNetns::new();
    let in_ns = |f: &(dyn Fn() -> Sockets + Sync)| run_in_netns(&ns.path, f).expect("join the namespace");
    let mut reader = run_in_netns(&ns.path, SocketStatsReader::new)
        .expect("join the namespace")
        .expect("open NETLINK_SOCK_DIAG")
        .count_remote_addresses();
    // Loopback has every 127/8 address: 3 connections to 127.0.0.1, 2 to 127.0.0.2 (both ends
    // count: the client's peer is the server address, the server's peer the client's), 1 over
    // IPv6, and 2 to a dual-stack IPv6 listener from IPv4 (its accepted sockets' peers are
    // IPv4-mapped, counted as IPv4).
    let a = in_ns(&|| Sockets::open("127.0.0.1:0", 1, 3, 0));
    let b = in_ns(&|| Sockets::open("127.0.0.2:0", 1, 2, 0));
    let c = in_ns(&|| Sockets::open("[::1]:0", 1, 1, 0));
    let dual = in_ns(&|| {
        let listener = TcpListener::bind("[::]:0").expect("bind [::]");
        let port = listener.local_addr().unwrap().port();
        let mut s = Sockets { listeners: vec![listener], ..Sockets::default() };
        for _ in 0..2 {
            let client = TcpStream::connect(("127.0.0.3", port)).expect("connect");
            let (server, _) = s.listeners[0].accept().expect("accept");
            s.connections.push((client, server));
        }
        s
    });
    reader.read().expect("sock_diag dump");
    let mut got: Vec<(String, u64)> = reader.remote_established().map(|(a, n)| (a.to_string(), n)).collect();
    got.sort();
    // Expected from the sockets themselves: every connection's two ends, by peer address.
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for s in [&a, &b, &c, &dual] {
        for (client, server) in &s.connections {
            for end in [client, server] {
                *want.entry(end.peer_addr().unwrap().ip().to_canonical().to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    assert_eq!(got.iter().find(|(a, _)| a == "127.0.0.3").map(|(_, n)| *n), Some(2), "the dual-stack peers: {got:?}");
    // A second read starts from zero.
    drop((b, dual));
    reader.read().expect("sock_diag dump");
    let total: u64 = reader.remote_established().map(|(_, n)| n).sum();
    assert_eq!(total, 2 * 3 + 2);
    drop((a, c));
}

/// Sockets opened inside a namespace; they stay there when the thread that opened them exits.
#[derive(Default)]
struct Sockets {
    listeners: Vec<TcpListener>,
    connections: Vec<(TcpStream, TcpStream)>,
    udp: Vec<UdpSocket>,
    clients: Vec<TcpStream>,
}

impl Sockets {
    fn open(any_port: &str, listeners: usize, connections: usize, udp: usize) -> Self {
        let mut s = Sockets::default();
        for _ in 0..listeners {
            s.listeners.push(TcpListener::bind(any_port).expect("bind listener"));
        }
        let target = s.listeners[0].local_addr().expect("local addr");
        for _ in 0..connections {
            let client = TcpStream::connect(target).expect("connect");
            let (server, _) = s.listeners[0].accept().expect("accept");
            s.connections.push((client, server));
        }
        for _ in 0..udp {
            s.udp.push(UdpSocket::bind(any_port).expect("bind udp"));
        }
        s
    }

    fn deferred(any_port: &str, clients: usize) -> Self {
        let listener = TcpListener::bind(any_port).expect("bind listener");
        let seconds: libc::c_int = 60;
        // SAFETY: a live socket fd and a c_int option value with its size.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&seconds as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "TCP_DEFER_ACCEPT: {}", std::io::Error::last_os_error());
        let target: SocketAddr = listener.local_addr().expect("local addr");
        let mut s = Sockets { listeners: vec![listener], ..Sockets::default() };
        for _ in 0..clients {
            s.clients.push(TcpStream::connect(target).expect("connect"));
        }
        s
    }
}

fn table(counts: &TcpStateCounts) -> Vec<(&'static str, u64)> {
    counts.iter().map(|(s, n)| (s.as_str(), n)).collect()
}

fn expect(nonzero: &[(TcpState, u64)]) -> Vec<(&'static str, u64)> {
    let mut counts = BTreeMap::new();
    for &(state, n) in nonzero {
        counts.insert(state, n);
    }
    TcpState::ALL.iter().map(|s| (s.as_str(), counts.get(s).copied().unwrap_or(0))).collect()
}

/// State changes over loopback finish in softirq, possibly just after the syscall returns: read
/// until `done` holds or 5 s pass, and return the last counts (the caller asserts them).
fn settle(
    reader: &mut SocketStatsReader,
    done: impl Fn(&fovea::receivers::linuxutil::sockets::SocketCounts) -> bool,
) -> fovea::receivers::linuxutil::sockets::SocketCounts {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts = reader.read().expect("sock_diag dump");
        if done(&counts) || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The readers do blocking I/O: the receiver moves them into `spawn_blocking` or a thread.
#[test]
fn readers_can_move_to_another_thread() {
    fn send<T: Send + 'static>() {}
    send::<NetstatReader>();
    send::<InterfaceStatsReader>();
    send::<SocketStatsReader>();
}

// ---------------------------------------------------------------------------------------------
// harness

/// Root and the given tools, or a printed reason to skip (a failure when `CI=true`).
fn prerequisites(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces, setns)".to_owned());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!("the `{tool}` command"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{test} needs {}", missing.join(", "));
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}; CI=true forbids skipping");
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
    false
}

/// A fresh network namespace with lo up, deleted (with the processes started in it) on drop,
/// also when the test panics.
struct TestNetns {
    name: String,
    path: PathBuf,
    children: Vec<Child>,
}

impl TestNetns {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("fovea-lu-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = TestNetns { path: PathBuf::from(format!("/run/netns/{name}")), name, children: Vec::new() };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// Runs a command inside the namespace and returns its stdout; panics if it fails.
    fn exec(&self, args: &[&str]) -> Vec<u8> {
        run(Command::new("ip").args(["netns", "exec", &self.name]).args(args))
    }

    /// Starts `sleep` inside the namespace and returns its pid once it runs there.
    fn spawn_sleeper(&mut self) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn ip netns exec sleep");
        let pid = child.id();
        self.children.push(child);
        // `ip netns exec` joins the namespace, then execs sleep in the same process.
        let deadline = Instant::now() + Duration::from_secs(5);
        let comm = || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        while comm().trim() != "sleep" {
            assert!(Instant::now() < deadline, "sleep did not start in {}", self.name);
            std::thread::sleep(Duration::from_millis(5));
        }
        pid
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(command: &mut Command) -> Vec<u8> {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
