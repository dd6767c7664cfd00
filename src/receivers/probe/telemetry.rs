//! The eBPF receivers' own health on the agent's `/metrics`: kernel run time and invocations per
//! program, fill of every map, and record accounting (emitted, capped, lost) per receiver.
//!
//! The metrics are `semconv::own::EBPF_*` (listed in docs/metrics.md from the same table).
//!
//! The kernel counts run time only while BPF statistics are on: at
//! `service.telemetry.metrics.level: detailed` the receivers turn them on ([`run_time_stats`]);
//! otherwise they follow the `kernel.bpf_stats_enabled` sysctl as the operator set it.

use std::sync::{Mutex, Weak};

use smol_str::SmolStr;

use crate::config::service::MetricsLevel;
use crate::ebpf::{ProbeTelemetry, RunTimeStats, enable_run_time_stats};
use crate::model::semconv::own;
use crate::model::{Attributes, Metric, NumberPoint};
use crate::telemetry::Collector;

/// Something that holds a loaded probe and can report its health.
pub trait ProbeHealth: Send {
    /// Run time, map fill and record accounting of the probe now.
    fn probe_telemetry(&self) -> ProbeTelemetry;
}

/// Reports one receiver's probe on the agent's own metrics while the receiver holds it.
pub struct EbpfCollector<P> {
    receiver: SmolStr,
    probe: Weak<Mutex<P>>,
    records: bool,
    loaded_at: u64,
}

impl<P> EbpfCollector<P> {
    /// A collector for receiver `receiver` (its component id); `records` when the probe has a
    /// record ring; `loaded_at` (ns since the epoch) starts the cumulative series. Holds the probe
    /// weakly, so a stopped receiver's probe is unloaded and then reports nothing.
    pub fn new(receiver: &str, probe: Weak<Mutex<P>>, records: bool, loaded_at: u64) -> Self {
        EbpfCollector { receiver: receiver.into(), probe, records, loaded_at }
    }
}

impl<P: ProbeHealth> Collector for EbpfCollector<P> {
    fn collect(&self, _start: u64, now: u64, out: &mut Vec<Metric>) {
        let Some(probe) = self.probe.upgrade() else {
            return;
        };
        let telemetry = match probe.lock() {
            Ok(p) => p.probe_telemetry(),
            Err(_) => return,
        };
        render(&self.receiver, &telemetry, self.records, self.loaded_at, now, out);
    }
}

/// Appends the `fovea.ebpf.*` metrics of one probe.
pub fn render(receiver: &str, t: &ProbeTelemetry, records: bool, start: u64, now: u64, out: &mut Vec<Metric>) {
    let attrs = |key: &str, value: &str| Attributes::from_pairs([(own::attr::RECEIVER, receiver), (key, value)]);
    let mut run_time = Vec::with_capacity(t.programs.len());
    let mut run_count = Vec::with_capacity(t.programs.len());
    for p in &t.programs {
        run_time.push(NumberPoint::count(attrs(own::attr::PROGRAM, &p.name), start, now, p.run_time_ns));
        run_count.push(NumberPoint::count(attrs(own::attr::PROGRAM, &p.name), start, now, p.run_count));
    }
    out.push(Metric::from_def(&own::EBPF_PROGRAM_RUN_TIME, run_time));
    out.push(Metric::from_def(&own::EBPF_PROGRAM_RUN_COUNT, run_count));
    let mut entries = Vec::with_capacity(t.maps.len());
    let mut max_entries = Vec::with_capacity(t.maps.len());
    for m in &t.maps {
        entries.push(NumberPoint::int(attrs(own::attr::MAP, &m.name), 0, now, i64::from(m.entries)));
        max_entries.push(NumberPoint::int(attrs(own::attr::MAP, &m.name), 0, now, i64::from(m.max_entries)));
    }
    out.push(Metric::from_def(&own::EBPF_MAP_ENTRIES, entries));
    out.push(Metric::from_def(&own::EBPF_MAP_MAX_ENTRIES, max_entries));
    let point =
        |v: u64| vec![NumberPoint::count(Attributes::from_pairs([(own::attr::RECEIVER, receiver)]), start, now, v)];
    if records {
        let r = &t.records;
        out.push(Metric::from_def(&own::EBPF_RECORDS_EMITTED, point(r.emitted)));
        out.push(Metric::from_def(&own::EBPF_RECORDS_CAPPED, point(r.capped)));
        out.push(Metric::from_def(&own::EBPF_RECORDS_LOST, point(r.lost)));
    }
    out.push(Metric::from_def(&own::EBPF_COUNTER_UPDATES_LOST, point(t.records.counter_full)));
}

/// The smallest ring buffer the kernel accepts (one page), for probes whose records are off.
pub fn smallest_ring() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(page).ok().filter(|p| p.is_power_of_two() && *p >= 4096).unwrap_or(4096)
}

/// True when `fovea.ebpf.*` metrics belong on the agent's own metrics (`normal` and `detailed`).
pub fn reports(level: MetricsLevel) -> bool {
    matches!(level, MetricsLevel::Normal | MetricsLevel::Detailed)
}

/// At `detailed`, turns on the kernel's BPF run-time statistics for as long as the returned
/// guard lives (20-70 ns per program invocation, for every BPF program on the host: the kernel
/// reads its clock twice around each run); `None`
/// at other levels or when the kernel refuses (logged).
pub fn run_time_stats(level: MetricsLevel, receiver: &str) -> Option<RunTimeStats> {
    if level != MetricsLevel::Detailed {
        return None;
    }
    match enable_run_time_stats() {
        Ok(guard) => Some(guard),
        Err(e) => {
            tracing::warn!(receiver, error = %e, "eBPF run times will stay 0 unless kernel.bpf_stats_enabled=1");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::{MapFill, ProgramStats, RecordStats};
    use crate::model::{MetricData, Number};

    fn value(metrics: &[Metric], name: &str, key: &str, attr: &str) -> Option<i64> {
        let m = metrics.iter().find(|m| m.name == name)?;
        let points = match &m.data {
            MetricData::Sum(s) => &s.points,
            MetricData::Gauge(p) => p,
            MetricData::Histogram(_) => return None,
        };
        points.iter().find(|p| p.attributes.get_str(key) == Some(attr)).and_then(|p| match p.value {
            Number::Int(i) => Some(i),
            Number::Double(_) => None,
        })
    }

    #[test]
    fn renders_programs_maps_and_records() {
        let t = ProbeTelemetry {
            programs: vec![ProgramStats { name: "fovea_drop_btf".into(), id: 42, run_time_ns: 1150, run_count: 10 }],
            maps: vec![MapFill { name: "counts".into(), entries: 3, max_entries: 1024 }],
            records: RecordStats { emitted: 7, capped: 2, lost: 1, counter_full: 0 },
        };
        let mut out = Vec::new();
        render("dropreason", &t, true, 5, 9, &mut out);
        assert_eq!(value(&out, own::EBPF_PROGRAM_RUN_TIME.name, own::attr::PROGRAM, "fovea_drop_btf"), Some(1150));
        assert_eq!(value(&out, own::EBPF_PROGRAM_RUN_COUNT.name, own::attr::PROGRAM, "fovea_drop_btf"), Some(10));
        assert_eq!(value(&out, own::EBPF_MAP_ENTRIES.name, own::attr::MAP, "counts"), Some(3));
        assert_eq!(value(&out, own::EBPF_MAP_MAX_ENTRIES.name, own::attr::MAP, "counts"), Some(1024));
        assert_eq!(value(&out, own::EBPF_RECORDS_EMITTED.name, own::attr::RECEIVER, "dropreason"), Some(7));
        assert_eq!(value(&out, own::EBPF_RECORDS_CAPPED.name, own::attr::RECEIVER, "dropreason"), Some(2));
        assert_eq!(value(&out, own::EBPF_RECORDS_LOST.name, own::attr::RECEIVER, "dropreason"), Some(1));
        let run_time = out.iter().find(|m| m.name == own::EBPF_PROGRAM_RUN_TIME.name).expect("run_time");
        assert!(matches!(&run_time.data, MetricData::Sum(s) if s.monotonic && s.points[0].start_time_unix_nano == 5));
    }

    #[test]
    fn probes_without_records_report_no_record_counters() {
        let mut out = Vec::new();
        render("packetforward", &ProbeTelemetry::default(), false, 0, 1, &mut out);
        assert!(out.iter().all(|m| !m.name.starts_with("fovea.ebpf.records.")));
    }

    #[test]
    fn a_dropped_probe_reports_nothing() {
        struct Fake;
        impl ProbeHealth for Fake {
            fn probe_telemetry(&self) -> ProbeTelemetry {
                ProbeTelemetry::default()
            }
        }
        let probe = std::sync::Arc::new(Mutex::new(Fake));
        let collector = EbpfCollector::new("x", std::sync::Arc::downgrade(&probe), false, 0);
        let mut out = Vec::new();
        collector.collect(0, 1, &mut out);
        assert!(!out.is_empty());
        drop(probe);
        out.clear();
        collector.collect(0, 1, &mut out);
        assert!(out.is_empty());
    }
}
