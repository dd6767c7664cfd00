//! Pod-level metrics through the whole agent: the real `fovea` binary runs inside a node's
//! network namespace (pods on veths, an uplink to the test's namespace where the fake API
//! server and a real Prometheus live), the `flows` and `dropreason` receivers feed the
//! `k8sattributes` processor, and the `flowmetrics` connector turns the labelled records into
//! Retina's pod-level metrics. Every value is checked against the kernel's own counters (`ip -s
//! link` of the pods' veths, nft counters), under both namings, and every panel of Retina's "Pod
//! Traffic" dashboard must show data in a real Prometheus.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/prometheus.rs"]
mod prometheus;
mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use agent::{Agent, Exposition, free_port, wait_collections};
use apiserver::ApiServer;
use apiserver::objects::{self, PodSpec, namespace, pod, replicaset, service};
use prometheus::{Options, Prometheus, ScrapeTarget};
use support::netns::{LinkOptions, LinkStats};
use support::node::{HostUplink, Node, NodePod};

const TOKEN: &str = "fovea-flowmetrics-token";
const INTERVAL: Duration = Duration::from_secs(1);
/// The flows receiver as the tests configure it.
const FLOWS: &str = "  flows: {collection_interval: 1s}\n";

fn quiet() -> LinkOptions {
    LinkOptions { ipv6: false, static_neighbours: true }
}

/// A node with three pods, its uplink to the test's namespace, and the API server there that
/// knows them: `cart-5d8-x1` (Deployment `cart` through ReplicaSet `cart-5d8`) and `db-0`
/// (StatefulSet `db`) in `shop`, `frontend-0` in `web`.
struct World {
    node: Node,
    uplink: HostUplink,
    api: ApiServer,
    cart: NodePod,
    db: NodePod,
    frontend: NodePod,
}

impl World {
    fn new(test: &str) -> Option<World> {
        if !support::require_tools(test, &["ip", "nft"]) {
            return None;
        }
        let node = Node::new();
        let uplink = node.host_uplink();
        let api = ApiServer::start_at(TOKEN, IpAddr::V4(uplink.addrs.a4))?;
        let (cart, db, frontend) = (node.pod(quiet()), node.pod(quiet()), node.pod(quiet()));
        // The agent names its node after the host (no K8S_NODE_NAME here), as the pods' node.
        let node_name = fovea::telemetry::resource::host_name();
        api.apply(&namespace("shop", &[]));
        api.apply(&namespace("web", &[]));
        api.apply(&objects::node(&node_name, IpAddr::V4(uplink.addrs.b4), &[]));
        api.apply(&replicaset("shop", "cart-5d8", Some("cart")));
        let ip = |p: &NodePod| IpAddr::V4(p.v4());
        api.apply(&pod(&PodSpec::new("shop", "cart-5d8-x1", &node_name, ip(&cart)).owned_by("ReplicaSet", "cart-5d8")));
        api.apply(&pod(&PodSpec::new("shop", "db-0", &node_name, ip(&db)).owned_by("StatefulSet", "db")));
        api.apply(&pod(
            &PodSpec::new("web", "frontend-0", &node_name, ip(&frontend)).owned_by("StatefulSet", "frontend")
        ));
        // The API server: the `kubernetes` Service (a ClusterIP nothing routes) and its endpoint.
        api.apply(&service("default", "kubernetes", &[IpAddr::V4(Ipv4Addr::new(198, 19, 255, 1))]));
        api.apply_json(
            "endpointslices",
            serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "endpoints": [{"addresses": [uplink.addrs.a4.to_string()]}],
                "ports": [{"name": "https", "port": api.addr.port(), "protocol": "TCP"}]
            }),
        );
        Some(World { node, uplink, api, cart, db, frontend })
    }

    /// An endpoint on the node's side of the uplink (where the test's Prometheus scrapes).
    fn node_endpoint(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.uplink.addrs.b4), free_port())
    }

    /// The start of a config: `receivers` (YAML lines under `receivers:`) and k8sattributes
    /// reading this API server.
    fn head(&self, receivers: &str) -> String {
        format!(
            "receivers:\n{receivers}processors:\n  k8sattributes: {{auth_type: kubeConfig, kube_config_path: {}}}\n",
            self.api.kubeconfig(TOKEN).display()
        )
    }

    /// The agent config: flows and drops through k8sattributes into flowmetrics (`connector`
    /// body), out through an OpenTelemetry-named and a Retina-named Prometheus endpoint.
    fn config(&self, connector: &str, otel: SocketAddr, retina: SocketAddr) -> String {
        format!(
            "receivers:
  flows: {{collection_interval: 1s}}
  dropreason: {{collection_interval: 1s, flows: {{max_records_per_second: 100000}}}}
processors:
  k8sattributes:
    auth_type: kubeConfig
    kube_config_path: {kc}
connectors:
  flowmetrics:
{connector}
exporters:
  prometheus/otel: {{endpoint: \"{otel}\"}}
  prometheus/retina: {{endpoint: \"{retina}\", naming: retina}}
service:
  pipelines:
    flows: {{receivers: [flows, dropreason], processors: [k8sattributes], exporters: [flowmetrics]}}
    metrics: {{receivers: [flowmetrics], exporters: [prometheus/otel, prometheus/retina]}}
",
            kc = self.api.kubeconfig(TOKEN).display()
        )
    }
}

fn udp(from: &NodePod, to: SocketAddr, n: u64, payload: usize) {
    let src = from.v4();
    from.ns.run_in(move || {
        let s = UdpSocket::bind(SocketAddr::new(src.into(), 0)).expect("bind");
        for _ in 0..n {
            s.send_to(&vec![1u8; payload], to).expect("send");
        }
    });
}

/// `n` TCP connections from `from` to a listener in `to`, each sending a little and closing.
fn tcp_connections(from: &NodePod, to: &NodePod, n: usize) {
    let server = SocketAddr::new(to.v4().into(), 8080);
    let listener = to.ns.run_in(move || TcpListener::bind(server).expect("listen"));
    let accept = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = listener.accept().expect("accept");
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        }
    });
    from.ns.run_in(move || {
        for _ in 0..n {
            let mut s = TcpStream::connect(server).expect("connect");
            std::io::Write::write_all(&mut s, b"hello").expect("write");
        }
    });
    accept.join().expect("accept thread");
}

/// A series' labels as a sorted `k=v` list, without the ones every series has.
fn labels_of(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !k.starts_with("otel_scope") && !matches!(k.as_str(), "job" | "instance"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Remote context: per pod pair, per direction, exactly what the pods' veths carried, the drops
/// between two pods exactly what nft dropped, both names and label layouts, and every panel of
/// Retina's Pod Traffic dashboard answering in a real Prometheus.
#[test]
fn remote_context_counts_pod_pairs_exactly_and_retinas_pod_traffic_dashboard_shows_them() {
    let test = "remote_context_counts_pod_pairs_exactly_and_retinas_pod_traffic_dashboard_shows_them";
    let _lock = support::kernel_lock();
    let Some(w) = World::new(test) else { return };
    let (otel, retina) = (w.node_endpoint(), w.node_endpoint());
    let Some(prom) = Prometheus::start(Options {
        targets: vec![ScrapeTarget::new("fovea", retina)],
        scrape_interval: Duration::from_secs(1),
        ..Options::default()
    }) else {
        return;
    };
    let connector = "    mode: remote\n    metrics_flush_interval: 1s\n";
    // Ready means the Kubernetes cache has listed everything too.
    let agent = Agent::start_in(&w.node.ns.name, &w.config(connector, otel, retina));
    let (db_ip, cart_ip, front_ip) = (w.db.v4(), w.cart.v4(), w.frontend.v4());
    // C -> B on 9998 is dropped by the node's firewall.
    w.node.ns.nft(&format!(
        "table inet fvtest {{
            counter dropped {{}}
            chain forward {{
                type filter hook forward priority 0; policy accept;
                ip saddr {front_ip} ip daddr {db_ip} udp dport 9998 counter name \"dropped\" drop
            }}
        }}"
    ));
    let _sink = w.db.ns.run_in(move || {
        (
            UdpSocket::bind(SocketAddr::new(db_ip.into(), 9999)).unwrap(),
            UdpSocket::bind(SocketAddr::new(db_ip.into(), 9998)).unwrap(),
        )
    });
    const N: u64 = 300;
    const S: usize = 200;
    const M: u64 = 120;
    // In bursts, so rates over the scrapes are above zero (irate needs two increasing samples).
    for _ in 0..3 {
        udp(&w.cart, SocketAddr::new(db_ip.into(), 9999), N / 3, S);
        udp(&w.frontend, SocketAddr::new(db_ip.into(), 9998), M / 3, S);
        // The node itself (no pod) to db, and db to the node: the dashboard's `unknown` panels.
        let gateway = w.db.addrs.a4;
        w.node.ns.run_in(move || {
            let s = UdpSocket::bind(SocketAddr::new(gateway.into(), 0)).unwrap();
            for _ in 0..10 {
                s.send_to(b"from the node", SocketAddr::new(db_ip.into(), 9999)).unwrap();
            }
        });
        udp(&w.db, SocketAddr::new(gateway.into(), 7), 10, 32);
        // New connections to the API server: handshakes at the uplink.
        w.api.drop_connections();
        std::thread::sleep(Duration::from_millis(1500));
    }
    tcp_connections(&w.cart, &w.db, 5);
    let (lc, lb) = (
        LinkStats::settled(|| w.node.link_stats(&w.cart.host_if)),
        LinkStats::settled(|| w.node.link_stats(&w.db.host_if)),
    );
    let (dropped, _) = w.node.ns.nft_counter("inet", "fvtest", "dropped");
    assert_eq!(dropped, M, "{test}: nft dropped every datagram of frontend's");
    wait_collections(INTERVAL, 3);

    let o = agent.scrape_at(otel);
    let (cart, db) = (cart_ip.to_string(), db_ip.to_string());
    // Everything cart's veth received came from cart (it transmits), everything db's veth
    // transmitted went to db (it receives).
    let from_cart = [("source_address", cart.as_str()), ("network_io_direction", "transmit")];
    assert_eq!(o.sum("network_forward_packets_total", &from_cart), lc.rx_packets, "{test}: cart's veth");
    let to_db = [("destination_address", db.as_str()), ("network_io_direction", "receive")];
    assert_eq!(o.sum("network_forward_packets_total", &to_db), lb.tx_packets, "{test}: db's veth");
    let pair =
        [("source_k8s_pod_name", "cart-5d8-x1"), ("destination_k8s_pod_name", "db-0"), ("destination_port", "9999")];
    let egress = [pair.as_slice(), &[("network_io_direction", "transmit")]].concat();
    assert_eq!(o.sum("network_forward_packets_total", &egress), N, "{test}: cart -> db leaving cart");
    assert_eq!(o.sum("network_forward_bytes_total", &egress), N * (S as u64 + 28), "{test}: IPv4 + UDP + payload");
    let ingress = [pair.as_slice(), &[("network_io_direction", "receive")]].concat();
    assert_eq!(o.sum("network_forward_packets_total", &ingress), N, "{test}: cart -> db entering db");
    let drops = [
        ("drop_reason", "NETFILTER_DROP"),
        ("source_k8s_pod_name", "frontend-0"),
        ("destination_k8s_pod_name", "db-0"),
        ("source_k8s_namespace_name", "web"),
    ];
    assert_eq!(o.sum("network_drop_packets_total", &drops), M, "{test}: drops per pod pair = nft");
    // Five connections, each SYN seen at cart's veth and at db's: Retina's flags have no direction.
    let syn = [("tcp_flag", "SYN"), ("source_k8s_pod_name", "cart-5d8-x1"), ("destination_k8s_pod_name", "db-0")];
    assert_eq!(o.sum("network_tcp_flags_total", &syn), 10, "{test}: SYNs");

    // Retina's names and exact label layout (retina-compat.md §2.2): every context label of both
    // ends, `unknown` where an end is not a pod, the first owner as the workload, upper-case
    // traffic direction.
    let r = agent.scrape_at(retina);
    let series: Vec<BTreeMap<String, String>> = r
        .samples("networkobservability_adv_forward_count")
        .into_iter()
        .filter(|(l, _)| {
            l.get("source_podname").map(String::as_str) == Some("cart-5d8-x1")
                && l.get("destination_port").map(String::as_str) == Some("9999")
        })
        .map(|(l, _)| labels_of(&l))
        .collect();
    let want = |direction: &str| -> BTreeMap<String, String> {
        [
            ("direction", direction),
            ("source_ip", cart.as_str()),
            ("source_namespace", "shop"),
            ("source_podname", "cart-5d8-x1"),
            ("source_workload_kind", "ReplicaSet"),
            ("source_workload_name", "cart-5d8"),
            ("source_service", "unknown"),
            ("source_port", "0"),
            ("destination_ip", db.as_str()),
            ("destination_namespace", "shop"),
            ("destination_podname", "db-0"),
            ("destination_workload_kind", "StatefulSet"),
            ("destination_workload_name", "db"),
            ("destination_service", "unknown"),
            ("destination_port", "9999"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    assert_eq!(series, vec![want("EGRESS"), want("INGRESS")], "{test}: Retina's label layout");
    let retina_pair =
        [("source_podname", "cart-5d8-x1"), ("destination_podname", "db-0"), ("destination_port", "9999")];
    assert_eq!(
        r.sum("networkobservability_adv_forward_count", &[retina_pair.as_slice(), &[("direction", "EGRESS")]].concat()),
        N
    );
    assert_eq!(
        r.sum("networkobservability_adv_drop_count", &[("source_podname", "frontend-0"), ("reason", "NETFILTER_DROP")]),
        M
    );
    assert_eq!(r.type_of("networkobservability_adv_forward_count").as_deref(), Some("counter"));
    let unknown_source = [
        ("destination_podname", "db-0"),
        ("source_podname", "unknown"),
        ("direction", "INGRESS"),
        ("destination_port", "9999"),
    ];
    assert_eq!(r.sum("networkobservability_adv_forward_count", &unknown_source), 30, "{test}: the node's datagrams");
    assert!(
        r.sum("networkobservability_node_apiserver_handshake_latency_ms_count", &[]) > 0,
        "{test}: API server handshakes"
    );

    // Every panel of Retina's Pod Traffic dashboard (deploy/grafana-dashboards/standard-pod-level.json).
    let pod = "db-0";
    let panels = [
        ("Outgoing Traffic", format!("sum(irate(networkobservability_adv_forward_count{{source_podname=~\"{pod}\"}}[1m]))")),
        ("Incoming Traffic", format!("sum(irate(networkobservability_adv_forward_count{{destination_podname=~\"{pod}\"}}[1m]))")),
        ("All Outgoing pps per pod", "sum by(source_podname) (irate(networkobservability_adv_forward_count{destination_podname!=\"unknown\", source_podname!=\"unknown\"}[1m]))".to_string()),
        ("All Incoming pps per pod", "sum by(destination_podname) (irate(networkobservability_adv_forward_count{destination_podname!=\"unknown\", source_podname!=\"unknown\"}[1m]))".to_string()),
        ("Dropped pps per source pod", "sum by(source_podname) (irate(networkobservability_adv_drop_count{destination_podname!=\"unknown\", source_podname!=\"unknown\"}[1m]))".to_string()),
        ("Dropped pps per Destination pod", "sum by(destination_podname) (irate(networkobservability_adv_forward_count{destination_podname!=\"unknown\", source_podname!=\"unknown\"}[1m]))".to_string()),
        ("All Outgoing pps per pod (unknown)", "sum by(source_ip) (irate(networkobservability_adv_forward_count{source_podname=\"unknown\"}[1m]))".to_string()),
        ("All Incoming pps per pod (unknown)", "sum by(destination_ip) (irate(networkobservability_adv_forward_count{destination_podname=\"unknown\"}[1m]))".to_string()),
        ("Top 10 Pods Outgoing traffic", "topk(10, sum by(source_podname) (irate(networkobservability_adv_forward_count{source_podname!=\"unknown\"}[5m])))".to_string()),
        ("Top 10 Pods Incoming traffic", "topk(10, sum by(destination_podname) (irate(networkobservability_adv_forward_count{destination_podname!=\"unknown\"}[5m])))".to_string()),
        ("API server latency", "avg by(instance) (sum by(le, instance) (rate(networkobservability_node_apiserver_handshake_latency_ms_bucket[1m])))".to_string()),
    ];
    for (title, query) in &panels {
        let got = prom.wait_for(query, Duration::from_secs(30), |s| !s.is_empty());
        assert!(!got.is_empty(), "{test}: panel `{title}` is empty: {query}");
    }
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
}

/// Samples of `name` as (pod, direction) -> value, for local-context series.
fn per_pod(e: &Exposition, name: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (l, v) in e.samples(name) {
        let pod = l.get("k8s_pod_name").cloned().unwrap_or_default();
        let direction = l.get("network_io_direction").cloned().unwrap_or_default();
        *out.entry((pod, direction)).or_insert(0) += v as u64;
    }
    out
}

fn expect(pairs: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    pairs.iter().map(|(p, d, v)| ((p.to_string(), d.to_string()), *v)).collect()
}

/// Polls `check` on `e()` every 100 ms for up to 15 s; returns how long it took.
fn until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(15), "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Adds `retina.sh: observe` to a stored object's annotations and stores it again.
fn annotate(api: &ApiServer, plural: &str, mut object: serde_json::Value) {
    object["metadata"]["annotations"]["retina.sh"] = serde_json::Value::from("observe");
    api.apply_json(plural, object);
}

/// Local context: one sample per selected pod with its own direction. One agent runs two
/// connectors: one follows Retina's MetricsConfiguration (its config applies until a CR exists;
/// a CR narrowing the namespaces and dropping `forward_bytes` applies without a restart, the
/// unchanged `forward_count` keeps counting), the other Retina's `retina.sh: observe` annotations
/// on a pod and on a namespace. Every value equals what the pods' veths carried.
#[test]
fn local_context_follows_the_metrics_configuration_and_annotations_without_restart() {
    let test = "local_context_follows_the_metrics_configuration_and_annotations_without_restart";
    let _lock = support::kernel_lock();
    let Some(w) = World::new(test) else { return };
    let (by_cr, by_annotations, retina) = (w.node_endpoint(), w.node_endpoint(), w.node_endpoint());
    let config = format!(
        "{head}connectors:
  flowmetrics/cr:
    mode: local
    selection: metrics_configuration
    metrics: [forward_count, forward_bytes]
    labels: {{source: [ip, namespace, podname], destination: [ip, namespace, podname]}}
    metrics_flush_interval: 500ms
  flowmetrics/annotations: {{mode: local, selection: annotations, metrics_flush_interval: 500ms}}
exporters:
  prometheus/cr: {{endpoint: \"{by_cr}\", metric_expiration: 1s}}
  prometheus/annotations: {{endpoint: \"{by_annotations}\", metric_expiration: 1s}}
  prometheus/retina: {{endpoint: \"{retina}\", naming: retina}}
service:
  pipelines:
    flows: {{receivers: [flows], processors: [k8sattributes], exporters: [flowmetrics/cr, flowmetrics/annotations]}}
    metrics/cr: {{receivers: [flowmetrics/cr], exporters: [prometheus/cr]}}
    metrics/annotations: {{receivers: [flowmetrics/annotations], exporters: [prometheus/annotations, prometheus/retina]}}
",
        head = w.head(FLOWS)
    );
    let agent = Agent::start_in(&w.node.ns.name, &config);
    let db_ip = w.db.v4();
    let _sink = w.db.ns.run_in(move || UdpSocket::bind(SocketAddr::new(db_ip.into(), 9999)).unwrap());
    const N: u64 = 100;
    let traffic = || {
        udp(&w.cart, SocketAddr::new(db_ip.into(), 9999), N, 100);
        udp(&w.frontend, SocketAddr::new(db_ip.into(), 9999), N, 100);
        wait_collections(INTERVAL, 2);
    };
    let stats = |p: &NodePod| LinkStats::settled(|| w.node.link_stats(&p.host_if));

    // No MetricsConfiguration yet: the config's selection (every namespace), both metrics.
    traffic();
    let (cart, db, front) = (stats(&w.cart), stats(&w.db), stats(&w.frontend));
    assert_eq!((cart.rx_packets, front.rx_packets, db.tx_packets), (N, N, 2 * N), "{test}: quiet links");
    let fold = |name: &str, want: BTreeMap<(String, String), u64>| {
        let mut last = BTreeMap::new();
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            until(&format!("{test}: {name}"), || {
                last = per_pod(&agent.scrape_at(by_cr), name);
                last == want
            })
        }));
        assert!(waited.is_ok(), "{test}: {name}: want {want:?}, last {last:?}");
    };
    fold(
        "network_forward_packets_total",
        expect(&[("cart-5d8-x1", "transmit", N), ("db-0", "receive", 2 * N), ("frontend-0", "transmit", N)]),
    );
    fold(
        "network_forward_bytes_total",
        // The veths count Ethernet frames, fovea IP packets: 14 bytes of header less each.
        expect(&[
            ("cart-5d8-x1", "transmit", cart.rx_bytes - 14 * N),
            ("db-0", "receive", db.tx_bytes - 14 * 2 * N),
            ("frontend-0", "transmit", front.rx_bytes - 14 * N),
        ]),
    );
    // Nothing is annotated: the annotations connector observes no pod.
    assert!(agent.scrape_at(by_annotations).samples("network_forward_packets_total").is_empty(), "{test}");
    let series = agent.scrape_at(by_cr).samples("network_forward_packets_total");
    let labels: Vec<BTreeMap<String, String>> = series.iter().map(|(l, _)| labels_of(l)).collect();
    assert!(
        labels.contains(
            &[
                ("k8s_namespace_name", "shop"),
                ("k8s_pod_ip", db_ip.to_string().as_str()),
                ("k8s_pod_name", "db-0"),
                ("network_io_direction", "receive"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        )
    );

    // A MetricsConfiguration: only `shop`, only forward_count with the same labels and TTL.
    w.api.apply_json(
        "metricsconfigurations",
        serde_json::json!({
            "apiVersion": "retina.sh/v1alpha1", "kind": "MetricsConfiguration",
            "metadata": {"name": "shop-only", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "contextOptions": [{"metricName": "forward_count", "sourceLabels": ["ip", "namespace", "podname"],
                                    "destinationLabels": ["ip", "namespace", "podname"], "ttl": "5m"}],
                "namespaces": {"include": ["shop"]}
            }
        }),
    );
    let reconfigured = until(&format!("{test}: the CR applies"), || {
        agent
            .scrape_at(agent.telemetry)
            .value("fovea_flowmetrics_reconfigurations_total", &[("connector", "flowmetrics/cr")])
            == Some(1.0)
    });
    let gone = until(&format!("{test}: forward_bytes and frontend's series leave the output"), || {
        let e = agent.scrape_at(by_cr);
        e.samples("network_forward_bytes_total").is_empty()
            && per_pod(&e, "network_forward_packets_total").keys().all(|(pod, _)| pod != "frontend-0")
    });
    eprintln!("{test}: CR applied after {reconfigured:?}, removed series gone from the exporter after {gone:?}");

    // Annotations: the db pod, and the namespace `web` (so frontend-0).
    annotate(&w.api, "pods", w.api.get::<k8s_openapi::api::core::v1::Pod>("shop", "db-0").expect("db-0"));
    annotate(&w.api, "namespaces", w.api.get::<k8s_openapi::api::core::v1::Namespace>("", "web").expect("web"));
    std::thread::sleep(Duration::from_secs(1));
    traffic();
    // forward_count kept counting across the change; frontend (web) is no longer selected.
    fold("network_forward_packets_total", expect(&[("cart-5d8-x1", "transmit", 2 * N), ("db-0", "receive", 4 * N)]));
    assert!(
        agent.scrape_at(by_cr).samples("network_forward_bytes_total").is_empty(),
        "{test}: forward_bytes stays off"
    );
    // The annotated pod and the pod of the annotated namespace, from the second round only.
    let annotated = expect(&[("db-0", "receive", 2 * N), ("frontend-0", "transmit", N)]);
    until(&format!("{test}: annotated pods"), || {
        per_pod(&agent.scrape_at(by_annotations), "network_forward_packets_total") == annotated
    });
    // Retina's local-context layout (retina-compat.md §2.2): unprefixed labels, Retina's default
    // labels of annotation mode, lower-case direction.
    let r = agent.scrape_at(retina);
    let db_series: Vec<(BTreeMap<String, String>, u64)> = r
        .samples("networkobservability_adv_forward_count")
        .into_iter()
        .filter(|(l, _)| l.get("podname").map(String::as_str) == Some("db-0"))
        .map(|(l, v)| (labels_of(&l), v as u64))
        .collect();
    let want: BTreeMap<String, String> = [
        ("direction", "ingress"),
        ("ip", db_ip.to_string().as_str()),
        ("namespace", "shop"),
        ("podname", "db-0"),
        ("workload_kind", "StatefulSet"),
        ("workload_name", "db"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(db_series, vec![(want, 2 * N)], "{test}: Retina's local layout");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
}

/// `per_source` UDP datagrams to `to`:9999 from each of `sources` (spoofed addresses, our own
/// IPv4 header), sent from `from`.
fn spoofed_udp(from: &NodePod, sources: &[Ipv4Addr], to: Ipv4Addr, per_source: u64) {
    let packets: Vec<Vec<u8>> = sources
        .iter()
        .map(|src| {
            // IPv4 header (20) + UDP header (8) + 4 bytes of payload; UDP checksum 0 (none).
            let mut p = vec![0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0];
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&to.octets());
            p.extend_from_slice(&[0x9c, 0x40, 0x27, 0x0f, 0, 12, 0, 0, b'f', b'l', b'o', b'o']);
            p
        })
        .collect();
    from.ns.run_in(move || support::netns::raw_send(&packets, to.into(), per_source));
}

/// Cardinality: a flood from thousands of spoofed addresses into a pod fills `max_series` and
/// folds exactly the excess into the one overflow series (every other series holds exactly what
/// its address sent, the sum of all equals the veths' counters); idle series (a deleted pod's,
/// the flood's) are removed after `metric_expiration` while a live pod's keep counting.
#[test]
fn a_spoofed_flood_stays_within_max_series_with_exact_totals_and_idle_series_expire() {
    let test = "a_spoofed_flood_stays_within_max_series_with_exact_totals_and_idle_series_expire";
    let _lock = support::kernel_lock();
    let Some(w) = World::new(test) else { return };
    let out = w.node_endpoint();
    const MAX: usize = 50;
    let config = format!(
        "{head}connectors:
  flowmetrics:
    mode: remote
    metrics: [forward_count]
    labels: {{source: [ip, podname], destination: [ip, podname]}}
    max_series: {MAX}
    metric_expiration: 10s
    metrics_flush_interval: 500ms
exporters:
  prometheus/pods: {{endpoint: \"{out}\", metric_expiration: 1s}}
service:
  pipelines:
    flows: {{receivers: [flows], processors: [k8sattributes], exporters: [flowmetrics]}}
    metrics: {{receivers: [flowmetrics], exporters: [prometheus/pods]}}
",
        head = w.head(FLOWS)
    );
    let agent = Agent::start_in(&w.node.ns.name, &config);
    let db_ip = w.db.v4();
    // Bound, so nothing answers the spoofed addresses with ICMP.
    let _sink = w.db.ns.run_in(move || UdpSocket::bind(SocketAddr::new(db_ip.into(), 9999)).unwrap());
    let to_db = SocketAddr::new(db_ip.into(), 9999);
    // Real pods first: their series exist before the flood.
    udp(&w.cart, to_db, 10, 50);
    udp(&w.frontend, to_db, 10, 50);
    wait_collections(INTERVAL, 2);

    const SOURCES: u16 = 3000;
    const EACH: u64 = 3;
    // Test addresses come from all of 198.18.0.0/15, so the range may hold this world's own
    // links: a source spoofing a real pod (or a host end) would add to that pod's series.
    let mut ours: Vec<u32> = [&w.cart, &w.db, &w.frontend].iter().map(|p| u32::from(p.v4()) >> 2).collect();
    ours.push(u32::from(w.uplink.addrs.a4) >> 2);
    let sources: Vec<Ipv4Addr> = (0u32..)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + i))
        .filter(|a| !ours.contains(&(u32::from(*a) >> 2)))
        .take(SOURCES as usize)
        .collect();
    spoofed_udp(&w.cart, &sources, db_ip, EACH);
    wait_collections(INTERVAL, 2);
    let (cart, db) = (
        LinkStats::settled(|| w.node.link_stats(&w.cart.host_if)),
        LinkStats::settled(|| w.node.link_stats(&w.db.host_if)),
    );
    let kernel = cart.rx_packets + db.tx_packets + 10;
    let name = "network_forward_packets_total";
    let mut last = Vec::new();
    let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        until(&format!("{test}: totals"), || {
            last = agent.scrape_at(out).samples(name);
            last.iter().map(|(_, v)| *v as u64).sum::<u64>() == kernel
        })
    }));
    let total: u64 = last.iter().map(|(_, v)| *v as u64).sum();
    assert!(
        settled.is_ok(),
        "{test}: every packet in some series: {total} != veths {kernel} ({cart:?} {db:?}): {}",
        agent.output()
    );
    let (overflow, normal): (Vec<_>, Vec<_>) =
        last.iter().partition(|(l, _)| l.get("otel_metric_overflow").map(String::as_str) == Some("true"));
    assert_eq!(normal.len(), MAX, "{test}: series capped");
    assert_eq!(overflow.len(), 1, "{test}: one overflow series");
    // Every series holds exactly what its end sent; the overflow series exactly the rest.
    for (l, v) in &normal {
        let want = if l.get("source_k8s_pod_name").map(String::as_str) == Some("unknown") { EACH } else { 10 };
        assert_eq!(*v as u64, want, "{test}: {l:?}");
    }
    let in_series: u64 = normal.iter().map(|(_, v)| *v as u64).sum();
    assert_eq!(overflow[0].1 as u64, kernel - in_series, "{test}: the excess");
    let own = agent.scrape_at(agent.telemetry);
    let figure = |n: &str| own.value(n, &[("connector", "flowmetrics"), ("metric", "network.forward.packets")]);
    assert_eq!(figure("fovea_flowmetrics_series"), Some(MAX as f64), "{test}");
    assert!(figure("fovea_flowmetrics_overflow_points_total").is_some_and(|p| p > 0.0), "{test}");

    // cart is deleted and silent; frontend keeps sending: after the expiration only frontend's
    // series (both its veth's and db's observation) are left, still counting from before.
    assert!(w.api.delete::<k8s_openapi::api::core::v1::Pod>("shop", "cart-5d8-x1"));
    for _ in 0..10 {
        udp(&w.frontend, to_db, 1, 50);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let left = until(&format!("{test}: idle series expire"), || {
        let e = agent.scrape_at(out);
        let s = e.samples(name);
        s.len() == 2
            && s.iter()
                .all(|(l, v)| l.get("source_k8s_pod_name").map(String::as_str) == Some("frontend-0") && *v as u64 == 20)
    });
    eprintln!("{test}: idle series gone {left:?} after the last check");
    let own = agent.scrape_at(agent.telemetry);
    let expired = own.value(
        "fovea_flowmetrics_expired_total",
        &[("connector", "flowmetrics"), ("metric", "network.forward.packets")],
    );
    // The overflow series goes too, but is not one of the capped series the figure counts.
    assert_eq!(expired, Some((MAX - 2) as f64), "{test}: cart's two and the flood's series expired");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
}

/// Pod-level DNS (Retina's `adv_dns_request_count` / `adv_dns_response_count`): dnsmasq in the
/// `db-0` pod answers `dig` from `cart`; every query counts once for cart with both ends named,
/// every response once with its code, as dig saw them.
#[test]
fn pod_level_dns_counts_each_message_once_with_both_ends_named() {
    let test = "pod_level_dns_counts_each_message_once_with_both_ends_named";
    if !support::require_tools(test, &["dnsmasq", "dig", "ss"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let Some(w) = World::new(test) else { return };
    let retina = w.node_endpoint();
    let config = format!(
        "{head}connectors:
  flowmetrics: {{mode: remote, metrics_flush_interval: 500ms, labels: {{source: [podname], destination: [podname]}}}}
exporters:
  prometheus/retina: {{endpoint: \"{retina}\", naming: retina}}
service:
  pipelines:
    flows: {{receivers: [dns], processors: [k8sattributes], exporters: [flowmetrics]}}
    metrics: {{receivers: [flowmetrics], exporters: [prometheus/retina]}}
",
        head = w.head("  dns: {collection_interval: 1s}\n")
    );
    let agent = Agent::start_in(&w.node.ns.name, &config);
    until(&format!("{test}: the dns receiver attaches"), || agent.stderr().contains("dns attached"));
    let _dnsmasq = support::dns::Dnsmasq::start(&w.db.ns, &[w.db.v4().into()]);
    const N: usize = 6;
    const M: usize = 4;
    let mut lines = support::dns::repeat("web.test A", N);
    lines.extend(support::dns::repeat("missing.test A", M));
    let seen = support::dns::dig(Some(&w.cart.ns), &w.db.v4().to_string(), &lines, &[]);
    assert_eq!(seen.statuses.get("NOERROR"), Some(&(N as u64)), "{test}: dig: {seen:?}");
    assert_eq!(seen.statuses.get("NXDOMAIN"), Some(&(M as u64)), "{test}: dig: {seen:?}");
    let cart_asks = [("source_podname", "cart-5d8-x1"), ("destination_podname", "db-0"), ("query_type", "A")];
    let db_answers = [("source_podname", "db-0"), ("destination_podname", "cart-5d8-x1"), ("query_type", "A")];
    let mut last = String::new();
    let counted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        until(&format!("{test}: requests"), || {
            let e = agent.scrape_at(retina);
            let n = e.sum("networkobservability_adv_dns_request_count", &cart_asks);
            last = e.0;
            n == (N + M) as u64
        })
    }));
    assert!(counted.is_ok(), "{test}: requests not counted:\n{last}\n{}", agent.output());
    let r = agent.scrape_at(retina);
    let answered = [db_answers.as_slice(), &[("return_code", "NOERROR"), ("num_response", "1")]].concat();
    assert_eq!(r.sum("networkobservability_adv_dns_response_count", &answered), N as u64, "{test}: {}", r.0);
    let missing = [db_answers.as_slice(), &[("return_code", "NXDOMAIN")]].concat();
    assert_eq!(r.sum("networkobservability_adv_dns_response_count", &missing), M as u64, "{test}");
    assert_eq!(r.sum("networkobservability_adv_dns_request_count", &[]), (N + M) as u64, "{test}: nothing else");
    assert_eq!(r.sum("networkobservability_adv_dns_response_count", &[]), (N + M) as u64, "{test}: nothing else");
    let (status, out) = agent.terminate();
    assert!(status.success(), "{test}: clean exit: {out}");
}
