//! The in-kernel counters every object keeps in its `counts` map. packetforward and dropreason
//! count `struct fovea_count` (packets, bytes) per CPU and per probe-specific key; they are
//! summed over CPUs here.

use aya::maps::{Map, MapError, PerCpuHashMap};
use aya::{Ebpf, Pod};

use super::objects::MAP_COUNTS;

/// Mirror of `struct fovea_count` (ebpf/fovea.bpf.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCount {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<RawCount>() == 16);
// SAFETY: plain #[repr(C)] integers, no padding.
unsafe impl Pod for RawCount {}

/// The object's `counts` map.
pub(crate) fn counts_map(ebpf: &Ebpf) -> Result<&Map, MapError> {
    ebpf.map(MAP_COUNTS).ok_or(MapError::InvalidName { name: MAP_COUNTS.into() })
}

/// The object's `counts` map, to change.
pub(crate) fn counts_map_mut(ebpf: &mut Ebpf) -> Result<&mut Map, MapError> {
    ebpf.map_mut(MAP_COUNTS).ok_or(MapError::InvalidName { name: MAP_COUNTS.into() })
}

/// Every key of the per-CPU `counts` hash map with its packets and bytes summed over CPUs,
/// each made into a `T` by `to`. Keys removed while iterating are skipped.
pub(crate) fn sum_per_key<K: Pod, T>(ebpf: &Ebpf, mut to: impl FnMut(K, RawCount) -> T) -> Result<Vec<T>, MapError> {
    let counts = PerCpuHashMap::<_, K, RawCount>::try_from(counts_map(ebpf)?)?;
    let mut out = Vec::new();
    for entry in counts.iter() {
        let (key, per_cpu) = match entry {
            Ok(e) => e,
            Err(MapError::KeyNotFound) => continue, // removed while iterating
            Err(e) => return Err(e),
        };
        let sum = per_cpu.iter().fold(RawCount::default(), |sum, c| RawCount {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
        });
        out.push(to(key, sum));
    }
    Ok(out)
}
