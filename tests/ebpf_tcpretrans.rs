//! tcpretrans: retransmitted segments counted in the kernel equal the kernel's own
//! TcpRetransSegs, with the right 5-tuple and state in the flow records.

mod support;

use std::net::SocketAddr;

use fovea::ebpf::{RetransConfig, RetransRecord, TcpRetransProbe};
use fovea::model::TcpState;
use support::netns::NsPair;
use support::tcp::{self, BYTES};

const PORT: u16 = 5201;

/// `classic`: attach the classic tracepoints (the fallback where tp_btf cannot load). They are
/// skipped now and then by the kernel (docs/ebpf.md), so for them the records may fall short of
/// TcpRetransSegs but never exceed it.
fn retransmits_match_nstat(ipv6: bool, classic: bool, test: &str) {
    if !support::require_tools(test, &["ip", "nft", "nstat", "ss"]) {
        return;
    }
    let _lock = support::kernel_lock();
    let pair = NsPair::new();
    let (client_ip, server_ip) = tcp::endpoints(&pair, ipv6);
    tcp::drop_one_in_five(&pair, client_ip, PORT);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _enter = rt.enter();
    let mut probe = TcpRetransProbe::load(RetransConfig {
        record_rate_per_sec: 1_000_000,
        ring_bytes: 1 << 20,
        force_tracepoint: false,
    })
    .expect("load tcpretrans");
    let mut records = probe.take_records().expect("records");

    let (a0, b0) = (pair.a.nstat("TcpRetransSegs"), pair.b.nstat("TcpRetransSegs"));
    let probes0 = pair.a.nstat("TcpExtTCPLossProbes");
    let client = tcp::transfer(&pair, server_ip, PORT);
    let (a1, b1) = (pair.a.nstat("TcpRetransSegs"), pair.b.nstat("TcpRetransSegs"));
    let loss_probes = pair.a.nstat("TcpExtTCPLossProbes") - probes0;
    let (sender, receiver) = (a1 - a0, b1 - b0);
    let (dropped, _) = pair.b.nft_counter("inet", "fovea_t", "dropped");
    assert!(dropped > 0 && sender > 0, "the 20 % drop caused retransmits ({dropped} dropped)");

    let mut all: Vec<RetransRecord> = Vec::new();
    let totals = loop {
        let t1 = probe.totals().expect("totals");
        records.try_drain(&mut all);
        if probe.totals().expect("totals") == t1 {
            break t1;
        }
    };
    let stats = probe.record_stats();
    assert_eq!((stats.lost, stats.capped), (0, 0), "every retransmit has a record: {stats:?}");

    let server = SocketAddr::new(server_ip, PORT);
    let is_ours = |r: &RetransRecord| {
        let (s, d) = (SocketAddr::new(r.tuple.src, r.tuple.src_port), SocketAddr::new(r.tuple.dst, r.tuple.dst_port));
        (s == client && d == server) || (s == server && d == client)
    };
    // Counted as the kernel counts TcpRetransSegs: a transmit that failed after the kernel's
    // early checks (e.g. NET_XMIT_DROP from a full veth backlog) is counted, early aborts are not.
    let segs = |it: &mut dyn Iterator<Item = &RetransRecord>| -> u64 {
        it.filter(|r| r.counted()).map(|r| u64::from(r.segments)).sum()
    };
    let from_client: Vec<&RetransRecord> = all.iter().filter(|r| is_ours(r) && r.tuple.src == client.ip()).collect();
    let errors: Vec<i32> = all.iter().filter(|r| r.err != 0).map(|r| r.err).collect();
    let ours = segs(&mut from_client.iter().copied());
    if classic {
        assert!(ours > 0 && ours <= sender, "{test}: classic tracepoints: {ours} of {sender} segments, never more");
        return;
    }
    assert_eq!(
        ours, sender,
        "records of the sending side sum to TcpRetransSegs in its namespace (errors {errors:?}, {loss_probes} loss probes)"
    );
    for r in &from_client {
        assert_eq!(r.tuple.protocol, 6);
        assert_eq!(SocketAddr::new(r.tuple.dst, r.tuple.dst_port), server);
        assert!(
            matches!(r.state, Some(TcpState::SynSent | TcpState::Established | TcpState::FinWait1 | TcpState::Closing)),
            "a sender retransmits in SYN_SENT/ESTABLISHED/FIN_WAIT1/CLOSING, got {:?}",
            r.state
        );
    }
    assert!(
        from_client.iter().any(|r| r.state == Some(TcpState::Established)),
        "data retransmits happen in ESTABLISHED"
    );
    let foreign = segs(&mut all.iter().filter(|r| !is_ours(r)));
    if foreign > 0 {
        eprintln!("note: {foreign} retransmitted segments from elsewhere on this machine");
    }
    assert_eq!(
        totals.segments,
        sender + receiver + foreign,
        "in-kernel total equals TcpRetransSegs of both namespaces (plus retransmits elsewhere)"
    );
    // Attempts the kernel aborted before counting (e.g. -EBUSY: the original still in a host
    // queue) are not in TcpRetransSegs and not in `segments`; they are reported apart.
    assert_eq!(
        totals.aborted,
        all.iter().filter(|r| !r.counted()).map(|r| u64::from(r.segments)).sum::<u64>(),
        "aborted attempts {errors:?}"
    );
    eprintln!(
        "{test}: {BYTES} bytes, {dropped} skbs dropped by nft, {sender} segments retransmitted by the sender ({loss_probes} loss probes), {receiver} by the receiver, {} records, errors {errors:?}",
        all.len()
    );
}

#[test]
fn retransmits_match_nstat_ipv4() {
    retransmits_match_nstat(false, false, "retransmits_match_nstat_ipv4");
}

#[test]
fn retransmits_match_nstat_ipv4_tracepoint_fallback() {
    retransmits_match_nstat(false, true, "retransmits_match_nstat_ipv4_tracepoint_fallback");
}

#[test]
fn retransmits_match_nstat_ipv6() {
    retransmits_match_nstat(true, false, "retransmits_match_nstat_ipv6");
}
