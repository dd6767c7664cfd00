//! The compiled probe objects, embedded at build time (rebuild them with `scripts/build-ebpf`).
//!
//! Programs and maps are looked up by their C names; these constants are the one place those
//! names appear on the Rust side.

/// `ebpf/packetforward.bpf.o`.
pub(crate) static PACKETFORWARD: &[u8] = aya::include_bytes_aligned!("../../ebpf/packetforward.bpf.o");
/// `ebpf/datapath.bpf.o`: the programs on pod interfaces and uplinks (flows, later DNS).
pub(crate) static DATAPATH: &[u8] = aya::include_bytes_aligned!("../../ebpf/datapath.bpf.o");
/// `ebpf/dropreason.bpf.o`.
pub(crate) static DROPREASON: &[u8] = aya::include_bytes_aligned!("../../ebpf/dropreason.bpf.o");
/// `ebpf/tcpretrans.bpf.o`.
pub(crate) static TCPRETRANS: &[u8] = aya::include_bytes_aligned!("../../ebpf/tcpretrans.bpf.o");

/// In-kernel counters (per-CPU hash or array) in every object.
pub(crate) const MAP_COUNTS: &str = "counts";
/// Per-CPU `enum fovea_stat` counters in every object.
pub(crate) const MAP_STATS: &str = "stats";
/// Ring buffer of flow records (dropreason, tcpretrans).
pub(crate) const MAP_RECORDS: &str = "records";
