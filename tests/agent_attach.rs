//! Attaching without harming others, through the whole agent: another party's TC filter on a
//! pod's veth keeps working while `fovea` runs, after a graceful stop (SIGTERM), and after a
//! `kill -9` followed by a restart, in TCX and in clsact mode; the agent never leaves its own
//! programs behind after a graceful stop and never doubles them after a restart.

#[path = "support/agent.rs"]
mod agent;
mod support;

use std::time::Duration;

use agent::{Agent, wait_collections};
use fovea::ebpf::preflight;
use support::netns::{LinkOptions, Pod};
use support::tc::{OtherFilter, our_filters, our_tcx_programs};
use support::wait_until;

fn start(iface: &str, mode: &str) -> Agent {
    Agent::start(&format!(
        "receivers:
  packetforward: {{interfaces: [{iface}], attach_mode: {mode}, collection_interval: 1s}}
exporters:
  prometheus: {{endpoint: 127.0.0.1:0}}
service:
  pipelines:
    metrics: {{receivers: [packetforward], exporters: [prometheus]}}
"
    ))
}

fn ours_attached(iface: &str, clsact: bool) -> usize {
    if clsact { our_filters(iface).len() } else { our_tcx_programs(iface) }
}

fn coexistence_through_agent(mode: &str, test: &str) {
    if !support::require_tools(test, &["ip", "tc"]) {
        return;
    }
    let clsact = mode == "clsact";
    let _lock = support::kernel_lock();
    let pod = Pod::new(LinkOptions { ipv6: false, static_neighbours: true });
    let iface = pod.host_if.clone();
    let other = OtherFilter::install(&iface);
    other.assert_working(&pod, "before fovea");

    // running: both work, and we count the packets the other filter redirects
    let fovea = start(&iface, mode);
    assert_eq!(ours_attached(&iface, clsact), 2, "ingress and egress");
    other.assert_working(&pod, "fovea running");
    wait_collections(Duration::from_secs(1), 2);
    let counted = fovea.scrape().count(
        "network_forward_packets_total",
        &[("network_interface_name", &iface), ("network_io_direction", "receive")],
    );
    assert!(counted >= 5, "fovea counted the redirected packets first: {counted}");

    // graceful stop: only ours goes
    let (status, out) = fovea.terminate();
    assert!(status.success(), "clean exit: {out}");
    assert!(other.still_installed(), "qdisc and other filter survive fovea's stop");
    assert!(our_filters(&iface).is_empty(), "no clsact filter of ours left");
    wait_until("our TCX links are gone", || our_tcx_programs(&iface) == 0);
    other.assert_working(&pod, "after SIGTERM");

    // kill -9: TCX links die with the process; clsact filters stay until the next start
    start(&iface, mode).kill9();
    if clsact {
        assert_eq!(our_filters(&iface).len(), 2, "stale filters after kill -9");
    } else {
        wait_until("TCX links die with the process", || our_tcx_programs(&iface) == 0);
    }
    assert!(other.still_installed());
    other.assert_working(&pod, "after kill -9");

    // restart: stale filters replaced, not doubled
    let fovea = start(&iface, mode);
    assert_eq!(ours_attached(&iface, clsact), 2, "attached once after restart");
    if !clsact {
        assert!(our_filters(&iface).is_empty());
    }
    other.assert_working(&pod, "restarted");
    let (status, out) = fovea.terminate();
    assert!(status.success(), "clean exit: {out}");
    assert!(other.still_installed());
    assert!(our_filters(&iface).is_empty());
    wait_until("our TCX links are gone", || our_tcx_programs(&iface) == 0);
    other.assert_working(&pod, "after the last stop");
}

#[test]
fn agent_keeps_other_filter_working_tcx() {
    let test = "agent_keeps_other_filter_working_tcx";
    if !support::require_root(test) {
        return;
    }
    if !preflight::tcx_supported() {
        support::skip_note(test, "this kernel has no TCX (Linux 6.6+)");
        return;
    }
    coexistence_through_agent("tcx", test);
}

#[test]
fn agent_keeps_other_filter_working_clsact() {
    coexistence_through_agent("clsact", "agent_keeps_other_filter_working_clsact");
}
