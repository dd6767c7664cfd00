//! Per-interface statistics of one network namespace: a netlink `RTM_GETLINK` dump
//! (`IFLA_STATS64`), with `/sys/class/net/<if>/statistics/*` as the fallback when netlink fails.
//!
//! Only the attributes we report (`IFLA_IFNAME`, `IFLA_OPERSTATE`, `IFLA_STATS64`) are decoded,
//! each with `netlink-packet-route`'s own parser: a full `LinkMessage` parse would allocate for
//! every attribute of every link, and would fail the whole dump on any attribute a newer kernel
//! formats in a way the crate does not know yet.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use netlink_packet_core::NlasIterator;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkHeader, LinkMessage, State, Stats64};
use netlink_sys::protocols::NETLINK_ROUTE;
use smol_str::SmolStr;

use super::error::LinuxutilError;
use super::netlink::{DumpSink, DumpSocket, RequestName};

/// Where sysfs lists the interfaces of the namespace sysfs was mounted in.
pub const DEFAULT_SYSFS_NET: &str = "/sys/class/net";

// From include/uapi/linux/if_link.h and rtnetlink.h; the crates keep theirs private.
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_STATS64: u16 = 23;
const RTM_NEWLINK: u16 = 16;
/// `sizeof(struct ifinfomsg)`, the fixed header before a link message's attributes.
const IFINFOMSG_LEN: usize = 16;

const GETLINK: RequestName =
    RequestName { name: "RTM_GETLINK", hint_if_refused: "check that the agent may use NETLINK_ROUTE" };

macro_rules! link_stats {
    ($($(#[doc = $doc:literal])+ $field:ident,)+) => {
        /// Counters of one interface: the kernel's `struct rtnl_link_stats64`, named like the
        /// files under `/sys/class/net/<if>/statistics/`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct LinkStats {
            $($(#[doc = $doc])+ pub $field: u64,)+
        }

        impl LinkStats {
            /// Number of counters.
            pub const COUNT: usize = [$(stringify!($field)),+].len();
            /// Counter names, in [`fields`](Self::fields) order; usable as the `statistic` attribute.
            pub const NAMES: [&'static str; Self::COUNT] = [$(stringify!($field)),+];

            /// Every counter with its name.
            pub fn fields(&self) -> [(&'static str, u64); Self::COUNT] {
                [$((stringify!($field), self.$field)),+]
            }

            fn from_stats64(stats: &Stats64) -> Self {
                Self { $($field: stats.$field,)+ }
            }

            fn field_mut(&mut self, name: &str) -> Option<&mut u64> {
                match name {
                    $(stringify!($field) => Some(&mut self.$field),)+
                    _ => None,
                }
            }
        }
    };
}

link_stats! {
    /// Packets received.
    rx_packets,
    /// Packets transmitted.
    tx_packets,
    /// Bytes received, link-layer header included.
    rx_bytes,
    /// Bytes transmitted, link-layer header included.
    tx_bytes,
    /// Bad packets received.
    rx_errors,
    /// Packet transmit problems.
    tx_errors,
    /// Received packets dropped by the driver or stack (no buffer space, ...).
    rx_dropped,
    /// Packets dropped on transmit.
    tx_dropped,
    /// Multicast packets received.
    multicast,
    /// Collisions on transmit.
    collisions,
    /// Received frames with a bad length.
    rx_length_errors,
    /// Receiver ring buffer overflows.
    rx_over_errors,
    /// Received frames with a CRC error.
    rx_crc_errors,
    /// Received frames with an alignment error.
    rx_frame_errors,
    /// Receiver FIFO overruns.
    rx_fifo_errors,
    /// Packets the NIC missed for lack of host buffers.
    rx_missed_errors,
    /// Transmits aborted.
    tx_aborted_errors,
    /// Transmits failed for loss of carrier.
    tx_carrier_errors,
    /// Transmitter FIFO errors.
    tx_fifo_errors,
    /// Heartbeat errors.
    tx_heartbeat_errors,
    /// Late collisions.
    tx_window_errors,
    /// Compressed packets received.
    rx_compressed,
    /// Compressed packets transmitted.
    tx_compressed,
    /// Packets dropped because no protocol handler wanted them.
    rx_nohandler,
    /// Packets dropped because they were for another host (netlink only, not in sysfs).
    rx_otherhost_dropped,
}

/// Operational state of an interface (RFC 2863), spelled like `/sys/class/net/<if>/operstate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OperState {
    /// The state cannot be determined (loopback and many virtual devices always report this).
    #[default]
    Unknown,
    /// Some component is missing.
    NotPresent,
    /// Down.
    Down,
    /// Down because a lower-layer interface is down.
    LowerLayerDown,
    /// In a test mode.
    Testing,
    /// Not up but waiting for an external event.
    Dormant,
    /// Up and able to pass packets.
    Up,
}

impl OperState {
    /// The sysfs spelling: `unknown`, `notpresent`, `down`, `lowerlayerdown`, `testing`,
    /// `dormant` or `up`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::NotPresent => "notpresent",
            Self::Down => "down",
            Self::LowerLayerDown => "lowerlayerdown",
            Self::Testing => "testing",
            Self::Dormant => "dormant",
            Self::Up => "up",
        }
    }

    fn from_sysfs(text: &str) -> Self {
        match text.trim() {
            "notpresent" => Self::NotPresent,
            "down" => Self::Down,
            "lowerlayerdown" => Self::LowerLayerDown,
            "testing" => Self::Testing,
            "dormant" => Self::Dormant,
            "up" => Self::Up,
            _ => Self::Unknown,
        }
    }
}

impl From<State> for OperState {
    fn from(state: State) -> Self {
        match state {
            State::NotPresent => Self::NotPresent,
            State::Down => Self::Down,
            State::LowerLayerDown => Self::LowerLayerDown,
            State::Testing => Self::Testing,
            State::Dormant => Self::Dormant,
            State::Up => Self::Up,
            _ => Self::Unknown,
        }
    }
}

/// Statistics of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceStats {
    /// Interface index in its namespace.
    pub index: u32,
    /// Interface name (at most 15 bytes, so the `SmolStr` never allocates).
    pub name: SmolStr,
    /// Operational state.
    pub oper_state: OperState,
    /// Counters.
    pub stats: LinkStats,
}

/// Where the last successful read got its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsSource {
    /// The netlink `RTM_GETLINK` dump.
    Netlink,
    /// `/sys/class/net/<if>/statistics/*`.
    Sysfs,
}

/// Reads interface statistics, reusing its socket and buffers between reads.
#[derive(Debug)]
pub struct InterfaceStatsReader {
    /// The socket, or the errno of the failed attempt to open it.
    netlink: Result<DumpSocket, i32>,
    sysfs_root: PathBuf,
    interfaces: Vec<InterfaceStats>,
    source: StatsSource,
    warned_fallback: bool,
}

impl InterfaceStatsReader {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace (it stays bound
    /// to that namespace whichever thread reads later); sysfs fallback under
    /// [`DEFAULT_SYSFS_NET`].
    pub fn new() -> Self {
        Self::with_sysfs_root(Path::new(DEFAULT_SYSFS_NET))
    }

    /// Like [`new`](Self::new) with another sysfs fallback directory (e.g. a host sysfs mounted
    /// at `/host/sys/class/net`).
    pub fn with_sysfs_root(sysfs_root: &Path) -> Self {
        let netlink = DumpSocket::open(NETLINK_ROUTE, "NETLINK_ROUTE").map_err(|err| {
            tracing::warn!(error = %err, "interface statistics will be read from sysfs");
            match err {
                LinuxutilError::NetlinkSocket { source, .. } => source.raw_os_error().unwrap_or(0),
                _ => 0,
            }
        });
        Self {
            netlink,
            sysfs_root: sysfs_root.to_owned(),
            interfaces: Vec::new(),
            source: StatsSource::Netlink,
            warned_fallback: false,
        }
    }

    /// Reads every interface through netlink, or through sysfs if netlink fails (logged once at
    /// warn level, then at debug). Errors only when both fail.
    ///
    /// sysfs shows the interfaces of the namespace it was mounted in, not necessarily the
    /// namespace of the netlink socket.
    pub fn read(&mut self) -> Result<&[InterfaceStats], LinuxutilError> {
        let netlink_error = match self.fill_from_netlink() {
            Ok(()) => return Ok(&self.interfaces),
            Err(err) => err,
        };
        if self.warned_fallback {
            tracing::debug!(error = %netlink_error, "falling back to sysfs for interface statistics");
        } else {
            self.warned_fallback = true;
            tracing::warn!(error = %netlink_error, "falling back to sysfs for interface statistics");
        }
        match self.fill_from_sysfs() {
            Ok(()) => Ok(&self.interfaces),
            Err(sysfs_error) => {
                Err(LinuxutilError::InterfaceStats { netlink: Box::new(netlink_error), sysfs: Box::new(sysfs_error) })
            }
        }
    }

    /// Reads every interface through netlink only.
    pub fn read_netlink(&mut self) -> Result<&[InterfaceStats], LinuxutilError> {
        self.fill_from_netlink()?;
        Ok(&self.interfaces)
    }

    /// Reads every interface from sysfs only, sorted by index. Counters sysfs lacks
    /// (`rx_otherhost_dropped`, or newer ones on old kernels) are zero.
    pub fn read_sysfs(&mut self) -> Result<&[InterfaceStats], LinuxutilError> {
        self.fill_from_sysfs()?;
        Ok(&self.interfaces)
    }

    /// The interfaces of the last successful read.
    pub fn interfaces(&self) -> &[InterfaceStats] {
        &self.interfaces
    }

    /// Where the last successful read got its numbers.
    pub fn source(&self) -> StatsSource {
        self.source
    }

    fn fill_from_netlink(&mut self) -> Result<(), LinuxutilError> {
        let socket = match &mut self.netlink {
            Ok(socket) => socket,
            Err(errno) => {
                return Err(LinuxutilError::NetlinkSocket {
                    protocol: "NETLINK_ROUTE",
                    action: "open",
                    source: io::Error::from_raw_os_error(*errno),
                });
            }
        };
        let mut sink = LinkSink { interfaces: &mut self.interfaces, len: 0 };
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let result = socket.dump(request, GETLINK, &mut sink);
        let len = sink.len;
        self.interfaces.truncate(if result.is_ok() { len } else { 0 });
        result?;
        self.source = StatsSource::Netlink;
        Ok(())
    }

    fn fill_from_sysfs(&mut self) -> Result<(), LinuxutilError> {
        let result = read_sysfs(&self.sysfs_root, &mut self.interfaces);
        if result.is_err() {
            self.interfaces.clear();
        }
        result?;
        self.source = StatsSource::Sysfs;
        Ok(())
    }
}

impl Default for InterfaceStatsReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Refills the interface vector in place from `RTM_NEWLINK` messages.
pub(super) struct LinkSink<'a> {
    pub(super) interfaces: &'a mut Vec<InterfaceStats>,
    pub(super) len: usize,
}

impl DumpSink for LinkSink<'_> {
    fn begin(&mut self) {
        self.len = 0;
    }

    fn message(&mut self, message_type: u16, payload: &[u8]) -> Result<(), String> {
        if message_type != RTM_NEWLINK {
            return Ok(());
        }
        let header = LinkHeader::parse(payload).map_err(|e| e.to_string())?;
        let mut name_nla = None;
        let mut oper_state = OperState::Unknown;
        let mut stats = None;
        let attributes = payload.get(IFINFOMSG_LEN..).unwrap_or_default();
        for nla in NlasIterator::new(attributes) {
            let nla = nla.map_err(|e| format!("link {}: {e}", header.index))?;
            match nla.kind() {
                // Kept whole: its value borrows from the buffer and is decoded after the loop.
                IFLA_IFNAME => name_nla = Some(nla),
                IFLA_OPERSTATE => {
                    if let Some(&state) = nla.value().first() {
                        oper_state = State::from(state).into();
                    }
                }
                IFLA_STATS64 => {
                    let parsed =
                        Stats64::parse(nla.value()).map_err(|e| format!("link {}: IFLA_STATS64: {e}", header.index))?;
                    stats = Some(LinkStats::from_stats64(&parsed));
                }
                _ => {}
            }
        }
        let name_nla = name_nla.ok_or_else(|| format!("link {} has no IFLA_IFNAME", header.index))?;
        let name = name_nla.value();
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        let name =
            std::str::from_utf8(name).map_err(|e| format!("link {}: IFLA_IFNAME is not UTF-8: {e}", header.index))?;
        let stats = stats.ok_or_else(|| format!("link {name} has no IFLA_STATS64"))?;
        self.put(header.index, name, oper_state, stats);
        Ok(())
    }
}

impl LinkSink<'_> {
    fn put(&mut self, index: u32, name: &str, oper_state: OperState, stats: LinkStats) {
        if self.len == self.interfaces.len() {
            self.interfaces.push(InterfaceStats::default());
        }
        let slot = &mut self.interfaces[self.len];
        slot.index = index;
        if slot.name != name {
            slot.name = SmolStr::new(name);
        }
        slot.oper_state = oper_state;
        slot.stats = stats;
        self.len += 1;
    }
}

/// Reads `<root>/<if>/{ifindex,operstate,statistics/*}` for every interface under `root`.
fn read_sysfs(root: &Path, out: &mut Vec<InterfaceStats>) -> Result<(), LinuxutilError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| LinuxutilError::Read { path, source }
    };
    out.clear();
    for entry in fs::read_dir(root).map_err(read_error(root))? {
        let entry = entry.map_err(read_error(root))?;
        let dir = entry.path();
        // /sys/class/net also holds the file `bonding_masters` when the bonding module is loaded.
        let stats_dir = dir.join("statistics");
        if !stats_dir.is_dir() {
            continue;
        }
        let index_path = dir.join("ifindex");
        let index_text = fs::read_to_string(&index_path).map_err(read_error(&index_path))?;
        let index = index_text.trim().parse::<u32>().map_err(|e| LinuxutilError::Malformed {
            path: index_path.clone(),
            line: 1,
            reason: format!("'{}' is not an interface index: {e}", index_text.trim()),
        })?;
        let state_path = dir.join("operstate");
        let oper_state = OperState::from_sysfs(&fs::read_to_string(&state_path).map_err(read_error(&state_path))?);
        let mut stats = LinkStats::default();
        for name in LinkStats::NAMES {
            let path = stats_dir.join(name);
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(LinuxutilError::Read { path, source }),
            };
            let value = text.trim().parse::<u64>().map_err(|e| LinuxutilError::Malformed {
                path: path.clone(),
                line: 1,
                reason: format!("'{}' is not a counter: {e}", text.trim()),
            })?;
            if let Some(field) = stats.field_mut(name) {
                *field = value;
            }
        }
        out.push(InterfaceStats { index, name: SmolStr::new(entry.file_name().to_string_lossy()), oper_state, stats });
    }
    out.sort_by_key(|interface| interface.index);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(dir: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/receivers/linuxutil/testdata").join(dir)
    }

    #[test]
    fn sysfs_fixture_is_read_exactly() {
        let mut interfaces = Vec::new();
        read_sysfs(&testdata("sys_class_net"), &mut interfaces).expect("fixture parses");
        assert_eq!(interfaces.len(), 2);
        let lo = &interfaces[0];
        assert_eq!((lo.index, lo.name.as_str()), (1, "lo"));
        assert_eq!(lo.oper_state, OperState::Unknown);
        assert_eq!(lo.stats.rx_packets, 29);
        assert_eq!(lo.stats.tx_packets, 29);
        assert_eq!(lo.stats.rx_bytes, 3193);
        assert_eq!(lo.stats.tx_bytes, 3193);
        assert_eq!(lo.stats.rx_otherhost_dropped, 0, "not in sysfs");
        let eth = &interfaces[1];
        assert_eq!((eth.index, eth.name.as_str()), (4, "eth0"));
        assert_eq!(eth.stats.rx_packets, 4435);
        assert_eq!(eth.stats.tx_bytes, 288_974);
        assert_eq!(eth.oper_state, OperState::Up);
        assert_eq!(eth.stats.rx_dropped, 7);
        assert_eq!(eth.stats.rx_missed_errors, 3);
        assert_eq!(eth.stats.tx_errors, 1);
    }

    #[test]
    fn a_bad_sysfs_counter_names_the_file() {
        let mut interfaces = Vec::new();
        let err = read_sysfs(&testdata("sys_class_net_malformed"), &mut interfaces).expect_err("malformed");
        let expected = testdata("sys_class_net_malformed").join("lo/statistics/rx_bytes");
        assert!(err.to_string().starts_with(&format!("{}:1: 'lots' is not a counter", expected.display())), "{err}");
    }

    fn reader_without_netlink(sysfs_root: &Path) -> InterfaceStatsReader {
        InterfaceStatsReader {
            netlink: Err(libc::EPERM),
            sysfs_root: sysfs_root.to_owned(),
            interfaces: Vec::new(),
            source: StatsSource::Netlink,
            warned_fallback: false,
        }
    }

    #[test]
    fn read_falls_back_to_sysfs_when_netlink_fails() {
        let mut reader = reader_without_netlink(&testdata("sys_class_net"));
        let names: Vec<_> = reader.read().expect("sysfs fallback").iter().map(|i| i.name.to_string()).collect();
        assert_eq!(names, ["lo", "eth0"]);
        assert_eq!(reader.source(), StatsSource::Sysfs);
    }

    #[test]
    fn when_both_sources_fail_the_error_gives_both_reasons() {
        let mut reader = reader_without_netlink(Path::new("/nonexistent/sys/class/net"));
        let err = reader.read().expect_err("both fail").to_string();
        assert!(
            err.starts_with(
                "cannot read interface statistics: netlink: cannot open a NETLINK_ROUTE netlink \
                 socket: Operation not permitted"
            ),
            "{err}"
        );
        assert!(err.contains("sysfs fallback: cannot read /nonexistent/sys/class/net: No such file"), "{err}");
        assert!(reader.interfaces().is_empty());
    }

    #[test]
    fn stat_names_match_the_struct() {
        let stats = LinkStats { rx_packets: 1, rx_otherhost_dropped: 25, ..LinkStats::default() };
        let fields = stats.fields();
        assert_eq!(LinkStats::COUNT, 25);
        assert_eq!(fields[0], ("rx_packets", 1));
        assert_eq!(fields[24], ("rx_otherhost_dropped", 25));
        assert_eq!(LinkStats::NAMES.map(|n| n), fields.map(|(n, _)| n));
    }
}
