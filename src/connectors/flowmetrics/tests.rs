//! Unit tests: which records count where, labels per mode, `unknown`, namespaces, the series cap,
//! expiry and reconfiguration, on hand-made records.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::{Direction, FlowKind, FlowRecord, MetricData, ObservationPoint, TcpFlagCounts};

const NODE: &str = "node-1";
const A: &str = "198.18.0.10";
const B: &str = "198.18.0.20";
const EXT: &str = "198.19.0.1";

fn resource() -> Arc<Resource> {
    Arc::new(Resource { attributes: Attributes::from_pairs([(attr::K8S_NODE_NAME, NODE)]) })
}

/// Kubernetes attributes of a pod end, as k8sattributes adds them.
fn pod(end: &str, name: &str, namespace: &str, node: &str) -> Vec<(String, String)> {
    vec![
        (format!("{end}.k8s.pod.name"), name.to_string()),
        (format!("{end}.k8s.namespace.name"), namespace.to_string()),
        (format!("{end}.k8s.node.name"), node.to_string()),
        (format!("{end}.k8s.workload.kind"), "Deployment".to_string()),
        (format!("{end}.k8s.workload.name"), format!("{name}-app")),
        (format!("{end}.k8s.replicaset.name"), format!("{name}-app-5d8")),
    ]
}

fn forward(
    src: &str,
    dst: &str,
    dir: Direction,
    point: ObservationPoint,
    packets: u64,
    labels: &[Vec<(String, String)>],
) -> FlowRecord {
    let mut r = FlowRecord::new(FlowKind::Forward, src.parse::<IpAddr>().unwrap(), dst.parse().unwrap());
    r.protocol = 6;
    r.source_port = 0;
    r.destination_port = 8080;
    r.direction = dir;
    r.observation_point = point;
    r.packets = packets;
    r.bytes = packets * 100;
    r.tcp_flag_counts = TcpFlagCounts([1, 0, packets as u32 - 1, 0, 0, 0, 0, 0, 0]);
    r.attributes = Attributes::from_pairs(labels.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
    r
}

fn batch(records: Vec<FlowRecord>) -> FlowBatch {
    FlowBatch { resource: resource(), records, acks: Default::default() }
}

fn connector(edit: impl FnOnce(&mut FlowMetricsConfig)) -> FlowMetrics {
    let mut c = FlowMetricsConfig::default();
    edit(&mut c);
    FlowMetrics::new(c, resource())
}

/// Points of `metric` as sorted `k=v` lists -> value.
fn points(m: &mut FlowMetrics, metric: &str) -> Vec<(String, i64)> {
    let batch = m.flush(1_000);
    let mut out = Vec::new();
    for (_, _, metric_data) in batch.iter_metrics() {
        if metric_data.name != metric {
            continue;
        }
        let MetricData::Sum(sum) = &metric_data.data else { panic!("{metric} is a sum") };
        for p in &sum.points {
            let key: Vec<String> = p.attributes.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect();
            out.push((key.join(","), p.value.as_f64() as i64));
        }
    }
    out.sort();
    out
}

#[test]
fn remote_mode_counts_each_observation_with_both_ends_and_pod_relative_direction() {
    let mut m = connector(|c| {
        c.labels.source = vec![LabelOption::Podname, LabelOption::Ip];
        c.labels.destination = vec![LabelOption::Podname];
    });
    let labels = [pod("source", "a", "shop", NODE), pod("destination", "b", "shop", NODE)];
    m.fold(
        &batch(vec![
            // A -> B seen leaving A (host side receives) and entering B (host side transmits).
            forward(A, B, Direction::Receive, ObservationPoint::Pod, 7, &labels),
            forward(A, B, Direction::Transmit, ObservationPoint::Pod, 7, &labels),
            // The same packets at the uplink do not count again.
            forward(A, B, Direction::Transmit, ObservationPoint::Uplink, 7, &labels),
        ]),
        500,
    );
    let key = |dir: &str| {
        format!("destination.k8s.pod.name=b,network.io.direction={dir},source.address={A},source.k8s.pod.name=a")
    };
    assert_eq!(points(&mut m, "network.forward.packets"), vec![(key("receive"), 7), (key("transmit"), 7)]);
    let flags = points(&mut m, "network.tcp.flags");
    assert_eq!(
        flags,
        vec![
            (format!("destination.k8s.pod.name=b,source.address={A},source.k8s.pod.name=a,tcp.flag=ACK"), 12),
            (format!("destination.k8s.pod.name=b,source.address={A},source.k8s.pod.name=a,tcp.flag=SYN"), 2),
        ],
        "flags have no direction, as in Retina"
    );
}

#[test]
fn unresolved_ends_are_unknown_and_workloads_keep_the_first_owner() {
    let mut m = connector(|c| {
        c.labels.source = vec![LabelOption::Namespace, LabelOption::Workload, LabelOption::Port];
        c.labels.destination = vec![LabelOption::Namespace, LabelOption::Service];
    });
    m.fold(
        &batch(vec![forward(
            A,
            EXT,
            Direction::Receive,
            ObservationPoint::Pod,
            3,
            &[pod("source", "a", "shop", NODE)],
        )]),
        1,
    );
    assert_eq!(
        points(&mut m, "network.forward.bytes"),
        vec![(
            "destination.k8s.namespace.name=unknown,destination.k8s.service.name=unknown,network.io.direction=transmit,\
             source.k8s.namespace.name=shop,source.k8s.replicaset.name=a-app-5d8,source.k8s.workload.kind=Deployment,\
             source.k8s.workload.name=a-app,source.port=0"
                .to_string(),
            300
        )]
    );
}

#[test]
fn local_mode_counts_each_pod_of_this_node_once_with_its_own_direction() {
    let mut m = connector(|c| {
        c.mode = Mode::Local;
        c.labels.source = vec![LabelOption::Podname, LabelOption::Ip];
    });
    let labels = [pod("source", "a", "shop", NODE), pod("destination", "b", "shop", "node-2")];
    let mut drop = forward(A, B, Direction::Transmit, ObservationPoint::Unknown, 2, &labels);
    drop.kind = FlowKind::Drop;
    drop.drop_reason = Some("NETFILTER_DROP".into());
    m.fold(
        &batch(vec![
            forward(A, B, Direction::Receive, ObservationPoint::Pod, 5, &labels),
            forward(
                B,
                A,
                Direction::Transmit,
                ObservationPoint::Pod,
                4,
                &[pod("source", "b", "shop", "node-2"), pod("destination", "a", "shop", NODE)],
            ),
            drop,
        ]),
        1,
    );
    assert_eq!(
        points(&mut m, "network.forward.packets"),
        vec![
            (format!("k8s.pod.ip={A},k8s.pod.name=a,network.io.direction=receive"), 4),
            (format!("k8s.pod.ip={A},k8s.pod.name=a,network.io.direction=transmit"), 5),
        ]
    );
    assert_eq!(
        points(&mut m, "network.drop.packets"),
        vec![(format!("drop.reason=NETFILTER_DROP,k8s.pod.ip={A},k8s.pod.name=a,network.io.direction=transmit"), 2)],
        "b is on another node: only a is a local endpoint of the drop"
    );
}

#[test]
fn namespaces_select_flows_by_either_end() {
    let mut m = connector(|c| {
        c.labels.source = vec![LabelOption::Podname];
        c.labels.destination = vec![];
        c.namespaces.include = vec!["shop".into()];
    });
    m.fold(
        &batch(vec![
            forward(
                A,
                B,
                Direction::Receive,
                ObservationPoint::Pod,
                1,
                &[pod("source", "a", "other", NODE), pod("destination", "b", "shop", NODE)],
            ),
            forward(
                B,
                A,
                Direction::Receive,
                ObservationPoint::Pod,
                1,
                &[pod("source", "c", "other", NODE), pod("destination", "d", "other", NODE)],
            ),
        ]),
        1,
    );
    assert_eq!(
        points(&mut m, "network.forward.packets"),
        vec![("network.io.direction=transmit,source.k8s.pod.name=a".to_string(), 1)]
    );
}

#[test]
fn a_narrower_namespace_selection_removes_the_series_of_pods_no_longer_observed_at_once() {
    for mode in [Mode::Local, Mode::Remote] {
        let mut m = connector(|c| {
            c.mode = mode;
            c.labels.source = vec![LabelOption::Podname, LabelOption::Namespace];
            c.labels.destination = vec![LabelOption::Podname, LabelOption::Namespace];
            c.metrics = vec![MetricName::ForwardCount];
        });
        let (shop, web) = (pod("source", "a", "shop", NODE), pod("source", "c", "web", NODE));
        m.fold(
            &batch(vec![
                forward(A, EXT, Direction::Receive, ObservationPoint::Pod, 1, std::slice::from_ref(&shop)),
                forward(B, EXT, Direction::Receive, ObservationPoint::Pod, 2, std::slice::from_ref(&web)),
            ]),
            1,
        );
        let mut spec = m.spec.clone();
        spec.namespaces = spec::Namespaces::Include(vec!["shop".into()]);
        m.apply(spec);
        let got = points(&mut m, "network.forward.packets");
        assert_eq!(got.len(), 1, "{mode:?}: only shop's pod stays: {got:?}");
        assert!(got[0].0.contains("k8s.pod.name=a") && got[0].1 == 1, "{mode:?}: {got:?}");
    }
}

#[test]
fn a_full_table_folds_the_excess_into_one_overflow_series_and_totals_stay_exact() {
    let mut m = connector(|c| {
        c.max_series = 3;
        c.labels.source = vec![LabelOption::Ip];
        c.labels.destination = vec![];
        c.metrics = vec![MetricName::ForwardCount];
    });
    let records: Vec<FlowRecord> = (1..=10)
        .map(|i| forward(&format!("198.18.1.{i}"), B, Direction::Receive, ObservationPoint::Pod, i, &[]))
        .collect();
    m.fold(&batch(records), 1);
    let got = points(&mut m, "network.forward.packets");
    assert_eq!(got.len(), 4);
    assert_eq!(got.iter().map(|(_, v)| v).sum::<i64>(), 55, "every packet is in some series");
    assert!(got.contains(&("otel.metric.overflow=true".to_string(), 4 + 5 + 6 + 7 + 8 + 9 + 10)));
    assert_eq!(m.tables[&MetricName::ForwardCount].series.overflowed(), 7);
}

#[test]
fn series_expire_and_a_new_selection_keeps_unchanged_metrics_counting() {
    let mut m = connector(|c| {
        c.metric_expiration = Duration::from_nanos(100);
        c.labels.source = vec![LabelOption::Ip];
        c.labels.destination = vec![];
    });
    m.fold(&batch(vec![forward(A, B, Direction::Receive, ObservationPoint::Pod, 2, &[])]), 1_000);
    assert!(m.flush(1_050).data_points() > 0);
    // Reconfigure: drop bytes, keep packets.
    let mut spec = m.spec.clone();
    spec.metrics.remove(&MetricName::ForwardBytes);
    m.apply(spec);
    m.fold(&batch(vec![forward(A, B, Direction::Receive, ObservationPoint::Pod, 3, &[])]), 1_060);
    let batch = m.flush(1_100);
    let names: Vec<&str> = batch.iter_metrics().map(|(_, _, m)| m.name.as_str()).collect();
    assert!(!names.contains(&"network.forward.bytes"));
    let MetricData::Sum(sum) =
        &batch.iter_metrics().find(|(_, _, m)| m.name == "network.forward.packets").unwrap().2.data
    else {
        panic!()
    };
    assert_eq!(sum.points[0].value.as_f64(), 5.0, "the packets series kept counting across the change");
    // Not updated for longer than the expiration: gone.
    assert_eq!(m.flush(1_300).iter_metrics().count(), 0);
    assert_eq!(m.tables[&MetricName::ForwardCount].expired, 1);
}

#[test]
fn basic_mode_has_only_the_metrics_own_attributes() {
    let mut m = connector(|c| c.mode = Mode::Basic);
    let mut retrans =
        forward(A, B, Direction::Transmit, ObservationPoint::Unknown, 1, &[pod("source", "a", "shop", NODE)]);
    retrans.kind = FlowKind::Retransmit;
    m.fold(&batch(vec![retrans.clone(), retrans]), 1);
    assert_eq!(points(&mut m, "network.tcp.retransmits"), vec![("network.io.direction=transmit".to_string(), 2)]);
}

#[test]
fn api_server_handshakes_rtt_and_unanswered_syns_are_counted_once_where_they_are_seen() {
    use crate::model::{LatencySummary, TcpFlag};
    const APISERVER: &str = "198.18.255.1";
    let mut m = connector(|c| c.apiserver_addresses = vec![APISERVER.parse().unwrap()]);
    let flags = |syn: u32, synack: u32| {
        let mut f = TcpFlagCounts::default();
        f.0[TcpFlag::Syn as usize] = syn;
        f.0[TcpFlag::SynAck as usize] = synack;
        f
    };
    // The node's SYNs leave through the uplink; the API server's SYN-ACKs enter through it with
    // the handshakes measured there; the same SYN-ACK seen again at a pod interface is not counted.
    let mut out = forward(A, APISERVER, Direction::Transmit, ObservationPoint::Uplink, 5, &[]);
    out.tcp_flag_counts = flags(5, 0);
    out.rtt = LatencySummary::one(2_000_000);
    let mut back = forward(APISERVER, A, Direction::Receive, ObservationPoint::Uplink, 4, &[]);
    back.tcp_flag_counts = flags(0, 4);
    back.handshake = LatencySummary { count: 4, sum_ns: 4_000_000, min_ns: 400_000, max_ns: 1_600_000 };
    let mut again = back.clone();
    again.observation_point = ObservationPoint::Pod;
    again.direction = Direction::Transmit;
    m.fold(&batch(vec![out, back, again]), 10);
    let hist = |m: &mut FlowMetrics, name: &str, now: u64| {
        let batch = m.flush(now);
        batch.iter_metrics().find(|(_, _, x)| x.name == name).map(|(_, _, x)| match &x.data {
            MetricData::Histogram(h) => (h.points[0].count, h.points[0].sum, h.points[0].bucket_counts.clone()),
            _ => panic!("{name} is a histogram"),
        })
    };
    let (count, sum, buckets) = hist(&mut m, "network.apiserver.handshake.duration", 20).unwrap();
    assert_eq!((count, (sum * 1e9).round()), (4, 4_000_000.0));
    // 0.4 ms and 1.6 ms to their own buckets (<= 0.5 ms, <= 2.5 ms), the two others at the mean (1 ms).
    let bound = |s: f64| semconv::LATENCY_BOUNDS_S.iter().position(|b| *b == s).unwrap();
    assert_eq!((buckets[bound(0.0005)], buckets[bound(0.001)], buckets[bound(0.0025)]), (1, 2, 1));
    assert_eq!(buckets.iter().sum::<u64>(), 4);
    let (count, sum, _) = hist(&mut m, "network.apiserver.rtt", 30).unwrap();
    assert_eq!((count, sum), (1, 0.002));
    // One SYN of the five was never answered: counted one flush later (answers may still come).
    assert_eq!(points(&mut m, "network.apiserver.no_response"), vec![(String::new(), 1)]);
    assert_eq!(points(&mut m, "network.apiserver.no_response"), vec![(String::new(), 1)], "counted once");
}

#[test]
fn a_metrics_configuration_becomes_a_selection_as_retina_validates_it() {
    use crate::k8s::{ContextOption, MetricsConfiguration};
    let option = |metric: &str, source: &[&str], ttl: &str| ContextOption {
        metric_name: metric.to_string(),
        source_labels: source.iter().map(|s| s.to_string()).collect(),
        destination_labels: vec!["PodName".to_string(), "pod".to_string()],
        additional_labels: vec!["direction".to_string()],
        ttl: ttl.to_string(),
    };
    let config = MetricsConfiguration {
        name: "retina".into(),
        created: "2026-01-01T00:00:00Z".into(),
        context_options: vec![
            option("forward_count", &["ip", "podname", "port", "zone"], "24h"),
            option("drop_count", &[], ""),
        ],
        include: Some(vec!["default".to_string(), "kube-system".to_string()]),
        exclude: None,
    };
    let spec = Spec::from_metrics_configuration(Mode::Remote, &config).unwrap();
    assert_eq!(spec.metrics.keys().copied().collect::<Vec<_>>(), vec![MetricName::ForwardCount, MetricName::DropCount]);
    let forward = spec.metrics[&MetricName::ForwardCount];
    assert_eq!(
        forward.source,
        LabelSet::of([LabelOption::Ip, LabelOption::Podname, LabelOption::Port]),
        "zone is ignored, as Retina ignores it"
    );
    assert_eq!(forward.destination, LabelSet::of([LabelOption::Podname]), "case-insensitive; `pod` is ignored");
    assert_eq!(forward.ttl, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(spec.metrics[&MetricName::DropCount].ttl, None);
    assert!(spec.namespaces.admits(Some("kube-system")) && !spec.namespaces.admits(Some("shop")));

    let refused = |edit: &dyn Fn(&mut MetricsConfiguration)| {
        let mut c = config.clone();
        edit(&mut c);
        Spec::from_metrics_configuration(Mode::Remote, &c).unwrap_err()
    };
    assert!(refused(&|c| c.exclude = Some(vec![])).contains("exactly one of include and exclude"));
    assert!(refused(&|c| c.include = None).contains("exactly one of include and exclude"));
    assert!(refused(&|c| c.context_options[0].metric_name = "requests_total".into()).contains("requests_total"));
    assert!(refused(&|c| c.context_options[0].ttl = "1 day".into()).contains("ttl of forward_count"));
}

fn dns(src: &str, dst: &str, response: bool, labels: &[Vec<(String, String)>]) -> FlowRecord {
    let mut r = FlowRecord::new(FlowKind::Dns, src.parse::<IpAddr>().unwrap(), dst.parse().unwrap());
    r.protocol = 17;
    (r.source_port, r.destination_port) = if response { (53, 0) } else { (0, 53) };
    r.direction = Direction::Receive;
    r.observation_point = ObservationPoint::Pod;
    r.packets = 1;
    let mut d = crate::model::dns::DnsInfo {
        response,
        question_name: "db.shop.svc.cluster.local".into(),
        question_type: 1,
        ..Default::default()
    };
    if response {
        d.answer_count = 2;
        d.push_address(A.parse().unwrap());
        d.push_address(B.parse().unwrap());
    }
    r.dns = Some(d);
    r.attributes = Attributes::from_pairs(labels.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
    r
}

#[test]
fn dns_messages_count_once_for_their_client_with_retinas_dns_labels() {
    // a (this node) asks b (the cluster's DNS, also on this node) twice, b answers once.
    let ask = [pod("source", "a", "shop", NODE), pod("destination", "coredns-1", "kube-system", NODE)];
    let answer = [pod("source", "coredns-1", "kube-system", NODE), pod("destination", "a", "shop", NODE)];
    let records = || batch(vec![dns(A, EXT, false, &ask), dns(A, EXT, false, &ask), dns(EXT, A, true, &answer)]);
    let mut remote = connector(|c| {
        c.labels.source = vec![LabelOption::Podname];
        c.labels.destination = vec![LabelOption::Podname];
    });
    remote.fold(&records(), 1);
    assert_eq!(
        points(&mut remote, "network.dns.requests"),
        vec![(
            "destination.k8s.pod.name=coredns-1,dns.question.name=db.shop.svc.cluster.local,dns.question.type=A,source.k8s.pod.name=a"
                .to_string(),
            2
        )]
    );
    assert_eq!(
        points(&mut remote, "network.dns.responses"),
        vec![(
            format!(
                "destination.k8s.pod.name=a,dns.answer.count=2,dns.answers={A},{B},dns.question.name=db.shop.svc.cluster.local,dns.question.type=A,dns.response.code=NOERROR,source.k8s.pod.name=coredns-1"
            ),
            1
        )]
    );
    // Local context: one sample per message, for the client only (never the server).
    let mut local = connector(|c| {
        c.mode = Mode::Local;
        c.labels.source = vec![LabelOption::Podname];
    });
    local.fold(&records(), 1);
    let requests = points(&mut local, "network.dns.requests");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].0.ends_with("k8s.pod.name=a") && requests[0].1 == 2, "{requests:?}");
    let responses = points(&mut local, "network.dns.responses");
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert!(responses[0].0.contains("k8s.pod.name=a") && responses[0].1 == 1, "{responses:?}");
}
