//! One DNS message's bytes to a [`DnsInfo`], with `simple-dns` doing the parsing.
//!
//! Before the parser sees a message, its header counts are checked against its length (a
//! question takes at least 5 bytes, a resource record 11): a header that claims 0xFFFF records
//! in 40 bytes is malformed at once, and the parser never sizes a section by a count the message
//! cannot hold. Names are bounded by the parser (255 bytes, which also ends compression loops).
//!
//! A message the kernel copied only in part (longer than 512 bytes, or a TCP message split over
//! segments) is parsed whole first; when the cut falls inside a record, only the header and the
//! question are parsed (the answer counts are zeroed in a copy), so its type, code and name still
//! count (its answer count is the header's, without addresses).

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag, header_buffer};
use smol_str::SmolStrBuilder;

use crate::ebpf::DNS_CAPTURE;
use crate::model::DnsInfo;

/// Bytes of the DNS header.
const HEADER: usize = 12;
/// The shortest question: a root name (1), type and class (4).
const MIN_QUESTION: usize = 5;
/// The shortest resource record: a compressed name pointer is 2, but a root name is 1; type,
/// class, TTL, length (10).
const MIN_RECORD: usize = 11;

/// Why a message is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a DNS header.
    Short,
    /// The header's counts need more bytes than the message has.
    Counts,
    /// No question (every query and response fovea counts names one).
    NoQuestion,
    /// The parser refused it (bad name, label too long, compression loop, truncated record).
    Parse,
}

/// Parses one DNS message; `truncated` when the kernel copied less than the whole message.
pub fn parse(message: &[u8], truncated: bool) -> Result<DnsInfo, Malformed> {
    if message.len() < HEADER {
        return Err(Malformed::Short);
    }
    let count = |f: fn(&[u8]) -> simple_dns::Result<u16>| f(message).map(usize::from).unwrap_or(0);
    let questions = count(header_buffer::questions);
    let records =
        count(header_buffer::answers) + count(header_buffer::name_servers) + count(header_buffer::additional_records);
    if questions == 0 {
        return Err(Malformed::NoQuestion);
    }
    let body = message.len() - HEADER;
    let fits = questions * MIN_QUESTION + records * MIN_RECORD <= body;
    if fits && let Ok(packet) = Packet::parse(message) {
        return from_packet(&packet, message);
    }
    if !truncated || questions * MIN_QUESTION > body {
        return Err(if fits { Malformed::Parse } else { Malformed::Counts });
    }
    // Cut by the capture: the header and the question are whole, the records perhaps not.
    let mut copy = [0u8; DNS_CAPTURE];
    let n = message.len().min(DNS_CAPTURE);
    copy[..n].copy_from_slice(&message[..n]);
    copy[6..HEADER].fill(0);
    let packet = Packet::parse(&copy[..n]).map_err(|_| Malformed::Parse)?;
    let mut info = from_packet(&packet, message)?;
    info.answer_count = count(header_buffer::answers).try_into().unwrap_or(u16::MAX);
    Ok(info)
}

fn from_packet(packet: &Packet<'_>, message: &[u8]) -> Result<DnsInfo, Malformed> {
    let question = packet.questions.first().ok_or(Malformed::NoQuestion)?;
    let mut name = SmolStrBuilder::new();
    // a name is at most 255 bytes: writing it cannot fail
    let _ = write!(name, "{}", question.qname);
    let mut info = DnsInfo {
        response: packet.has_flags(PacketFlag::RESPONSE),
        id: packet.id(),
        question_name: name.finish(),
        question_type: question.qtype.into(),
        // the header's 4 bits (the extended code of an OPT record aside)
        response_code: header_buffer::rcode(message).map(|c| c as u16).unwrap_or(0) & 0x0f,
        answer_count: packet.answers.len().try_into().unwrap_or(u16::MAX),
        ..DnsInfo::default()
    };
    for rr in &packet.answers {
        match &rr.rdata {
            RData::A(a) => info.push_address(IpAddr::V4(Ipv4Addr::from(a.address))),
            RData::AAAA(a) => info.push_address(IpAddr::V6(Ipv6Addr::from(a.address))),
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::{A, AAAA};
    use simple_dns::{CLASS, Name, QCLASS, QTYPE, Question, RCODE, ResourceRecord, TYPE};

    fn query(name: &str, qtype: TYPE) -> Vec<u8> {
        let mut p = Packet::new_query(4242);
        p.questions.push(Question::new(Name::new_unchecked(name), QTYPE::TYPE(qtype), QCLASS::CLASS(CLASS::IN), false));
        p.build_bytes_vec().expect("build")
    }

    fn response(name: &str, answers: &[IpAddr], rcode: RCODE) -> Vec<u8> {
        let mut p = Packet::new_reply(4242);
        *p.rcode_mut() = rcode;
        p.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        for a in answers {
            let rdata = match a {
                IpAddr::V4(v4) => RData::A(A { address: u32::from(*v4) }),
                IpAddr::V6(v6) => RData::AAAA(AAAA { address: u128::from(*v6) }),
            };
            p.answers.push(ResourceRecord::new(Name::new_unchecked(name), CLASS::IN, 30, rdata));
        }
        p.build_bytes_vec().expect("build")
    }

    #[test]
    fn a_query_gives_its_question() {
        let info = parse(&query("api.shop.svc", TYPE::AAAA), false).expect("parses");
        assert!(!info.response);
        assert_eq!((info.id, info.question_name.as_str(), info.question_type), (4242, "api.shop.svc", 28));
    }

    #[test]
    fn a_response_gives_code_and_addresses() {
        let addrs: Vec<IpAddr> = vec!["198.18.0.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let info = parse(&response("db.example", &addrs, RCODE::NoError), false).expect("parses");
        assert!(info.response);
        assert_eq!((info.response_code, info.answer_count), (0, 2));
        assert_eq!(info.addresses(), addrs.as_slice());
        let nx = parse(&response("gone.example", &[], RCODE::NameError), false).expect("parses");
        assert_eq!((nx.response_code, nx.answer_count, nx.address_count), (3, 0, 0));
    }

    #[test]
    fn bad_messages_are_malformed_not_panics() {
        assert_eq!(parse(&[0; 5], false), Err(Malformed::Short));
        let mut counts = query("a.example", TYPE::A);
        counts[6..12].copy_from_slice(&[0xff; 6]);
        assert_eq!(parse(&counts, false), Err(Malformed::Counts));
        // a name whose pointer points at itself
        let mut looped = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&looped, false), Err(Malformed::Parse));
        let mut label = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 70];
        label.extend(std::iter::repeat_n(b'a', 70));
        label.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&label, false), Err(Malformed::Parse));
        let mut none = query("a.example", TYPE::A);
        none[4..6].fill(0);
        assert_eq!(parse(&none, false), Err(Malformed::NoQuestion));
    }

    #[test]
    fn a_cut_response_keeps_its_question() {
        let addrs: Vec<IpAddr> = (0..40).map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 1, i))).collect();
        let whole = response("many.example", &addrs, RCODE::NoError);
        assert!(whole.len() > 512);
        let cut = &whole[..512];
        assert_eq!(parse(cut, false), Err(Malformed::Parse), "not known to be cut: malformed");
        let info = parse(cut, true).expect("the question survives the cut");
        assert_eq!((info.question_name.as_str(), info.answer_count, info.response_code), ("many.example", 40, 0));
    }
}
