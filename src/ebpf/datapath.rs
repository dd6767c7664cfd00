//! [`DatapathProbe`]: the programs on pod interfaces and uplinks (ebpf/datapath.bpf.c), one per
//! TC hook, shared by the features that need pod traffic. Features are switched at run time
//! ([`DatapathProbe::set_features`]), so a later feature (DNS) rides on the same attachment.
//!
//! Features: flows, in-kernel flow aggregation whose maps ([`FlowMaps`], behind their own lock so
//! draining never delays attaching to a new pod) come from [`DatapathProbe::flows`], plus the TCP
//! RTT program ([`super::rtt`]) when asked for; and DNS, every DNS message copied once per node
//! into the `records` ring ([`DatapathProbe::take_dns_records`], [`super::dns`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aya::maps::{Array, HashMap, MapError};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Btf, Ebpf, EbpfError, EbpfLoader, Pod};

use super::dns::DnsCapture;
use super::flowtable::{FlowMaps, MAP_FLOWS, MAP_HANDSHAKES, MAP_IFACE_COUNTS};
use super::objects::DATAPATH;
use super::preflight::{self, Needs, PreflightError};
use super::records::{self, RecordError, RecordStream};
use super::rtt::{PROGS_RTT, RTT_COPY_EVERY};
use super::tc::{self, AttachError, AttachMode, Attachment, ClsactOptions, TcHook, Via};
use super::telemetry::{self, ProbeTelemetry};
use super::tick::PROG_TICK;

const PROG_INGRESS: &str = "fovea_dp_ingress";
const PROG_EGRESS: &str = "fovea_dp_egress";
const PROG_INGRESS_L3: &str = "fovea_dp_ingress_l3";
const PROG_EGRESS_L3: &str = "fovea_dp_egress_l3";
/// Every TC program of the object (tests look for them on interfaces).
pub const DATAPATH_PROGRAMS: [&str; 4] = [PROG_INGRESS, PROG_EGRESS, PROG_INGRESS_L3, PROG_EGRESS_L3];
const MAP_SETTINGS: &str = ".bss";
/// The attached interfaces, for the DNS feature's once-per-node rule.
const MAP_DNS_IFACES: &str = "dns_ifaces";

/// Errors of the datapath probe.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Something the probe needs is missing (all of it is listed).
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The object failed to load (verifier, BTF, or map creation).
    #[error("cannot load datapath.bpf.o: {0}")]
    Load(#[source] EbpfError),
    /// A program is missing from the object or failed to load or attach.
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
    /// Reading or writing a map failed.
    #[error("datapath map: {0}")]
    Map(#[from] MapError),
    /// The DNS record ring could not be opened.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// The kernel's BTF (needed by the RTT program) could not be read.
    #[error("cannot read the kernel's BTF for the TCP RTT program: {0}")]
    Btf(String),
}

impl From<AttachError> for DatapathError {
    fn from(e: AttachError) -> Self {
        Self::Attach(Box::new(e))
    }
}

/// How the link layer of an interface looks to a TC program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkLayer {
    /// Frames start with an Ethernet header (veth, physical NICs, bridges).
    Ethernet,
    /// Packets start with the IP header (tun, WireGuard, ipip).
    None,
}

impl LinkLayer {
    /// From the device's ARPHRD type (`ifinfomsg.ifi_type`).
    pub fn from_arphrd(arphrd: u16) -> Self {
        // ARPHRD_ETHER 1, ARPHRD_LOOPBACK 772 have a 14-byte header; tunnels and ARPHRD_NONE do not.
        match arphrd {
            1 | 772 => Self::Ethernet,
            _ => Self::None,
        }
    }

    /// Bytes of link-layer header before the IP header (without in-band VLAN tags).
    pub fn header_bytes(self) -> u64 {
        match self {
            Self::Ethernet => 14,
            Self::None => 0,
        }
    }
}

/// Features of the datapath programs, as `DP_FEATURE_*` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Count flows.
    pub flows: bool,
    /// Count packets per TCP flag in each flow.
    pub tcp_flags: bool,
    /// Time TCP handshakes (SYN to SYN-ACK).
    pub handshake: bool,
    /// Zero the client's ephemeral port: `Some((lo, hi))`, the ephemeral range.
    pub collapse_ports: Option<(u16, u16)>,
    /// Copy DNS messages to the record ring: `Some(n)`, at most n records per second.
    pub dns: Option<u32>,
}

/// Mirror of `struct dp_settings`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RawSettings {
    features: u32,
    ephemeral_lo: u16,
    ephemeral_hi: u16,
    dns_rate_per_sec: u32,
    rtt_every_jiffies: u32,
}
const _: () = assert!(size_of::<RawSettings>() == 16);
// SAFETY: #[repr(C)] integers without padding.
unsafe impl Pod for RawSettings {}

impl From<Features> for RawSettings {
    fn from(f: Features) -> Self {
        let mut bits = 0;
        for (on, bit) in [
            (f.flows, 0x1),
            (f.tcp_flags, 0x2),
            (f.handshake, 0x4),
            (f.collapse_ports.is_some(), 0x8),
            (f.dns.is_some(), 0x10),
        ] {
            if on {
                bits |= bit;
            }
        }
        let (lo, hi) = f.collapse_ports.unwrap_or((0, 0));
        RawSettings {
            features: bits,
            ephemeral_lo: lo,
            ephemeral_hi: hi,
            dns_rate_per_sec: f.dns.unwrap_or(0),
            rtt_every_jiffies: 0,
        }
    }
}

/// How to load the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathOptions {
    /// TCX, clsact, or whichever the kernel supports.
    pub mode: AttachMode,
    /// Priority and handle in clsact mode (not packetforward's, so both fit on one interface).
    pub clsact: ClsactOptions,
    /// Flows each half of the double-buffered flow table holds.
    pub max_flows: u32,
    /// SYNs waiting for their SYN-ACK.
    pub max_handshakes: u32,
    /// Sockets whose RTT is tracked.
    pub max_sockets: u32,
    /// Per-interface overflow/non-IP counters (4 per interface).
    pub max_interface_counters: u32,
    /// Load and attach the TCP RTT program.
    pub rtt: bool,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        Self {
            mode: AttachMode::Auto,
            clsact: ClsactOptions { priority: 1, handle: 0xf0eb },
            max_flows: 65536,
            max_handshakes: 16384,
            max_sockets: 65536,
            max_interface_counters: 16384,
            rtt: false,
        }
    }
}

/// Where the probe is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathHook {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name at attach time.
    pub iface: String,
    /// Hook.
    pub hook: TcHook,
    /// TCX link or clsact filter.
    pub via: Via,
    /// Program (Ethernet or L3 variant).
    pub program: &'static str,
}

/// The datapath programs: load once, attach to any number of interfaces. Interface names and
/// indexes are those of the calling thread's network namespace.
pub struct DatapathProbe {
    // declared first so links detach before programs are unloaded
    attachments: BTreeMap<(u32, TcHook), (Attachment, &'static str)>,
    flows: Arc<Mutex<FlowMaps>>,
    ebpf: Ebpf,
    options: DatapathOptions,
    /// The settings last written (features, and the RTT programs' copy interval).
    settings: RawSettings,
}

impl DatapathProbe {
    /// Checks prerequisites and loads the TC programs (and the RTT program when asked for);
    /// every feature is off and nothing is attached yet.
    pub fn load(options: DatapathOptions) -> Result<Self, DatapathError> {
        preflight::check(Needs { tc: true, tracing: options.rtt, ring_buffers: true })?;
        let mut loader = EbpfLoader::new();
        for name in MAP_FLOWS {
            loader.map_max_entries(name, options.max_flows);
        }
        loader
            .map_max_entries(MAP_HANDSHAKES, options.max_handshakes)
            .map_max_entries(super::rtt::MAP_RTT, options.max_sockets)
            .map_max_entries(MAP_IFACE_COUNTS, options.max_interface_counters);
        let mut ebpf = loader.load(DATAPATH).map_err(DatapathError::Load)?;
        for name in DATAPATH_PROGRAMS {
            classifier(&mut ebpf, name)?.load().map_err(|source| DatapathError::Program { name, source })?;
        }
        let tick = classifier(&mut ebpf, PROG_TICK)?;
        tick.load().map_err(|source| DatapathError::Program { name: PROG_TICK, source })?;
        let tick = tick
            .fd()
            .and_then(|fd| {
                fd.try_clone()
                    .map_err(|io_error| ProgramError::SyscallError(aya::sys::SyscallError { call: "dup", io_error }))
            })
            .map_err(|source| DatapathError::Program { name: PROG_TICK, source })?;
        let flows = Arc::new(Mutex::new(FlowMaps::take(&mut ebpf, options.max_flows, tick)?));
        let mut probe =
            DatapathProbe { attachments: BTreeMap::new(), flows, ebpf, options, settings: RawSettings::default() };
        probe.set_features(Features::default())?;
        if options.rtt {
            probe.attach_rtt()?;
        }
        Ok(probe)
    }

    fn attach_rtt(&mut self) -> Result<(), DatapathError> {
        let btf = Btf::from_sys_fs().map_err(|e| DatapathError::Btf(e.to_string()))?;
        let every = self.flows.lock().unwrap_or_else(std::sync::PoisonError::into_inner).jiffies(RTT_COPY_EVERY);
        self.write_settings(RawSettings { rtt_every_jiffies: every, ..self.settings })?;
        for (name, tracepoint) in PROGS_RTT {
            super::hooks::attach_btf_tracepoint(&mut self.ebpf, name, tracepoint, &btf)
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        Ok(())
    }

    /// Switches features on and off for every attached interface at once.
    pub fn set_features(&mut self, features: Features) -> Result<(), DatapathError> {
        self.write_settings(RawSettings { rtt_every_jiffies: self.settings.rtt_every_jiffies, ..features.into() })
    }

    fn write_settings(&mut self, raw: RawSettings) -> Result<(), DatapathError> {
        let map = self.ebpf.map_mut(MAP_SETTINGS).ok_or_else(|| MapError::InvalidName { name: MAP_SETTINGS.into() })?;
        Array::<_, RawSettings>::try_from(map)?.set(0, raw, 0)?;
        self.settings = raw;
        Ok(())
    }

    /// Attaches to both hooks of `iface` with the program variant for its link layer; returns its
    /// ifindex. Attaching twice is a no-op.
    pub fn attach(&mut self, iface: &str, link: LinkLayer) -> Result<u32, DatapathError> {
        let ifindex = tc::ifindex(iface)?;
        // known as ours before the first packet passes, so DNS's once-per-node rule holds from it
        self.dns_ifaces()?.insert(ifindex, 1, 0)?;
        if let Err(e) = self.attach_programs(iface, ifindex, link) {
            if !self.attachments.keys().any(|(i, _)| *i == ifindex) {
                let _ = self.dns_ifaces()?.remove(&ifindex);
            }
            return Err(e);
        }
        Ok(ifindex)
    }

    fn attach_programs(&mut self, iface: &str, ifindex: u32, link: LinkLayer) -> Result<(), DatapathError> {
        let programs = match link {
            LinkLayer::Ethernet => [(TcHook::Ingress, PROG_INGRESS), (TcHook::Egress, PROG_EGRESS)],
            LinkLayer::None => [(TcHook::Ingress, PROG_INGRESS_L3), (TcHook::Egress, PROG_EGRESS_L3)],
        };
        for (hook, name) in programs {
            if self.attachments.contains_key(&(ifindex, hook)) {
                continue;
            }
            // a filter of the other variant left by a fovea that died would count twice
            for other in DATAPATH_PROGRAMS.iter().filter(|p| **p != name) {
                tc::remove_stale_filters(iface, hook, other, self.options.clsact)?;
            }
            let prog = classifier(&mut self.ebpf, name)?;
            let a = tc::attach(prog, name, iface, hook, self.options.mode, self.options.clsact)?;
            self.attachments.insert((ifindex, hook), (a, name));
        }
        Ok(())
    }

    /// Detaches from both hooks of `ifindex` (only ours; the qdisc and other filters stay).
    pub fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        for hook in [TcHook::Ingress, TcHook::Egress] {
            if let Some((a, _)) = self.attachments.remove(&(ifindex, hook)) {
                a.detach()?;
            }
        }
        match self.dns_ifaces()?.remove(&ifindex) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn dns_ifaces(&mut self) -> Result<HashMap<&mut aya::maps::MapData, u32, u8>, DatapathError> {
        let map =
            self.ebpf.map_mut(MAP_DNS_IFACES).ok_or_else(|| MapError::InvalidName { name: MAP_DNS_IFACES.into() })?;
        Ok(HashMap::try_from(map)?)
    }

    /// The DNS feature's record ring as a stream (call inside a tokio runtime); `None` when it was
    /// taken before (one DNS receiver per agent).
    pub fn take_dns_records(&mut self) -> Option<Result<RecordStream<DnsCapture>, DatapathError>> {
        records::take_stream(&mut self.ebpf).map(|r| r.map_err(DatapathError::from))
    }

    /// Where the probe is attached now.
    pub fn attached(&self) -> Vec<DatapathHook> {
        self.attachments
            .iter()
            .map(|(&(ifindex, hook), (a, program))| DatapathHook {
                ifindex,
                iface: a.iface.clone(),
                hook,
                via: a.via,
                program,
            })
            .collect()
    }

    /// The flows feature's maps (flow tables, per-interface counters, handshakes, RTT).
    pub fn flows(&self) -> Arc<Mutex<FlowMaps>> {
        self.flows.clone()
    }

    /// Run time and fill of the probe's programs and maps.
    pub fn telemetry(&self) -> ProbeTelemetry {
        let mut t = telemetry::collect(&self.ebpf, telemetry::record_stats(&self.ebpf));
        if let Ok(mut flows) = self.flows.lock() {
            t.maps.extend(flows.fill());
        }
        t
    }
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, DatapathError> {
    tc::classifier(ebpf, name).map_err(|source| DatapathError::Program { name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_become_the_kernel_bits() {
        let f = Features {
            flows: true,
            tcp_flags: true,
            handshake: false,
            collapse_ports: Some((32768, 60999)),
            dns: Some(500),
        };
        assert_eq!(
            RawSettings::from(f),
            RawSettings {
                features: 0x1 | 0x2 | 0x8 | 0x10,
                ephemeral_lo: 32768,
                ephemeral_hi: 60999,
                dns_rate_per_sec: 500,
                rtt_every_jiffies: 0
            }
        );
        assert_eq!(RawSettings::from(Features::default()).features, 0);
    }

    #[test]
    fn link_layers_from_arphrd() {
        assert_eq!(LinkLayer::from_arphrd(1), LinkLayer::Ethernet);
        assert_eq!(LinkLayer::from_arphrd(65534), LinkLayer::None); // ARPHRD_NONE (tun, wireguard)
        assert_eq!(LinkLayer::Ethernet.header_bytes(), 14);
    }
}
