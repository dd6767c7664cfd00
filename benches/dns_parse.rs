//! The dns receiver's user-space cost per DNS message (what bounds the messages parsed per second
//! per core): `simple-dns` parsing alone, and the whole path a copied message takes
//! ([`DnsState::capture`]: parse, count, match the response to its query, build the flow record),
//! for a query and its response in turn, with names and answers counted or not; and a malformed
//! message (rejected by the header check, or by the parser).
//!
//! Run: `cargo bench --bench dns_parse`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use fovea::ebpf::LinkLayer;
use fovea::ebpf::{DNS_CAPTURE, Direction, DnsCapture, FlowTuple};
use fovea::model::ObservationPoint;
use fovea::receivers::dns::message;
use fovea::receivers::dns::{Detail, DnsState, DnsTotals};
use fovea::receivers::probe::datapath::{DatapathInterface, InterfaceEvent};
use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, ResourceRecord, TYPE};

fn main() {
    divan::main();
}

fn query(id: u16) -> Vec<u8> {
    let mut p = Packet::new_query(id);
    let name = Name::new_unchecked("cart.shop.svc.cluster.local");
    p.questions.push(Question::new(name, QTYPE::TYPE(TYPE::A), QCLASS::CLASS(CLASS::IN), false));
    p.build_bytes_vec_compressed().expect("build")
}

fn response(id: u16) -> Vec<u8> {
    let mut p = Packet::new_reply(id);
    let name = Name::new_unchecked("cart.shop.svc.cluster.local");
    p.questions.push(Question::new(name.clone(), QTYPE::TYPE(TYPE::A), QCLASS::CLASS(CLASS::IN), false));
    for i in 0..2u32 {
        p.answers.push(ResourceRecord::new(name.clone(), CLASS::IN, 30, RData::A(A { address: 0xc612_0000 + i })));
    }
    p.build_bytes_vec_compressed().expect("build")
}

fn capture(message: &[u8], response: bool, kernel_ns: u64) -> DnsCapture {
    let (client, server): (IpAddr, IpAddr) = ("198.18.0.2".parse().unwrap(), "198.18.0.10".parse().unwrap());
    let tuple = if response {
        FlowTuple { src: server, dst: client, src_port: 53, dst_port: 40000, protocol: 17 }
    } else {
        FlowTuple { src: client, dst: server, src_port: 40000, dst_port: 53, protocol: 17 }
    };
    let mut data = [0u8; DNS_CAPTURE];
    data[..message.len()].copy_from_slice(message);
    DnsCapture {
        time_unix_nano: kernel_ns,
        kernel_ns,
        tuple,
        ifindex: 7,
        direction: Direction::Ingress,
        msg_len: message.len() as u16,
        seg_len: message.len() as u16,
        captured: message.len() as u16,
        data,
    }
}

/// `simple-dns` parsing and our header check, per message.
#[divan::bench(args = ["query", "response", "malformed counts", "pointer loop"])]
fn parse(bencher: Bencher, kind: &str) {
    let bytes = match kind {
        "query" => query(1),
        "response" => response(1),
        "malformed counts" => {
            let mut q = query(1);
            q[6..12].fill(0xff);
            q
        }
        _ => vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
    };
    bencher.counter(ItemsCount::new(1usize)).bench(|| black_box(message::parse(black_box(&bytes), false).is_ok()));
}

/// The whole path of a copied message: a query and its response per iteration (2 messages),
/// with flow records on.
#[divan::bench(args = [false, true])]
fn capture_query_and_response(bencher: Bencher, names_and_answers: bool) {
    let detail = Detail { question_name: names_and_answers, answers: names_and_answers };
    let mut state = DnsState::new(detail, 4096, 65536, true, Arc::new(Mutex::new(DnsTotals::default())));
    state.interface_event(InterfaceEvent::Attached(DatapathInterface {
        ifindex: 7,
        name: "veth7".into(),
        role: ObservationPoint::Pod,
        link: LinkLayer::Ethernet,
        since: 0,
    }));
    let (q, r) = (query(1), response(1));
    let (q, r) = (capture(&q, false, 1_000), capture(&r, true, 2_000));
    bencher.counter(ItemsCount::new(2usize)).bench_local(|| {
        state.capture(black_box(&q));
        state.capture(black_box(&r));
        state.records.clear();
    });
}
