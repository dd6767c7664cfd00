//! tcpretrans through the whole agent: a TCP transfer through a 20 % random drop makes the
//! sender retransmit; the real `fovea` binary's `network_tcp_retransmits_total` grows by exactly
//! what the kernel's `TcpRetransSegs` counted in the namespaces involved (plus retransmits
//! elsewhere on the machine, known from the flow records), for IPv4 and IPv6, and the flow
//! records of the sending side add up to the sender's `TcpRetransSegs`.

#[path = "support/agent.rs"]
mod agent;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use agent::{Agent, wait_collections};
use support::netns::NsPair;
use support::tcp;

const PORT: u16 = 5202;
const INTERVAL: Duration = Duration::from_secs(1);

/// A retransmit record as the debug exporter prints it:
/// `<time> retransmit <src:port> -> <dst:port> proto=6 dir=transmit if=0 packets=N bytes=0 state=x`.
struct Printed {
    src: SocketAddr,
    dst: SocketAddr,
    segments: u64,
    state: String,
}

/// `198.18.0.1:5000` or `[2001:db8::1]:5000`, as the debug exporter prints endpoints.
fn endpoint(text: &str) -> Option<SocketAddr> {
    text.parse().ok()
}

fn printed_retransmits(stdout: &str) -> Vec<Printed> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1) != Some(&"retransmit") || f.get(3) != Some(&"->") {
                return None;
            }
            let field = |k: &str| f.iter().find_map(|x| x.strip_prefix(k)).map(str::to_string);
            Some(Printed {
                src: endpoint(f[2])?,
                dst: endpoint(f[4])?,
                segments: field("packets=")?.parse().ok()?,
                state: field("state=").unwrap_or_default(),
            })
        })
        .collect()
}

fn retransmits_equal_nstat(ipv6: bool, test: &str) {
    if !support::require_tools(test, &["ip", "nft", "nstat", "ss"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pair = NsPair::new();
    let (client_ip, server_ip) = tcp::endpoints(&pair, ipv6);
    tcp::drop_one_in_five(&pair, client_ip, PORT);
    let agent = Agent::start(
        "receivers:
  tcpretrans: {collection_interval: 1s, flows: {max_records_per_second: 100000}}
exporters:
  prometheus: {endpoint: 127.0.0.1:0}
  debug: {verbosity: normal}
service:
  pipelines:
    metrics: {receivers: [tcpretrans], exporters: [prometheus]}
    flows: {receivers: [tcpretrans], exporters: [debug]}
",
    );
    wait_collections(INTERVAL, 1);
    let total = |m: &agent::Exposition| m.count("network_tcp_retransmits_total", &[]);
    let v0 = total(&agent.scrape());
    let printed_before = agent.stdout().len();
    let (a0, b0) = (pair.a.nstat("TcpRetransSegs"), pair.b.nstat("TcpRetransSegs"));
    let client = tcp::transfer(&pair, server_ip, PORT);
    let (sender, receiver) = (pair.a.nstat("TcpRetransSegs") - a0, pair.b.nstat("TcpRetransSegs") - b0);
    assert!(sender > 0, "the 20 % drop caused retransmits");
    wait_collections(INTERVAL, 2);
    let v1 = total(&agent.scrape());
    let stdout = agent.stdout();
    let printed = printed_retransmits(&stdout[printed_before..]);

    let server = SocketAddr::new(server_ip, PORT);
    let ours = |r: &Printed| (r.src == client && r.dst == server) || (r.src == server && r.dst == client);
    let from_client: u64 = printed.iter().filter(|r| ours(r) && r.src == client).map(|r| r.segments).sum();
    assert_eq!(from_client, sender, "flow records of the sender add up to its TcpRetransSegs");
    assert!(printed.iter().filter(|r| ours(r)).any(|r| r.state == "established"), "data retransmits in ESTABLISHED");
    let foreign: u64 = printed.iter().filter(|r| !ours(r)).map(|r| r.segments).sum();
    if foreign > 0 {
        eprintln!("note: {foreign} retransmitted segments from elsewhere on this machine");
    }
    let delta = v1 - v0;
    assert!(
        delta >= sender + receiver && delta <= sender + receiver + foreign,
        "network_tcp_retransmits_total grew by {delta}; TcpRetransSegs: sender {sender} + receiver {receiver} (+ {foreign} elsewhere)"
    );
    eprintln!("{test}: metric delta {delta}, TcpRetransSegs sender {sender} receiver {receiver}, foreign {foreign}");
    let own = agent.scrape_at(agent.telemetry);
    assert_eq!(own.count("fovea_ebpf_records_lost_total", &[("receiver", "tcpretrans")]), 0);
    assert_eq!(own.count("fovea_ebpf_records_capped_total", &[("receiver", "tcpretrans")]), 0);
    let (status, out) = agent.terminate();
    assert!(status.success(), "clean exit: {out}");
}

#[test]
fn agent_retransmits_equal_nstat_ipv4() {
    retransmits_equal_nstat(false, "agent_retransmits_equal_nstat_ipv4");
}

#[test]
fn agent_retransmits_equal_nstat_ipv6() {
    retransmits_equal_nstat(true, "agent_retransmits_equal_nstat_ipv6");
}
