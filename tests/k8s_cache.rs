//! The Kubernetes metadata cache against the fake API server, in process, through kube's real
//! client over TLS: lists across pages, watch events applied, owners resolved through
//! ReplicaSets and Jobs, services and nodes by address, IPv4 and IPv6, the node filter as a
//! field selector, 410 Gone relisting without stale entries, dropped connections resumed from
//! the last resourceVersion, and a wrong token reported (then recovered).

#[path = "support/apiserver/mod.rs"]
mod apiserver;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use apiserver::objects::{PodSpec, job, namespace, node, pod, replicaset, service};
use fovea::k8s::{Auth, CacheSettings, Found, K8sCache, Kind};
use k8s_openapi::api::core::v1::Pod;

const TOKEN: &str = "test-token-1";

fn settings(server: &ApiServer, token: &str, node_filter: Option<&str>) -> CacheSettings {
    CacheSettings {
        auth: Auth::KubeConfig { path: Some(server.kubeconfig(token)), context: None },
        node: node_filter.map(str::to_string),
        namespace: None,
        pod_label_selector: None,
        pod_field_selector: None,
        delete_grace_period: Duration::from_secs(30),
        exclude_pods: Vec::new(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// What `address` names now: ("pod"|"service"|"node", name, workload kind/name).
fn named(cache: &K8sCache, address: &str) -> Option<(String, String, String)> {
    let reader = cache.reader();
    Some(match reader.ip(ip(address))? {
        Found::Pod { pod, .. } => {
            let workload = reader.owners(pod).workload.map(|(k, n)| format!("{k}/{n}")).unwrap_or_default();
            ("pod".into(), format!("{}/{}", pod.namespace, pod.name), workload)
        }
        Found::Service(s) => ("service".into(), format!("{}/{}", s.namespace, s.name), String::new()),
        Found::Node(n) => ("node".into(), n.name.to_string(), String::new()),
    })
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn world(server: &ApiServer) {
    server.apply(&namespace("shop", &[("team", "retail")]));
    server.apply(&node("node-1", ip("198.18.100.1"), &[]));
    server.apply(&node("node-2", ip("198.18.100.2"), &[]));
    server.apply(&replicaset("shop", "cart-7d9f8b6c5d", Some("cart")));
    server.apply(&job("shop", "report-29001", Some("report")));
    server.apply(&service("shop", "cart", &[ip("198.19.0.10"), ip("2001:db8:19::10")]));
    let mut cart = PodSpec::new("shop", "cart-7d9f8b6c5d-x2x9z", "node-1", ip("198.18.1.2"))
        .owned_by("ReplicaSet", "cart-7d9f8b6c5d");
    cart.ips.push(ip("2001:db8:1::2"));
    server.apply(&pod(&cart));
    server.apply(&pod(
        &PodSpec::new("shop", "report-29001-abcde", "node-2", ip("198.18.2.3")).owned_by("Job", "report-29001")
    ));
    server.apply(&pod(&PodSpec::new("shop", "db-0", "node-2", ip("198.18.2.4")).owned_by("StatefulSet", "db")));
    let mut host = PodSpec::new("kube-system", "kube-proxy-abcde", "node-1", ip("198.18.100.1"))
        .owned_by("DaemonSet", "kube-proxy");
    host.host_network = true;
    server.apply(&pod(&host));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_watches_and_names_every_kind_of_address() {
    let Some(server) = ApiServer::start(TOKEN) else { return };
    world(&server);
    // Enough pods for twelve pages of 100.
    for i in 0..1100u32 {
        let address = IpAddr::from([198, 18, 10 + (i / 250) as u8, (i % 250) as u8 + 1]);
        server.apply(&pod(&PodSpec::new("load", &format!("load-{i}"), "node-2", address)));
    }
    let cache = K8sCache::new(settings(&server, TOKEN, None)).unwrap();
    cache.start().await.unwrap();
    cache.wait_synced(Duration::from_secs(10)).await.unwrap();
    assert!(cache.readiness().is_ok());

    assert_eq!(
        named(&cache, "198.18.1.2"),
        Some(("pod".into(), "shop/cart-7d9f8b6c5d-x2x9z".into(), "Deployment/cart".into()))
    );
    assert_eq!(named(&cache, "2001:db8:1::2"), named(&cache, "198.18.1.2"), "IPv6 names the same pod");
    assert_eq!(named(&cache, "198.18.2.3").unwrap().2, "CronJob/report");
    assert_eq!(named(&cache, "198.18.2.4").unwrap().2, "StatefulSet/db");
    assert_eq!(named(&cache, "198.19.0.10"), Some(("service".into(), "shop/cart".into(), String::new())));
    assert_eq!(named(&cache, "2001:db8:19::10").unwrap().1, "shop/cart");
    assert_eq!(
        named(&cache, "198.18.100.1"),
        Some(("node".into(), "node-1".into(), String::new())),
        "a hostNetwork pod's address names its node"
    );
    assert_eq!(named(&cache, "198.18.10.1").unwrap().1, "load/load-0");
    assert_eq!(named(&cache, "198.18.14.100").unwrap().1, "load/load-1099");
    assert_eq!(named(&cache, "198.18.99.99"), None);
    let pod_lists: Vec<_> =
        server.requests().into_iter().filter(|r| r.path == "/api/v1/pods" && !r.is_watch()).collect();
    assert_eq!(pod_lists.len(), 12, "1104 pods in pages of 100: {pod_lists:?}");
    assert!(pod_lists.iter().all(|r| r.query.contains("limit=100")));
    assert!(pod_lists[1..].iter().all(|r| r.query.contains("continue=")));
    assert!(server.requests().iter().any(|r| r.path == "/apis/apps/v1/replicasets"
        && r.is_watch()
        && r.query.contains("allowWatchBookmarks=true")));
    {
        let reader = cache.reader();
        let Some(Found::Pod { pod: cart, .. }) = reader.ip(ip("198.18.1.2")) else { panic!("cart") };
        let Some(Found::Pod { pod: by_uid, .. }) = reader.uid(&cart.uid) else { panic!("by uid") };
        assert_eq!(by_uid.name, cart.name);
        assert!(reader.uid("no-such-uid").is_none());
    }
    assert_eq!(cache.stats().kind(Kind::Pod).lists(), 1);

    // Watch events: a new pod, a label change, a deletion (still named during its grace).
    server.apply(&pod(&PodSpec::new("shop", "web-1", "node-1", ip("198.18.1.9")).owned_by("ReplicaSet", "web-55d")));
    eventually("the ADDED pod is named", || named(&cache, "198.18.1.9").is_some()).await;
    assert_eq!(
        named(&cache, "198.18.1.9").unwrap().2,
        "ReplicaSet/web-55d",
        "a ReplicaSet the cache has not seen is the workload"
    );
    server.apply(&replicaset("shop", "web-55d", Some("web")));
    eventually("the ReplicaSet's Deployment is used", || named(&cache, "198.18.1.9").unwrap().2 == "Deployment/web")
        .await;
    assert!(server.delete::<Pod>("shop", "web-1"));
    eventually("the deletion is applied", || {
        matches!(cache.reader().ip(ip("198.18.1.9")), Some(Found::Pod { grace: true, .. }))
    })
    .await;
    server.apply(&pod(&PodSpec::new("shop", "web-2", "node-1", ip("198.18.1.9"))));
    eventually("the reused address names the new pod", || named(&cache, "198.18.1.9").unwrap().1 == "shop/web-2").await;
    let pods = cache.stats().kind(Kind::Pod);
    assert_eq!((pods.events(fovea::k8s::EventKind::Added), pods.events(fovea::k8s::EventKind::Deleted)), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_filter_is_a_field_selector_and_pods_moving_in_are_added() {
    let Some(server) = ApiServer::start(TOKEN) else { return };
    world(&server);
    let cache = K8sCache::new(settings(&server, TOKEN, Some("node-1"))).unwrap();
    cache.start().await.unwrap();
    cache.wait_synced(Duration::from_secs(10)).await.unwrap();
    assert!(named(&cache, "198.18.1.2").is_some(), "node-1's pod");
    assert_eq!(named(&cache, "198.18.2.4"), None, "node-2's pod is not cached");
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v1/pods")
            .all(|r| r.query.contains("fieldSelector=spec.nodeName=node-1"))
    );
    server.apply(&pod(&PodSpec::new("shop", "db-0", "node-1", ip("198.18.2.4")).owned_by("StatefulSet", "db")));
    eventually("the pod now on node-1 is added", || named(&cache, "198.18.2.4").is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_relists_without_stale_entries_and_a_dropped_watch_resumes() {
    let Some(server) = ApiServer::start(TOKEN) else { return };
    world(&server);
    let cache = K8sCache::new(settings(&server, TOKEN, None)).unwrap();
    cache.start().await.unwrap();
    cache.wait_synced(Duration::from_secs(10)).await.unwrap();
    let pods = cache.stats().kind(Kind::Pod);

    // A dropped connection: the watch resumes from its resourceVersion, nothing is listed again.
    server.drop_connections();
    server.apply(&pod(&PodSpec::new("shop", "late-1", "node-1", ip("198.18.1.20"))));
    eventually("the change made while reconnecting arrives", || named(&cache, "198.18.1.20").is_some()).await;
    assert_eq!(pods.lists(), 1, "resumed, not relisted");
    assert!(pods.watches() >= 2);

    // Changes while the watch is down and the history compacted: 410 Gone, a new list, and the
    // pod deleted meanwhile is gone at once (its deletion time is unknown: no grace).
    server.stop_listening();
    assert!(server.delete::<Pod>("shop", "db-0"));
    server.apply(&pod(&PodSpec::new("shop", "late-2", "node-1", ip("198.18.1.21"))));
    server.compact();
    let before = server.requests().len();
    server.listen();
    eventually("the pods are listed again", || pods.lists() >= 2).await;
    eventually("the new pod is there", || named(&cache, "198.18.1.21").is_some()).await;
    eventually("the deleted pod is gone", || named(&cache, "198.18.2.4").is_none()).await;
    // The resumed watch (200, then an ERROR 410 event, as a real API server answers), then a list.
    let after: Vec<_> = server.requests()[before..].iter().filter(|r| r.path == "/api/v1/pods").cloned().collect();
    assert!(after.len() >= 2, "{after:?}");
    assert!(
        after[0].is_watch() && after[0].status == 200 && !after[0].query.contains("resourceVersion=0"),
        "{after:?}"
    );
    assert!(!after[1].is_watch() && !after[1].query.contains("continue="), "a fresh list follows: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_reported_and_the_cache_syncs_once_it_is_accepted() {
    let Some(server) = ApiServer::start(TOKEN) else { return };
    world(&server);
    let cache = K8sCache::new(settings(&server, "wrong-token", None)).unwrap();
    cache.start().await.unwrap();
    let err = cache.wait_synced(Duration::from_secs(2)).await.unwrap_err().to_string();
    assert!(err.contains("401 Unauthorized") && err.contains("token"), "{err}");
    assert!(cache.readiness().unwrap_err().contains("pods not listed yet"));
    assert!(cache.stats().kind(Kind::Pod).errors() >= 1);
    server.set_tokens(&[TOKEN, "wrong-token"]);
    cache.wait_synced(Duration::from_secs(40)).await.unwrap();
    assert!(named(&cache, "198.18.1.2").is_some());
}

#[test]
fn the_fake_api_servers_selectors_parse_and_match_like_kubernetes() {
    use apiserver::store::Selector;
    let pod = serde_json::json!({"metadata": {"name": "a", "labels": {"app": "cart", "tier": "web"}}, "spec": {"nodeName": "n1"}});
    assert!(Selector::parse("app=cart,tier in (web, api),!canary").unwrap().labels_match(&pod));
    assert!(!Selector::parse("app!=cart").unwrap().labels_match(&pod));
    assert!(!Selector::parse("tier notin (web)").unwrap().labels_match(&pod));
    assert!(Selector::parse("spec.nodeName=n1,metadata.name==a").unwrap().fields_match(&pod));
    assert!(!Selector::parse("spec.nodeName=n2").unwrap().fields_match(&pod));
    assert!(Selector::parse("app in (a").is_ok_and(|s| !s.labels_match(&pod)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_new_label_rules_gets_them_from_a_new_list() {
    use fovea::k8s::{Field, KeyMatch, Rule, Source};
    use fovea::model::semconv::End;
    let Some(server) = ApiServer::start(TOKEN) else { return };
    server.apply(&pod(&PodSpec::new("shop", "cart-1", "node-1", ip("198.18.1.2")).labelled(&[("app", "cart")])));
    let cache = K8sCache::new(settings(&server, TOKEN, None)).unwrap();
    let plain = cache.register_view(Vec::new()).await;
    cache.start().await.unwrap();
    cache.wait_synced(Duration::from_secs(10)).await.unwrap();
    let pods = cache.stats().kind(Kind::Pod);
    assert_eq!(pods.lists(), 1);
    let app = Rule { source: Source::Pod, field: Field::Label, key: KeyMatch::Exact("app".into()), tag_name: None };
    let labelled = cache.register_view(vec![app.clone()]).await;
    assert_ne!(labelled, plain);
    eventually("the pods are listed again for the new rule", || pods.lists() == 2).await;
    let values = |view| {
        let reader = cache.reader();
        let Some(Found::Pod { pod, .. }) = reader.ip(ip("198.18.1.2")) else { return Vec::new() };
        pod.values(view)
            .iter()
            .map(|(id, v)| (reader.tag(view, *id).unwrap().at(End::Plain).to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    eventually("the label is extracted", || {
        values(labelled) == [("k8s.pod.label.app".to_string(), "cart".to_string())]
    })
    .await;
    assert!(values(plain).is_empty());
    assert_eq!(cache.register_view(vec![app]).await, labelled, "the same rules share a view");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pods.lists(), 2, "and list nothing again");
}

/// The optional kinds: the API server's addresses (the `kubernetes` Service's ClusterIP and its
/// EndpointSlices, only those) and Retina's MetricsConfigurations (the oldest one applies),
/// watched once a component enables them, followed as they change, and never holding up
/// readiness when the custom resource is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_addresses_and_metrics_configurations_are_followed_when_enabled() {
    let Some(server) = ApiServer::start(TOKEN) else { return };
    world(&server);
    server.apply(&service("default", "kubernetes", &[ip("198.19.0.1")]));
    let slice = |name: &str, service: &str, addresses: &[&str]| {
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
            "endpoints": addresses.iter().map(|a| serde_json::json!({"addresses": [a]})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]
        })
    };
    server.apply_json("endpointslices", slice("kubernetes", "kubernetes", &["198.18.200.1", "198.18.200.2"]));
    server.apply_json("endpointslices", slice("cart-abc", "cart", &["198.18.1.2"]));
    let config = |name: &str, created: &str, metric: &str| {
        serde_json::json!({
            "apiVersion": "retina.sh/v1alpha1", "kind": "MetricsConfiguration",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {
                "contextOptions": [{"metricName": metric, "sourceLabels": ["ip", "podname"], "ttl": "1m"}],
                "namespaces": {"include": ["shop"]}
            }
        })
    };
    server.apply_json("metricsconfigurations", config("second", "2026-02-01T00:00:00Z", "drop_count"));

    let cache = K8sCache::new(settings(&server, TOKEN, None)).unwrap();
    cache.start().await.unwrap();
    eventually("synced", || cache.synced()).await;
    assert_eq!(cache.reader().api_server_addresses(), vec![ip("198.19.0.1")], "the Service only, until enabled");
    assert!(cache.reader().metrics_configuration().is_none());

    cache.enable(Kind::EndpointSlice).await;
    cache.enable(Kind::MetricsConfiguration).await;
    eventually("the API server's endpoints", || cache.reader().api_server_addresses().len() == 3).await;
    let mut addresses = cache.reader().api_server_addresses();
    addresses.sort();
    assert_eq!(addresses, vec![ip("198.18.200.1"), ip("198.18.200.2"), ip("198.19.0.1")]);
    eventually("the configuration", || cache.reader().metrics_configuration().is_some()).await;
    let before = cache.reader().changes();
    {
        let reader = cache.reader();
        let c = reader.metrics_configuration().unwrap();
        assert_eq!((c.name.as_str(), c.include.as_deref()), ("second", Some(&["shop".to_string()][..])));
        assert_eq!(c.context_options[0].metric_name, "drop_count");
        assert_eq!(c.context_options[0].source_labels, ["ip", "podname"]);
        assert_eq!(c.context_options[0].ttl, "1m");
    }

    // An older one takes over; deleting it gives back the other; endpoints follow.
    server.apply_json("metricsconfigurations", config("first", "2026-01-01T00:00:00Z", "forward_count"));
    eventually("the older configuration applies", || {
        cache.reader().metrics_configuration().is_some_and(|c| c.name == "first")
    })
    .await;
    assert!(cache.reader().changes() > before);
    assert!(server.delete_json("metricsconfigurations", "", "first"));
    eventually("back to the other", || cache.reader().metrics_configuration().is_some_and(|c| c.name == "second"))
        .await;
    server.apply_json("endpointslices", slice("kubernetes", "kubernetes", &["198.18.200.3"]));
    eventually("new endpoints", || cache.reader().api_server_addresses() == vec![ip("198.19.0.1"), ip("198.18.200.3")])
        .await;
}

/// A cluster without Retina's CRD: the watch of MetricsConfigurations fails (404) and keeps
/// retrying, while the cache is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_custom_resource_does_not_hold_up_readiness() {
    let Some(server) = ApiServer::start(TOKEN) else { return };
    world(&server);
    server.unserve("metricsconfigurations");
    let cache = K8sCache::new(settings(&server, TOKEN, None)).unwrap();
    cache.enable(Kind::MetricsConfiguration).await;
    cache.start().await.unwrap();
    eventually("synced", || cache.synced()).await;
    assert_eq!(cache.readiness(), Ok(()));
    eventually("the failed list is counted", || cache.stats().kind(Kind::MetricsConfiguration).errors() > 0).await;
    let error = cache.stats().kind(Kind::MetricsConfiguration).last_error().unwrap_or_default();
    assert!(error.contains("404") || error.contains("not found"), "{error}");
    assert!(cache.reader().metrics_configuration().is_none());
}
