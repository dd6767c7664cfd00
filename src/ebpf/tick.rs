//! The kernel's tick clock (jiffies) in nanoseconds.
//!
//! The datapath program stamps a flow's last packet with `bpf_jiffies64()`, which the verifier
//! inlines into one load, where a clock helper call costs ~15 ns per packet (benches/flows_kernel.rs).
//! [`Tick`] turns jiffies back into CLOCK_MONOTONIC ns: `fovea_dp_tick`, run on demand with
//! `BPF_PROG_TEST_RUN` ([`super::test_run`], never attached), samples jiffies and CLOCK_MONOTONIC together; two samples
//! 100 ms apart at load give the tick length (the kernel's HZ, snapped to 100, 250, 300 or 1000),
//! and a sample per drain anchors the conversion. The result is exact to one tick (1-10 ms), the
//! resolution a coarse clock would have given anyway.

use std::os::fd::AsFd;
use std::time::Duration;

use aya::Pod;
use aya::maps::{Array, MapData, MapError};
use aya::programs::ProgramFd;

/// The tick program.
pub(crate) const PROG_TICK: &str = "fovea_dp_tick";
/// Where it writes its sample.
pub(crate) const MAP_TICK: &str = "tick";

/// Mirror of `struct dp_tick` (ebpf/datapath.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RawTick {
    jiffies: u64,
    mono_ns: u64,
}
const _: () = assert!(size_of::<RawTick>() == 16);
// SAFETY: #[repr(C)] u64s.
unsafe impl Pod for RawTick {}

/// Jiffies-to-ns conversion backed by the tick program.
pub(crate) struct Tick {
    prog: ProgramFd,
    map: Array<MapData, RawTick>,
    ns_per_jiffy: f64,
    /// The sample conversions are anchored at.
    anchor: RawTick,
}

impl Tick {
    /// Calibrates the tick length (blocks for 100 ms).
    pub(crate) fn new(prog: ProgramFd, map: MapData) -> Result<Self, MapError> {
        let map = Array::try_from(aya::maps::Map::Array(map))?;
        let mut tick = Tick { prog, map, ns_per_jiffy: 4_000_000.0, anchor: RawTick::default() };
        let first = tick.sample()?;
        std::thread::sleep(Duration::from_millis(100));
        let second = tick.sample()?;
        let (dj, dns) = (second.jiffies.saturating_sub(first.jiffies), second.mono_ns.saturating_sub(first.mono_ns));
        if dj > 0 {
            let measured = dns as f64 / dj as f64;
            // the kernel's HZ is one of a few values; snap to the nearest, measure otherwise
            tick.ns_per_jiffy = [100.0, 250.0, 300.0, 1000.0]
                .iter()
                .map(|hz| 1e9 / hz)
                .find(|ns| (measured - ns).abs() / ns < 0.15)
                .unwrap_or(measured);
        }
        tick.anchor = second;
        tracing::debug!(hz = 1e9 / tick.ns_per_jiffy, "kernel tick calibrated for flow timestamps");
        Ok(tick)
    }

    /// Samples jiffies and CLOCK_MONOTONIC now.
    fn sample(&mut self) -> Result<RawTick, MapError> {
        // the smallest packet a TC program accepts: an Ethernet header
        super::test_run::test_run(self.prog.as_fd(), &[0u8; 14], 1).map_err(|io_error| {
            MapError::SyscallError(aya::sys::SyscallError { call: "bpf_prog_test_run", io_error })
        })?;
        self.map.get(&0, 0)
    }

    /// `d` in whole ticks, rounded up, at least one.
    pub(crate) fn jiffies(&self, d: Duration) -> u32 {
        ((d.as_nanos() as f64 / self.ns_per_jiffy).ceil() as u32).max(1)
    }

    /// Re-anchors the conversion at the current time (call once per drain).
    pub(crate) fn refresh(&mut self) -> Result<(), MapError> {
        self.anchor = self.sample()?;
        Ok(())
    }

    /// CLOCK_MONOTONIC ns of a jiffies stamp (never later than the anchor).
    pub(crate) fn to_mono_ns(&self, jiffies: u64) -> u64 {
        let behind = self.anchor.jiffies.saturating_sub(jiffies) as f64 * self.ns_per_jiffy;
        self.anchor.mono_ns.saturating_sub(behind as u64)
    }
}
