//! TCP sockets' smoothed RTT as `fovea_rtt_recv` / `fovea_rtt_send` (ebpf/datapath.bpf.c, the
//! `tcp_rcv_space_adjust` and `tcp_sendmsg_locked` tracepoints: every TCP read and write) keep
//! it: one entry per socket, keyed by socket cookie, copied at most once per
//! [`RTT_COPY_EVERY`] per socket (socket-local storage remembers when) and once
//! more by `fovea_rtt_close` (`inet_sock_set_state`) as the socket closes; read in batches and
//! never written by user space except to delete entries of sockets that went quiet.

use std::os::fd::AsFd;

use aya::Pod;
use aya::maps::{MapData, MapError};

use super::FlowTuple;
use super::batch::BatchBuffers;
use super::flowtable::read_pod;
use super::records::RawTuple;

/// The per-socket RTT map.
pub(crate) const MAP_RTT: &str = "rtt";
/// The RTT programs copy a socket's srtt at most this often (per socket).
pub const RTT_COPY_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// The RTT programs and the tracepoints (tp_btf) they attach to.
pub(crate) const PROGS_RTT: [(&str, &str); 3] = [
    ("fovea_rtt_recv", "tcp_rcv_space_adjust"),
    ("fovea_rtt_send", "tcp_sendmsg_locked"),
    ("fovea_rtt_close", "inet_sock_set_state"),
];

/// Mirror of `struct rtt_value` (ebpf/datapath.bpf.c).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRtt {
    tuple: RawTuple,
    updated_jiffies: u64,
    srtt_us: u32,
    rttvar_us: u32,
    samples: u32,
    pad: u32,
}
const _: () = assert!(size_of::<RawRtt>() == 64);
// SAFETY: #[repr(C)] integers and byte arrays without implicit padding (40 + 8 + 16).
unsafe impl Pod for RawRtt {}

/// One TCP socket's RTT as the kernel last estimated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRtt {
    /// Socket cookie (unique per socket for the kernel's lifetime).
    pub cookie: u64,
    /// Local address and port -> remote address and port (protocol 6).
    pub tuple: FlowTuple,
    /// Smoothed RTT in µs (`ss -ti` rtt, `tcpi_rtt`).
    pub srtt_us: u32,
    /// RTT variation in µs (`tcpi_rttvar`).
    pub rttvar_us: u32,
    /// Copies since the entry was made (at most one per `RTT_COPY_EVERY` while the socket is read
    /// or written, one more at close if its RTT changed since); grows while the socket is used.
    pub samples: u32,
    /// CLOCK_MONOTONIC ns of the last update (tick resolution).
    pub updated_ns: u64,
}

fn decode(cookie: u64, raw: &RawRtt, updated_ns: u64) -> Option<SocketRtt> {
    Some(SocketRtt {
        cookie,
        tuple: raw.tuple.to_flow()?,
        srtt_us: raw.srtt_us,
        rttvar_us: raw.rttvar_us,
        samples: raw.samples,
        updated_ns,
    })
}

/// Reads every socket of the RTT map; `to_mono_ns` turns the update stamp (jiffies) into ns.
pub(crate) fn read(
    map: &MapData,
    buffers: &mut BatchBuffers,
    to_mono_ns: impl Fn(u64) -> u64,
    mut each: impl FnMut(SocketRtt),
) -> Result<(), MapError> {
    buffers
        .visit(map.fd().as_fd(), size_of::<u64>(), size_of::<RawRtt>(), false, |k, v| {
            let raw = read_pod::<RawRtt>(v);
            if let Some(s) = decode(read_pod::<u64>(k), &raw, to_mono_ns(raw.updated_jiffies)) {
                each(s);
            }
        })
        .map(|_| ())
        .map_err(|io_error| MapError::SyscallError(aya::sys::SyscallError { call: "bpf_map_lookup_batch", io_error }))
}

/// Deletes the entries of these sockets.
pub(crate) fn forget(map: &MapData, buffers: &mut BatchBuffers, cookies: &[u64]) -> Result<(), MapError> {
    let bytes: Vec<u8> = cookies.iter().flat_map(|c| c.to_ne_bytes()).collect();
    buffers
        .delete(map.fd().as_fd(), size_of::<u64>(), &bytes)
        .map_err(|io_error| MapError::SyscallError(aya::sys::SyscallError { call: "bpf_map_delete_batch", io_error }))
}
