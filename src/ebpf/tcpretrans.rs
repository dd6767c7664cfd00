//! [`TcpRetransProbe`]: TCP retransmissions counted in the kernel, plus rate-capped flow
//! records, from `tcp:tcp_retransmit_skb` and `tcp:tcp_retransmit_synack`.
//!
//! [`RetransTotals::segments`] counts what the kernel's `TcpRetransSegs` counts: segments
//! (`tcp_skb_pcount`, so a TSO retransmit of 30 MSS counts 30) of retransmit attempts the kernel
//! accounted, plus SYN-ACK retransmits. Attempts the kernel aborted before accounting them
//! (`err` -EBUSY, -EAGAIN, -EINVAL, -ENOMEM, -EHOSTUNREACH) are in [`RetransTotals::aborted`];
//! attempts that failed in the transmit itself (e.g. `err` 1, NET_XMIT_DROP, when a veth
//! peer's backlog is full) are accounted by the kernel and so are in `segments`.

use std::time::SystemTime;

use aya::maps::{MapError, PerCpuArray};
use aya::programs::ProgramError;
use aya::{Ebpf, EbpfError};

use super::FlowTuple;
use super::clock::KernelClock;
use super::counters;
use super::hooks::{self, Attached};
use super::objects::TCPRETRANS;
use super::preflight::{self, Needs, PreflightError};
use super::records::{self, RawTuple, RecordError, RecordStats, RecordStream, RingRecord, read_raw};
use super::telemetry::{self, ProbeTelemetry};
use crate::model::TcpState;

/// (tracepoint in group `tcp`, (BTF-typed program, classic tracepoint program)).
const HOOKS: [(&str, (&str, &str)); 2] = [
    ("tcp_retransmit_skb", ("fovea_retrans_skb_btf", "fovea_retrans_skb")),
    ("tcp_retransmit_synack", ("fovea_retrans_synack_btf", "fovea_retrans_synack")),
];

/// Errors of the tcpretrans probe.
#[derive(Debug, thiserror::Error)]
pub enum RetransError {
    /// Something the probe needs is missing (all of it is listed).
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// Invalid configuration.
    #[error("invalid tcpretrans config: {0}")]
    Config(String),
    /// The object failed to load (verifier, BTF, or map creation).
    #[error("cannot load tcpretrans.bpf.o: {0}")]
    Load(#[source] EbpfError),
    /// Neither the BTF-typed nor the classic tracepoint programs could be attached.
    #[error("cannot attach to tcp:{tracepoint}: as tp_btf: {btf}; as a tracepoint: {source}")]
    Attach {
        /// Tracepoint name.
        tracepoint: &'static str,
        /// Why the BTF-typed program did not attach.
        btf: String,
        /// Why the classic tracepoint program did not attach.
        source: ProgramError,
    },
    /// Reading the counters failed.
    #[error("cannot read tcpretrans counters: {0}")]
    Map(#[from] MapError),
    /// Opening the record stream failed.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// [`TcpRetransProbe::take_records`] was called twice.
    #[error("the tcpretrans record stream was already taken")]
    RecordsTaken,
}

/// Configuration of the tcpretrans probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransConfig {
    /// Flow records per second, all CPUs together; 0 disables records.
    pub record_rate_per_sec: u32,
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub ring_bytes: u32,
    /// Attach the classic tracepoints even where the BTF-typed ones load (tests compare them).
    pub force_tracepoint: bool,
}

impl Default for RetransConfig {
    fn default() -> Self {
        Self { record_rate_per_sec: 1000, ring_bytes: 256 * 1024, force_tracepoint: false }
    }
}

/// Cumulative retransmission counts since load, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetransTotals {
    /// Retransmitted segments as TcpRetransSegs counts them, SYN-ACKs included.
    pub segments: u64,
    /// Tracepoint hits behind `segments` (one per retransmitted skb or SYN-ACK).
    pub events: u64,
    /// Segments of attempts aborted before the kernel counted them (see the module docs).
    pub aborted: u64,
    /// SYN-ACK retransmits (included in `segments`).
    pub synack: u64,
}

/// What was retransmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetransKind {
    /// A data/control segment of an established (or closing) connection, or a SYN.
    Segment,
    /// A SYN-ACK of a passive open.
    SynAck,
}

/// One retransmission, as seen by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransRecord {
    /// When it happened.
    pub time: SystemTime,
    /// The connection, source = the retransmitting (local) side.
    pub tuple: FlowTuple,
    /// Connection state at the time; `None` for a state number this build does not know.
    pub state: Option<TcpState>,
    /// Segment or SYN-ACK.
    pub kind: RetransKind,
    /// Segments in the retransmitted skb.
    pub segments: u16,
    /// 0 when the retransmit went out; negative errno or positive NET_XMIT code otherwise.
    pub err: i32,
}

impl RetransRecord {
    /// True when the kernel counted this attempt in TcpRetransSegs (and we in `segments`):
    /// everything except the early aborts -EBUSY, -EAGAIN, -EINVAL, -ENOMEM, -EHOSTUNREACH.
    pub fn counted(&self) -> bool {
        !matches!(-self.err, libc::EBUSY | libc::EAGAIN | libc::EINVAL | libc::ENOMEM | libc::EHOSTUNREACH)
    }
}

/// Mirror of `struct retrans_record` (ebpf/tcpretrans.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawRetransRecord {
    boot_ns: u64,
    tuple: RawTuple,
    state: u8,
    kind: u8,
    segments: u16,
    err: i32,
}
const _: () = assert!(size_of::<RawRetransRecord>() == 56);

impl RingRecord for RetransRecord {
    fn decode(bytes: &[u8], clock: &KernelClock) -> Option<Self> {
        let raw: RawRetransRecord = read_raw(bytes)?;
        Some(Self {
            time: clock.to_system_time(raw.boot_ns),
            tuple: raw.tuple.to_flow()?,
            state: TcpState::from_linux(raw.state),
            kind: if raw.kind == 1 { RetransKind::SynAck } else { RetransKind::Segment },
            segments: raw.segments,
            err: raw.err,
        })
    }
}

/// Mirror of `struct retrans_count` (ebpf/tcpretrans.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RawRetransCount {
    segments: u64,
    events: u64,
    aborted: u64,
    synack: u64,
}
const _: () = assert!(size_of::<RawRetransCount>() == 32);
// SAFETY: plain #[repr(C)] integers, no padding.
unsafe impl aya::Pod for RawRetransCount {}

/// The tcpretrans probe, attached from load until drop.
pub struct TcpRetransProbe {
    ebpf: Ebpf,
    btf_typed: bool,
}

impl TcpRetransProbe {
    /// Checks prerequisites, loads and attaches both tracepoints.
    pub fn load(config: RetransConfig) -> Result<Self, RetransError> {
        records::check_ring_bytes(config.ring_bytes).map_err(RetransError::Config)?;
        preflight::check(Needs::TRACING)?;
        let mut ebpf = records::recording_loader(&config.record_rate_per_sec, config.ring_bytes)
            .load(TCPRETRANS)
            .map_err(RetransError::Load)?;
        // BTF-typed tracepoints first (docs/ebpf.md), the classic ones as the fallback, per hook.
        let btf = hooks::kernel_btf(config.force_tracepoint);
        let mut btf_typed = true;
        for (tracepoint, programs) in HOOKS {
            match hooks::attach_preferring_btf(&mut ebpf, &btf, programs, ("tcp", tracepoint)) {
                Ok(Attached::TpBtf) => {}
                Ok(Attached::Tracepoint(why)) => {
                    tracing::info!(tracepoint, btf = %why, "tcpretrans uses the classic tracepoint");
                    btf_typed = false;
                }
                Err((btf, source)) => return Err(RetransError::Attach { tracepoint, btf, source }),
            }
        }
        Ok(Self { ebpf, btf_typed })
    }

    /// True when both hooks run BTF-typed programs (no classic tracepoint fallback).
    pub fn btf_typed(&self) -> bool {
        self.btf_typed
    }

    /// Cumulative totals since load.
    pub fn totals(&self) -> Result<RetransTotals, RetransError> {
        let counts = PerCpuArray::<_, RawRetransCount>::try_from(counters::counts_map(&self.ebpf)?)?;
        let per_cpu = counts.get(&0, 0)?;
        Ok(per_cpu.iter().fold(RetransTotals::default(), |t, c| RetransTotals {
            segments: t.segments + c.segments,
            events: t.events + c.events,
            aborted: t.aborted + c.aborted,
            synack: t.synack + c.synack,
        }))
    }

    /// Retransmitted segments since load (= `totals()?.segments`).
    pub fn total(&self) -> Result<u64, RetransError> {
        self.totals().map(|t| t.segments)
    }

    /// Takes the flow-record stream (once); call inside a tokio runtime.
    pub fn take_records(&mut self) -> Result<RecordStream<RetransRecord>, RetransError> {
        Ok(records::take_stream(&mut self.ebpf).ok_or(RetransError::RecordsTaken)??)
    }

    /// Records emitted, capped by the per-second limit, and lost to a full ring.
    pub fn record_stats(&self) -> RecordStats {
        telemetry::record_stats(&self.ebpf)
    }

    /// Run time, map fill and record accounting of this probe.
    pub fn telemetry(&self) -> ProbeTelemetry {
        telemetry::collect(&self.ebpf, self.record_stats())
    }
}
