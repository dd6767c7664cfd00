//! The per-CPU flow caches in front of the flow tables (ebpf/flows.bpf.h): a packet whose flow
//! sits in its CPU's cache slot is counted there without hashing or atomics, and a slot's counts
//! move to the shared table when another flow takes the slot.
//!
//! Double-buffered like the tables: [`FlowCaches::swap`] makes the other cache active (waiting
//! for an RCU grace period, after the table swap), then [`FlowCaches::take_old`] reads every
//! CPU's entries of the old one and zeroes it, so the drain merges them with the old table's.

use std::collections::HashMap;
use std::os::fd::AsFd;

use aya::maps::{ArrayOfMaps, Map, MapData, MapError};

use super::batch;
use super::flowtable::{RawFlowKey, RawFlowValue, batch_error, read_pod, take};

/// The map-of-maps whose slot 0 is the active cache.
pub(crate) const MAP_FLOW_CACHES: &str = "flow_caches";
/// The two halves of the double buffer.
pub(crate) const MAP_CACHES: [&str; 2] = ["flow_cache_a", "flow_cache_b"];
/// Flows each CPU's cache holds (`DP_CACHE_SLOTS`).
pub const FLOW_CACHE_SLOTS: u64 = 256;
const SLOTS: u32 = FLOW_CACHE_SLOTS as u32;

/// Mirror of `struct flow_cache_entry`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawCacheEntry {
    key: RawFlowKey,
    score: i32,
    value: RawFlowValue,
}
const _: () = assert!(size_of::<RawCacheEntry>() == 136);
// SAFETY: #[repr(C)] Pod fields without implicit padding (44 + 4 + 88, all 8-aligned at 48).
unsafe impl aya::Pod for RawCacheEntry {}

/// The caches, taken out of the loaded object with the tables.
pub(crate) struct FlowCaches {
    outer: ArrayOfMaps<MapData, MapData>,
    caches: [MapData; 2],
    /// One array's worth of every CPU's entries (read, then zeroed and written back).
    values: Vec<u8>,
    /// Possible CPUs: the per-CPU values per slot.
    cpus: usize,
    /// The old cache's entries by key, merged (kept between drains for its capacity).
    pending: HashMap<RawFlowKey, RawFlowValue>,
}

impl FlowCaches {
    /// Takes both caches and makes cache 0 active.
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, MapError> {
        let array = |ebpf: &mut aya::Ebpf, name: &str| match take(ebpf, name)? {
            Map::PerCpuArray(d) => Ok(d),
            _ => Err(MapError::InvalidName { name: name.into() }),
        };
        let a = array(ebpf, MAP_CACHES[0])?;
        let b = array(ebpf, MAP_CACHES[1])?;
        let mut outer: ArrayOfMaps<MapData, MapData> = take(ebpf, MAP_FLOW_CACHES)?.try_into()?;
        outer.set(0, &a, 0)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, io_error)| {
            MapError::SyscallError(aya::sys::SyscallError { call: "possible CPUs", io_error })
        })?;
        Ok(FlowCaches {
            outer,
            caches: [a, b],
            values: vec![0; SLOTS as usize * size_of::<RawCacheEntry>() * cpus],
            cpus,
            pending: HashMap::new(),
        })
    }

    /// Makes cache `new` active; returns after an RCU grace period, when no program holds the
    /// other one any more.
    pub(crate) fn swap(&mut self, new: usize) -> Result<(), MapError> {
        self.outer.set(0, &self.caches[new], 0)
    }

    /// Reads every CPU's entries of cache `old` (no program may hold it), zeroes it, and keeps
    /// them merged by key for [`FlowCaches::merge_into`] and [`FlowCaches::rest`].
    pub(crate) fn take_old(&mut self, old: usize) -> Result<(), MapError> {
        let fd = self.caches[old].fd().as_fd();
        let value_size = size_of::<RawCacheEntry>() * self.cpus;
        batch::array_all(fd, SLOTS, value_size, &mut self.values, false)
            .map_err(batch_error("bpf_map_lookup_batch"))?;
        self.pending.clear();
        let mut any = false;
        for entry in self.values.chunks_exact(size_of::<RawCacheEntry>()) {
            let e = read_pod::<RawCacheEntry>(entry);
            if e.value.packets == 0 {
                continue;
            }
            any = true;
            self.pending.entry(e.key).and_modify(|v| merge(v, &e.value)).or_insert(e.value);
        }
        if any {
            self.values.fill(0);
            batch::array_all(fd, SLOTS, value_size, &mut self.values, true)
                .map_err(batch_error("bpf_map_update_batch"))?;
        }
        Ok(())
    }

    /// Adds the old cache's counts of `key` (if any) to `value`, taking them out.
    pub(crate) fn merge_into(&mut self, key: &RawFlowKey, value: &mut RawFlowValue) {
        if let Some(cached) = self.pending.remove(key) {
            merge(value, &cached);
        }
    }

    /// The old cache's flows that the old table did not have.
    pub(crate) fn rest(&mut self) -> impl Iterator<Item = (RawFlowKey, RawFlowValue)> + '_ {
        self.pending.drain()
    }

    /// Non-empty entries of `ifindex` in both caches, every CPU.
    pub(crate) fn entries_of(&mut self, ifindex: u32) -> Result<usize, MapError> {
        let value_size = size_of::<RawCacheEntry>() * self.cpus;
        let mut n = 0;
        for cache in &self.caches {
            batch::array_all(cache.fd().as_fd(), SLOTS, value_size, &mut self.values, false)
                .map_err(batch_error("bpf_map_lookup_batch"))?;
            n += self
                .values
                .chunks_exact(size_of::<RawCacheEntry>())
                .map(read_pod::<RawCacheEntry>)
                .filter(|e| e.value.packets != 0 && e.key.ifindex == ifindex)
                .count();
        }
        Ok(n)
    }
}

/// Adds `from` (the same flow, counted elsewhere in the same interval) to `into`.
pub(crate) fn merge(into: &mut RawFlowValue, from: &RawFlowValue) {
    into.packets += from.packets;
    into.bytes += from.bytes;
    into.first_jiffies = min_set(into.first_jiffies, from.first_jiffies);
    into.last_jiffies = into.last_jiffies.max(from.last_jiffies);
    for (a, b) in into.flags.iter_mut().zip(from.flags) {
        *a += b;
    }
    into.handshakes += from.handshakes;
    into.handshake_sum_ns += from.handshake_sum_ns;
    into.handshake_min_ns = min_set(into.handshake_min_ns, from.handshake_min_ns);
    into.handshake_max_ns = into.handshake_max_ns.max(from.handshake_max_ns);
}

/// The smaller of two values where 0 means "not set".
fn min_set<T: Ord + Default + Copy>(a: T, b: T) -> T {
    let unset = T::default();
    if a == unset || (b != unset && b < a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_sums_counts_and_keeps_the_widest_span() {
        let mut a = RawFlowValue {
            packets: 2,
            bytes: 100,
            first_jiffies: 5,
            last_jiffies: 7,
            handshakes: 1,
            handshake_sum_ns: 30,
            handshake_min_ns: 30,
            handshake_max_ns: 30,
            ..Default::default()
        };
        a.flags[2] = 2;
        let mut b = RawFlowValue { packets: 3, bytes: 150, first_jiffies: 4, last_jiffies: 9, ..Default::default() };
        b.flags[2] = 3;
        merge(&mut a, &b);
        assert_eq!((a.packets, a.bytes, a.first_jiffies, a.last_jiffies, a.flags[2]), (5, 250, 4, 9, 5));
        assert_eq!((a.handshakes, a.handshake_min_ns, a.handshake_max_ns), (1, 30, 30), "no handshake in b");
    }
}
