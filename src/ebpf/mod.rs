//! eBPF probes: the compiled C programs in `ebpf/`, loaded and attached with aya.
//!
//! Each probe is a small typed handle over one object file:
//! [`ForwardProbe`] (TC/TCX packet and byte counters per interface and direction),
//! [`DatapathProbe`] (TC/TCX programs on pod interfaces and uplinks: in-kernel flow aggregation,
//! TCP handshake and RTT, DNS message capture),
//! [`DropProbe`] (`skb:kfree_skb` drops per kernel reason and direction, plus flow records) and
//! [`TcpRetransProbe`] (`tcp:tcp_retransmit_skb` segments, plus flow records). Counting happens
//! in the kernel in per-CPU maps; user space sums CPUs when asked. Flow records travel through
//! ring buffers and are read with [`RecordStream::next_batch`].
//!
//! Call [`preflight::check`] (done by every `load`) to learn at once everything that is
//! missing (capabilities, BTF, ring buffers) instead of failing on the first syscall.
//! See `docs/ebpf.md` for programs, maps, semantics and the attach strategy.

#![deny(missing_docs)]

mod batch;
pub mod btf;
pub mod clock;
mod counters;
pub mod datapath;
pub mod dns;
pub mod dropreason;
mod flowcache;
pub mod flowtable;
mod hooks;
mod objects;
pub mod packetforward;
pub mod preflight;
pub mod records;
pub mod rtt;
pub mod tc;
pub mod tcpretrans;
pub mod telemetry;
pub mod test_run;
mod tick;

use std::fmt;
use std::net::IpAddr;

pub use btf::DropReasons;
pub use clock::KernelClock;
pub use datapath::{DatapathError, DatapathHook, DatapathOptions, DatapathProbe, Features, LinkLayer};
pub use dns::{DNS_CAPTURE, DnsCapture};
pub use dropreason::{DropConfig, DropCount, DropError, DropHook, DropProbe, DropRecord};
pub use flowcache::FLOW_CACHE_SLOTS;
pub use flowtable::{FlowDelta, FlowKey, FlowMaps, HandshakeHistogram, HandshakeSum, IfaceCount, IfaceCountKind};
pub use packetforward::{AttachedHook, ForwardCount, ForwardError, ForwardOptions, ForwardProbe};
pub use preflight::{Preflight, PreflightError};
pub use records::{RecordError, RecordStats, RecordStream};
pub use rtt::{RTT_COPY_EVERY, SocketRtt};
pub use tc::{AttachError, AttachMode, ClsactOptions, TcHook, Via};
pub use tcpretrans::{RetransConfig, RetransError, RetransKind, RetransRecord, RetransTotals, TcpRetransProbe};
pub use telemetry::{MapFill, ProbeTelemetry, ProgramStats, RunTimeStats, TelemetryError, enable_run_time_stats};

/// Which way a packet was going when a probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Received on an interface (TC ingress; for drops: the skb came in on a device).
    Ingress,
    /// Sent by an interface (TC egress; for drops: the skb was generated on this host).
    Egress,
    /// The probe could not tell (drops only).
    Unknown,
}

impl Direction {
    /// Decodes the C side's `FOVEA_DIR_*` code.
    pub(crate) fn from_code(code: u32) -> Self {
        match code {
            1 => Self::Ingress,
            2 => Self::Egress,
            _ => Self::Unknown,
        }
    }

    /// The OpenTelemetry `network.io.direction` value: `receive`, `transmit`, or `unknown`.
    pub fn as_otel(self) -> &'static str {
        match self {
            Self::Ingress => "receive",
            Self::Egress => "transmit",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
            Self::Unknown => "unknown",
        })
    }
}

/// A flow's 5-tuple as a probe saw it (source is the packet's source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 for protocols without ports, e.g. ICMP, or behind IPv6 extension headers).
    pub src_port: u16,
    /// Destination port (0 like `src_port`).
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6 ...).
    pub protocol: u8,
}
