//! Probe telemetry: run counts from BPF statistics agree with what the probes counted, map
//! fill is reported, and the kernel cost per invocation is printed (run with --nocapture).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use fovea::ebpf::telemetry::enable_run_time_stats;
use fovea::ebpf::{Direction, DropConfig, DropProbe, ForwardProbe, ProbeTelemetry, RetransConfig, TcpRetransProbe};
use support::netns::{LinkOptions, Pod};

fn print(probe: &str, t: &ProbeTelemetry) {
    for p in &t.programs {
        eprintln!("{probe:>14} {:<22} runs {:>8}  ns/run {:>8.1}", p.name, p.run_count, p.ns_per_run().unwrap_or(0.0));
    }
    for m in &t.maps {
        eprintln!("{probe:>14} map {:<18} {}/{}", m.name, m.entries, m.max_entries);
    }
}

#[test]
fn run_counts_match_counted_packets_and_cost_is_reported() {
    let test = "run_counts_match_counted_packets_and_cost_is_reported";
    if !support::require_tools(test, &["ip", "ping"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let _stats = enable_run_time_stats().expect("BPF_ENABLE_STATS");
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let mut fwd = ForwardProbe::load().expect("forward");
    let ifindex = fwd.attach(&pod.host_if).expect("attach");
    let drops = DropProbe::load(DropConfig::default()).expect("drop");
    let retrans = TcpRetransProbe::load(RetransConfig::default()).expect("tcpretrans");

    support::run("ping", &["-q", "-c", "200", "-i", "0.002", "-s", "100", &pod.addrs.b4.to_string()]);
    // NO_SOCKET drops in the pod
    let sock = UdpSocket::bind(SocketAddr::new(pod.addrs.a4.into(), 0)).expect("bind");
    for _ in 0..100 {
        sock.send_to(b"drop me", SocketAddr::new(pod.addrs.b4.into(), 9)).expect("send");
    }
    std::thread::sleep(Duration::from_millis(200));

    let t = fwd.telemetry();
    print("packetforward", &t);
    let counts = fwd.counters().expect("counters");
    let counted = |d: Direction| -> u64 {
        counts.iter().filter(|c| c.ifindex == ifindex && c.direction == d).map(|c| c.packets).sum()
    };
    let runs = |name: &str| -> u64 {
        t.programs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.run_count)
            .unwrap_or_else(|| panic!("{name} missing from telemetry"))
    };
    // one invocation per packet, and every invocation counted exactly one packet
    assert_eq!(runs("fovea_fwd_ingress"), counted(Direction::Ingress));
    assert_eq!(runs("fovea_fwd_egress"), counted(Direction::Egress));
    assert!(counted(Direction::Egress) >= 300, "200 pings + 100 datagrams");
    let fill = t.maps.iter().find(|m| m.name == "counts").expect("counts map");
    assert_eq!((fill.entries, fill.max_entries), (2, 4096));
    assert_eq!(t.records.counter_full, 0);

    let t = drops.telemetry();
    print("dropreason", &t);
    let counted: u64 = drops.counters().expect("counters").iter().map(|c| c.packets).sum();
    let prog = &t.programs[0];
    assert_eq!(t.programs.len(), 1, "only the hook in use is loaded");
    assert!(prog.run_count >= counted && counted >= 100, "{prog:?} counted {counted}");
    assert!(t.maps.iter().any(|m| m.name == "records" && m.max_entries == 256 * 1024));

    let t = retrans.telemetry();
    print("tcpretrans", &t);
    assert_eq!(t.programs.len(), 2);
}
