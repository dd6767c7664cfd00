//! The agent as a user first meets it: `fovea run` with the embedded default config runs all
//! four node receivers and serves their metrics; without the capabilities it needs it exits
//! with the preflight's clear list of what is missing, and leaves nothing attached.

#[path = "support/agent.rs"]
mod agent;
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use agent::{Agent, Launch};
use support::netns::{LinkOptions, Pod};
use support::tc::our_tcx_programs;

/// `fovea run` without `--config` (endpoints moved to free ports with `--set`).
#[test]
fn agent_default_config_serves_all_node_receivers() {
    let test = "agent_default_config_serves_all_node_receivers";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let agent = Agent::launch(Launch { config: None, sets: Vec::new(), wrapper: None })
        .unwrap_or_else(|(status, out)| panic!("default config did not start ({status}):\n{out}"));
    // a drop the default dropreason counts: UDP to a closed port in the pod
    let sock = UdpSocket::bind(SocketAddr::new(pod.addrs.a4.into(), 0)).expect("bind");
    for _ in 0..3 {
        let _ = sock.send_to(b"closed", SocketAddr::new(pod.addrs.b4.into(), 9));
    }
    let wanted = |m: &agent::Exposition| {
        let fwd = m
            .samples("network_forward_packets_total")
            .iter()
            .any(|(l, v)| l.get("network_interface_name") == Some(&pod.host_if) && *v >= 3.0);
        fwd && m
            .count("network_drop_packets_total", &[("drop_reason", "NO_SOCKET"), ("network_io_direction", "receive")])
            >= 3
            && m.value("network_tcp_retransmits_total", &[]).is_some()
            && !m.samples("network_netstat").is_empty()
            && !m.samples("network_forward_bytes_total").is_empty()
            && !m.samples("network_drop_bytes_total").is_empty()
    };
    // the default collection interval is 10 s
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut m = agent.scrape();
    while !wanted(&m) {
        assert!(Instant::now() < deadline, "default config metrics incomplete:\n{}\n{}", m.0, agent.stderr());
        std::thread::sleep(Duration::from_millis(500));
        m = agent.scrape();
    }
    assert!(m.samples("network_forward_packets_total").iter().all(|(l, _)| l["network_interface_name"] != "lo"));
    // Every receiver counts what it produced as received, and all of it was accepted (a scrape
    // taken while a batch is being sent may see one counter ahead: read again).
    let deadline = Instant::now() + Duration::from_secs(10);
    let own = loop {
        let own = agent.scrape_at(agent.telemetry);
        let counts: Vec<(f64, f64)> = ["linuxutil", "packetforward", "dropreason", "tcpretrans"]
            .iter()
            .map(|r| {
                let labels = [("receiver", *r), ("signal", "metrics")];
                let get = |name| own.value(name, &labels).unwrap_or(-1.0);
                (get("fovea_receiver_received_items_total"), get("fovea_receiver_accepted_items_total"))
            })
            .collect();
        if counts.iter().all(|(received, accepted)| *received > 0.0 && received == accepted) {
            break own;
        }
        assert!(Instant::now() < deadline, "received != accepted: {counts:?}\n{}", own.0);
        std::thread::sleep(Duration::from_millis(50));
    };
    for receiver in ["packetforward", "dropreason", "tcpretrans"] {
        assert!(
            own.samples("fovea_ebpf_map_max_entries").iter().any(|(l, _)| l["receiver"] == receiver),
            "own metrics of {receiver}:\n{}",
            own.0
        );
    }
    assert!(agent.stdout().contains("Metrics\t"), "debug exporter summaries: {}", agent.stdout());
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

/// Without CAP_BPF, CAP_SYS_ADMIN, CAP_PERFMON and CAP_NET_ADMIN the agent exits non-zero with
/// the preflight's multi-line message (each capability, what to do), no panic, nothing attached.
#[test]
fn agent_without_capabilities_explains_and_exits() {
    let test = "agent_without_capabilities_explains_and_exits";
    if !support::require_tools(test, &["ip", "capsh", "tc"]) {
        return;
    }
    // an agent on the default config (another test) would attach to this pod's veth too
    let _lock = support::kernel_lock();
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let config = format!(
        "receivers:
  packetforward: {{interfaces: [{}]}}
  dropreason: {{}}
  tcpretrans: {{}}
exporters:
  prometheus: {{endpoint: 127.0.0.1:0}}
service:
  pipelines:
    metrics: {{receivers: [packetforward, dropreason, tcpretrans], exporters: [prometheus]}}
",
        pod.host_if
    );
    let result = Agent::launch(Launch {
        config: Some(&config),
        sets: Vec::new(),
        wrapper: Some("capsh --drop=cap_bpf,cap_sys_admin,cap_perfmon,cap_net_admin -- -c"),
    });
    let (status, out) = match result {
        Ok(agent) => panic!("fovea started without capabilities:\n{}", agent.output()),
        Err(e) => e,
    };
    assert!(!status.success(), "non-zero exit: {status}\n{out}");
    assert!(!out.contains("panicked"), "{out}");
    // One message, before anything starts, lists every missing capability with the receivers
    // that need it.
    assert!(
        out.contains("cannot load the eBPF probes of receivers packetforward, dropreason, tcpretrans:\n  - "),
        "one line per missing thing:\n{out}"
    );
    assert!(
        out.contains(
            "CAP_BPF missing (to load programs and create maps); run as root or grant CAP_BPF (CAP_SYS_ADMIN also works) \
             [needed by packetforward, dropreason, tcpretrans]"
        ),
        "{out}"
    );
    assert!(out.contains("CAP_PERFMON missing (to load tracing programs and read kernel memory from them); run as root or grant CAP_PERFMON (CAP_SYS_ADMIN also works) [needed by dropreason, tcpretrans]"), "{out}");
    assert!(out.contains("CAP_NET_ADMIN missing (to attach TC programs to interfaces); run as root or grant CAP_NET_ADMIN [needed by packetforward]"), "{out}");
    assert_eq!(our_tcx_programs(&pod.host_if), 0, "nothing attached");
    let filters = support::run("tc", &["filter", "show", "dev", &pod.host_if, "ingress"]);
    assert!(!filters.contains("fovea"), "no clsact filter left: {filters}");
}

/// At `service.telemetry.metrics.level: detailed` the agent turns on BPF run-time statistics
/// itself: its own metrics then count every invocation of the program on the pod's veth.
#[test]
fn agent_detailed_level_reports_program_run_time() {
    let test = "agent_detailed_level_reports_program_run_time";
    if !support::require_tools(test, &["ip"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let agent = Agent::start(&format!(
        "receivers:
  packetforward: {{interfaces: [{}], collection_interval: 1s}}
exporters:
  prometheus: {{endpoint: 127.0.0.1:0}}
service:
  pipelines:
    metrics: {{receivers: [packetforward], exporters: [prometheus]}}
  telemetry:
    metrics: {{level: detailed}}
",
        pod.host_if
    ));
    const N: u64 = 200;
    let (host, inside) = (pod.addrs.a4, pod.addrs.b4);
    let sink = UdpSocket::bind(SocketAddr::new(host.into(), 9401)).expect("bind");
    pod.ns.run_in(move || {
        let s = UdpSocket::bind(SocketAddr::new(inside.into(), 0)).expect("bind");
        for _ in 0..N {
            s.send_to(b"run time", SocketAddr::new(host.into(), 9401)).expect("send");
        }
    });
    drop(sink);
    let own = agent.scrape_at(agent.telemetry);
    let program = [("receiver", "packetforward"), ("program", "fovea_fwd_ingress")];
    let runs = own.count("fovea_ebpf_program_run_count_total", &program);
    let ns = own.count("fovea_ebpf_program_run_time_nanoseconds_total", &program);
    assert!(runs >= N, "every packet on the veth ran the program: {runs}\n{}", own.0);
    assert!(ns > 0, "run time is counted: {ns}");
    eprintln!("{test}: fovea_fwd_ingress {:.1} ns per invocation over {runs} runs", ns as f64 / runs as f64);
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}
