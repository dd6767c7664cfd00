//! Kernel timestamps to wall-clock time.
//!
//! Probes stamp what they see with the kernel's clocks: `bpf_ktime_get_boot_ns()` (CLOCK_BOOTTIME,
//! ring-buffer records), `bpf_ktime_get_ns()` and `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC
//! and its coarse, tick-resolution reading; flow tables). [`KernelClock`] samples one of those
//! clocks and the wall clock together once, then converts stamps by that offset.

use std::time::{Duration, SystemTime};

/// Converts stamps of one kernel clock to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct KernelClock {
    /// Wall-clock time at the kernel clock's zero, in ns since the UNIX epoch.
    offset_ns: i128,
}

impl KernelClock {
    /// For CLOCK_BOOTTIME stamps (`bpf_ktime_get_boot_ns`), sampled now.
    pub fn boot() -> Self {
        Self::sample(libc::CLOCK_BOOTTIME)
    }

    /// For CLOCK_MONOTONIC stamps (`bpf_ktime_get_ns`, and `bpf_ktime_get_coarse_ns`, which
    /// lags it by at most one tick), sampled now.
    pub fn monotonic() -> Self {
        Self::sample(libc::CLOCK_MONOTONIC)
    }

    fn sample(clock: libc::clockid_t) -> Self {
        let kernel = clock_ns(clock);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self { offset_ns: real - kernel }
    }

    /// The wall-clock time of a stamp.
    pub fn to_system_time(&self, ns: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.to_unix_nano(ns))
    }

    /// The wall-clock time of a stamp in ns since the UNIX epoch (0 before it).
    pub fn to_unix_nano(&self, ns: u64) -> u64 {
        let t = self.offset_ns + i128::from(ns);
        u64::try_from(t.max(0)).unwrap_or(u64::MAX)
    }
}

/// The current reading of `clock` in ns.
pub(crate) fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; every clock used here exists on every Linux fovea supports.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clocks_convert_to_now() {
        for (clock, id) in
            [(KernelClock::boot(), libc::CLOCK_BOOTTIME), (KernelClock::monotonic(), libc::CLOCK_MONOTONIC)]
        {
            let stamp = u64::try_from(clock_ns(id)).expect("positive");
            let t = clock.to_system_time(stamp);
            let skew = SystemTime::now().duration_since(t).unwrap_or_else(|e| e.duration());
            assert!(skew < Duration::from_secs(1), "{skew:?}");
        }
    }
}
