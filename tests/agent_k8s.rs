//! Kubernetes context through the whole agent: the real `fovea` binary watches the fake API
//! server (kube's client over TLS with a bearer token) and its `k8sattributes` processor names
//! both ends of the drop and retransmit records of network-namespace "pods", which must match
//! the objects exactly, record for record, with the counts the kernel's own counters report.
//!
//! Covered: pod to pod (IPv4 and IPv6, Deployment and StatefulSet owners, labels from the pod
//! and its namespace), a Service ClusterIP, a hostNetwork pod's address naming its node, IP
//! reuse (the new pod within a second, never a mix), the delete grace period, 410 Gone
//! relisting without stale entries, an API server down at start, in-cluster service-account
//! auth (token, CA and namespace files bind-mounted in a mount namespace) with token rotation,
//! a wrong token, and OTLP-received metrics associated with pods (connection, `k8s.pod.ip`,
//! `k8s.pod.uid`).

#[path = "support/agent.rs"]
mod agent;
#[path = "support/apiserver/mod.rs"]
mod apiserver;
mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent::{Agent, wait_collections};
use apiserver::ApiServer;
use apiserver::objects::{PodSpec, namespace, node, pod, replicaset, service};
use k8s_openapi::api::core::v1::Pod;
use support::netns::{LinkOptions, NsPair, Pod as NetPod};
use support::tcp;

const TOKEN: &str = "fovea-test-token";
const DROPPED: u16 = 9999;

/// A flow record as the debug exporter prints it at `verbosity: detailed`.
#[derive(Debug, Clone)]
struct Printed {
    time: u64,
    kind: String,
    src: SocketAddr,
    dst: SocketAddr,
    packets: u64,
    attrs: BTreeMap<String, String>,
}

/// `<time> <kind> <src> -> <dst> proto=.. dir=.. if=.. packets=N bytes=N [reason=..] [state=..] [{k=v, ...}]`
fn printed(stdout: &str) -> Vec<Printed> {
    stdout
        .lines()
        .filter_map(|line| {
            let (head, attrs) = match line.split_once(" {") {
                Some((h, a)) => (h, a.trim_end_matches('}')),
                None => (line, ""),
            };
            let f: Vec<&str> = head.split_whitespace().collect();
            if f.len() < 5 || f[3] != "->" {
                return None;
            }
            let attrs = attrs
                .split(", ")
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Printed {
                time: f[0].parse().ok()?,
                kind: f[1].to_string(),
                src: f[2].parse().ok()?,
                dst: f[4].parse().ok()?,
                packets: f.iter().find_map(|x| x.strip_prefix("packets="))?.parse().ok()?,
                attrs,
            })
        })
        .collect()
}

/// The attributes of one end, without its prefix (`source.k8s.pod.name` -> `k8s.pod.name`).
fn end(record: &Printed, prefix: &str) -> BTreeMap<String, String> {
    record.attrs.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone()))).collect()
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// A flows pipeline from `receivers` through k8sattributes (`k8s` extra keys) to the debug
/// exporter, with a Prometheus endpoint for the drop counters.
fn flows_config(kubeconfig: &Path, receivers: &str, k8s: &str) -> String {
    format!(
        "receivers:
{receivers}
processors:
  k8sattributes:
    auth_type: kubeConfig
    kube_config_path: {kc}
{k8s}
exporters:
  debug: {{verbosity: detailed}}
  prometheus: {{endpoint: 127.0.0.1:0}}
service:
  pipelines:
    flows: {{receivers: [dropreason], processors: [k8sattributes], exporters: [debug]}}
    metrics: {{receivers: [dropreason], exporters: [prometheus]}}
",
        kc = kubeconfig.display()
    )
}

/// The agent's own-telemetry samples of one receiver (records emitted, capped, lost ...).
fn own_lines(agent: &Agent, receiver: &str) -> String {
    let own = agent.scrape_at(agent.telemetry);
    let tag = format!("receiver=\"{receiver}\"");
    own.0.lines().filter(|l| l.contains(&tag) && !l.starts_with('#')).collect::<Vec<_>>().join("\n")
}

/// Polls `cond` (on the agent's output) for at most `limit`.
fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` UDP datagrams from `from` to `to`:DROPPED (in the current namespace), 2 ms apart.
fn send(from: IpAddr, to: IpAddr, n: u64) -> SocketAddr {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind");
    for _ in 0..n {
        let _ = sock.send_to(b"fovea", SocketAddr::new(to, DROPPED));
        std::thread::sleep(Duration::from_millis(2));
    }
    sock.local_addr().expect("local")
}

/// An nft rule in `ns` dropping UDP to DROPPED from `from`, counted in `drops`.
fn drop_udp(ns: &support::netns::Netns, from: IpAddr) {
    let family = if from.is_ipv6() { "ip6" } else { "ip" };
    ns.nft(&format!(
        "table inet fovea_t {{
            counter drops {{}}
            chain input {{
                type filter hook input priority 0; policy accept;
                {family} saddr {from} udp dport {DROPPED} counter name \"drops\" drop
            }}
        }}"
    ));
}

#[test]
fn drops_and_retransmits_between_pods_name_both_ends() {
    let test = "drops_and_retransmits_between_pods_name_both_ends";
    if !support::require_tools(test, &["ip", "nft", "nstat", "ss", "openssl"]) {
        return;
    }
    let Some(server) = ApiServer::start(TOKEN) else { return };
    let _lock = support::kernel_lock();
    let pair = NsPair::new();
    let a = &pair.addrs;
    server.apply(&namespace("shop", &[("team", "retail")]));
    server.apply(&namespace("data", &[("team", "storage")]));
    server.apply(&node("node-1", "198.18.255.1".parse().unwrap(), &[]));
    server.apply(&node("node-2", "198.18.255.2".parse().unwrap(), &[]));
    server.apply(&replicaset("shop", "cart-7d9f8b6c5d", Some("cart")));
    let mut cart = PodSpec::new("shop", "cart-7d9f8b6c5d-x2x9z", "node-1", a.a4.into())
        .owned_by("ReplicaSet", "cart-7d9f8b6c5d")
        .labelled(&[("app", "cart"), ("pod-template-hash", "7d9f8b6c5d")]);
    cart.ips.push(a.a6.into());
    server.apply(&pod(&cart));
    let mut db =
        PodSpec::new("data", "db-0", "node-2", a.b4.into()).owned_by("StatefulSet", "db").labelled(&[("app", "db")]);
    db.ips.push(a.b6.into());
    server.apply(&pod(&db));

    let kubeconfig = server.kubeconfig(TOKEN);
    let config = format!(
        "receivers:
  dropreason: {{collection_interval: 1s, flows: {{max_records_per_second: 100000}}}}
  tcpretrans: {{collection_interval: 1s, flows: {{max_records_per_second: 100000}}}}
processors:
  k8sattributes:
    auth_type: kubeConfig
    kube_config_path: {}
    wait_for_metadata: true
    extract:
      labels: [{{key: app}}, {{key: team, from: namespace}}]
exporters:
  debug: {{verbosity: detailed}}
  prometheus: {{endpoint: 127.0.0.1:0}}
service:
  pipelines:
    flows: {{receivers: [dropreason, tcpretrans], processors: [k8sattributes], exporters: [debug]}}
    metrics: {{receivers: [dropreason], exporters: [prometheus]}}
",
        kubeconfig.display()
    );
    let agent = Agent::start(&config);
    let cart_end = |uid: &str| {
        attrs(&[
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "cart-7d9f8b6c5d-x2x9z"),
            ("k8s.pod.uid", uid),
            ("k8s.node.name", "node-1"),
            ("k8s.workload.kind", "Deployment"),
            ("k8s.workload.name", "cart"),
            ("k8s.deployment.name", "cart"),
            ("k8s.replicaset.name", "cart-7d9f8b6c5d"),
            ("k8s.pod.label.app", "cart"),
            ("k8s.namespace.label.team", "retail"),
        ])
    };
    let db_end = |uid: &str| {
        attrs(&[
            ("k8s.namespace.name", "data"),
            ("k8s.pod.name", "db-0"),
            ("k8s.pod.uid", uid),
            ("k8s.node.name", "node-2"),
            ("k8s.workload.kind", "StatefulSet"),
            ("k8s.workload.name", "db"),
            ("k8s.statefulset.name", "db"),
            ("k8s.pod.label.app", "db"),
            ("k8s.namespace.label.team", "storage"),
        ])
    };
    let (cart_uid, db_uid) = (server.uid::<Pod>("shop", "cart-7d9f8b6c5d-x2x9z"), server.uid::<Pod>("data", "db-0"));

    // Drops, IPv4 and IPv6: every record names both pods, and there is one record per datagram
    // the kernel dropped. The kernel's record ring is node-wide (drops elsewhere on the machine
    // can fill it: the kernel counts what it could not write), and twice in about 470 runs
    // the records of one round did not arrive with nothing counted as unwritten (docs/ebpf.md,
    // "Known differences"): a round that differs is reported with every drop record it saw and
    // sent again from a new port, at most three times.
    for (from, to) in [(IpAddr::from(a.a4), IpAddr::from(a.b4)), (a.a6.into(), a.b6.into())] {
        const M: u64 = 7;
        for round in 1..=3 {
            drop_udp(&pair.b, from);
            let start = agent.stdout().len();
            let src = pair.a.run_in(move || send(from, to, M));
            // The first datagrams wait for neighbour resolution.
            support::wait_until("the kernel dropped every datagram", || {
                pair.b.nft_counter("inet", "fovea_t", "drops").0 == M
            });
            let ours =
                |out: &str| printed(out).into_iter().filter(|r| r.kind == "drop" && r.src == src).collect::<Vec<_>>();
            let deadline = Instant::now() + Duration::from_secs(10);
            while (ours(&agent.stdout()).len() as u64) < M && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(200)); // no record comes twice either
            let records = ours(&agent.stdout());
            pair.b.sh("nft delete table inet fovea_t");
            for r in &records {
                assert_eq!(r.dst, SocketAddr::new(to, DROPPED));
                assert_eq!(end(r, "source."), cart_end(&cart_uid), "source of {r:?}");
                assert_eq!(end(r, "destination."), db_end(&db_uid), "destination of {r:?}");
            }
            if records.len() as u64 == M {
                break;
            }
            let out = agent.stdout();
            let why = format!(
                "{} drop records from {src}, the kernel dropped {M}; every drop record of the round:\n{}\n\
                 the receiver's own telemetry:\n{}",
                records.len(),
                out[start..].lines().filter(|l| l.contains(" drop ")).take(20).collect::<Vec<_>>().join("\n"),
                own_lines(&agent, "dropreason")
            );
            assert!(round < 3, "{test}: three rounds differed; the last: {why}\nagent log:\n{}", agent.stderr());
            eprintln!("{test}: round {round}: {why}\nagain");
        }
    }

    // Retransmits, IPv4 and IPv6: every record names the client pod as source and the server
    // pod as destination, and the records of the sender add up to its TcpRetransSegs. In rare
    // runs (once in about 260 here) the kernel's counter is one segment ahead of every record the
    // probe wrote, with nothing capped or lost (docs/ebpf.md, "Known differences"): such a
    // round is repeated, at most three times, so the equality is still checked every run.
    for ipv6 in [false, true] {
        let (client_ip, server_ip) = tcp::endpoints(&pair, ipv6);
        for round in 1..=3 {
            tcp::drop_one_in_five(&pair, client_ip, 5202);
            let before = agent.stdout().len();
            let counters = ["TcpRetransSegs", "TcpExtTCPRetransFail", "TcpExtTCPLossProbes"];
            let c0 = counters.map(|c| pair.a.nstat(c));
            let client = tcp::transfer(&pair, server_ip, 5202);
            let [sender, failed, probes] = {
                let c1 = counters.map(|c| pair.a.nstat(c));
                [0, 1, 2].map(|i| c1[i] - c0[i])
            };
            pair.b.sh("nft delete table inet fovea_t");
            assert!(sender > 0, "the 20 % drop caused retransmits");
            let from_client = |out: &str| -> Vec<Printed> {
                printed(&out[before..]).into_iter().filter(|r| r.kind == "retransmit" && r.src == client).collect()
            };
            let sum = |records: &[Printed]| records.iter().map(|r| r.packets).sum::<u64>();
            let deadline = Instant::now() + Duration::from_secs(10);
            while sum(&from_client(&agent.stdout())) != sender && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let records = from_client(&agent.stdout());
            for r in &records {
                assert_eq!(r.dst, SocketAddr::new(server_ip, 5202));
                assert_eq!(end(r, "source."), cart_end(&cart_uid), "source of {r:?}");
                assert_eq!(end(r, "destination."), db_end(&db_uid), "destination of {r:?}");
            }
            let ours = sum(&records);
            if ours == sender {
                break;
            }
            let why = format!(
                "retransmit records of {client} sum to {ours}, its TcpRetransSegs grew by {sender} \
                 (TCPRetransFail {failed}, TCPLossProbes {probes}); records: {records:?}\n\
                 the receiver's own telemetry:\n{}",
                own_lines(&agent, "tcpretrans")
            );
            assert!(round < 3, "{test}: three rounds differed; the last: {why}");
            eprintln!("{test}: round {round}: {why}\nagain");
        }
    }
    let own = agent.scrape_at(agent.telemetry);
    assert_eq!(own.count("fovea_k8s_watch_synced", &[("kind", "Pod")]), 1);
    assert_eq!(own.count("fovea_k8s_objects", &[("kind", "Pod")]), 2);
    assert!(own.count("fovea_k8s_lookups_total", &[("result", "hit")]) >= 2 * 14);
    assert_eq!(own.count("fovea_k8s_watch_events_total", &[("kind", "Pod"), ("event", "listed")]), 2);
    assert_eq!(own.count("fovea_k8s_watch_events_total", &[("kind", "ReplicaSet"), ("event", "listed")]), 1);
    assert_eq!(own.count("fovea_k8s_watch_relists_total", &[("kind", "Pod")]), 0);
    let age = own.value("fovea_k8s_watch_last_event_age_seconds", &[("kind", "Pod")]).unwrap_or(-1.0);
    assert!((0.0..60.0).contains(&age), "last event age {age}");
    assert!(own.count("fovea_k8s_cache_bytes", &[]) > 1000);
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

/// A pod namespace joined to the host (the "node") by a veth, with an nft table dropping UDP to
/// DROPPED from the host (IPv4 and IPv6), counted in `drops`.
fn pod_with_drops(ipv6: bool) -> NetPod {
    let p = NetPod::new(LinkOptions { ipv6, static_neighbours: true });
    let v6 = if ipv6 {
        format!("ip6 saddr {} udp dport {DROPPED} counter name \"drops\" drop", p.addrs.a6)
    } else {
        String::new()
    };
    p.ns.nft(&format!(
        "table inet fovea_t {{
            counter drops {{}}
            chain input {{
                type filter hook input priority 0; policy accept;
                ip saddr {} udp dport {DROPPED} counter name \"drops\" drop
                {v6}
            }}
        }}",
        p.addrs.a4
    ));
    p
}

/// What most tests start from: the fake API server accepting `token` (listening or not), the
/// kernel-event lock, and a pod namespace with its drop rule. `None`: skipped.
struct Setup {
    server: ApiServer,
    net: NetPod,
    _lock: support::KernelLock,
}

fn setup(test: &str, tools: &[&str], token: &str, listening: bool, ipv6: bool) -> Option<Setup> {
    if !support::require_tools(test, tools) {
        return None;
    }
    let server = ApiServer::prepare(token, 0)?;
    if listening {
        server.listen();
    }
    let lock = support::kernel_lock();
    Some(Setup { server, net: pod_with_drops(ipv6), _lock: lock })
}

/// The drop records to `to` in the agent's output.
fn drops_to(agent: &Agent, to: IpAddr) -> Vec<Printed> {
    printed(&agent.stdout()).into_iter().filter(|r| r.kind == "drop" && r.dst == SocketAddr::new(to, DROPPED)).collect()
}

#[test]
fn a_service_cluster_ip_and_a_host_network_pods_address_are_named() {
    let test = "a_service_cluster_ip_and_a_host_network_pods_address_are_named";
    let Some(Setup { server, net, _lock }) = setup(test, &["ip", "nft", "openssl"], TOKEN, true, false) else { return };
    let (host, inside): (IpAddr, IpAddr) = (net.addrs.a4.into(), net.addrs.b4.into());
    let cluster_ip: IpAddr = "198.19.255.10".parse().unwrap();
    net.ns.sh(&format!(
        "nft add counter inet fovea_t to_svc && nft add chain inet fovea_t output '{{ type filter hook output priority 0; policy accept; }}' \
         && nft add rule inet fovea_t output ip daddr {cluster_ip} udp dport {DROPPED} counter name to_svc drop"
    ));
    server.apply(&namespace("shop", &[]));
    server.apply(&namespace("kube-system", &[]));
    server.apply(&node("node-1", host, &[]));
    let mut proxy = PodSpec::new("kube-system", "kube-proxy-abcde", "node-1", host).owned_by("DaemonSet", "kube-proxy");
    proxy.host_network = true;
    server.apply(&pod(&proxy));
    server.apply(&pod(&PodSpec::new("shop", "client-1", "node-1", inside)));
    server.apply(&service("shop", "cart", &[cluster_ip]));
    let agent = Agent::start(&flows_config(
        &server.kubeconfig(TOKEN),
        "  dropreason: {collection_interval: 1s, flows: {max_records_per_second: 100000}}",
        "    wait_for_metadata: true",
    ));
    let uid = server.uid::<Pod>("shop", "client-1");
    let client = attrs(&[
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "client-1"),
        ("k8s.pod.uid", &uid),
        ("k8s.node.name", "node-1"),
    ]);

    let src = net.ns.run_in(move || send(inside, cluster_ip, 5));
    support::wait_until("the pod's datagrams to the ClusterIP were dropped", || {
        net.ns.nft_counter("inet", "fovea_t", "to_svc").0 == 5
    });
    wait_for("the records to the service", Duration::from_secs(10), || drops_to(&agent, cluster_ip).len() == 5);
    for r in drops_to(&agent, cluster_ip) {
        assert_eq!(r.src, src);
        assert_eq!(end(&r, "source."), client, "a bare pod has no workload: {r:?}");
        assert_eq!(end(&r, "destination."), attrs(&[("k8s.namespace.name", "shop"), ("k8s.service.name", "cart")]));
    }

    send(host, inside, 6);
    support::wait_until("the node's datagrams were dropped", || net.ns.nft_counter("inet", "fovea_t", "drops").0 == 6);
    wait_for("the records from the node", Duration::from_secs(10), || drops_to(&agent, inside).len() == 6);
    for r in drops_to(&agent, inside) {
        assert_eq!(
            end(&r, "source."),
            attrs(&[("k8s.node.name", "node-1")]),
            "the hostNetwork pod's address names the node: {r:?}"
        );
        assert_eq!(end(&r, "destination."), client);
    }
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

#[test]
fn a_reused_ip_names_the_new_pod_within_a_second_and_a_deleted_pod_answers_for_its_grace_period() {
    let test = "a_reused_ip_names_the_new_pod_within_a_second_and_a_deleted_pod_answers_for_its_grace_period";
    let Some(Setup { server, net, _lock }) = setup(test, &["ip", "nft", "openssl"], TOKEN, true, true) else { return };
    let (host4, host6): (IpAddr, IpAddr) = (net.addrs.a4.into(), net.addrs.a6.into());
    let (reused, lonely): (IpAddr, IpAddr) = (net.addrs.b4.into(), net.addrs.b6.into());
    server.apply(&namespace("shop", &[]));
    server.apply(&replicaset("shop", "old-5f4d", Some("old")));
    server.apply(&replicaset("shop", "new-6c7e", Some("new")));
    server.apply(&pod(&PodSpec::new("shop", "old-5f4d-aaaaa", "node-1", reused).owned_by("ReplicaSet", "old-5f4d")));
    server.apply(&pod(&PodSpec::new("shop", "lonely-0", "node-1", lonely).owned_by("StatefulSet", "lonely")));
    let agent = Agent::start(&flows_config(
        &server.kubeconfig(TOKEN),
        "  dropreason: {collection_interval: 1s, flows: {max_records_per_second: 100000}}",
        "    wait_for_metadata: true\n    delete_grace_period: 2s\n    extract: {metadata: [k8s.pod.name, k8s.pod.uid, k8s.workload.name, k8s.replicaset.name]}",
    ));
    let old_uid = server.uid::<Pod>("shop", "old-5f4d-aaaaa");
    let lonely_uid = server.uid::<Pod>("shop", "lonely-0");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s4 = UdpSocket::bind(SocketAddr::new(host4, 0)).expect("bind");
            let s6 = UdpSocket::bind(SocketAddr::new(host6, 0)).expect("bind");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = s4.send_to(b"x", SocketAddr::new(reused, DROPPED));
                let _ = s6.send_to(b"x", SocketAddr::new(lonely, DROPPED));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    // The CNI handed the old pod's address to a new one; the other pod is just gone.
    let switched = now_ns();
    assert!(server.delete::<Pod>("shop", "old-5f4d-aaaaa"));
    server.apply(&pod(&PodSpec::new("shop", "new-6c7e-bbbbb", "node-1", reused).owned_by("ReplicaSet", "new-6c7e")));
    assert!(server.delete::<Pod>("shop", "lonely-0"));
    std::thread::sleep(Duration::from_millis(4500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().expect("sender");
    wait_collections(Duration::from_millis(200), 1);
    let new_uid = server.uid::<Pod>("shop", "new-6c7e-bbbbb");

    let old = attrs(&[
        ("k8s.pod.name", "old-5f4d-aaaaa"),
        ("k8s.pod.uid", &old_uid),
        ("k8s.workload.name", "old"),
        ("k8s.replicaset.name", "old-5f4d"),
    ]);
    let new = attrs(&[
        ("k8s.pod.name", "new-6c7e-bbbbb"),
        ("k8s.pod.uid", &new_uid),
        ("k8s.workload.name", "new"),
        ("k8s.replicaset.name", "new-6c7e"),
    ]);
    let second = 1_000_000_000;
    let records = drops_to(&agent, reused);
    assert!(records.len() > 500, "{} records", records.len());
    let (mut olds, mut news) = (0, 0);
    for r in &records {
        let d = end(r, "destination.");
        if d == old {
            olds += 1;
            assert!(r.time < switched + second, "an old label later than a second after the switch: {r:?}");
        } else if d == new {
            news += 1;
            assert!(r.time + second / 2 > switched, "the new pod named before it existed: {r:?}");
        } else {
            panic!("neither the old nor the new pod, or a mix: {r:?}");
        }
    }
    assert!(olds > 100 && news > 500, "{olds} old, {news} new");

    let lonely_end =
        attrs(&[("k8s.pod.name", "lonely-0"), ("k8s.pod.uid", &lonely_uid), ("k8s.workload.name", "lonely")]);
    let records = drops_to(&agent, lonely);
    for r in &records {
        let d = end(r, "destination.");
        if r.time < switched + second {
            assert_eq!(d, lonely_end, "still named during the 2 s grace period: {r:?}");
        } else if r.time > switched + 3 * second {
            assert!(d.is_empty(), "forgotten once the grace period is over: {r:?}");
        } else {
            assert!(d.is_empty() || d == lonely_end, "{r:?}");
        }
    }
    assert!(records.iter().filter(|r| r.time > switched + 3 * second).count() > 100);
    let own = agent.scrape_at(agent.telemetry);
    assert!(own.count("fovea_k8s_lookups_total", &[("result", "grace")]) > 50, "{}", own.0);
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

#[test]
fn gone_relists_and_leaves_no_stale_entry() {
    let test = "gone_relists_and_leaves_no_stale_entry";
    let Some(Setup { server, net, _lock }) = setup(test, &["ip", "nft", "openssl"], TOKEN, true, true) else { return };
    let (host4, host6): (IpAddr, IpAddr) = (net.addrs.a4.into(), net.addrs.a6.into());
    let (gone_ip, stay_ip): (IpAddr, IpAddr) = (net.addrs.b4.into(), net.addrs.b6.into());
    server.apply(&namespace("shop", &[]));
    server.apply(&pod(&PodSpec::new("shop", "gone-1", "node-1", gone_ip).labelled(&[("app", "v1")])));
    server.apply(&pod(&PodSpec::new("shop", "stay-1", "node-1", stay_ip).labelled(&[("app", "v1")])));
    let agent = Agent::start(&flows_config(
        &server.kubeconfig(TOKEN),
        "  dropreason: {collection_interval: 1s, flows: {max_records_per_second: 100000}}",
        "    wait_for_metadata: true\n    extract: {metadata: [k8s.pod.name], labels: [{key: app}]}",
    ));
    let named = |r: &Printed| end(r, "destination.");
    send(host4, gone_ip, 3);
    wait_for("the first records", Duration::from_secs(10), || drops_to(&agent, gone_ip).len() == 3);
    assert!(
        drops_to(&agent, gone_ip)
            .iter()
            .all(|r| named(r) == attrs(&[("k8s.pod.name", "gone-1"), ("k8s.pod.label.app", "v1")]))
    );

    // While the agent cannot watch: one pod deleted, the other relabelled, the history compacted.
    server.stop_listening();
    assert!(server.delete::<Pod>("shop", "gone-1"));
    server.apply(&pod(&PodSpec::new("shop", "stay-1", "node-1", stay_ip).labelled(&[("app", "v2")])));
    server.compact();
    server.listen();
    // the relist counter moves when the list starts; the cache holds one pod once it is applied
    let relisted = || {
        let own = agent.scrape_at(agent.telemetry);
        own.count("fovea_k8s_watch_relists_total", &[("kind", "Pod")]) >= 1
            && own.count("fovea_k8s_objects", &[("kind", "Pod")]) == 1
    };
    wait_for("the pods are listed again", Duration::from_secs(40), relisted);
    let before = drops_to(&agent, gone_ip).len();
    send(host4, gone_ip, 4);
    send(host6, stay_ip, 4);
    wait_for("the new records", Duration::from_secs(10), || {
        drops_to(&agent, gone_ip).len() == before + 4 && drops_to(&agent, stay_ip).len() == 4
    });
    for r in &drops_to(&agent, gone_ip)[before..] {
        assert!(
            named(r).is_empty(),
            "the pod deleted while unwatched is gone at once (30 s grace notwithstanding): {r:?}"
        );
    }
    for r in drops_to(&agent, stay_ip) {
        assert_eq!(named(&r), attrs(&[("k8s.pod.name", "stay-1"), ("k8s.pod.label.app", "v2")]));
    }
    assert!(agent.stderr().contains("410 Gone"), "the expiry is logged:\n{}", agent.stderr());
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

#[test]
fn the_agent_counts_while_the_api_server_is_down_and_labels_once_it_is_up() {
    let test = "the_agent_counts_while_the_api_server_is_down_and_labels_once_it_is_up";
    let Some(Setup { server, net, _lock }) = setup(test, &["ip", "nft", "openssl"], TOKEN, false, false) else {
        return;
    };
    let (host, inside): (IpAddr, IpAddr) = (net.addrs.a4.into(), net.addrs.b4.into());
    server.apply(&namespace("shop", &[]));
    server.apply(&pod(&PodSpec::new("shop", "late-1", "node-1", inside)));
    let agent = Agent::start_unready(&flows_config(
        &server.kubeconfig(TOKEN),
        "  dropreason: {collection_interval: 1s, flows: {max_records_per_second: 100000}}",
        "    extract: {metadata: [k8s.pod.name]}",
    ));
    let readyz = || agent::http_get(agent.telemetry, "/readyz").expect("readyz");
    wait_for("readyz names the unreachable API server", Duration::from_secs(10), || {
        readyz().1.contains(&format!("pods not listed yet (cannot list pods at {}", server.url()))
    });
    assert_eq!(readyz().0, 503);
    let drops = |m: &agent::Exposition| m.count("network_drop_packets_total", &[("drop_reason", "NETFILTER_DROP")]);
    let m0 = drops(&agent.scrape());
    let src = send(host, inside, 5);
    support::wait_until("the kernel dropped them", || net.ns.nft_counter("inet", "fovea_t", "drops").0 == 5);
    wait_for("the unlabelled records", Duration::from_secs(10), || drops_to(&agent, inside).len() == 5);
    assert!(drops_to(&agent, inside).iter().all(|r| r.src == src && r.attrs.is_empty()), "addresses only");
    wait_collections(Duration::from_secs(1), 2);
    assert!(drops(&agent.scrape()) - m0 >= 5, "counted while the API server is down");

    server.listen();
    wait_for("the cache syncs once the API server is up", Duration::from_secs(40), || readyz().0 == 200);
    send(host, inside, 5);
    wait_for("the labelled records", Duration::from_secs(10), || drops_to(&agent, inside).len() == 10);
    assert!(
        drops_to(&agent, inside)[5..].iter().all(|r| end(r, "destination.") == attrs(&[("k8s.pod.name", "late-1")]))
    );
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

#[test]
fn a_wrong_token_is_a_clear_error_and_the_agent_keeps_counting() {
    let test = "a_wrong_token_is_a_clear_error_and_the_agent_keeps_counting";
    let Some(Setup { server, net, _lock }) = setup(test, &["ip", "nft", "openssl"], TOKEN, true, false) else { return };
    let (host, inside): (IpAddr, IpAddr) = (net.addrs.a4.into(), net.addrs.b4.into());
    server.apply(&pod(&PodSpec::new("shop", "p-1", "node-1", inside)));
    let agent = Agent::start_unready(&flows_config(
        &server.kubeconfig("not-the-token"),
        "  dropreason: {collection_interval: 1s, flows: {max_records_per_second: 100000}}",
        "",
    ));
    wait_for("the 401 is logged", Duration::from_secs(10), || agent.stderr().contains("401 Unauthorized"));
    let log = agent.stderr();
    let line = log.lines().find(|l| l.contains("401 Unauthorized")).unwrap_or_default();
    assert!(line.contains(&server.url()) && line.contains("token") && line.contains("retrying with backoff"), "{line}");
    let (code, body) = agent::http_get(agent.telemetry, "/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("kubernetes metadata cache") && body.contains("401 Unauthorized"), "{body}");

    let m = |m: &agent::Exposition| {
        m.count("network_drop_packets_total", &[("drop_reason", "NETFILTER_DROP"), ("network_io_direction", "receive")])
    };
    let m0 = m(&agent.scrape());
    send(host, inside, 8);
    support::wait_until("the kernel dropped them", || net.ns.nft_counter("inet", "fovea_t", "drops").0 == 8);
    wait_for("the records", Duration::from_secs(10), || drops_to(&agent, inside).len() == 8);
    assert!(drops_to(&agent, inside).iter().all(|r| r.attrs.is_empty()));
    wait_collections(Duration::from_secs(1), 2);
    let foreign = printed(&agent.stdout()).iter().filter(|r| r.kind == "drop" && r.dst.ip() != inside).count() as u64;
    let delta = m(&agent.scrape()) - m0;
    assert!(delta >= 8 && delta <= 8 + foreign, "the drop counter grew by {delta} (8 ours, {foreign} elsewhere)");
    let own = agent.scrape_at(agent.telemetry);
    assert!(own.count("fovea_k8s_watch_errors_total", &[("kind", "Pod")]) >= 1);
    assert_eq!(own.count("fovea_k8s_watch_synced", &[("kind", "Pod")]), 0);
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

/// Writes `token` into `dir/token` the way the kubelet rotates it: a new file renamed over the old.
fn write_token(dir: &Path, token: &str) {
    let tmp = dir.join("..token.tmp");
    std::fs::write(&tmp, token).expect("write token");
    std::fs::rename(&tmp, dir.join("token")).expect("rename token");
}

#[test]
fn in_cluster_service_account_auth_works_and_a_rotated_token_is_used() {
    let test = "in_cluster_service_account_auth_works_and_a_rotated_token_is_used";
    let Some(Setup { server, net, _lock }) =
        setup(test, &["ip", "nft", "openssl", "unshare", "mount"], "sa-token-1", true, true)
    else {
        return;
    };
    let (host4, host6): (IpAddr, IpAddr) = (net.addrs.a4.into(), net.addrs.a6.into());
    let (first, second): (IpAddr, IpAddr) = (net.addrs.b4.into(), net.addrs.b6.into());
    server.apply(&namespace("shop", &[]));
    server.apply(&pod(&PodSpec::new("shop", "first-1", "node-1", first)));
    // What Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount.
    let account = tempfile::tempdir().unwrap();
    write_token(account.path(), "sa-token-1");
    std::fs::copy(server.ca_path(), account.path().join("ca.crt")).unwrap();
    std::fs::write(account.path().join("namespace"), "fovea").unwrap();
    // A mount namespace of its own, where the files appear where Kubernetes puts them.
    let wrapper = format!(
        "exec unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs /run && \
         mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
         mount --bind {dir} /run/secrets/kubernetes.io/serviceaccount && \
         export KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT={port} && eval \"$0\"'",
        dir = account.path().display(),
        port = server.addr.port()
    );
    let config = "receivers:
  dropreason: {collection_interval: 1s, flows: {max_records_per_second: 100000}}
processors:
  k8sattributes: {auth_type: serviceAccount, wait_for_metadata: true, extract: {metadata: [k8s.pod.name]}}
exporters:
  debug: {verbosity: detailed}
service:
  pipelines:
    flows: {receivers: [dropreason], processors: [k8sattributes], exporters: [debug]}
";
    let agent = Agent::launch(agent::Launch { config: Some(config), sets: Vec::new(), wrapper: Some(&wrapper) })
        .unwrap_or_else(|(status, out)| panic!("fovea exited {status}:\n{out}"));
    send(host4, first, 3);
    wait_for("records named through the service account", Duration::from_secs(10), || {
        let r = drops_to(&agent, first);
        r.len() == 3 && r.iter().all(|r| end(r, "destination.") == attrs(&[("k8s.pod.name", "first-1")]))
    });

    // The kubelet rotates the token; the old one stops working and the API server drops
    // every connection. The agent re-reads the file and goes on.
    write_token(account.path(), "sa-token-2");
    server.set_tokens(&["sa-token-2"]);
    server.drop_connections();
    let rotated_at = server.requests().len();
    server.apply(&pod(&PodSpec::new("shop", "second-1", "node-1", second)));
    wait_for("a pod added after the rotation is named", Duration::from_secs(20), || {
        send(host6, second, 1);
        drops_to(&agent, second)
            .last()
            .is_some_and(|r| end(r, "destination.") == attrs(&[("k8s.pod.name", "second-1")]))
    });
    assert!(agent.stderr().contains("service-account token changed"), "{}", agent.stderr());
    let after: Vec<_> = server.requests()[rotated_at..].to_vec();
    assert!(after.iter().all(|r| r.status == 200), "no request with the old token after the change: {after:?}");
    let (status, out) = agent.terminate();
    assert!(
        status.success(),
        "clean exit ({status}): {}",
        out.lines().filter(|l| !l.starts_with('1') && !l.starts_with("Flows")).collect::<Vec<_>>().join("\n")
    );
}

/// The resource attributes of the metric `name` in the debug exporter's detailed output.
fn resource_of(stdout: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let mut resource = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Resource {") {
            let pairs = rest.trim_end_matches('}').split(", ").filter_map(|kv| kv.split_once('='));
            resource = Some(pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>());
        } else if line.trim_start().starts_with(&format!("Metric {name} ")) {
            return resource;
        }
    }
    None
}

/// An OTLP/HTTP protobuf request with one counter `name` from a resource with `attributes`.
fn otlp_request(name: &str, attributes: &[(&str, &str)]) -> Vec<u8> {
    use fovea::model::{Attributes, Metric, MetricBatch, NumberPoint, Resource, Scope};
    use prost::Message as _;
    let resource = Resource { attributes: Attributes::from_pairs(attributes.iter().copied()) };
    let points = vec![NumberPoint::int(Attributes::new(), 1, 2, 3)];
    let batch = MetricBatch::single(
        std::sync::Arc::new(resource),
        std::sync::Arc::new(Scope::default()),
        vec![Metric::counter(name, "1", "", points)],
    );
    fovea::otlp::metrics_to_proto(&batch).encode_to_vec()
}

#[test]
fn otlp_metrics_get_the_attributes_of_the_pod_they_come_from() {
    let test = "otlp_metrics_get_the_attributes_of_the_pod_they_come_from";
    if !support::require_tools(test, &["ip", "openssl"]) {
        return;
    }
    let Some(server) = ApiServer::start(TOKEN) else { return };
    let net = NetPod::new(LinkOptions { ipv6: true, static_neighbours: true });
    let (host, inside, inside6): (IpAddr, IpAddr, IpAddr) =
        (net.addrs.a4.into(), net.addrs.b4.into(), net.addrs.b6.into());
    server.apply(&namespace("shop", &[]));
    server.apply(&node("node-1", host, &[]));
    server.apply(&replicaset("shop", "app-6b8d", Some("app")));
    let mut app = PodSpec::new("shop", "app-6b8d-q7w2e", "node-1", inside).owned_by("ReplicaSet", "app-6b8d");
    app.ips.push(inside6);
    server.apply(&pod(&app));
    server.apply(&pod(&PodSpec::new("shop", "batch-1", "node-2", "198.19.254.7".parse().unwrap())));
    let port = agent::free_port();
    let config = format!(
        "receivers:
  otlp: {{protocols: {{http: {{endpoint: '{host}:{port}'}}}}}}
processors:
  k8sattributes:
    auth_type: kubeConfig
    kube_config_path: {kc}
    wait_for_metadata: true
    extract: {{metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.pod.ip, k8s.deployment.name, k8s.node.name]}}
    pod_association:
      - sources: [{{from: resource_attribute, name: k8s.pod.uid}}]
      - sources: [{{from: resource_attribute, name: k8s.pod.ip}}]
      - sources: [{{from: connection}}]
exporters:
  debug: {{verbosity: detailed}}
service:
  pipelines:
    metrics: {{receivers: [otlp], processors: [k8sattributes], exporters: [debug]}}
",
        kc = server.kubeconfig(TOKEN).display()
    );
    let agent = Agent::start(&config);
    let endpoint = SocketAddr::new(host, port);
    let post =
        |body: Vec<u8>| agent::http_post(endpoint, "/v1/metrics", "application/x-protobuf", &body).expect("post").0;
    // From inside the pod: associated by the connection's address.
    let body = otlp_request("m.connection", &[("service.name", "app")]);
    let code = net
        .ns
        .run_in(move || agent::http_post(endpoint, "/v1/metrics", "application/x-protobuf", &body).expect("post").0);
    assert_eq!(code, 200);
    // From the node, naming the pod by its IPv6 address, and another pod by its uid.
    assert_eq!(post(otlp_request("m.ip", &[("k8s.pod.ip", &inside6.to_string())])), 200);
    let batch_uid = server.uid::<Pod>("shop", "batch-1");
    assert_eq!(post(otlp_request("m.uid", &[("k8s.pod.uid", &batch_uid)])), 200);
    // From the node with nothing to go by: the node's address is no pod.
    assert_eq!(post(otlp_request("m.node", &[("service.name", "node-agent")])), 200);
    wait_for("the four exports", Duration::from_secs(10), || resource_of(&agent.stdout(), "m.node").is_some());

    let app_uid = server.uid::<Pod>("shop", "app-6b8d-q7w2e");
    let app_attrs = |ip: &str, extra: (&str, &str)| {
        attrs(&[
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "app-6b8d-q7w2e"),
            ("k8s.pod.uid", &app_uid),
            ("k8s.pod.ip", ip),
            ("k8s.deployment.name", "app"),
            ("k8s.node.name", "node-1"),
            extra,
        ])
    };
    let out = agent.stdout();
    assert_eq!(resource_of(&out, "m.connection"), Some(app_attrs(&inside.to_string(), ("service.name", "app"))));
    let by_ip = resource_of(&out, "m.ip").unwrap();
    assert_eq!(by_ip.get("k8s.pod.name").map(String::as_str), Some("app-6b8d-q7w2e"));
    assert_eq!(by_ip.get("k8s.pod.ip"), Some(&inside6.to_string()), "the resource's own k8s.pod.ip is kept");
    let by_uid = resource_of(&out, "m.uid").unwrap();
    assert_eq!(
        by_uid,
        attrs(&[
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "batch-1"),
            ("k8s.pod.uid", &batch_uid),
            ("k8s.pod.ip", "198.19.254.7"),
            ("k8s.node.name", "node-2")
        ])
    );
    assert_eq!(resource_of(&out, "m.node"), Some(attrs(&[("service.name", "node-agent")])));
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

#[test]
fn wait_for_metadata_fails_the_start_when_the_cache_does_not_sync_in_time() {
    // Needs no root: an OTLP-fed metrics pipeline, and an API server that is not listening.
    let Some(server) = ApiServer::prepare(TOKEN, 0) else { return };
    let config = format!(
        "receivers:
  otlp: {{protocols: {{http: {{endpoint: '127.0.0.1:0'}}}}}}
processors:
  k8sattributes: {{auth_type: kubeConfig, kube_config_path: {}, wait_for_metadata: true, wait_for_metadata_timeout: 2s}}
exporters:
  debug: {{}}
service:
  pipelines:
    metrics: {{receivers: [otlp], processors: [k8sattributes], exporters: [debug]}}
",
        server.kubeconfig(TOKEN).display()
    );
    let started = Instant::now();
    let launched = Agent::launch(agent::Launch { config: Some(&config), sets: Vec::new(), wrapper: None });
    let Err((status, out)) = launched else { panic!("the agent started without its metadata") };
    assert!(!status.success());
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited the timeout");
    assert!(
        out.contains("processor `k8sattributes` failed to start")
            && out.contains("did not sync within 2s (wait_for_metadata_timeout)")
            && out.contains(&format!("cannot list pods at {}", server.url())),
        "{out}"
    );
}
