//! flows: the datapath probe's in-kernel flow aggregation against the kernel's own counters.

mod support;

use fovea::ebpf::{DatapathOptions, DatapathProbe, Features, FlowDelta, LinkLayer};
use support::netns::{LinkOptions, Pod};

#[test]
fn smoke() {
    if !support::require_tools("smoke", &["ip", "ping"]) {
        return;
    }
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let mut probe = DatapathProbe::load(DatapathOptions { rtt: true, ..DatapathOptions::default() }).expect("load");
    probe
        .set_features(Features { flows: true, tcp_flags: true, handshake: true, collapse_ports: None })
        .expect("features");
    probe.attach(&pod.host_if, LinkLayer::Ethernet).expect("attach");
    support::run("ping", &["-q", "-c", "5", "-i", "0.01", &pod.addrs.b4.to_string()]);
    let mut got: Vec<FlowDelta> = Vec::new();
    probe.drain(|d| got.push(d)).expect("drain");
    eprintln!("{got:#?}");
    eprintln!("{:?}", probe.interface_counts());
    eprintln!("{:?}", probe.telemetry());
}
