//! What the Kubernetes metadata cache costs, against the fake API server (tests/support) holding
//! a cluster of 10 000 pods (5 000 Deployments with one ReplicaSet and two pods each), 1 000
//! Services, 200 nodes and 50 namespaces, as realistic k8s-openapi objects:
//!
//! 1. RSS of the whole agent (the release `fovea` binary) once its cache has synced, with pods
//!    watched cluster-wide and with the node filter, against the same config without
//!    `k8sattributes`;
//! 2. lookups per second on one core (an address to its pod, and a flow record's two ends
//!    labelled as the processor does);
//! 3. the time from a pod's ADDED event (the API server sending it) to the address resolving;
//! 4. the bytes the API server sends per agent per hour at 10 pod events/s across the cluster,
//!    node-scoped and cluster-wide, plus the one-time initial list.
//!
//! `cargo bench --bench k8s_cache` prints tables (needs `openssl`; the agent's eBPF receivers are
//! included when run as root). Measurements, never assertions. Environment knobs:
//! `K8S_BENCH_ONLY_RSS` / `K8S_BENCH_SKIP_RSS` (part 1 only / all but part 1),
//! `K8S_BENCH_NO_EBPF` (the agent without eBPF receivers, for the cache's own share of RSS),
//! `K8S_BENCH_TRACE` (the agent's RSS every 5 ms until it is ready, on stderr).

#[path = "../tests/support/apiserver/mod.rs"]
mod apiserver;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::ApiServer;
use apiserver::objects::{PodSpec, namespace, node, pod, replicaset, service};
use fovea::k8s::{Auth, CacheSettings, K8sCache, Kind};
use fovea::model::semconv::End;
use fovea::model::{FlowBatch, FlowKind, FlowRecord, KeyValue};
use fovea::processors::k8sattributes::{DEFAULT_METADATA, Renderer, Selection};

const TOKEN: &str = "bench-token";
const PODS: u32 = 10_000;
const NODES: u32 = 200;
const NAMESPACES: u32 = 50;
const SERVICES: u32 = 1_000;

fn pod_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 10 + i))
}

fn node_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 0, n as u8 + 1))
}

fn node_name(n: u32) -> String {
    format!("node-{n:03}")
}

/// Pod `i`: Deployment `app-{i/2}` (ReplicaSet `app-{i/2}-7c9d8b6f5d`), on node `i % NODES`.
fn pod_spec_parts(i: u32) -> (String, String, String, String) {
    let d = i / 2;
    let ns = format!("ns-{:02}", d % NAMESPACES);
    let rs = format!("app-{d}-7c9d8b6f5d");
    (ns, format!("{rs}-{:05x}", i), rs, node_name(i % NODES))
}

fn populate(server: &ApiServer) {
    for n in 0..NAMESPACES {
        server.apply(&namespace(&format!("ns-{n:02}"), &[("team", "bench")]));
    }
    for n in 0..NODES {
        server.apply(&node(&node_name(n), node_ip(n), &[]));
    }
    for d in 0..PODS / 2 {
        let ns = format!("ns-{:02}", d % NAMESPACES);
        server.apply(&replicaset(&ns, &format!("app-{d}-7c9d8b6f5d"), Some(&format!("app-{d}"))));
    }
    for s in 0..SERVICES {
        let ns = format!("ns-{:02}", s % NAMESPACES);
        let ip = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 64, 0)) + s));
        server.apply(&service(&ns, &format!("app-{s}"), &[ip]));
    }
    for i in 0..PODS {
        let (ns, name, rs, node) = pod_spec_parts(i);
        let spec = PodSpec::new(&ns, &name, &node, pod_ip(i)).owned_by("ReplicaSet", &rs).labelled(&[("app", "bench")]);
        server.apply(&pod(&spec));
    }
}

fn settings(kubeconfig: &Path, node: Option<String>) -> CacheSettings {
    CacheSettings {
        auth: Auth::KubeConfig { path: Some(kubeconfig.to_path_buf()), context: None },
        node,
        namespace: None,
        pod_label_selector: None,
        pod_field_selector: None,
        delete_grace_period: Duration::from_secs(30),
        exclude_pods: Vec::new(),
    }
}

/// `(VmRSS, VmHWM)` of a process in MiB (`RssAnon` and `RssShmem` on stderr).
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    eprintln!(
        "RssAnon {:.1} MiB, RssFile {:.1} MiB, RssShmem {:.1} MiB",
        kib("RssAnon:") / 1024.0,
        kib("RssFile:") / 1024.0,
        kib("RssShmem:") / 1024.0
    );
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

fn readyz(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the agent with `k8s` (a processor block, or nothing) and returns its RSS once ready.
fn agent_rss(kubeconfig: &Path, k8s: Option<&str>, root: bool) -> (f64, f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let receivers = if root {
        "receivers:\n  packetforward: {}\n  dropreason: {}\n  tcpretrans: {}\n  linuxutil: {}\n"
    } else {
        "receivers:\n  linuxutil: {}\n"
    };
    let flows = if root {
        "    flows: {receivers: [dropreason, tcpretrans], processors: [PROC], exporters: [debug]}\n"
    } else {
        ""
    };
    let metrics_receivers = if root { "[packetforward, dropreason, tcpretrans, linuxutil]" } else { "[linuxutil]" };
    let (processors, proc_list) = match k8s {
        Some(block) => (
            format!(
                "processors:\n  k8sattributes:\n    auth_type: kubeConfig\n    kube_config_path: {}\n{block}",
                kubeconfig.display()
            ),
            "k8sattributes",
        ),
        None => ("processors:\n  batch: {}\n".to_string(), "batch"),
    };
    let config = format!(
        "{receivers}{processors}exporters:\n  prometheus: {{endpoint: '127.0.0.1:0'}}\n  debug: {{verbosity: basic}}\nservice:\n  pipelines:\n    metrics: {{receivers: {metrics_receivers}, processors: [{proc_list}], exporters: [prometheus]}}\n{}",
        flows.replace("PROC", proc_list)
    );
    let path = dir.path().join("fovea.yaml");
    std::fs::write(&path, config).unwrap();
    let port = free_port();
    let started = Instant::now();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args([
            "run",
            "--config",
            &path.display().to_string(),
            "--set",
            &format!("service.telemetry.metrics.address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run fovea");
    let trace = std::env::var("K8S_BENCH_TRACE").is_ok();
    let mut samples = Vec::new();
    while readyz(port) != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(120), "fovea not ready");
        std::thread::sleep(Duration::from_millis(5));
        if trace {
            samples.push((started.elapsed().as_millis(), rss(child.id()).0));
        }
    }
    if trace {
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(5));
            samples.push((started.elapsed().as_millis(), rss(child.id()).0));
        }
        eprintln!(
            "TRACE ready at {} ms: {:?}",
            started.elapsed().as_millis(),
            samples.iter().map(|(t, r)| format!("{t}:{r:.0}")).collect::<Vec<_>>().join(" ")
        );
    }
    let synced = started.elapsed();
    // Settled: the largest of five readings over 10 s.
    let mut now = 0f64;
    let mut peak = 0f64;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(2));
        let (r, p) = rss(child.id());
        now = now.max(r);
        peak = p;
    }
    let _ = child.kill();
    let _ = child.wait();
    (now, peak, synced)
}

fn main() {
    let Some(server) = ApiServer::start(TOKEN) else {
        println!("skipped: needs the openssl command");
        return;
    };
    server.set_bookmark_interval(Duration::from_secs(60));
    let t = Instant::now();
    populate(&server);
    println!(
        "fake cluster: {PODS} pods, {} ReplicaSets, {SERVICES} Services, {NODES} nodes, {NAMESPACES} namespaces (built in {:.1} s)\n",
        PODS / 2,
        t.elapsed().as_secs_f64()
    );
    let kubeconfig = server.kubeconfig(TOKEN);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0 && std::env::var("K8S_BENCH_NO_EBPF").is_err();

    // 1. RSS of the whole agent.
    println!(
        "## 1. agent RSS ({} receivers; release build)",
        if root { "packetforward, dropreason, tcpretrans, linuxutil" } else { "linuxutil only (not root)" }
    );
    println!("| config | RSS after sync | peak RSS (VmHWM) | start to ready |");
    println!("|---|---|---|---|");
    let rows = [
        ("without k8sattributes", None),
        ("k8sattributes, node filter (50 pods of node-007)", Some("    filter: {node: node-007}\n")),
        ("k8sattributes, cluster-wide (10 000 pods)", Some("    {}\n")),
    ];
    let only_rss = std::env::var("K8S_BENCH_ONLY_RSS").is_ok();
    let skip_rss = std::env::var("K8S_BENCH_SKIP_RSS").is_ok();
    for (label, block) in rows.into_iter().filter(|_| !skip_rss) {
        let block = block.map(|b| if b.trim() == "{}" { "" } else { b });
        let (now, peak, ready) = agent_rss(&kubeconfig, block, root);
        println!("| {label} | {now:.1} MiB | {peak:.1} MiB | {:.2} s |", ready.as_secs_f64());
    }

    if only_rss {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let cache = Arc::new(K8sCache::new(settings(&kubeconfig, None)).unwrap());
    let view = runtime.block_on(async {
        let view = cache.register_view(Vec::new()).await;
        cache.start().await.unwrap();
        cache.wait_synced(Duration::from_secs(120)).await.unwrap();
        view
    });
    let bytes_estimate = {
        let mut out = Vec::new();
        fovea::telemetry::Collector::collect(&*cache.collector(), 0, 1, &mut out);
        out.iter().find(|m| m.name == "fovea.k8s.cache.bytes").map(|m| format!("{:?}", m.data)).unwrap_or_default()
    };
    let listed = cache.stats().kind(Kind::Pod).events(fovea::k8s::EventKind::Listed);
    println!("\ncache: {listed} pods listed; fovea.k8s.cache.bytes estimate {bytes_estimate}");

    // 2. Lookups per second on one core.
    let renderer = Renderer::new(Selection::of(DEFAULT_METADATA.iter().copied()), view, &[]);
    let n = 2_000_000u32;
    let t = Instant::now();
    let mut hits = 0u64;
    {
        let reader = cache.reader();
        for k in 0..n {
            let ip = pod_ip(k.wrapping_mul(7919) % PODS);
            hits += u64::from(reader.ip(ip).is_some());
        }
    }
    let lookup = t.elapsed();
    assert_eq!(hits, u64::from(n));
    let records: Vec<FlowRecord> = (0..1000u32)
        .map(|k| FlowRecord::new(FlowKind::Drop, pod_ip(k * 7 % PODS), pod_ip((k * 13 + 5) % PODS)))
        .collect();
    let rounds = 500;
    let mut scratch: Vec<KeyValue> = Vec::with_capacity(64);
    let t = Instant::now();
    let mut attributes = 0usize;
    for _ in 0..rounds {
        let mut batch = FlowBatch { records: records.clone(), ..FlowBatch::default() };
        let reader = cache.reader();
        for r in &mut batch.records {
            scratch.clear();
            for (end, ip) in [(End::Destination, r.destination), (End::Source, r.source)] {
                if let Some(found) = reader.ip(ip) {
                    renderer.render(&reader, found, None, end, &mut scratch);
                }
            }
            r.attributes.extend(scratch.drain(..));
            attributes += r.attributes.len();
        }
    }
    let label = t.elapsed();
    let labelled = rounds * records.len();
    println!("\n## 2. lookups on one core");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| address -> pod lookups | {:.1} M/s ({:.0} ns each) |",
        f64::from(n) / lookup.as_secs_f64() / 1e6,
        lookup.as_nanos() as f64 / f64::from(n)
    );
    println!(
        "| flow records labelled, both ends ({} attributes each, record copy included) | {:.2} M records/s ({:.0} ns each) |",
        attributes / labelled,
        labelled as f64 / label.as_secs_f64() / 1e6,
        label.as_nanos() as f64 / labelled as f64
    );

    // 3. ADDED -> the address resolves.
    let mut latencies = Vec::new();
    for k in 0..200u32 {
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 200, (k % 250) as u8 + 1));
        let name = format!("fresh-{k}");
        let t = Instant::now();
        server.apply(&pod(&PodSpec::new("ns-00", &name, "node-000", ip)));
        while cache
            .reader()
            .ip(ip)
            .is_none_or(|f| !matches!(f, fovea::k8s::Found::Pod { pod, .. } if pod.name == name.as_str()))
        {
            std::hint::spin_loop();
        }
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    println!("\n## 3. pod ADDED (server sends) -> its address resolves in the cache (200 pods)");
    println!("| p50 | p90 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
        pct(50),
        pct(90),
        pct(99),
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    drop(cache);

    // 4. API-server bytes per agent per hour at 10 pod events/s across the cluster.
    let window = Duration::from_secs(30);
    println!(
        "\n## 4. bytes the API server sends one agent, 10 pod events/s cluster-wide ({}-s window, extrapolated)",
        window.as_secs()
    );
    println!("| scope | initial lists (once), gzip / plain | pod events it receives | bytes per hour | per event |");
    println!("|---|---|---|---|---|");
    for (label, node) in [("node filter (node-007)", Some(node_name(7))), ("cluster-wide", None)] {
        let before = server.bytes_served();
        let plain_before = server.bytes_uncompressed();
        let cache = K8sCache::new(settings(&kubeconfig, node)).unwrap();
        runtime.block_on(async {
            cache.start().await.unwrap();
            cache.wait_synced(Duration::from_secs(120)).await.unwrap();
        });
        std::thread::sleep(Duration::from_millis(500));
        let initial = server.bytes_served() - before;
        let initial_plain = server.bytes_uncompressed() - plain_before;
        let events_before = cache.stats().kind(Kind::Pod).events(fovea::k8s::EventKind::Modified);
        let start = Instant::now();
        let mut k = 0u32;
        while start.elapsed() < window {
            // A status or label update of a random pod somewhere in the cluster.
            let i = k.wrapping_mul(2_654_435_761) % PODS;
            let (ns, name, rs, node) = pod_spec_parts(i);
            let version = format!("v{k}");
            let spec = PodSpec::new(&ns, &name, &node, pod_ip(i))
                .owned_by("ReplicaSet", &rs)
                .labelled(&[("app", "bench"), ("rev", &version)]);
            server.apply(&pod(&spec));
            k += 1;
            std::thread::sleep(Duration::from_millis(100).saturating_sub(Duration::from_micros(200)));
        }
        std::thread::sleep(Duration::from_millis(500));
        let during = server.bytes_served() - before - initial;
        let seen = cache.stats().kind(Kind::Pod).events(fovea::k8s::EventKind::Modified) - events_before;
        let per_hour = during as f64 * 3600.0 / start.elapsed().as_secs_f64();
        let per_event = if seen > 0 { format!("{:.0} B", during as f64 / seen as f64) } else { "-".into() };
        println!(
            "| {label} | {:.2} MB / {:.2} MB | {seen} of {k} | {:.2} MB | {per_event} |",
            initial as f64 / 1e6,
            initial_plain as f64 / 1e6,
            per_hour / 1e6
        );
        drop(cache);
    }
}
