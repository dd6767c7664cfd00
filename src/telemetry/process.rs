//! Build information and process metrics (uptime, CPU time, resident memory) of the agent itself.

use crate::model::semconv::own;
use crate::model::{Attributes, Metric, NumberPoint};

use super::Collector;

/// `fovea.build_info` plus `fovea.process.*` metrics read from /proc/self.
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn collect(&self, start: u64, now: u64, out: &mut Vec<Metric>) {
        let build = Attributes::from_pairs([
            (own::attr::VERSION, env!("CARGO_PKG_VERSION")),
            // Set by build.rs from `rustc --version`.
            (own::attr::RUSTC, env!("FOVEA_RUSTC_VERSION")),
        ]);
        out.push(Metric::from_def(&own::BUILD_INFO, vec![NumberPoint::int(build, 0, now, 1)]));
        let uptime = now.saturating_sub(start) as f64 / 1e9;
        let uptime = NumberPoint::double(Attributes::new(), 0, now, uptime);
        out.push(Metric::from_def(&own::PROCESS_UPTIME, vec![uptime]));
        if let Some((cpu, rss)) = read_self() {
            let cpu = NumberPoint::double(Attributes::new(), start, now, cpu);
            out.push(Metric::from_def(&own::PROCESS_CPU_TIME, vec![cpu]));
            let rss = NumberPoint::int(Attributes::new(), 0, now, rss as i64);
            out.push(Metric::from_def(&own::PROCESS_MEMORY_RSS, vec![rss]));
        }
    }
}

/// `(cpu seconds, rss bytes)` of this process.
pub fn read_self() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = clock_ticks();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    let page = page_size();
    Some(((utime + stime) / ticks, rss_pages * page))
}

/// Hands freed heap memory back to the OS. glibc keeps freed pages that are not at the top of
/// the heap, so the transient allocations of start-up (kernel BTF parsed to load the probes, the
/// Kubernetes cache's first lists) would otherwise stay in the agent's resident size for good,
/// and that is what a DaemonSet's memory limit must cover. Call it after such a phase.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the OS; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss_and_cpu() {
        let (cpu, rss) = read_self().unwrap();
        assert!(cpu >= 0.0);
        // Compare with /proc/self/status VmRSS (kB).
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_rss_kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        let diff = (rss as i64 - (vm_rss_kb * 1024) as i64).abs();
        assert!(diff < 4 * 1024 * 1024, "stat rss {rss} vs status {vm_rss_kb} kB");
    }
}
