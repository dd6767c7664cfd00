//! Flow records from a probe's ring buffer, decoded into owned structs.
//!
//! [`RecordStream::next_batch`] waits until the ring is readable, drains it to empty into the
//! caller's `Vec` (no allocation per record once the `Vec` has grown), then re-arms readiness.
//! Keep enrichment and export off the task that reads: the kernel drops records (and counts
//! them as lost) when the ring is full.

use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{Map, MapData, MapError, RingBuf};
use aya::{Ebpf, EbpfLoader};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::FlowTuple;
use super::clock::KernelClock;
use super::objects::MAP_RECORDS;

/// Errors reading records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The map is not a ring buffer, or mapping it failed.
    #[error("cannot open the record ring buffer: {0}")]
    Map(#[from] MapError),
    /// Record streams must be created inside a tokio runtime (with IO enabled).
    #[error("record streams must be created inside a tokio runtime with IO enabled")]
    NoRuntime,
    /// Registering with or waiting on the tokio reactor failed.
    #[error("cannot poll the record ring buffer (needs a tokio runtime with IO enabled): {0}")]
    Poll(#[from] std::io::Error),
}

/// Kernel-side record accounting of one probe (summed over CPUs, since load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordStats {
    /// Records written to the ring buffer.
    pub emitted: u64,
    /// Records not written because the per-second cap was reached.
    pub capped: u64,
    /// Records lost because the ring buffer was full (reader too slow).
    pub lost: u64,
    /// Counter updates lost because the counter map was full.
    pub counter_full: u64,
}

/// Checks a record ring size: the kernel wants a power of two of at least one page.
pub(crate) fn check_ring_bytes(ring_bytes: u32) -> Result<(), String> {
    if ring_bytes.is_power_of_two() && ring_bytes >= 4096 {
        Ok(())
    } else {
        Err(format!("ring_bytes {ring_bytes} must be a power of two of at least 4096"))
    }
}

/// A loader for an object whose programs write records to its `records` ring, with the
/// per-second record cap (0 = no records) and the ring size set; add the probe's own settings.
pub(crate) fn recording_loader(record_rate_per_sec: &u32, ring_bytes: u32) -> EbpfLoader<'_> {
    let mut loader = EbpfLoader::new();
    loader.override_global("record_rate_per_sec", record_rate_per_sec, true).map_max_entries(MAP_RECORDS, ring_bytes);
    loader
}

/// Takes the `records` ring of a loaded object as a stream; `None` when it was taken before.
pub(crate) fn take_stream<R: RingRecord>(ebpf: &mut Ebpf) -> Option<Result<RecordStream<R>, RecordError>> {
    ebpf.take_map(MAP_RECORDS).map(RecordStream::new)
}

/// A record type that can be decoded from a ring-buffer entry.
pub trait RingRecord: Sized {
    /// Decodes one entry; `None` if it is malformed (wrong size).
    fn decode(bytes: &[u8], clock: &KernelClock) -> Option<Self>;
}

/// Mirror of `struct fovea_tuple` (ebpf/fovea.bpf.h).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawTuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub protocol: u8,
    pub pad: [u8; 2],
}

const _: () = assert!(size_of::<RawTuple>() == 40);

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Source and destination of a `family` (AF_INET: the first 4 bytes) address pair; `None` for
/// another family.
pub(crate) fn addresses(family: u8, saddr: &[u8; 16], daddr: &[u8; 16]) -> Option<(IpAddr, IpAddr)> {
    match family {
        AF_INET => {
            let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
            Some((v4(saddr), v4(daddr)))
        }
        AF_INET6 => Some((IpAddr::V6(Ipv6Addr::from(*saddr)), IpAddr::V6(Ipv6Addr::from(*daddr)))),
        _ => None,
    }
}

impl RawTuple {
    /// The 5-tuple, `None` when the packet was not IPv4/IPv6.
    pub(crate) fn to_flow(self) -> Option<FlowTuple> {
        let (src, dst) = addresses(self.family, &self.saddr, &self.daddr)?;
        Some(FlowTuple { src, dst, src_port: self.sport, dst_port: self.dport, protocol: self.protocol })
    }
}

/// Reads `T` from the start of `bytes` if it is exactly `size_of::<T>()` long.
pub(crate) fn read_raw<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a #[repr(C)] plain-old-data mirror valid for any bit
    // pattern; read_unaligned copes with the ring's 8-byte alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// An async stream of decoded records from one probe's ring buffer.
pub struct RecordStream<R> {
    ring: AsyncFd<RingBuf<MapData>>,
    malformed: u64,
    _record: PhantomData<fn() -> R>,
}

impl<R: RingRecord> RecordStream<R> {
    /// Wraps a ring-buffer map; must be called inside a tokio runtime.
    pub(crate) fn new(map: Map) -> Result<Self, RecordError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RecordError::NoRuntime);
        }
        let ring = RingBuf::try_from(map)?;
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the
        // AsyncFd (and with it the RingBuf) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| RecordError::Poll(e.into()))?;
        Ok(Self { ring, malformed: 0, _record: PhantomData })
    }

    /// Waits for records, appends all that are ready to `out`, and returns how many.
    /// Never returns `Ok(0)`; cancel-safe (records stay in the ring until drained).
    pub async fn next_batch(&mut self, out: &mut Vec<R>) -> Result<usize, RecordError> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let n = drain(guard.get_inner_mut(), out, &mut self.malformed);
            // Only after draining to empty: a wakeup that raced with the drain is not lost,
            // because the kernel notifies again for records committed after our last read.
            guard.clear_ready();
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Appends whatever is in the ring now, without waiting; returns how many.
    pub fn try_drain(&mut self, out: &mut Vec<R>) -> usize {
        drain(self.ring.get_mut(), out, &mut self.malformed)
    }

    /// Entries that could not be decoded (size mismatch: object and code out of step).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

fn drain<R: RingRecord>(ring: &mut RingBuf<MapData>, out: &mut Vec<R>, malformed: &mut u64) -> usize {
    let clock = KernelClock::boot();
    let before = out.len();
    while let Some(item) = ring.next() {
        match R::decode(&item, &clock) {
            Some(r) => out.push(r),
            None => *malformed += 1,
        }
    }
    out.len() - before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_decodes_v4_and_v6() {
        let mut raw = RawTuple {
            saddr: [0; 16],
            daddr: [0; 16],
            sport: 1234,
            dport: 53,
            family: AF_INET,
            protocol: 17,
            pad: [0; 2],
        };
        raw.saddr[..4].copy_from_slice(&[198, 18, 0, 1]);
        raw.daddr[..4].copy_from_slice(&[198, 18, 0, 2]);
        let t = raw.to_flow().expect("v4");
        assert_eq!(t.src, "198.18.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(t.dst, "198.18.0.2".parse::<IpAddr>().expect("ip"));
        assert_eq!((t.src_port, t.dst_port, t.protocol), (1234, 53, 17));

        raw.family = AF_INET6;
        raw.saddr = "2001:db8::1".parse::<Ipv6Addr>().expect("ip").octets();
        raw.daddr = "2001:db8::2".parse::<Ipv6Addr>().expect("ip").octets();
        let t = raw.to_flow().expect("v6");
        assert_eq!(t.dst, "2001:db8::2".parse::<IpAddr>().expect("ip"));

        raw.family = 0;
        assert!(raw.to_flow().is_none());
    }
}
