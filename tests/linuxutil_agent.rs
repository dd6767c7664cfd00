//! The whole agent (`fovea run`) with the `linuxutil` receiver reading a quiet network namespace:
//! every value it serves equals what the kernel reports there at the same moment, and a real
//! Prometheus scraping it sees the exact number of pings sent.

#[path = "support/prometheus.rs"]
mod prometheus_server;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_server::{Options, Prometheus, ScrapeTarget, free_port, get};
use support::netns::Netns;

/// The agent as a child process; SIGTERM on drop.
struct Agent {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(config: &str, own: SocketAddr) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fovea"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fovea");
        let agent = Agent { child, _dir: dir };
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if get(own, "/readyz", &[]).is_ok_and(|r| r.status == 200) {
                return agent;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fovea did not become ready on {own}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Parses `name{labels} value` lines of a Prometheus exposition for one metric name.
fn series(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = r.rfind('}').unwrap();
                (&r[..end], r[end + 1..].trim())
            }
            None if rest.starts_with(' ') => ("", rest.trim()),
            None => continue,
        };
        let mut map = BTreeMap::new();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            map.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.push((map, value.parse().unwrap()));
    }
    out
}

fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    series(text, name)
        .into_iter()
        .find(|(l, _)| want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
}

/// `nstat -asz` inside the namespace: counter name -> value.
fn nstat_all(ns: &Netns) -> BTreeMap<String, i64> {
    ns.exec("nstat", &["-asz"])
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let value = f.next()?.parse().ok()?;
            (!name.starts_with('#')).then(|| (name.to_string(), value))
        })
        .collect()
}

/// Scrapes after at least two more collections have happened.
fn settled_scrape(exporter: SocketAddr, interval: Duration) -> String {
    std::thread::sleep(interval * 3);
    get(exporter, "/metrics", &[]).expect("scrape fovea").text()
}

#[test]
fn linuxutil_equals_the_kernel_in_a_quiet_namespace() {
    if !support::require_root("linuxutil_equals_the_kernel_in_a_quiet_namespace")
        || !support::require_tools("linuxutil_equals_the_kernel_in_a_quiet_namespace", &["ip", "ping", "nstat"])
    {
        return;
    }
    let ns = Netns::new();
    let exporter: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let own: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let interval = Duration::from_millis(200);
    let config = format!(
        "receivers:\n  linuxutil:\n    collection_interval: 200ms\n    netns: /run/netns/{ns}\n    netstat:\n      include: ['Icmp:*', 'IcmpMsg:*', 'Ip:*', 'Tcp:*', 'Udp:*', 'TcpExt:*', 'IpExt:*']\n    interfaces:\n      statistics: [rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped, multicast]\nexporters:\n  prometheus:\n    endpoint: {exporter}\n    without_scope_info: true\nservice:\n  telemetry:\n    metrics: {{address: '{own}'}}\n  pipelines:\n    metrics: {{receivers: [linuxutil], exporters: [prometheus]}}\n",
        ns = ns.name
    );
    let listeners = 3;
    // Listening sockets live in the namespace for the whole test.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let holder = ns.spawn_in(move || {
        let socks: Vec<_> = (0..listeners).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        ready_tx.send(()).unwrap();
        let _ = stop_rx.recv();
        drop(socks);
    });
    ready_rx.recv().unwrap();

    let agent = Agent::start(&config, own);
    let prometheus =
        Prometheus::start(Options { targets: vec![ScrapeTarget::new("fovea", exporter)], ..Options::default() });

    let before = settled_scrape(exporter, interval);
    let echos_before =
        value(&before, "network_netstat", &[("netstat_group", "Icmp"), ("netstat_name", "InEchos")]).unwrap_or(0.0);
    let pings = 25;
    ns.exec("ping", &["-c", &pings.to_string(), "-i", "0.01", "-s", "300", "-q", "127.0.0.1"]);
    let after = settled_scrape(exporter, interval);

    // The ping delta, exactly.
    let echos = value(&after, "network_netstat", &[("netstat_group", "Icmp"), ("netstat_name", "InEchos")]).unwrap();
    assert_eq!(echos - echos_before, pings as f64, "Icmp InEchos delta");
    let replies =
        value(&after, "network_netstat", &[("netstat_group", "Icmp"), ("netstat_name", "OutEchoReps")]).unwrap();
    assert_eq!(replies, echos, "every echo was answered");

    // Every stack counter fovea serves equals nstat's at the same moment (the namespace is quiet).
    let kernel = nstat_all(&ns);
    let served = series(&after, "network_netstat");
    let mut compared = 0;
    for (labels, v) in &served {
        let key = format!("{}{}", labels["netstat_group"], labels["netstat_name"]);
        if let Some(k) = kernel.get(&key) {
            assert_eq!(*v, *k as f64, "{key}: fovea {v} vs nstat {k}");
            compared += 1;
        }
    }
    assert!(compared > 100, "compared only {compared} counters");

    // lo statistics equal `ip -s link` in the namespace: 2 x pings packets of 300+8+20 bytes each way.
    let lo = ns.link_stats("lo");
    let stat = |s: &str| {
        value(&after, "network_interface_stats", &[("network_interface_name", "lo"), ("statistic", s)]).unwrap()
    };
    assert_eq!(stat("rx_packets") as u64, lo.rx_packets);
    assert_eq!(stat("tx_packets") as u64, lo.tx_packets);
    assert_eq!(stat("rx_bytes") as u64, lo.rx_bytes);
    assert_eq!(stat("tx_bytes") as u64, lo.tx_bytes);
    assert_eq!(lo.rx_packets, 2 * pings);
    assert_eq!(lo.rx_bytes, 2 * pings * (300 + 8 + 20));

    // TCP sockets by state, from sock_diag.
    let state = |s: &str| value(&after, "network_tcp_connections", &[("network_connection_state", s)]).unwrap();
    assert_eq!(state("listen"), listeners as f64);
    assert_eq!(state("established"), 0.0);

    // A real Prometheus scraping the agent sees the same ping count.
    if let Some(prometheus) = prometheus {
        let q = "network_netstat{netstat_group=\"Icmp\",netstat_name=\"InEchos\",job=\"fovea\"}";
        let got = prometheus.wait_for(q, Duration::from_secs(15), |r| r.first().is_some_and(|(_, v)| *v == echos));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, echos);
        let listen = prometheus.query("network_tcp_connections{network_connection_state=\"listen\"}");
        assert_eq!(listen[0].1, listeners as f64);
    }

    drop(agent);
    stop_tx.send(()).unwrap();
    holder.join().unwrap();
}
