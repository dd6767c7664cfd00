//! [`ForwardProbe`]: packets and bytes per interface and direction, counted at TC/TCX.
//!
//! Bytes are frame bytes including the L2 header, exactly what the interface's own
//! statistics (`ip -s link`, IFLA_STATS64 rx_bytes/tx_bytes) count on veth and other virtual
//! devices. A GSO/GRO skb counts as one packet (as veth counts it); physical NICs that count
//! wire segments after TSO will show more packets than we do.

use std::collections::BTreeMap;

use aya::maps::{MapError, PerCpuHashMap};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfError, EbpfLoader};

use super::Direction;
use super::counters::{self, RawCount};
use super::objects::{MAP_COUNTS, PACKETFORWARD};
use super::preflight::{self, Needs, PreflightError};
use super::tc::{self, AttachError, AttachMode, Attachment, ClsactOptions, TcHook, Via};
use super::telemetry::{self, ProbeTelemetry};

const PROG_INGRESS: &str = "fovea_fwd_ingress";
const PROG_EGRESS: &str = "fovea_fwd_egress";

/// Errors of the packetforward probe.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Something the probe needs is missing (all of it is listed).
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The object failed to load (verifier, BTF, or map creation).
    #[error("cannot load packetforward.bpf.o: {0}")]
    Load(#[source] EbpfError),
    /// A program is missing from the object or failed to load into the kernel.
    #[error("cannot load program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Underlying error.
        source: ProgramError,
    },
    /// Attaching or detaching failed.
    #[error(transparent)]
    Attach(Box<AttachError>),
    /// Reading the counters failed.
    #[error("cannot read packetforward counters: {0}")]
    Map(#[from] MapError),
}

impl From<AttachError> for ForwardError {
    fn from(e: AttachError) -> Self {
        Self::Attach(Box::new(e))
    }
}

/// How to load and attach the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOptions {
    /// TCX, clsact, or whichever the kernel supports.
    pub mode: AttachMode,
    /// Priority and handle used in clsact mode.
    pub clsact: ClsactOptions,
    /// Capacity of the (ifindex, direction) counter map.
    pub max_counters: u32,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self { mode: AttachMode::Auto, clsact: ClsactOptions::default(), max_counters: 4096 }
    }
}

/// Cumulative counts for one interface and direction since the probe was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardCount {
    /// Interface index (in the namespace the probe runs in).
    pub ifindex: u32,
    /// Ingress (received) or egress (sent).
    pub direction: Direction,
    /// Packets (skbs).
    pub packets: u64,
    /// Bytes including the L2 header.
    pub bytes: u64,
}

/// Where the probe is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedHook {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name at attach time.
    pub iface: String,
    /// Hook.
    pub hook: TcHook,
    /// TCX link or clsact filter.
    pub via: Via,
}

/// Mirror of `struct fwd_key` (ebpf/packetforward.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RawForwardKey {
    ifindex: u32,
    direction: u32,
}
const _: () = assert!(size_of::<RawForwardKey>() == 8);
// SAFETY: plain #[repr(C)] integers, no padding.
unsafe impl aya::Pod for RawForwardKey {}

/// The packetforward probe: load once, attach to any number of interfaces. Interface names
/// and indexes are those of the network namespace of the calling thread.
pub struct ForwardProbe {
    // declared first so links detach before the programs are unloaded
    attachments: BTreeMap<(u32, TcHook), Attachment>,
    ebpf: Ebpf,
    options: ForwardOptions,
}

impl ForwardProbe {
    /// Loads with default options (TCX when available).
    pub fn load() -> Result<Self, ForwardError> {
        Self::load_with(ForwardOptions::default())
    }

    /// Checks prerequisites, loads both programs; attaches nothing yet.
    pub fn load_with(options: ForwardOptions) -> Result<Self, ForwardError> {
        preflight::check(Needs::TC)?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_COUNTS, options.max_counters)
            .load(PACKETFORWARD)
            .map_err(ForwardError::Load)?;
        for name in [PROG_INGRESS, PROG_EGRESS] {
            classifier(&mut ebpf, name)?.load().map_err(|source| ForwardError::Program { name, source })?;
        }
        Ok(Self { ebpf, options, attachments: BTreeMap::new() })
    }

    /// Attaches to both hooks of `iface`; returns its ifindex. Attaching twice is a no-op.
    pub fn attach(&mut self, iface: &str) -> Result<u32, ForwardError> {
        let ifindex = tc::ifindex(iface)?;
        for (hook, name) in [(TcHook::Ingress, PROG_INGRESS), (TcHook::Egress, PROG_EGRESS)] {
            if self.attachments.contains_key(&(ifindex, hook)) {
                continue;
            }
            let prog = classifier(&mut self.ebpf, name)?;
            let a = tc::attach(prog, name, iface, hook, self.options.mode, self.options.clsact)?;
            self.attachments.insert((ifindex, hook), a);
        }
        Ok(ifindex)
    }

    /// Attaches to both hooks of the interface with index `ifindex`.
    pub fn attach_index(&mut self, ifindex: u32) -> Result<(), ForwardError> {
        let iface = tc::ifname(ifindex)?;
        self.attach(&iface).map(|_| ())
    }

    /// Detaches from both hooks of `ifindex` (only our programs; the qdisc and other filters
    /// stay). Counters are kept until [`ForwardProbe::forget`]. Unknown ifindex is a no-op.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), ForwardError> {
        for hook in [TcHook::Ingress, TcHook::Egress] {
            if let Some(a) = self.attachments.remove(&(ifindex, hook)) {
                a.detach()?;
            }
        }
        Ok(())
    }

    /// Drops the counters of `ifindex` (e.g. after its interface was deleted).
    pub fn forget(&mut self, ifindex: u32) -> Result<(), ForwardError> {
        let mut counts =
            PerCpuHashMap::<_, RawForwardKey, RawCount>::try_from(counters::counts_map_mut(&mut self.ebpf)?)?;
        for direction in [1, 2] {
            match counts.remove(&RawForwardKey { ifindex, direction }) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Where the probe is attached now.
    pub fn attached(&self) -> Vec<AttachedHook> {
        self.attachments
            .iter()
            .map(|(&(ifindex, hook), a)| AttachedHook { ifindex, iface: a.iface.clone(), hook, via: a.via })
            .collect()
    }

    /// Cumulative counts per (ifindex, direction), summed over CPUs, sorted.
    pub fn counters(&self) -> Result<Vec<ForwardCount>, ForwardError> {
        let mut out = counters::sum_per_key(&self.ebpf, |key: RawForwardKey, count| ForwardCount {
            ifindex: key.ifindex,
            direction: Direction::from_code(key.direction),
            packets: count.packets,
            bytes: count.bytes,
        })?;
        out.sort_by_key(|c| (c.ifindex, c.direction));
        Ok(out)
    }

    /// Run time, map fill and counter-map overflow of this probe.
    pub fn telemetry(&self) -> ProbeTelemetry {
        telemetry::collect(&self.ebpf, telemetry::record_stats(&self.ebpf))
    }
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, ForwardError> {
    tc::classifier(ebpf, name).map_err(|source| ForwardError::Program { name, source })
}
