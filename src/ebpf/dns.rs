//! DNS messages copied by the datapath programs' DNS feature (ebpf/dns.bpf.h): one
//! [`DnsCapture`] per message (or TCP segment) the node first saw at a watched hook, read from
//! the datapath's `records` ring with [`super::RecordStream`].

use super::Direction;
use super::FlowTuple;
use super::clock::KernelClock;
use super::records::{RawTuple, RingRecord, read_raw};

/// Bytes of a DNS message the kernel copies (`DP_DNS_CAPTURE`).
pub const DNS_CAPTURE: usize = 512;

/// Mirror of `struct dns_record`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawDnsRecord {
    ts_ns: u64,
    tuple: RawTuple,
    ifindex: u32,
    msg_len: u16,
    seg_len: u16,
    captured: u16,
    direction: u8,
    pad: [u8; 5],
    data: [u8; DNS_CAPTURE],
}

const _: () = assert!(size_of::<RawDnsRecord>() == 576);

/// One DNS message (or TCP segment of one) as the kernel copied it.
#[derive(Clone)]
pub struct DnsCapture {
    /// When the hook saw it (ns since the Unix epoch).
    pub time_unix_nano: u64,
    /// When the hook saw it (CLOCK_BOOTTIME ns: differences are exact durations).
    pub kernel_ns: u64,
    /// Addresses, ports and protocol of the packet.
    pub tuple: FlowTuple,
    /// Interface it was seen on.
    pub ifindex: u32,
    /// Ingress or egress at that interface.
    pub direction: Direction,
    /// The message's length as the packet states it (UDP length - 8; TCP length prefix).
    pub msg_len: u16,
    /// L4 payload bytes of the packet (TCP: the length prefix included).
    pub seg_len: u16,
    /// Bytes of the message in `data`.
    pub captured: u16,
    /// The first `captured` bytes of the message.
    pub data: [u8; DNS_CAPTURE],
}

impl DnsCapture {
    /// The copied bytes of the message.
    pub fn message(&self) -> &[u8] {
        &self.data[..usize::from(self.captured).min(DNS_CAPTURE)]
    }

    /// True when the kernel copied less than the whole message (a longer message, or a TCP
    /// message split over segments).
    pub fn truncated(&self) -> bool {
        self.captured < self.msg_len
    }
}

impl std::fmt::Debug for DnsCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsCapture")
            .field("kernel_ns", &self.kernel_ns)
            .field("tuple", &self.tuple)
            .field("ifindex", &self.ifindex)
            .field("direction", &self.direction)
            .field("msg_len", &self.msg_len)
            .field("seg_len", &self.seg_len)
            .field("captured", &self.captured)
            .finish_non_exhaustive()
    }
}

impl RingRecord for DnsCapture {
    fn decode(bytes: &[u8], clock: &KernelClock) -> Option<Self> {
        let raw: RawDnsRecord = read_raw(bytes)?;
        let tuple = raw.tuple.to_flow()?;
        Some(DnsCapture {
            time_unix_nano: clock.to_unix_nano(raw.ts_ns),
            kernel_ns: raw.ts_ns,
            tuple,
            ifindex: raw.ifindex,
            direction: Direction::from_code(u32::from(raw.direction)),
            msg_len: raw.msg_len,
            seg_len: raw.seg_len,
            captured: raw.captured.min(DNS_CAPTURE as u16),
            data: raw.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_with_its_message() {
        let mut raw = RawDnsRecord {
            ts_ns: 5_000,
            tuple: RawTuple {
                saddr: [0; 16],
                daddr: [0; 16],
                sport: 40000,
                dport: 53,
                family: 2,
                protocol: 17,
                pad: [0; 2],
            },
            ifindex: 7,
            msg_len: 40,
            seg_len: 40,
            captured: 3,
            direction: 1,
            pad: [0; 5],
            data: [0; DNS_CAPTURE],
        };
        raw.data[..3].copy_from_slice(&[1, 2, 3]);
        // SAFETY: a #[repr(C)] plain-old-data struct viewed as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw as *const RawDnsRecord).cast::<u8>(), size_of::<RawDnsRecord>())
        };
        let c = DnsCapture::decode(bytes, &KernelClock::boot()).expect("decodes");
        assert_eq!((c.tuple.dst_port, c.ifindex, c.direction), (53, 7, Direction::Ingress));
        assert_eq!(c.message(), &[1, 2, 3]);
        assert!(c.truncated());
        assert!(DnsCapture::decode(&bytes[..100], &KernelClock::boot()).is_none());
    }
}
