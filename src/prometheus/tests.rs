//! Unit tests: name translation, the Retina table, the store's folding and expiration, and the
//! exact exposition text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::encode::{Format, encode_metrics, write_go_float};
use super::naming::{MetricKind, label_name, metric_name};
use super::options::{Naming, StoreOptions};
use super::store::{Folded, Labels, Store};
use crate::model::fixtures::{self, attrs, histogram, sum};
use crate::model::{AttrValue, Attributes, HistogramPoint, Metric, MetricBatch, MetricData, NumberPoint, Temporality};

fn batch(metrics: Vec<Metric>) -> MetricBatch {
    fixtures::batch("packetforward", metrics)
}

fn point(pairs: &[(&str, &str)], time: u64, value: i64) -> NumberPoint {
    NumberPoint::int(attrs(pairs), 1, time, value)
}

fn hist_point(bounds: &Arc<[f64]>, buckets: &[u64], sum: f64, time: u64) -> HistogramPoint {
    fixtures::hist_point(bounds, buckets, sum, 1, time)
}

fn options(naming: Naming) -> StoreOptions {
    StoreOptions { naming, expiration: Some(Duration::from_secs(300)), ..StoreOptions::plain() }
}

fn encode(store: &Store, format: Format) -> String {
    let mut out = String::new();
    store.encode(format, false, &mut out);
    out
}

/// Only the sample lines (no comments) of an exposition.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn metric_names_follow_otlptranslator() {
    use MetricKind::*;
    let cases: &[(&str, &str, MetricKind, &str)] = &[
        ("network.forward.packets", "{packet}", Counter, "network_forward_packets_total"),
        ("network.forward.bytes", "By", Counter, "network_forward_bytes_total"),
        ("network.tcp.connections", "{connection}", Gauge, "network_tcp_connections"),
        ("network.tcp.handshake.duration", "s", Histogram, "network_tcp_handshake_duration_seconds"),
        ("network.io", "By", Counter, "network_io_bytes_total"),
        ("system.cpu.utilization", "1", Gauge, "system_cpu_utilization_ratio"),
        ("queue.items", "1", UpDownCounter, "queue_items"),
        ("items", "1", Counter, "items_total"),
        ("requests", "1/s", Gauge, "requests_per_second"),
        ("throughput", "By/s", Gauge, "throughput_bytes_per_second"),
        ("response_time", "ms", Gauge, "response_time_milliseconds"),
        ("response_time_seconds", "s", Gauge, "response_time_seconds"),
        ("requests_total", "", Counter, "requests_total"),
        ("cpu_usage_ratio", "1", Gauge, "cpu_usage_ratio"),
        ("memory", "KiBy", Gauge, "memory_kibibytes"),
        ("temperature", "Cel", Gauge, "temperature_celsius"),
        ("cpu", "%", Gauge, "cpu_percent"),
        ("custom_metric", "custom_unit", Gauge, "custom_metric_custom_unit"),
        ("custom_metric", "By/{custom}", Gauge, "custom_metric_bytes"),
        ("custom_metric", "unit@with#special/chars", Gauge, "custom_metric_unit_with_special_per_chars"),
        (
            "metric__with__multiple__underscores",
            "unit__multiple__underscores",
            Gauge,
            "metric_with_multiple_underscores_unit_multiple_underscores",
        ),
        ("2xx.responses", "", Counter, "_2xx_responses_total"),
        ("a..b__c-d", "", Gauge, "a_b_c_d"),
        ("ns:sub.metric", "", Gauge, "ns:sub_metric"),
        ("@#$%", "", Gauge, ""),
    ];
    for (name, unit, kind, want) in cases {
        assert_eq!(metric_name(name, unit, *kind, "", true), *want, "{name} [{unit}] {kind:?}");
    }
    assert_eq!(metric_name("requests", "1/s", Counter, "app", true), "app_requests_per_second_total");
    assert_eq!(
        metric_name("network.forward.packets", "{packet}", Counter, "fovea-agent", true),
        "fovea_agent_network_forward_packets_total"
    );
    assert_eq!(metric_name("network.forward.bytes", "By", Counter, "", false), "network_forward_bytes");
    assert_eq!(metric_name("metric@@##$$name", "", Gauge, "", false), "metric_name");
    assert_eq!(metric_name("123metric", "", Gauge, "", false), "_123metric");
}

#[test]
fn label_names_are_sanitized() {
    let cases = [
        ("network.io.direction", "network_io_direction"),
        ("host.name", "host_name"),
        ("2 cents", "key_2_cents"),
        ("_name", "key_name"),
        ("__reserved__", "__reserved__"),
        ("drop.reason", "drop_reason"),
        ("ünïcode", "key_n_code"),
        ("...", ""),
    ];
    for (key, want) in cases {
        assert_eq!(label_name(key), want, "{key}");
    }
}

#[test]
fn go_float_formatting_matches_client_golang() {
    let cases = [
        (0.005, "0.005", "0.005"),
        (1.0, "1", "1.0"),
        (2.5, "2.5", "2.5"),
        (0.0001, "0.0001", "0.0001"),
        (0.00001, "1e-05", "1e-05"),
        (123456.0, "123456", "123456.0"),
        (1e6, "1e+06", "1e+06"),
        (1234567.0, "1.234567e+06", "1.234567e+06"),
        (0.0, "0", "0.0"),
        (-3.0, "-3", "-3.0"),
        (f64::INFINITY, "+Inf", "+Inf"),
    ];
    for (v, text, om) in cases {
        let mut s = String::new();
        write_go_float(&mut s, v, false);
        assert_eq!(s, text, "{v}");
        s.clear();
        write_go_float(&mut s, v, true);
        assert_eq!(s, om, "{v} (OpenMetrics)");
    }
}

#[test]
fn colliding_labels_join_with_semicolons_and_values_are_escaped() {
    let mut a = attrs(&[("a.b", "1"), ("a_b", "2"), ("a-b", "1"), ("path", "C:\\dir \"x\"\nnext")]);
    a.insert("count", AttrValue::Int(7));
    a.insert("ok", AttrValue::Bool(true));
    let labels = super::store::attribute_labels(&a);
    assert_eq!(
        Labels::new(labels).text(),
        r#"a_b="1;2",count="7",ok="true",path="C:\\dir \"x\"\nnext""#,
        "a-b and a.b both give a_b=1, which is not repeated"
    );
}

#[test]
fn exposition_with_target_info_job_instance_and_scope() {
    let mut store = Store::new(options(Naming::Otel));
    let mut packets = Metric::counter(
        "network.forward.packets",
        "{packet}",
        "Packets forwarded",
        vec![
            point(&[("network.io.direction", "receive"), ("network.interface.name", "eth0")], 10, 12345),
            point(&[("network.io.direction", "transmit"), ("network.interface.name", "eth0")], 10, 10),
        ],
    );
    let connections = Metric::gauge(
        "network.tcp.connections",
        "{connection}",
        "TCP sockets by state",
        vec![point(&[("network.connection.state", "established")], 10, 3)],
    );
    let folded = store.fold(&batch(vec![packets.clone(), connections]), Instant::now());
    assert_eq!(folded, Folded { accepted: 3, dropped: 0 });
    let want = "\
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{host_name=\"h1\",instance=\"node-1\",job=\"fovea\",k8s_node_name=\"node-1\"} 1
# HELP network_forward_packets_total Packets forwarded
# TYPE network_forward_packets_total counter
network_forward_packets_total{instance=\"node-1\",job=\"fovea\",network_interface_name=\"eth0\",network_io_direction=\"receive\",otel_scope_name=\"fovea/packetforward\",otel_scope_version=\"0.1.0\"} 12345
network_forward_packets_total{instance=\"node-1\",job=\"fovea\",network_interface_name=\"eth0\",network_io_direction=\"transmit\",otel_scope_name=\"fovea/packetforward\",otel_scope_version=\"0.1.0\"} 10
# HELP network_tcp_connections TCP sockets by state
# TYPE network_tcp_connections gauge
network_tcp_connections{instance=\"node-1\",job=\"fovea\",network_connection_state=\"established\",otel_scope_name=\"fovea/packetforward\",otel_scope_version=\"0.1.0\"} 3
";
    assert_eq!(encode(&store, Format::Text), want);

    // A newer cumulative value replaces; an older one is refused.
    if let MetricData::Sum(s) = &mut packets.data {
        s.points[0].time_unix_nano = 20;
        s.points[0].value = crate::model::Number::Int(20000);
        s.points[1].time_unix_nano = 5;
        s.points[1].value = crate::model::Number::Int(1);
    }
    let folded = store.fold(&batch(vec![packets]), Instant::now());
    assert_eq!(folded, Folded { accepted: 1, dropped: 1 });
    let text = encode(&store, Format::Text);
    assert!(text.contains("network_io_direction=\"receive\",otel_scope_name=\"fovea/packetforward\",otel_scope_version=\"0.1.0\"} 20000\n"), "{text}");
    assert!(text.contains("network_io_direction=\"transmit\",otel_scope_name=\"fovea/packetforward\",otel_scope_version=\"0.1.0\"} 10\n"), "{text}");
}

#[test]
fn delta_sums_accumulate_into_cumulative_counters() {
    let mut store = Store::new(StoreOptions { scope_labels: false, ..options(Naming::Otel) });
    let now = Instant::now();
    for (t, v) in [(10, 5), (20, 7), (30, 0), (40, 100)] {
        let m = sum(
            "network.drop.packets",
            "{packet}",
            Temporality::Delta,
            true,
            vec![point(&[("drop.reason", "NETFILTER_DROP")], t, v)],
        );
        assert_eq!(store.fold(&batch(vec![m]), now).accepted, 1);
    }
    // A non-monotonic delta sum accumulates too (and is a gauge).
    for v in [3, -1] {
        let m = sum("network.queue.depth", "{packet}", Temporality::Delta, false, vec![point(&[], 10, v)]);
        store.fold(&batch(vec![m]), now);
    }
    let text = encode(&store, Format::Text);
    assert_eq!(
        samples(&text)[1..],
        [
            "network_drop_packets_total{drop_reason=\"NETFILTER_DROP\",instance=\"node-1\",job=\"fovea\"} 112",
            "network_queue_depth{instance=\"node-1\",job=\"fovea\"} 2",
        ]
    );
    assert!(text.contains("# TYPE network_queue_depth gauge\n"), "{text}");
}

#[test]
fn histograms_expose_cumulative_buckets_and_deltas_accumulate() {
    let bounds: Arc<[f64]> = Arc::from(vec![0.005, 0.1, 1.0, 1e6]);
    let mut store = Store::new(StoreOptions { scope_labels: false, ..options(Naming::Otel) });
    let now = Instant::now();
    let h = histogram(
        "network.tcp.handshake.duration",
        Temporality::Delta,
        vec![hist_point(&bounds, &[1, 2, 3, 0, 1], 4.5, 10)],
    );
    store.fold(&batch(vec![h]), now);
    let h = histogram(
        "network.tcp.handshake.duration",
        Temporality::Delta,
        vec![hist_point(&bounds, &[0, 1, 0, 1, 0], 0.75, 20)],
    );
    store.fold(&batch(vec![h]), now);
    let text = encode(&store, Format::Text);
    let l = "instance=\"node-1\",job=\"fovea\"";
    let want = format!(
        "# HELP network_tcp_handshake_duration_seconds Handshake time
# TYPE network_tcp_handshake_duration_seconds histogram
network_tcp_handshake_duration_seconds_bucket{{{l},le=\"0.005\"}} 1
network_tcp_handshake_duration_seconds_bucket{{{l},le=\"0.1\"}} 4
network_tcp_handshake_duration_seconds_bucket{{{l},le=\"1\"}} 7
network_tcp_handshake_duration_seconds_bucket{{{l},le=\"1e+06\"}} 8
network_tcp_handshake_duration_seconds_bucket{{{l},le=\"+Inf\"}} 9
network_tcp_handshake_duration_seconds_sum{{{l}}} 5.25
network_tcp_handshake_duration_seconds_count{{{l}}} 9
"
    );
    assert!(text.ends_with(&want), "{text}");

    // Different bounds restart the running total from the new point.
    let other: Arc<[f64]> = Arc::from(vec![1.0]);
    let h = histogram("network.tcp.handshake.duration", Temporality::Delta, vec![hist_point(&other, &[2, 1], 3.0, 30)]);
    store.fold(&batch(vec![h]), now);
    let text = encode(&store, Format::Text);
    assert!(text.contains(&format!("_bucket{{{l},le=\"1\"}} 2\n")), "{text}");
    assert!(text.contains(&format!("_count{{{l}}} 3\n")), "{text}");

    // A histogram whose bucket counts do not fit its bounds is refused.
    let h = histogram("network.tcp.handshake.duration", Temporality::Delta, vec![hist_point(&other, &[2], 3.0, 40)]);
    assert_eq!(store.fold(&batch(vec![h]), now), Folded { accepted: 0, dropped: 1 });
}

#[test]
fn an_expired_series_leaves_its_dashboard_alias_too() {
    let mut store = Store::new(options(Naming::Retina));
    let t0 = Instant::now();
    let remote = |address: &str, n| {
        Metric::gauge(
            "network.tcp.remote_connections",
            "",
            "",
            vec![point(&[("network.peer.address", address)], 10, n)],
        )
    };
    store.fold(&batch(vec![remote("198.18.0.1", 2)]), t0);
    store.fold(&batch(vec![remote("198.18.0.2", 3)]), t0 + Duration::from_secs(240));
    let all = |store: &Store| {
        samples(&encode(store, Format::Text))
            .into_iter()
            .filter(|l| l.contains("AllIPs"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(all(&store), ["networkobservability_tcp_connection_remote{address=\"AllIPs\"} 5"]);
    assert_eq!(store.expire(t0 + Duration::from_secs(301)), 1);
    assert_eq!(all(&store), ["networkobservability_tcp_connection_remote{address=\"AllIPs\"} 3"]);
    assert_eq!(store.expire(t0 + Duration::from_secs(541)), 1);
    assert_eq!(encode(&store, Format::Text), "", "the alias went with its last member");
}

#[test]
fn series_expire_after_metric_expiration() {
    let mut store = Store::new(options(Naming::Otel));
    let t0 = Instant::now();
    let a = Metric::gauge("a.gauge", "", "", vec![point(&[("k", "1")], 10, 1), point(&[("k", "2")], 10, 2)]);
    store.fold(&batch(vec![a]), t0);
    let b = Metric::gauge("b.gauge", "", "", vec![point(&[], 10, 3)]);
    store.fold(&batch(vec![b.clone()]), t0 + Duration::from_secs(240));
    assert_eq!(store.expire(t0 + Duration::from_secs(299)), 0);
    assert_eq!(store.expire(t0 + Duration::from_secs(301)), 2);
    assert_eq!(store.len(), 1);
    let text = encode(&store, Format::Text);
    assert!(!text.contains("a_gauge"), "{text}");
    assert!(text.contains("b_gauge{"), "{text}");
    assert_eq!(store.expire(t0 + Duration::from_secs(541)), 1);
    assert_eq!(store.len(), 0);
    assert_eq!(encode(&store, Format::Text), "", "no series, no target_info");
    // Everything interned was released; the series comes back when it reports again.
    store.fold(&batch(vec![b]), t0 + Duration::from_secs(600));
    assert_eq!(samples(&encode(&store, Format::Text)).len(), 2);

    // metric_expiration 0 keeps series forever.
    let mut forever = Store::new(StoreOptions { expiration: None, ..options(Naming::Otel) });
    forever.fold(&batch(vec![Metric::gauge("a", "", "", vec![point(&[], 1, 1)])]), t0);
    assert_eq!(forever.expire(t0 + Duration::from_secs(1_000_000)), 0);
}

#[test]
fn retina_names_sum_interfaces_and_map_values() {
    let mut store = Store::new(options(Naming::Retina));
    let fwd =
        |dir: &str, ifname: &str, v| point(&[("network.io.direction", dir), ("network.interface.name", ifname)], 10, v);
    let packets = Metric::counter(
        "network.forward.packets",
        "{packet}",
        "Packets forwarded",
        vec![fwd("receive", "eth0", 100), fwd("receive", "eth1", 23), fwd("transmit", "eth0", 7)],
    );
    let bytes = Metric::counter("network.forward.bytes", "By", "", vec![fwd("receive", "eth0", 1500)]);
    let drops = Metric::counter(
        "network.drop.packets",
        "{packet}",
        "",
        vec![point(&[("drop.reason", "NETFILTER_DROP"), ("network.io.direction", "receive")], 10, 4)],
    );
    let states = Metric::gauge(
        "network.tcp.connections",
        "{connection}",
        "",
        vec![
            point(&[("network.connection.state", "established")], 10, 5),
            point(&[("network.connection.state", "syn_received")], 10, 1),
            point(&[("network.connection.state", "new_syn_recv")], 10, 2),
            point(&[("network.connection.state", "time_wait")], 10, 9),
            point(&[("network.connection.state", "fin_wait_1")], 10, 1),
            point(&[("network.connection.state", "closed")], 10, 1),
        ],
    );
    let netstat = Metric::gauge(
        "network.netstat",
        "",
        "",
        vec![
            point(&[("netstat.group", "TcpExt"), ("netstat.name", "TCPTimeouts")], 10, 11),
            point(&[("netstat.group", "IpExt"), ("netstat.name", "InNoRoutes")], 10, 12),
            point(&[("netstat.group", "Tcp"), ("netstat.name", "EstabResets")], 10, 3),
        ],
    );
    let udp = Metric::gauge("network.udp.sockets", "{socket}", "", vec![point(&[], 10, 13)]);
    let remote = Metric::gauge(
        "network.tcp.remote_connections",
        "{connection}",
        "",
        vec![
            point(&[("network.peer.address", "198.18.0.7")], 10, 4),
            point(&[("network.peer.address", "2001:db8::7")], 10, 2),
            point(&[("otel.metric.overflow", "true")], 10, 1),
        ],
    );
    let ifstats = Metric::gauge(
        "network.interface.stats",
        "",
        "",
        vec![point(&[("network.interface.name", "eth0"), ("statistic", "rx_dropped")], 10, 14)],
    );
    let retrans = Metric::counter("network.tcp.retransmits", "{segment}", "", vec![point(&[], 10, 15)]);
    let flags = Metric::counter("network.tcp.flags", "{packet}", "", vec![point(&[("tcp.flag", "SYN")], 10, 16)]);
    store.fold(
        &batch(vec![packets, bytes, drops, states, netstat, ifstats, retrans, flags, udp, remote]),
        Instant::now(),
    );
    let text = encode(&store, Format::Text);
    // Retina's own spellings, and the Clusters dashboard's beside them (TCPTimeouts and
    // tcptimeouts, ACTIVE and active, every address and AllIPs).
    let want = [
        "target_info{host_name=\"h1\",instance=\"node-1\",job=\"fovea\",k8s_node_name=\"node-1\"} 1",
        "networkobservability_drop_count{direction=\"ingress\",reason=\"NETFILTER_DROP\"} 4",
        "networkobservability_forward_bytes{direction=\"ingress\"} 1500",
        "networkobservability_forward_count{direction=\"egress\"} 7",
        "networkobservability_forward_count{direction=\"ingress\"} 123",
        "networkobservability_interface_stats{interface_name=\"eth0\",statistic_name=\"rx_dropped\"} 14",
        "networkobservability_ip_connection_stats{statistic_name=\"InNoRoutes\"} 12",
        "networkobservability_tcp_connection_remote{address=\"198.18.0.7\"} 4",
        "networkobservability_tcp_connection_remote{address=\"2001:db8::7\"} 2",
        "networkobservability_tcp_connection_remote{address=\"AllIPs\"} 7",
        "networkobservability_tcp_connection_remote{address=\"other\",otel_metric_overflow=\"true\"} 1",
        "networkobservability_tcp_connection_stats{statistic_name=\"EstabResets\"} 3",
        "networkobservability_tcp_connection_stats{statistic_name=\"TCPTimeouts\"} 11",
        "networkobservability_tcp_connection_stats{statistic_name=\"resetcount\"} 3",
        "networkobservability_tcp_connection_stats{statistic_name=\"tcptimeouts\"} 11",
        "networkobservability_tcp_flag_counters{flag=\"syn\"} 16",
        "networkobservability_tcp_retransmission_count 15",
        "networkobservability_tcp_state{state=\"CLOSE\"} 1",
        "networkobservability_tcp_state{state=\"ESTABLISHED\"} 5",
        "networkobservability_tcp_state{state=\"FIN_WAIT1\"} 1",
        "networkobservability_tcp_state{state=\"SYN_RECV\"} 3",
        "networkobservability_tcp_state{state=\"TIME_WAIT\"} 9",
        "networkobservability_udp_connection_stats{statistic_name=\"ACTIVE\"} 13",
        "networkobservability_udp_connection_stats{statistic_name=\"active\"} 13",
    ];
    assert_eq!(samples(&text), want, "{text}");
    assert!(text.contains("# HELP networkobservability_forward_count Packets forwarded\n# TYPE networkobservability_forward_count counter\n"), "{text}");
    assert!(text.contains("# TYPE networkobservability_tcp_state gauge\n"), "{text}");
}

#[test]
fn retina_pod_level_series_carry_context_labels() {
    let mut store = Store::new(options(Naming::Retina));
    let remote = [
        ("network.io.direction", "transmit"),
        ("network.interface.name", "veth1"),
        ("source.k8s.namespace.name", "shop"),
        ("source.k8s.pod.name", "cart-7d9"),
        ("source.k8s.workload.kind", "Deployment"),
        ("source.k8s.workload.name", "cart"),
        ("source.address", "198.18.0.2"),
        ("destination.k8s.namespace.name", "shop"),
        ("destination.k8s.pod.name", "db-0"),
        ("destination.k8s.workload.kind", "StatefulSet"),
        ("destination.k8s.workload.name", "db"),
        ("destination.address", "198.18.0.3"),
        ("destination.port", "5432"),
    ];
    let local = [("network.io.direction", "receive"), ("k8s.namespace.name", "shop"), ("k8s.pod.name", "db-0")];
    let packets =
        Metric::counter("network.forward.packets", "{packet}", "", vec![point(&remote, 10, 42), point(&local, 10, 8)]);
    let drops = Metric::counter(
        "network.drop.packets",
        "{packet}",
        "",
        vec![point(&[("drop.reason", "NO_SOCKET"), ("k8s.pod.name", "db-0"), ("k8s.namespace.name", "shop")], 10, 2)],
    );
    store.fold(&batch(vec![packets, drops]), Instant::now());
    let text = encode(&store, Format::Text);
    assert_eq!(
        samples(&text)[1..],
        [
            "networkobservability_adv_drop_count{namespace=\"shop\",podname=\"db-0\",reason=\"NO_SOCKET\"} 2",
            "networkobservability_adv_forward_count{destination_ip=\"198.18.0.3\",destination_namespace=\"shop\",destination_podname=\"db-0\",destination_port=\"5432\",destination_workload_kind=\"StatefulSet\",destination_workload_name=\"db\",direction=\"EGRESS\",source_ip=\"198.18.0.2\",source_namespace=\"shop\",source_podname=\"cart-7d9\",source_workload_kind=\"Deployment\",source_workload_name=\"cart\"} 42",
            "networkobservability_adv_forward_count{direction=\"ingress\",namespace=\"shop\",podname=\"db-0\"} 8",
        ],
        "{text}"
    );
}

#[test]
fn open_metrics_names_counter_families_without_total_and_ends_with_eof() {
    let mut store = Store::new(StoreOptions { scope_labels: false, ..options(Naming::Otel) });
    let bounds: Arc<[f64]> = Arc::from(vec![1.0]);
    let packets =
        Metric::counter("network.forward.packets", "{packet}", "Packets \"forwarded\"", vec![point(&[], 10, 5)]);
    let h = histogram("network.tcp.rtt", Temporality::Cumulative, vec![hist_point(&bounds, &[1, 1], 2.5, 10)]);
    store.fold(&batch(vec![packets, h]), Instant::now());
    let text = encode(&store, Format::OpenMetrics);
    let l = "instance=\"node-1\",job=\"fovea\"";
    let want = format!(
        "# HELP target_info Target metadata
# TYPE target_info gauge
target_info{{host_name=\"h1\",{l},k8s_node_name=\"node-1\"}} 1
# HELP network_forward_packets Packets \\\"forwarded\\\"
# TYPE network_forward_packets counter
network_forward_packets_total{{{l}}} 5
# HELP network_tcp_rtt_seconds Handshake time
# TYPE network_tcp_rtt_seconds histogram
network_tcp_rtt_seconds_bucket{{{l},le=\"1.0\"}} 1
network_tcp_rtt_seconds_bucket{{{l},le=\"+Inf\"}} 2
network_tcp_rtt_seconds_sum{{{l}}} 2.5
network_tcp_rtt_seconds_count{{{l}}} 2
# EOF
"
    );
    assert_eq!(text, want);
}

#[test]
fn timestamps_const_labels_and_resource_labels() {
    let opts = StoreOptions {
        scope_labels: false,
        resource_labels: true,
        const_labels: vec![("cluster".into(), "lab".into()), ("job".into(), "ignored".into())],
        ..options(Naming::Otel)
    };
    let mut store = Store::new(opts);
    let g =
        Metric::gauge("a", "", "", vec![NumberPoint::double(attrs(&[("k", "v")]), 0, 1_700_000_000_123_456_789, 0.25)]);
    store.fold(&batch(vec![g]), Instant::now());
    let mut text = String::new();
    store.encode(Format::Text, true, &mut text);
    assert_eq!(
        samples(&text),
        [
            "a{cluster=\"lab\",host_name=\"h1\",instance=\"node-1\",job=\"fovea\",k=\"v\",k8s_node_name=\"node-1\",service_instance_id=\"node-1\",service_name=\"fovea\"} 0.25 1700000000123"
        ],
        "resource attributes become labels, no target_info, const labels never override: {text}"
    );
    let mut om = String::new();
    store.encode(Format::OpenMetrics, true, &mut om);
    assert!(om.contains("} 0.25 1700000000.123\n"), "{om}");
}

#[test]
fn job_and_instance_win_over_attributes_named_like_them() {
    let mut store = Store::new(StoreOptions { scope_labels: false, ..options(Naming::Otel) });
    let g = Metric::gauge("a", "", "", vec![point(&[("job", "mine"), ("k", "v")], 1, 1)]);
    store.fold(&batch(vec![g]), Instant::now());
    assert_eq!(samples(&encode(&store, Format::Text))[1..], ["a{instance=\"node-1\",job=\"fovea\",k=\"v\"} 1"]);
}

#[test]
fn type_conflicts_keep_the_first_family() {
    let mut store = Store::new(StoreOptions { scope_labels: false, ..options(Naming::Otel) });
    let gauge = Metric::gauge("requests.total", "", "", vec![point(&[], 10, 1)]);
    let counter = Metric::counter("requests", "", "", vec![point(&[], 10, 2)]);
    store.fold(&batch(vec![gauge, counter]), Instant::now());
    let text = encode(&store, Format::Text);
    assert_eq!(samples(&text)[1..], ["requests_total{instance=\"node-1\",job=\"fovea\"} 1"], "{text}");
}

#[test]
fn own_telemetry_encoder_has_no_resource_labels() {
    let m = Metric::counter(
        "fovea.exporter.sent_items",
        "{item}",
        "Items delivered",
        vec![NumberPoint::int(attrs(&[("exporter", "prometheus"), ("signal", "metrics")]), 1, 2, 99)],
    );
    let mut out = String::new();
    encode_metrics(&[m], &mut out);
    assert_eq!(
        out,
        "# HELP fovea_exporter_sent_items_total Items delivered\n# TYPE fovea_exporter_sent_items_total counter\nfovea_exporter_sent_items_total{exporter=\"prometheus\",signal=\"metrics\"} 99\n"
    );
}

#[test]
fn format_negotiation() {
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prom), true), Format::OpenMetrics);
    assert_eq!(Format::negotiate(Some(prom), false), Format::Text);
    assert_eq!(Format::negotiate(Some("text/plain"), true), Format::Text);
    assert_eq!(Format::negotiate(None, true), Format::Text);
}

#[test]
fn retina_tcp_states_cover_every_linux_state() {
    let names: Vec<String> = (1..=12)
        .filter_map(crate::model::TcpState::from_linux)
        .map(|state| {
            let a = attrs(&[("network.connection.state", state.as_str())]);
            let placed = super::retina::place("network.tcp.connections", &a).expect("tcp_state row");
            assert_eq!(placed.name, "networkobservability_tcp_state");
            placed.labels[0].1.clone()
        })
        .collect();
    assert_eq!(
        names,
        [
            "ESTABLISHED",
            "SYN_SENT",
            "SYN_RECV",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "CLOSING",
            "SYN_RECV"
        ]
    );
}

#[test]
fn retina_falls_back_to_otel_names_where_retina_has_none() {
    let place = super::retina::place;
    let mptcp = attrs(&[("netstat.group", "MPTcpExt"), ("netstat.name", "MPCapableSYNRX")]);
    assert_eq!(place("network.netstat", &mptcp).map(|p| p.name), Some("networkobservability_tcp_connection_stats"));
    assert_eq!(place("network.netstat", &attrs(&[("netstat.group", "Icmp"), ("netstat.name", "InErrors")])), None);
    let flags = place("network.tcp.flags", &attrs(&[("tcp.flag", "SYNACK")])).unwrap();
    assert_eq!(flags.name, "networkobservability_tcp_flag_counters", "the name Retina's Clusters dashboard reads");
    assert_eq!(flags.labels, [("flag".to_string(), "synack".to_string())]);
    assert_eq!(place("network.tcp.rtt", &Attributes::new()), None);
    let all: Vec<&str> = super::retina::metric_names().collect();
    assert!(all.iter().all(|n| n.starts_with("networkobservability_")), "{all:?}");
}

#[test]
fn unusable_names_are_dropped_and_help_is_escaped() {
    let mut store = Store::new(StoreOptions { scope_labels: false, ..options(Naming::Otel) });
    let bad = Metric::gauge("@#$", "", "", vec![point(&[], 1, 1), point(&[("a", "b")], 1, 2)]);
    let good = Metric::gauge("ok", "", "line one\nline \\ two \"q\"", vec![point(&[], 1, 3)]);
    assert_eq!(store.fold(&batch(vec![bad, good]), Instant::now()), Folded { accepted: 1, dropped: 2 });
    let text = encode(&store, Format::Text);
    assert!(text.contains("# HELP ok line one\\nline \\\\ two \"q\"\n# TYPE ok gauge\n"), "{text}");
}

#[test]
fn labels_keep_pairs_unescaped_and_text_escaped() {
    let labels = Labels::new(vec![
        ("z".to_string(), "last".to_string()),
        ("path".to_string(), "C:\\dir \"x\"\nnext".to_string()),
        ("a".to_string(), String::new()),
        ("z".to_string(), "shadowed".to_string()),
    ]);
    assert_eq!(labels.text(), r#"a="",path="C:\\dir \"x\"\nnext",z="last""#);
    let pairs: Vec<_> = labels.pairs().collect();
    assert_eq!(pairs, [("a", ""), ("path", "C:\\dir \"x\"\nnext"), ("z", "last")]);
    assert_eq!(Labels::new(Vec::new()).pairs().count(), 0);
    assert_eq!(Labels::new(Vec::new()).text(), "");
}

#[test]
fn retina_api_server_metrics_are_in_milliseconds_and_overflow_keeps_its_marker() {
    let mut store = Store::new(StoreOptions { scope_labels: false, ..options(Naming::Retina) });
    let bounds: Arc<[f64]> = Arc::from(vec![0.0005, 0.001]);
    let handshake = histogram(
        "network.apiserver.handshake.duration",
        Temporality::Cumulative,
        vec![fixtures::hist_point(&bounds, &[1, 2, 0], 0.0025, 1, 10)],
    );
    let none = Metric::counter("network.apiserver.no_response", "{packet}", "", vec![point(&[], 10, 3)]);
    // A flowmetrics overflow series: pod-level points whose labels are gone.
    let mut folded = point(&[], 10, 7);
    folded.attributes.insert("otel.metric.overflow", true);
    let overflow = Metric::counter("network.forward.packets", "{packet}", "", vec![folded]);
    store.fold(&batch(vec![handshake, none, overflow]), Instant::now());
    let text = encode(&store, Format::Text);
    assert_eq!(
        samples(&text)[1..],
        [
            "networkobservability_adv_forward_count{otel_metric_overflow=\"true\"} 7",
            "networkobservability_adv_node_apiserver_no_response{no_response=\"no_response\"} 3",
            "networkobservability_node_apiserver_handshake_latency_ms_bucket{le=\"0.5\"} 1",
            "networkobservability_node_apiserver_handshake_latency_ms_bucket{le=\"1\"} 3",
            "networkobservability_node_apiserver_handshake_latency_ms_bucket{le=\"+Inf\"} 3",
            "networkobservability_node_apiserver_handshake_latency_ms_sum 2.5",
            "networkobservability_node_apiserver_handshake_latency_ms_count 3",
        ],
        "{text}"
    );
}

/// With packetforward leaving the pods' veths to the flows receiver (`exclude_pod_interfaces`,
/// `forward_metrics: pods`), one node's interface totals arrive from two scopes; Retina's
/// node-level forward counts add them up as one series per direction, as when one receiver
/// counted every interface.
#[test]
fn retina_forward_counts_add_up_interfaces_reported_by_two_receivers() {
    let mut store = Store::new(options(Naming::Retina));
    let fwd = |ifname: &str, v| {
        let p = point(&[("network.io.direction", "receive"), ("network.interface.name", ifname)], 10, v);
        vec![Metric::counter("network.forward.packets", "{packet}", "", vec![p])]
    };
    let now = Instant::now();
    store.fold(&fixtures::batch("packetforward", fwd("eth0", 100)), now);
    store.fold(&fixtures::batch("flows", fwd("veth1", 20)), now);
    store.fold(&fixtures::batch("flows", fwd("veth2", 3)), now);
    let text = encode(&store, Format::Text);
    let forward: Vec<&str> =
        samples(&text).into_iter().filter(|l| l.starts_with("networkobservability_forward")).collect();
    assert_eq!(forward, ["networkobservability_forward_count{direction=\"ingress\"} 123"], "{text}");
}
