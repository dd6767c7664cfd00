//! The probes' own health: kernel run time per program, map fill, record loss.
//!
//! A plain [`ProbeTelemetry`] struct per probe, for receivers to turn into `fovea_ebpf_*`
//! metrics. Run time and run count are only counted while BPF statistics are enabled, either
//! by sysctl `kernel.bpf_stats_enabled=1` or by holding a [`RunTimeStats`] guard.

use std::os::fd::OwnedFd;

use aya::Ebpf;
use aya::maps::{Map, MapData, PerCpuArray};

use super::objects::MAP_STATS;
use super::records::RecordStats;

/// Errors collecting telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Enabling BPF run-time statistics failed (needs CAP_SYS_ADMIN, kernel 5.8+).
    #[error("cannot enable BPF run-time statistics (needs CAP_SYS_ADMIN and Linux 5.8+): {0}")]
    EnableStats(#[source] aya::sys::SyscallError),
}

/// Kernel statistics of one loaded program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    /// The program's C function name.
    pub name: String,
    /// Kernel program id (as `bpftool prog show id N`).
    pub id: u32,
    /// Total ns spent in the program (while statistics were enabled).
    pub run_time_ns: u64,
    /// Invocations (while statistics were enabled).
    pub run_count: u64,
}

impl ProgramStats {
    /// Mean ns per invocation, `None` before the first counted run.
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.run_count > 0).then(|| self.run_time_ns as f64 / self.run_count as f64)
    }
}

/// How full one map is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapFill {
    /// The map's C name.
    pub name: String,
    /// Entries in use (for arrays: always `max_entries`; for ring buffers: 0).
    pub entries: u32,
    /// Capacity (for ring buffers: bytes).
    pub max_entries: u32,
}

/// Everything a probe reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeTelemetry {
    /// Programs this probe loaded.
    pub programs: Vec<ProgramStats>,
    /// Maps and their fill.
    pub maps: Vec<MapFill>,
    /// Record accounting (zero for probes without records).
    pub records: RecordStats,
}

/// Keeps BPF run-time statistics enabled while alive (`BPF_ENABLE_STATS`).
#[derive(Debug)]
pub struct RunTimeStats {
    _fd: OwnedFd,
}

/// Enables run time / run count accounting for all BPF programs until the guard is dropped.
/// Costs 20-70 ns per program invocation while enabled (two clock reads and a counter update
/// around each run; ~70 ns on the 2-vCPU test VM, benches/flows_kernel.rs).
pub fn enable_run_time_stats() -> Result<RunTimeStats, TelemetryError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map(|fd| RunTimeStats { _fd: fd })
        .map_err(TelemetryError::EnableStats)
}

/// Collects program stats and map fill for the loaded (and only the loaded) programs of `ebpf`.
pub(crate) fn collect(ebpf: &Ebpf, records: RecordStats) -> ProbeTelemetry {
    let programs = ebpf
        .programs()
        .filter_map(|(name, prog)| {
            let info = prog.info().ok()?;
            Some(ProgramStats {
                name: name.to_owned(),
                id: info.id(),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                run_count: info.run_count(),
            })
        })
        .collect();
    let maps =
        ebpf.maps().filter(|(name, _)| !name.starts_with('.')).filter_map(|(name, map)| map_fill(name, map)).collect();
    ProbeTelemetry { programs, maps, records }
}

fn map_fill(name: &str, map: &Map) -> Option<MapFill> {
    let data: &MapData = match map {
        Map::PerCpuHashMap(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::RingBuf(d) => d,
        _ => return None,
    };
    let info = data.info().ok()?;
    let entries = match map {
        Map::Array(_) | Map::PerCpuArray(_) => info.max_entries(),
        Map::RingBuf(_) => 0,
        _ => count_keys(data, info.key_size()),
    };
    Some(MapFill { name: name.to_owned(), entries, max_entries: info.max_entries() })
}

/// Counts keys with BPF_MAP_GET_NEXT_KEY (one syscall per entry; our maps are small).
fn count_keys(data: &MapData, key_size: u32) -> u32 {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = data.fd().as_fd().as_raw_fd();
    let mut key = vec![0u8; key_size as usize];
    let mut next = vec![0u8; key_size as usize];
    let mut n = 0u32;
    let mut first = true;
    loop {
        let mut attr = [0u64; 4];
        attr[0] = fd as u64; // map_fd (u32) + padding
        attr[1] = if first { 0 } else { key.as_ptr() as u64 };
        attr[2] = next.as_mut_ptr() as u64;
        // SAFETY: attr follows `union bpf_attr` for BPF_MAP_GET_NEXT_KEY (map_fd, key, next_key);
        // both buffers are key_size bytes and outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                4, // BPF_MAP_GET_NEXT_KEY
                attr.as_mut_ptr(),
                size_of_val(&attr) as u32,
            )
        };
        if rc != 0 {
            return n;
        }
        n += 1;
        first = false;
        std::mem::swap(&mut key, &mut next);
    }
}

/// Reads the per-CPU `stats` array (enum fovea_stat) of an object, summed over CPUs.
pub(crate) fn record_stats(ebpf: &Ebpf) -> RecordStats {
    let Some(map) = ebpf.map(MAP_STATS) else {
        return RecordStats::default();
    };
    let Ok(stats) = PerCpuArray::<_, u64>::try_from(map) else {
        return RecordStats::default();
    };
    let sum = |i: u32| -> u64 { stats.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0) };
    RecordStats { emitted: sum(0), capped: sum(1), lost: sum(2), counter_full: sum(3) }
}
