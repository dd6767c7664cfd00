//! DNS transactions in flow records: what a DNS message said, and the names fovea gives its
//! question types and response codes.

use std::net::{IpAddr, Ipv4Addr};

use smol_str::SmolStr;

use super::flows::LatencySummary;

/// The A/AAAA addresses a DNS flow record carries at most (the count says how many there were).
pub const DNS_RECORD_ADDRESSES: usize = 4;

/// What one DNS message said (a flow record of kind `Dns`).
#[derive(Debug, Clone, PartialEq)]
pub struct DnsInfo {
    /// A response (QR set), else a query.
    pub response: bool,
    /// Transaction id.
    pub id: u16,
    /// The first question's name, without the trailing dot (`kubernetes.default.svc`).
    pub question_name: SmolStr,
    /// The first question's type (1 A, 28 AAAA ...).
    pub question_type: u16,
    /// The response code (responses; 0 for queries).
    pub response_code: u16,
    /// Records in the answer section (the header's count).
    pub answer_count: u16,
    /// How many A/AAAA answers there were (the first [`DNS_RECORD_ADDRESSES`] are kept).
    pub address_count: u16,
    /// The first A/AAAA answer addresses, in answer order; see [`DnsInfo::addresses`].
    pub first_addresses: [IpAddr; DNS_RECORD_ADDRESSES],
    /// Query to response time (responses matched to their query: one sample).
    pub latency: LatencySummary,
}

impl Default for DnsInfo {
    fn default() -> Self {
        DnsInfo {
            response: false,
            id: 0,
            question_name: SmolStr::default(),
            question_type: 0,
            response_code: 0,
            answer_count: 0,
            address_count: 0,
            first_addresses: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); DNS_RECORD_ADDRESSES],
            latency: LatencySummary::default(),
        }
    }
}

impl DnsInfo {
    /// The answer addresses kept.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.first_addresses[..usize::from(self.address_count).min(DNS_RECORD_ADDRESSES)]
    }

    /// Keeps `address` if there is room; counts it either way.
    pub fn push_address(&mut self, address: IpAddr) {
        if let Some(slot) = self.first_addresses.get_mut(usize::from(self.address_count)) {
            *slot = address;
        }
        self.address_count = self.address_count.saturating_add(1);
    }

    /// `query` or `response`.
    pub fn message_type(&self) -> &'static str {
        if self.response { "response" } else { "query" }
    }
}

/// The mnemonic of a question type (IANA "Resource Record (RR) TYPEs"); `OTHER` for types
/// without one here (a bounded set of attribute values whatever the traffic).
pub fn question_type_name(qtype: u16) -> &'static str {
    match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => "OTHER",
    }
}

/// The mnemonic of a response code (IANA "DNS RCODEs": `NOERROR`, `NXDOMAIN` ...), as
/// OpenTelemetry's `dns.response.code` and Retina's `return_code` spell them; `OTHER` beyond.
pub fn response_code_name(rcode: u16) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_beyond_the_kept_ones_are_counted() {
        let mut d = DnsInfo::default();
        for i in 0..6u8 {
            d.push_address(IpAddr::V4(Ipv4Addr::new(198, 18, 0, i)));
        }
        assert_eq!(d.address_count, 6);
        assert_eq!(d.addresses().len(), DNS_RECORD_ADDRESSES);
        assert_eq!(d.addresses()[3], IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)));
    }

    #[test]
    fn names_are_the_iana_mnemonics() {
        assert_eq!(
            (question_type_name(28), question_type_name(16), question_type_name(4000)),
            ("AAAA", "TXT", "OTHER")
        );
        assert_eq!(
            (response_code_name(3), response_code_name(0), response_code_name(15)),
            ("NXDOMAIN", "NOERROR", "OTHER")
        );
    }
}
