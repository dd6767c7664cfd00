//! Every panel of the Grafana dashboards in `deploy/grafana/`, and every panel of Retina's
//! "Clusters" dashboard, run against a real Prometheus that scrapes the real agent while the
//! kernel counts known traffic: a TCP transfer through 20 % random loss (retransmits, ingress
//! drops), UDP dropped in the sender's output chain (egress drops), UDP to a closed port
//! (drops while the queries run) and DNS queries to dnsmasq in a pod (answered, NXDOMAIN, and
//! sent where nothing answers). A panel whose query returns no series fails the test.
//!
//! The agent runs what the Helm chart runs (packetforward, dropreason, tcpretrans, linuxutil,
//! k8sattributes against the fake API server) plus the dns receiver, with the Prometheus exporter
//! twice: OpenTelemetry names (fovea's dashboards) and `naming: retina` (Retina's Clusters and
//! Standard DNS dashboards), and its own telemetry at `detailed` (kernel time per packet).
//!
//! The flowmetrics connector (remote context) turns the flows, drops and retransmits of pods the
//! fake API server names into the pod-traffic dashboard's metrics.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/prometheus.rs"]
mod prometheus_server;
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent::{Agent, Launch};
use apiserver::ApiServer;
use apiserver::objects::{PodSpec, namespace, node, pod};
use prometheus_server::{Options, Prometheus};
use serde_json::Value;
use support::dns;
use support::netns::{LinkOptions, NsPair, Pod as NetPod};
use support::tcp;

const PORT: u16 = 5201;
/// What `$__rate_interval` becomes: ten scrapes at the 1 s interval.
const RATE_INTERVAL: &str = "10s";

/// What a Retina Clusters panel shows on Linux with fovea.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Series.
    Data,
    /// Series once the node drops on an interface: the panel's trailing `> 0` hides idle
    /// interfaces, so the query is checked without it.
    DataWithoutPositiveFilter,
    /// Data only in a situation the scenario does not make (docs/kubernetes.md says which).
    Situational,
    /// Needs `network.tcp.flags`, counted by the flows receiver.
    TcpFlags,
    /// A NIC driver's ethtool counter (ENA, mlx5 ...): no data on a node without that driver.
    NicDriver,
}

/// Retina's Clusters dashboard (`deploy/grafana-dashboards/clusters.json`, Retina v1.2.6): every
/// distinct panel query, verbatim (reference/retina-compat.md §1.1).
const CLUSTERS: &[(&str, Expect, &str)] = &[
    (
        "Bytes Forwarded by Cluster",
        Expect::Data,
        r#"sum by (cluster) (rate(networkobservability_forward_bytes{instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Bytes Dropped by Cluster",
        Expect::Data,
        r#"sum by (cluster) (rate(networkobservability_drop_bytes{instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Packets Dropped By Cluster",
        Expect::Data,
        r#"sum by (cluster) (rate(networkobservability_drop_count[$__rate_interval]))"#,
    ),
    (
        "Egress Bytes",
        Expect::Data,
        r#"sum(rate(networkobservability_forward_bytes{direction="egress", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Egress Packets",
        Expect::Data,
        r#"sum(rate(networkobservability_forward_count{direction="egress", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Ingress Bytes",
        Expect::Data,
        r#"sum(rate(networkobservability_forward_bytes{direction="ingress", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Ingress Packets",
        Expect::Data,
        r#"sum(rate(networkobservability_forward_count{direction="ingress", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Packets Dropped - Egress",
        Expect::Data,
        r#"sum(rate(networkobservability_drop_count{direction="egress", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Packets Dropped - Ingress",
        Expect::Data,
        r#"sum(rate(networkobservability_drop_count{direction="ingress", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Packets Dropped - Unknown",
        Expect::Situational,
        r#"sum(rate(networkobservability_drop_count{direction="unknown", instance=~"$Nodes", cluster="$cluster"}[$__rate_interval]))"#,
    ),
    (
        "Bytes Dropped by Reason",
        Expect::Data,
        r#"sum by (reason) (rate(networkobservability_drop_bytes{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "Packets Dropped by Reason",
        Expect::Data,
        "sum by (reason) (rate(networkobservability_drop_count{cluster=\"$cluster\", instance=~\"$Nodes\"}[$__rate_interval])) > 0\nor\nsum by (reason) (\n  label_replace(\n    rate(networkobservability_interface_stats{statistic_name=\"rx_dropped\", cluster=\"$cluster\", instance=~\"$Nodes\"}[$__rate_interval]),\n    \"reason\",\n    \"$1\",\n    \"statistic_name\",\n    \"(.*)\"\n  )\n)\nor # cannot combine these interface_stats expressions into one using regex, since regex would capture anything with rx_dropped or tx_dropped in it\nsum by (reason) (\n  label_replace(\n    rate(networkobservability_interface_stats{statistic_name=\"tx_dropped\", cluster=\"$cluster\", instance=~\"$Nodes\"}[$__rate_interval]),\n    \"reason\",\n    \"$1\",\n    \"statistic_name\",\n    \"(.*)\"\n  )\n)",
    ),
    (
        "Bytes Dropped by Node",
        Expect::Data,
        r#"sum by(instance) (rate(networkobservability_drop_bytes{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "Packets Dropped by Node",
        Expect::Data,
        r#"sum by(instance) (rate(networkobservability_drop_count{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "TCP Active Connections by State",
        Expect::Data,
        r#"sum by(state) (networkobservability_tcp_state{cluster="$cluster", instance=~"$Nodes"})"#,
    ),
    (
        "TCP Active Connections by Remote Addr",
        Expect::Data,
        r#"sum by(address) (networkobservability_tcp_connection_remote{cluster="$cluster", instance=~"$Nodes", address!~"127.0.0.1|0.0.0.0"})"#,
    ),
    (
        "TCP Connection Timeouts",
        Expect::Data,
        r#"sum(rate(networkobservability_tcp_connection_stats{statistic_name="tcptimeouts", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "TCP Connection Resets",
        Expect::Data,
        r#"sum(rate(networkobservability_tcp_connection_stats{statistic_name="resetcount", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "TCP Connection Reorders",
        Expect::Data,
        r#"sum(rate(networkobservability_tcp_connection_stats{statistic_name="tcptsreorder", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Windows TCP Packets",
        Expect::TcpFlags,
        r#"sum(rate(networkobservability_tcp_flag_counters{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Windows TCP RST Packets",
        Expect::TcpFlags,
        r#"sum(rate(networkobservability_tcp_flag_counters{flag="rst", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Windows TCP SYN-ACK Packets",
        Expect::TcpFlags,
        r#"sum(rate(networkobservability_tcp_flag_counters{flag="synack", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "UDP Connections",
        Expect::Data,
        r#"sum(networkobservability_udp_connection_stats{statistic_name="active", cluster="$cluster", instance=~"$Nodes"})"#,
    ),
    (
        "RX Packets by Interface",
        Expect::Data,
        r#"sum by (interface_name) (rate(networkobservability_interface_stats{statistic_name="rx_packets", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "TX Packets by Interface",
        Expect::Data,
        r#"sum by (interface_name) (rate(networkobservability_interface_stats{statistic_name="tx_packets", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval]))"#,
    ),
    (
        "Rx Cache Full error",
        Expect::NicDriver,
        r#"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=~"rx[0-9]+_cache_full", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "Tx No Op Errors",
        Expect::NicDriver,
        r#"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=~"tx[0-9]+_nop", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "Dropped Rx Packets",
        Expect::DataWithoutPositiveFilter,
        r#"sum by (instance) (rate(networkobservability_interface_stats{statistic_name="rx_dropped", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "Dropped Tx Packets",
        Expect::DataWithoutPositiveFilter,
        r#"sum by (instance) (rate(networkobservability_interface_stats{statistic_name="tx_dropped", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "Rx Comp Full Errors",
        Expect::NicDriver,
        r#"sum by (instance) (rate(networkobservability_interface_stats{statistic_name="rx_comp_full", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
    (
        "Tx Send Full Errors",
        Expect::NicDriver,
        r#"sum by (instance) (rate(networkobservability_interface_stats{statistic_name="tx_send_full", cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) > 0"#,
    ),
];

/// Retina's Standard DNS dashboard (`deploy/grafana-dashboards/standard-dns.json`, Retina
/// v1.2.6): every panel query, verbatim (reference/retina-compat.md §1.1), and the labels its
/// series must carry, non-empty (a `sum by` of a missing label still returns a series). Retina's own agent
/// leaves most of them empty (its node-level DNS counters have no labels); fovea must fill all.
const STANDARD_DNS: &[(&str, &[&str], &str)] = &[
    (
        "DNS Requests",
        &["query_type"],
        r#"sum (rate(networkobservability_dns_request_count{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) by (query_type) > 0"#,
    ),
    (
        "DNS Responses",
        &["query_type"],
        r#"sum (rate(networkobservability_dns_response_count{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) by (query_type) > 0"#,
    ),
    (
        "DNS Missing Response",
        &["query_type"],
        "(\n    1 - (\n        sum (networkobservability_dns_response_count{cluster=\"$cluster\", instance=~\"$Nodes\"}) by (query_type) / sum (networkobservability_dns_request_count{cluster=\"$cluster\", instance=~\"$Nodes\"}) by (query_type)\n    )\n) * 100 * (\n    (\n        sum (rate(networkobservability_dns_response_count{cluster=\"$cluster\", instance=~\"$Nodes\"}[$__rate_interval])) by (query_type)\n    ) > bool 0\n) > 0",
    ),
    (
        "DNS Response IPs Returned",
        &["num_response"],
        r#"sum(rate(networkobservability_dns_response_count{cluster="$cluster", instance=~"$Nodes", return_code="NoError"}[$__rate_interval])) by (num_response) > 0"#,
    ),
    (
        "DNS Errors",
        &["return_code", "query_type"],
        "label_replace(\n    label_replace(\n        sum by (return_code, query_type) (\n            rate(networkobservability_dns_response_count{cluster=\"$cluster\", instance=~\"$Nodes\", return_code!=\"NoError\"}[$__rate_interval])\n        ) > 0, \"return_code\", \"non-existent domain\", \"return_code\", \"nxdomain\"\n    ), \"return_code\", \"server failure\", \"return_code\", \"servfail\"\n)",
    ),
    (
        "Top DNS Queries (Requests)",
        &["query", "query_type"],
        r#"round(topk(10, sum (60*rate(networkobservability_dns_request_count{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) by (query, query_type)), 1)"#,
    ),
    (
        "Top DNS Queries (Responses)",
        &["query", "query_type"],
        r#"round(topk(10, sum (60*rate(networkobservability_dns_response_count{cluster="$cluster", instance=~"$Nodes"}[$__rate_interval])) by (query, query_type)), 1)"#,
    ),
    (
        "DNS Response Table",
        &["query", "query_type", "response", "return_code"],
        "label_replace(\n  label_replace(\n      sum by (query, query_type, response, return_code) (\n        60*rate(networkobservability_dns_response_count{cluster=\"$cluster\", instance=~\"$Nodes\", num_response!=\"0\", response!=\"\"}[$__rate_interval])\n      ), \"return_code\", \"non-existent domain\", \"return_code\", \"nxdomain\"\n  ), \"return_code\", \"success\", \"return_code\", \"noerror\"\n)",
    ),
];

/// DNS for the dashboards, from this (the node's) namespace to dnsmasq in a pod, until `stop`:
/// answered A, AAAA and TXT queries, NXDOMAIN, and queries to a pod where nothing listens.
fn dns_forever(server: String, silent: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            dns::dig(None, &server, &["web.test A", "web.test AAAA", "info.test TXT", "missing.test A"], &[]);
            dns::dig(None, &silent, &["web.test A"], &[]);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// A panel query with Grafana's variables as the dashboards' "All" choice sets them.
fn resolve(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$cluster", "")
        .replace("$instance", ".*")
        .replace("$Nodes", ".*")
}

/// Every panel of a dashboard (rows' nested panels included) with its query expressions.
fn panels(dashboard: &Value) -> Vec<(String, Vec<String>)> {
    fn walk(panels: &Value, out: &mut Vec<(String, Vec<String>)>) {
        for p in panels.as_array().into_iter().flatten() {
            if p["type"] == "row" {
                walk(&p["panels"], out);
                continue;
            }
            let exprs =
                p["targets"].as_array().into_iter().flatten().filter_map(|t| t["expr"].as_str().map(String::from));
            out.push((p["title"].as_str().unwrap_or("").to_string(), exprs.collect()));
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The metrics the binary's components produce (`fovea components`).
fn produced_metrics() -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fovea")).arg("components").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Why a dashboard's panels cannot have data with this binary, if so.
fn missing_source(file: &str, components: &str) -> Option<&'static str> {
    match file {
        "fovea-pods.json" if !components.contains("flowmetrics") => Some(
            "pod-level metrics (source_k8s_* / destination_k8s_* labels) come from the flowmetrics connector, which this build does not have yet",
        ),
        _ => None,
    }
}

fn send_udp_forever(pair: &NsPair, to: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    pair.a.spawn_in(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        while !stop.load(Ordering::Relaxed) {
            let _ = socket.send_to(&[7; 100], to);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn every_dashboard_panel_returns_data_from_a_real_prometheus() {
    let test = "every_dashboard_panel_returns_data_from_a_real_prometheus";
    if !support::require_tools(test, &["ip", "nft", "ss", "openssl"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let Some(server) = ApiServer::start("dashboard-token") else {
        return;
    };
    server.apply(&namespace("shop", &[]));
    server.apply(&node("node-1", "198.18.50.1".parse().unwrap(), &[]));
    server.apply(&pod(&PodSpec::new("shop", "cart-1", "node-1", "198.18.51.1".parse().unwrap())));
    let kubeconfig = server.kubeconfig("dashboard-token");
    let retina_port = agent::free_port();
    let config = format!(
        "receivers:
  packetforward: {{collection_interval: 1s, interfaces: ['*'], exclude: []}}
  dropreason: {{collection_interval: 1s}}
  tcpretrans: {{collection_interval: 1s}}
  linuxutil: {{collection_interval: 1s}}
  flows: {{collection_interval: 1s, interfaces: ['fvh*']}}
  dns: {{collection_interval: 1s, response_timeout: 1s, interfaces: ['fvh*'], include_uplink: false, question_name: true, answers: true}}
processors:
  batch: {{timeout: 100ms}}
  k8sattributes: {{auth_type: kubeConfig, kube_config_path: {kubeconfig}}}
connectors:
  flowmetrics: {{mode: remote, metrics_flush_interval: 1s}}
exporters:
  prometheus: {{endpoint: 127.0.0.1:0}}
  prometheus/retina: {{endpoint: 127.0.0.1:{retina_port}, naming: retina}}
  debug: {{verbosity: basic}}
service:
  pipelines:
    metrics: {{receivers: [packetforward, dropreason, tcpretrans, linuxutil, flows, dns], processors: [batch], exporters: [prometheus, prometheus/retina]}}
    flows: {{receivers: [dropreason, tcpretrans, flows], processors: [k8sattributes], exporters: [debug, flowmetrics]}}
    metrics/pods: {{receivers: [flowmetrics], processors: [batch], exporters: [prometheus, prometheus/retina]}}
  telemetry:
    metrics: {{level: detailed}}
",
        kubeconfig = kubeconfig.display()
    );
    let agent = Agent::launch(Launch { config: Some(&config), sets: Vec::new(), wrapper: None })
        .unwrap_or_else(|(status, out)| panic!("fovea exited {status}:\n{out}"));
    let Some(prometheus) =
        Prometheus::start(Options { scrape_configs: Some(scrape_configs(&agent, retina_port)), ..Options::default() })
    else {
        return;
    };
    prometheus.wait_targets_up(3, Duration::from_secs(30));
    // deploy/prometheus/scrape-configs.yaml made one target per job out of the pod's two
    // ports, each named after the node.
    for job in ["fovea", "fovea-telemetry"] {
        let up = prometheus.query(&format!("up{{job=\"{job}\"}}"));
        assert_eq!(up.len(), 1, "{job}: {up:?}");
        assert_eq!((up[0].0["instance"].as_str(), up[0].1), (NODE, 1.0), "{job}: {up:?}");
    }

    // Known traffic: retransmits and ingress drops (20 % loss), egress drops (UDP to port 9
    // dropped in the sender's output chain), NO_SOCKET drops (UDP to a closed port) throughout.
    let pair = NsPair::new();
    let (client, server_ip) = tcp::endpoints(&pair, false);
    // The lossy transfer's ends are pods of the cluster (pod-level drops and retransmits).
    server.apply(&pod(&PodSpec::new("shop", "client-0", "node-1", client)));
    server.apply(&pod(&PodSpec::new("shop", "server-0", "node-1", server_ip)));
    tcp::drop_one_in_five(&pair, client, PORT);
    pair.a.nft(
        "table inet fovea_out {
            chain output { type filter hook output priority 0; policy accept; udp dport 9 drop; }
        }",
    );
    let stop = Arc::new(AtomicBool::new(false));
    // DNS: dnsmasq in a pod, queried from the node (dns attaches as it runs: wait for it)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !agent.stderr().contains("dns attached") {
        assert!(std::time::Instant::now() < deadline, "the dns receiver did not attach:\n{}", agent.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (dns_pod, silent_pod) = (NetPod::new(LinkOptions::default()), NetPod::new(LinkOptions::default()));
    let _dnsmasq = dns::Dnsmasq::start(&dns_pod.ns, &[dns_pod.addrs.b4.into()]);
    let senders = [
        send_udp_forever(&pair, SocketAddr::new(server_ip, 9), stop.clone()),
        send_udp_forever(&pair, SocketAddr::new(server_ip, 10), stop.clone()),
        dns_forever(dns_pod.addrs.b4.to_string(), silent_pod.addrs.b4.to_string(), stop.clone()),
    ];
    tcp::transfer(&pair, server_ip, PORT);
    // A connection of the node's own (its network namespace is the agent's) to a pod, open
    // while the queries run: connections by remote address.
    let pod_net = NetPod::new(LinkOptions::default());
    let pod_ip = pod_net.addrs.b4;
    server.apply(&pod(&PodSpec::new("shop", "db-0", "node-1", pod_ip.into())));
    let listener = pod_net.ns.run_in(move || std::net::TcpListener::bind((pod_ip, PORT + 1)).unwrap());
    // The flows receiver attaches to the pod's interface as it appears: connect (SYN, SYN-ACK,
    // ACK, FIN) and be refused at a closed port (RST) until its counts show both.
    let held = std::net::TcpStream::connect((pod_ip, PORT + 1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        drop(std::net::TcpStream::connect((pod_ip, PORT + 1)).unwrap());
        assert!(std::net::TcpStream::connect((pod_ip, PORT + 2)).is_err(), "port {} is closed", PORT + 2);
        let flags = agent.scrape();
        if flags.count("network_tcp_flags_total", &[("tcp_flag", "SYNACK")]) > 0
            && flags.count("network_tcp_flags_total", &[("tcp_flag", "RST")]) > 0
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no TCP flags counted on {}:\n{}", pod_net.host_if, flags.0);
        std::thread::sleep(Duration::from_millis(500));
    }
    let drops = r#"sum(network_drop_packets_total{network_io_direction="transmit"})"#;
    prometheus.wait_for(drops, Duration::from_secs(20), |s| !s.is_empty());
    // Ten more scrapes, so every rate window holds the scenario.
    std::thread::sleep(Duration::from_secs(11));

    let components = produced_metrics();
    let mut failures = Vec::new();
    let mut checked = 0;
    let dir = support_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in &files {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        if let Some(reason) = missing_source(file, &components) {
            support::skip_note(test, &format!("{file}: {reason}"));
            continue;
        }
        // The node variable lists the nodes.
        for v in dashboard["templating"]["list"].as_array().unwrap() {
            if v["name"] == "instance" {
                let q = v["definition"].as_str().unwrap();
                let (metric, label) =
                    q.trim_start_matches("label_values(").trim_end_matches(')').split_once(", ").unwrap();
                let found = prometheus.query(&format!("group by ({label}) ({metric})"));
                if found.is_empty() {
                    failures.push(format!("{file}: variable {q} lists nothing"));
                }
            }
        }
        for (title, exprs) in panels(&dashboard) {
            for expr in exprs {
                checked += 1;
                if prometheus.query(&resolve(&expr)).is_empty() {
                    failures.push(format!("{file}: \"{title}\": no data for {expr}"));
                }
            }
        }
    }
    for (title, labels, expr) in STANDARD_DNS {
        checked += 1;
        let result = prometheus.query(&resolve(expr));
        if result.is_empty() {
            failures.push(format!("Retina Standard DNS: \"{title}\": no data for {expr}"));
        }
        for (series, _) in &result {
            if let Some(label) = labels.iter().find(|l| series.get(**l).is_none_or(String::is_empty)) {
                failures.push(format!("Retina Standard DNS: \"{title}\": a series without `{label}`: {series:?}"));
            }
        }
    }
    let tcp_flags = components.contains("network.tcp.flags");
    for (title, expect, expr) in CLUSTERS {
        let result = prometheus.query(&resolve(expr));
        checked += 1;
        match expect {
            Expect::Data if result.is_empty() => {
                failures.push(format!("Retina Clusters: \"{title}\": no data for {expr}"))
            }
            Expect::DataWithoutPositiveFilter => {
                let unfiltered = resolve(expr.trim_end_matches(" > 0"));
                if prometheus.query(&unfiltered).is_empty() {
                    failures.push(format!("Retina Clusters: \"{title}\": no series for {unfiltered}"));
                }
            }
            Expect::TcpFlags if tcp_flags && result.is_empty() => failures.push(format!(
                "Retina Clusters: \"{title}\": no data for {expr} although network.tcp.flags is produced"
            )),
            Expect::TcpFlags if !tcp_flags => support::skip_note(
                test,
                &format!(
                    "Retina Clusters \"{title}\": network.tcp.flags comes from the flows receiver, not in this build"
                ),
            ),
            Expect::NicDriver if !result.is_empty() => {
                failures.push(format!("Retina Clusters: \"{title}\": data from a NIC driver counter on a virtio node?"))
            }
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    drop((held, listener));
    assert!(checked >= 60, "{checked} queries");
    assert!(
        failures.is_empty(),
        "{} of {checked} panel queries failed:\n{}\n\nagent:\n{}",
        failures.len(),
        failures.join("\n"),
        agent.scrape_at(([127, 0, 0, 1], retina_port).into()).0
    );
}

/// The node the agent runs on, as the scrape configs name its targets.
const NODE: &str = "node-1";

/// `deploy/prometheus/scrape-configs.yaml` with Kubernetes service discovery replaced by what it
/// would find for the agent's pod on node-1: one target per container port, with the pod's
/// labels, annotations and port names as `__meta_kubernetes_*` labels (Debian's Prometheus is
/// built without Kubernetes discovery). Retina's job is left out; a static job reads the
/// `naming: retina` exporter.
fn scrape_configs(agent: &Agent, retina_port: u16) -> String {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/scrape-configs.yaml"),
    )
    .unwrap();
    let ours = &shipped[..shipped.find("  - job_name: retina-pods").expect("the Retina job")];
    let mut targets = String::from("    static_configs:\n");
    for (name, port) in [("metrics", agent.metrics.port()), ("telemetry", agent.telemetry.port())] {
        targets.push_str(&format!(
            "      - targets: ['127.0.0.1:{port}']
        labels:
          __meta_kubernetes_pod_label_app_kubernetes_io_name: fovea
          __meta_kubernetes_pod_annotation_prometheus_io_scrape: 'true'
          __meta_kubernetes_pod_annotation_prometheus_io_port: '{metrics}'
          __meta_kubernetes_pod_container_name: fovea
          __meta_kubernetes_pod_container_port_name: {name}
          __meta_kubernetes_pod_ip: 127.0.0.1
          __meta_kubernetes_pod_node_name: {NODE}
",
            metrics = agent.metrics.port()
        ));
    }
    let discovery = "    kubernetes_sd_configs:\n      - role: pod\n";
    assert_eq!(ours.matches(discovery).count(), 2, "{ours}");
    let mut out = ours.replace(discovery, &targets);
    out.push_str(&format!(
        "  - job_name: fovea-retina\n    static_configs:\n      - targets: ['127.0.0.1:{retina_port}']\n        labels: {{instance: {NODE}}}\n"
    ));
    out
}

fn support_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana")
}

#[test]
fn dashboards_are_well_formed() {
    let dir = support_dir();
    let mut uids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.display().to_string();
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()), "{name}: uid used twice");
        assert!(d["title"].as_str().unwrap().starts_with("fovea / "), "{name}");
        let names: Vec<&str> =
            d["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["datasource", "cluster", "instance"], "{name}");
        let mut ids = std::collections::BTreeSet::new();
        fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
            for p in panels.as_array().into_iter().flatten() {
                out.push(p);
                walk(&p["panels"], out);
            }
        }
        let mut all = Vec::new();
        walk(&d["panels"], &mut all);
        for p in all {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{name}: panel id {} twice", p["id"]);
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: {}", p["title"]);
                for t in p["targets"].as_array().unwrap() {
                    let expr = t["expr"].as_str().unwrap();
                    assert!(
                        expr.contains("instance=~\"$instance\""),
                        "{name}: {} must follow the node choice: {expr}",
                        p["title"]
                    );
                }
            }
        }
    }
    assert!(uids.len() >= 4);
}
