//! [`DropProbe`]: packets and bytes dropped by the kernel, per drop reason and direction,
//! from `skb:kfree_skb`, plus rate-capped flow records of the drops.
//!
//! * Reasons are the running kernel's `enum skb_drop_reason` values; [`DropProbe::reason_name`]
//!   names them from the kernel's BTF (`NETFILTER_DROP`, `NO_SOCKET`, ...). Normal frees
//!   (`SKB_CONSUMED`, `SKB_NOT_DROPPED_YET`) are never counted; `NOT_SPECIFIED` only with
//!   [`DropConfig::include_unspecified`].
//! * Direction: ingress when the skb came in on a device (skb_iif set: delivered or being
//!   forwarded), egress when it was generated on this host (no input device, but a socket or
//!   an output device), unknown otherwise.
//! * Bytes: the packet's network-layer size (IP header + payload) at free time, whatever
//!   headers the stack had pulled or pushed by then; skb->len for non-IP packets.

use std::time::SystemTime;

use aya::maps::MapError;
use aya::{Ebpf, EbpfError};

use super::btf::DropReasons;
use super::clock::KernelClock;
use super::counters;
use super::hooks::{self, Attached};
use super::objects::{DROPREASON, MAP_COUNTS};
use super::preflight::{self, Needs, PreflightError};
use super::records::{self, RawTuple, RecordError, RecordStats, RecordStream, RingRecord, read_raw};
use super::telemetry::{self, ProbeTelemetry};
use super::{Direction, FlowTuple};

const PROG_BTF: &str = "fovea_drop_btf";
const PROG_TP: &str = "fovea_drop_tp";

/// Errors of the dropreason probe.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// Something the probe needs is missing (all of it is listed).
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// Invalid configuration.
    #[error("invalid dropreason config: {0}")]
    Config(String),
    /// The object failed to load (verifier, BTF, or map creation).
    #[error("cannot load dropreason.bpf.o: {0}")]
    Load(#[source] EbpfError),
    /// Neither tp_btf/kfree_skb nor tracepoint/skb/kfree_skb could be loaded and attached.
    #[error("cannot attach to skb:kfree_skb: tp_btf failed ({btf}); tracepoint failed ({tracepoint})")]
    Attach {
        /// Why tp_btf failed.
        btf: String,
        /// Why the plain tracepoint failed.
        tracepoint: String,
    },
    /// Reading the counters failed.
    #[error("cannot read dropreason counters: {0}")]
    Map(#[from] MapError),
    /// Opening the record stream failed, or it was already taken.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// [`DropProbe::take_records`] was called twice.
    #[error("the dropreason record stream was already taken")]
    RecordsTaken,
}

/// Configuration of the dropreason probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropConfig {
    /// Count `SKB_DROP_REASON_NOT_SPECIFIED` (frees by code that reports no reason).
    pub include_unspecified: bool,
    /// Flow records per second, all CPUs together; 0 disables records.
    pub record_rate_per_sec: u32,
    /// Capacity of the (reason, direction) counter map.
    pub max_counters: u32,
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub ring_bytes: u32,
    /// Use the plain tracepoint even when tp_btf would work (tests, old kernels).
    pub force_tracepoint: bool,
}

impl Default for DropConfig {
    fn default() -> Self {
        Self {
            include_unspecified: false,
            record_rate_per_sec: 1000,
            max_counters: 1024,
            ring_bytes: 256 * 1024,
            force_tracepoint: false,
        }
    }
}

/// Which kernel hook the probe runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropHook {
    /// `tp_btf/kfree_skb` (BTF-typed raw tracepoint).
    TpBtf,
    /// `tracepoint/skb/kfree_skb` (the tracefs tracepoint).
    Tracepoint,
}

/// Cumulative drops for one reason and direction since the probe was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DropCount {
    /// The kernel's `enum skb_drop_reason` value (name it with [`DropProbe::reason_name`]).
    pub reason_code: u32,
    /// Ingress, egress or unknown (see the module docs for the rule).
    pub direction: Direction,
    /// Packets dropped.
    pub packets: u64,
    /// Network-layer bytes dropped.
    pub bytes: u64,
}

/// One dropped IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRecord {
    /// When it was dropped.
    pub time: SystemTime,
    /// Its 5-tuple.
    pub tuple: FlowTuple,
    /// The kernel's drop reason value.
    pub reason_code: u32,
    /// Device it was on (skb->dev, else the input device), in the namespace of the drop.
    pub ifindex: u32,
    /// Ingress, egress or unknown.
    pub direction: Direction,
    /// Network-layer bytes.
    pub bytes: u32,
}

/// Mirror of `struct drop_record` (ebpf/dropreason.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawDropRecord {
    boot_ns: u64,
    tuple: RawTuple,
    reason: u32,
    ifindex: u32,
    bytes: u32,
    direction: u8,
    pad: [u8; 3],
}
const _: () = assert!(size_of::<RawDropRecord>() == 64);

impl RingRecord for DropRecord {
    fn decode(bytes: &[u8], clock: &KernelClock) -> Option<Self> {
        let raw: RawDropRecord = read_raw(bytes)?;
        Some(Self {
            time: clock.to_system_time(raw.boot_ns),
            tuple: raw.tuple.to_flow()?,
            reason_code: raw.reason,
            ifindex: raw.ifindex,
            direction: Direction::from_code(u32::from(raw.direction)),
            bytes: raw.bytes,
        })
    }
}

/// Mirror of `struct drop_key` (ebpf/dropreason.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawDropKey {
    reason: u32,
    direction: u32,
}
const _: () = assert!(size_of::<RawDropKey>() == 8);
// SAFETY: plain #[repr(C)] integers, no padding.
unsafe impl aya::Pod for RawDropKey {}

/// The dropreason probe, attached to `skb:kfree_skb` from load until drop.
pub struct DropProbe {
    ebpf: Ebpf,
    reasons: DropReasons,
    hook: DropHook,
}

impl DropProbe {
    /// Checks prerequisites, loads and attaches (tp_btf, falling back to the tracepoint).
    pub fn load(config: DropConfig) -> Result<Self, DropError> {
        records::check_ring_bytes(config.ring_bytes).map_err(DropError::Config)?;
        preflight::check(Needs::TRACING)?;
        let include_unspecified = u8::from(config.include_unspecified);
        let mut ebpf = records::recording_loader(&config.record_rate_per_sec, config.ring_bytes)
            .override_global("include_unspecified", &include_unspecified, true)
            .map_max_entries(MAP_COUNTS, config.max_counters)
            .load(DROPREASON)
            .map_err(DropError::Load)?;

        let btf = hooks::kernel_btf(config.force_tracepoint);
        let hook = match hooks::attach_preferring_btf(&mut ebpf, &btf, (PROG_BTF, PROG_TP), ("skb", "kfree_skb")) {
            Ok(Attached::TpBtf) => DropHook::TpBtf,
            Ok(Attached::Tracepoint(_)) => DropHook::Tracepoint,
            Err((btf, tracepoint)) => return Err(DropError::Attach { btf, tracepoint: tracepoint.to_string() }),
        };

        let reasons = DropReasons::from_kernel().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "drop reasons will be reported by number only");
            DropReasons::default()
        });
        Ok(Self { ebpf, reasons, hook })
    }

    /// The hook in use.
    pub fn hook(&self) -> DropHook {
        self.hook
    }

    /// The running kernel's name for `code` without `SKB_DROP_REASON_` (`NO_SOCKET`, ...).
    pub fn reason_name(&self, code: u32) -> Option<&str> {
        self.reasons.name(code)
    }

    /// All drop reasons of the running kernel.
    pub fn reasons(&self) -> &DropReasons {
        &self.reasons
    }

    /// Cumulative drops per (reason, direction), summed over CPUs, sorted.
    pub fn counters(&self) -> Result<Vec<DropCount>, DropError> {
        let mut out = counters::sum_per_key(&self.ebpf, |key: RawDropKey, count| DropCount {
            reason_code: key.reason,
            direction: Direction::from_code(key.direction),
            packets: count.packets,
            bytes: count.bytes,
        })?;
        out.sort_by_key(|c| (c.reason_code, c.direction));
        Ok(out)
    }

    /// Takes the flow-record stream (once); call inside a tokio runtime. The probe keeps
    /// counting whether or not the stream is read; unread records end up counted as lost.
    pub fn take_records(&mut self) -> Result<RecordStream<DropRecord>, DropError> {
        Ok(records::take_stream(&mut self.ebpf).ok_or(DropError::RecordsTaken)??)
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
