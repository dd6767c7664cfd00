//! TCP sockets by state and UDP sockets of one network namespace, counted from netlink sock_diag
//! dumps (`SOCK_DIAG_BY_FAMILY`, `inet_diag_req_v2`) for IPv4 and IPv6.
//!
//! Unlike parsing `/proc/net/tcp`, the dump sends fixed binary records and skips formatting every
//! socket as text. Each reply is decoded only up to its `inet_diag_msg` header (family, state)
//! with `netlink-packet-sock-diag`'s parser; the attributes after it are not needed to count.
//!
//! What the kernel reports, and so what is counted:
//! - Request sockets (a SYN received, handshake not finished; `TCP_NEW_SYN_RECV` inside the
//!   kernel) are reported as `TCP_SYN_RECV` by `inet_req_diag_fill`, so they count as
//!   `syn_received`; there is no separate `new_syn_recv` count.
//! - `TIME_WAIT` mini-sockets count in their sub-state: `time_wait`, or `fin_wait_2` for an
//!   orphaned socket whose FIN_WAIT2 the kernel finishes as a time-wait socket.
//! - Sockets bound but neither listening nor connected are not in the dump (the kernel lists
//!   them only on request as `TCP_BOUND_INACTIVE`, which we do not ask for), like /proc/net/tcp.
//! - A dual-stack IPv6 socket talking to an IPv4 peer is in the IPv6 dump only: no socket is
//!   counted twice.

use std::net::IpAddr;

use hashbrown::HashMap;
use netlink_packet_core::Parseable;
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use super::error::LinuxutilError;
use super::netlink::{DumpSink, DumpSocket, RequestName};
use crate::model::TcpState;

/// Message type of sock_diag replies (`SOCK_DIAG_BY_FAMILY`).
const SOCK_DIAG_BY_FAMILY: u16 = 20;

const HINT: &str = "the kernel needs CONFIG_INET_DIAG with CONFIG_INET_TCP_DIAG and \
                    CONFIG_INET_UDP_DIAG (or the inet_diag, tcp_diag and udp_diag modules)";

/// Number of TCP sockets in each state; every state is present, zero or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStateCounts {
    counts: [u64; TcpState::ALL.len()],
    /// Sockets in a state number [`TcpState::from_linux`] does not know (none on kernels up to
    /// 6.18; kept so a future state is visible rather than dropped).
    pub unknown: u64,
}

/// The state a socket reported with Linux's state number counts in: request sockets
/// (`TCP_NEW_SYN_RECV`, should a kernel ever report it rather than `TCP_SYN_RECV`) count as
/// `syn_received`, so every counted state is in [`TcpState::ALL`].
fn counted_state(linux: u8) -> Option<TcpState> {
    TcpState::from_linux(linux).map(TcpState::rfc)
}

impl TcpStateCounts {
    /// Sockets in `state` (`NewSynRecv` sockets are in `SynReceived`).
    pub fn get(&self, state: TcpState) -> u64 {
        // `rfc()` states are in `TcpState::ALL`, whose position is `as usize`.
        self.counts[state.rfc() as usize]
    }

    /// Every state with its count (zeros included), in [`TcpState::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::ALL.iter().map(|&state| (state, self.get(state)))
    }

    /// All sockets, `unknown` included.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.unknown
    }

    fn add_linux_state(&mut self, state: u8) {
        match counted_state(state) {
            Some(state) => self.counts[state as usize] += 1,
            None => self.unknown += 1,
        }
    }

    fn plus(&self, other: &Self) -> Self {
        let mut sum = *self;
        for (a, b) in sum.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        sum.unknown += other.unknown;
        sum
    }
}

/// Socket counts of one network namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCounts {
    /// TCP sockets of the IPv4 dump.
    pub tcp_v4: TcpStateCounts,
    /// TCP sockets of the IPv6 dump (dual-stack sockets with IPv4 peers included).
    pub tcp_v6: TcpStateCounts,
    /// UDP sockets of the IPv4 dump, bound or connected; `None` when the kernel has no udp_diag.
    pub udp_v4: Option<u64>,
    /// UDP sockets of the IPv6 dump; `None` when the kernel has no udp_diag.
    pub udp_v6: Option<u64>,
}

impl SocketCounts {
    /// TCP sockets by state, IPv4 and IPv6 together (the `network.tcp.connections` gauge).
    pub fn tcp(&self) -> TcpStateCounts {
        self.tcp_v4.plus(&self.tcp_v6)
    }

    /// UDP sockets, IPv4 and IPv6 together (Retina's `udp_connection_stats{statistic_name="ACTIVE"}`);
    /// `None` when the kernel has no udp_diag.
    pub fn udp(&self) -> Option<u64> {
        match (self.udp_v4, self.udp_v6) {
            (None, None) => None,
            (v4, v6) => Some(v4.unwrap_or(0) + v6.unwrap_or(0)),
        }
    }
}

/// Linux's number for `TCP_ESTABLISHED`.
const LINUX_TCP_ESTABLISHED: u8 = 1;

/// Counts sockets through one `NETLINK_SOCK_DIAG` socket, reused between reads.
#[derive(Debug)]
pub struct SocketStatsReader {
    socket: DumpSocket,
    udp_missing_logged: bool,
    /// Established TCP connections per remote address of the last read, when counted.
    remote: Option<HashMap<IpAddr, u64>>,
    /// The same for the dump under way (a restarted dump starts it again).
    scratch: HashMap<IpAddr, u64>,
}

impl SocketStatsReader {
    /// Opens a `NETLINK_SOCK_DIAG` socket in the calling thread's network namespace; it keeps
    /// counting that namespace's sockets whichever thread reads later.
    pub fn new() -> Result<Self, LinuxutilError> {
        Ok(Self {
            socket: DumpSocket::open(NETLINK_SOCK_DIAG, "NETLINK_SOCK_DIAG")?,
            udp_missing_logged: false,
            remote: None,
            scratch: HashMap::new(),
        })
    }

    /// Also counts established TCP connections per remote address (IPv4-mapped IPv6 peers as
    /// IPv4), read with [`Self::remote_established`].
    pub fn count_remote_addresses(mut self) -> Self {
        self.remote = Some(HashMap::new());
        self
    }

    /// Established TCP connections per remote address at the last read (empty unless
    /// [`Self::count_remote_addresses`]).
    pub fn remote_established(&self) -> impl Iterator<Item = (IpAddr, u64)> + '_ {
        self.remote.iter().flatten().map(|(a, n)| (*a, *n))
    }

    /// Dumps TCP and UDP sockets of both families and counts them (four dumps).
    pub fn read(&mut self) -> Result<SocketCounts, LinuxutilError> {
        if let Some(remote) = &mut self.remote {
            remote.clear();
        }
        let mut counts = SocketCounts {
            tcp_v4: self.count_tcp(AF_INET, "SOCK_DIAG_BY_FAMILY(AF_INET, IPPROTO_TCP)")?,
            tcp_v6: self.count_tcp(AF_INET6, "SOCK_DIAG_BY_FAMILY(AF_INET6, IPPROTO_TCP)")?,
            ..SocketCounts::default()
        };
        counts.udp_v4 = self.count_udp(AF_INET, "SOCK_DIAG_BY_FAMILY(AF_INET, IPPROTO_UDP)")?;
        counts.udp_v6 = self.count_udp(AF_INET6, "SOCK_DIAG_BY_FAMILY(AF_INET6, IPPROTO_UDP)")?;
        Ok(counts)
    }

    fn count_tcp(&mut self, family: u8, name: &'static str) -> Result<TcpStateCounts, LinuxutilError> {
        // The scratch map moves into the sink for the dump and back, keeping its allocation.
        let scratch = self.remote.is_some().then(|| std::mem::take(&mut self.scratch));
        let mut sink = StateSink { counts: TcpStateCounts::default(), remote: scratch };
        let result = self.socket.dump(request(family, IPPROTO_TCP), request_name(name), &mut sink);
        if let (Some(total), Some(mut dumped)) = (&mut self.remote, sink.remote) {
            for (address, n) in dumped.drain() {
                *total.entry(address).or_default() += n;
            }
            self.scratch = dumped;
        }
        result?;
        Ok(sink.counts)
    }

    fn count_udp(&mut self, family: u8, name: &'static str) -> Result<Option<u64>, LinuxutilError> {
        let mut sink = StateSink::default();
        match self.socket.dump(request(family, IPPROTO_UDP), request_name(name), &mut sink) {
            Ok(()) => Ok(Some(sink.counts.total())),
            // No sock_diag handler for UDP: the kernel lacks udp_diag.
            Err(LinuxutilError::NetlinkRefused { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                if !self.udp_missing_logged {
                    self.udp_missing_logged = true;
                    tracing::warn!("the kernel has no udp_diag; UDP sockets are not counted");
                }
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}

fn request(family: u8, protocol: u8) -> SockDiagMessage {
    SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol,
        extensions: ExtensionFlags::empty(),
        // Asking for SYN_RECV makes the kernel include request sockets (NEW_SYN_RECV).
        states: StateFlags::all(),
        socket_id: if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() },
    })
}

fn request_name(name: &'static str) -> RequestName {
    RequestName { name, hint_if_refused: HINT }
}

#[derive(Default)]
pub(super) struct StateSink {
    pub(super) counts: TcpStateCounts,
    /// Established connections per remote address, when they are counted.
    pub(super) remote: Option<HashMap<IpAddr, u64>>,
}

impl DumpSink for StateSink {
    fn begin(&mut self) {
        // A dump restarted after an interruption must not count its sockets twice.
        self.counts = TcpStateCounts::default();
        if let Some(remote) = &mut self.remote {
            remote.clear();
        }
    }

    fn message(&mut self, message_type: u16, payload: &[u8]) -> Result<(), String> {
        if message_type == SOCK_DIAG_BY_FAMILY {
            let header = InetResponseHeader::parse(payload).map_err(|e| e.to_string())?;
            self.counts.add_linux_state(header.state);
            if header.state == LINUX_TCP_ESTABLISHED
                && let Some(remote) = &mut self.remote
            {
                *remote.entry(header.socket_id.destination_address.to_canonical()).or_default() += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_state_numbers_map_to_rfc_states() {
        // TcpState's own test pins the Linux numbers; sockets are counted by their RFC state,
        // so request sockets (NEW_SYN_RECV, 12) count as SYN_RECEIVED.
        for n in 0..=13 {
            assert_eq!(counted_state(n), TcpState::from_linux(n).map(TcpState::rfc), "state {n}");
        }
        assert_eq!(counted_state(12), Some(TcpState::SynReceived));
    }

    #[test]
    fn counts_include_zeros_and_unknown_states() {
        let mut counts = TcpStateCounts::default();
        for state in [10, 10, 1, 13] {
            counts.add_linux_state(state);
        }
        let all: Vec<_> = counts.iter().collect();
        assert_eq!(all.len(), 11);
        assert_eq!(counts.get(TcpState::Listen), 2);
        assert_eq!(counts.get(TcpState::Established), 1);
        assert_eq!(counts.get(TcpState::Closed), 0);
        assert_eq!(counts.unknown, 1);
        assert_eq!(counts.total(), 4);
        let both = SocketCounts { tcp_v4: counts, tcp_v6: counts, udp_v4: Some(2), udp_v6: None };
        assert_eq!(both.tcp().get(TcpState::Listen), 4);
        assert_eq!(both.tcp().unknown, 2);
        assert_eq!(both.udp(), Some(2));
    }
}
