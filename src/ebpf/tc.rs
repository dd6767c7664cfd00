//! Attaching TC programs without harming anyone else on the interface.
//!
//! * **TCX** (Linux 6.6+, the default when available): a bpf_link per (interface, hook). It
//!   belongs to our process, so a crash or `kill -9` detaches it; nothing is left behind.
//!   We attach first in the TCX chain so we count packets before another program redirects or
//!   drops them, and our programs always return `TC_ACT_UNSPEC` (TCX_NEXT) so the rest of the
//!   chain (and any clsact filters behind it) still runs.
//! * **clsact** (older kernels, or forced with [`AttachMode::Clsact`]): a direct-action
//!   `bpf` filter at our own fixed priority and handle ([`ClsactOptions`]). An existing
//!   clsact qdisc is reused; detach deletes only our filter (never the qdisc, never another
//!   filter). A filter left by a previous fovea process that died without detaching is found
//!   by (priority, handle, kind `bpf`, program name) and removed before we attach again.

use std::ffi::CString;

use aya::programs::links::Link as _;
use aya::programs::tc::{self as aya_tc, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType};
use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcFilterBpfOption, TcMessage, TcOption};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Errors attaching or detaching TC programs.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The interface does not exist (in this process's network namespace).
    #[error("interface {0} not found")]
    NoSuchInterface(String),
    /// TCX was requested but the kernel does not support it (needs Linux 6.6+).
    #[error("TCX requested for {iface} but this kernel has no TCX (Linux 6.6+); use AttachMode::Auto or Clsact")]
    TcxUnsupported {
        /// Interface.
        iface: String,
    },
    /// Creating the clsact qdisc failed.
    #[error("cannot add the clsact qdisc to {iface}: {source}")]
    Qdisc {
        /// Interface.
        iface: String,
        /// Underlying error.
        source: Box<aya_tc::TcError>,
    },
    /// The kernel refused the attachment.
    #[error("cannot attach {program} to {iface} {hook}: {source}")]
    Attach {
        /// Program name.
        program: String,
        /// Interface.
        iface: String,
        /// Hook.
        hook: TcHook,
        /// Underlying error (EPERM: CAP_NET_ADMIN missing).
        source: Box<ProgramError>,
    },
    /// Detaching failed.
    #[error("cannot detach {program} from {iface} {hook}: {source}")]
    Detach {
        /// Program name.
        program: String,
        /// Interface.
        iface: String,
        /// Hook.
        hook: TcHook,
        /// Underlying error.
        source: Box<ProgramError>,
    },
    /// Listing the interface's filters over netlink failed.
    #[error("cannot list TC filters on {iface}: {detail}")]
    Netlink {
        /// Interface.
        iface: String,
        /// What failed.
        detail: String,
    },
}

/// How to attach TC programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX when the kernel has it, else clsact.
    #[default]
    Auto,
    /// TCX only; fails on kernels without it.
    Tcx,
    /// clsact + `bpf` filter even when TCX exists.
    Clsact,
}

/// Our identity on a clsact hook: the filter priority and handle we always use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClsactOptions {
    /// Filter priority (lower runs first). Default 1, so we count before other filters act.
    pub priority: u16,
    /// Filter handle. Default `0xf0ea`.
    pub handle: u32,
}

impl Default for ClsactOptions {
    fn default() -> Self {
        Self { priority: 1, handle: 0xf0ea }
    }
}

/// A TC hook on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcHook {
    /// Packets received by the interface.
    Ingress,
    /// Packets sent by the interface.
    Egress,
}

impl TcHook {
    fn attach_type(self) -> TcAttachType {
        match self {
            Self::Ingress => TcAttachType::Ingress,
            Self::Egress => TcAttachType::Egress,
        }
    }

    /// clsact parent minor: ffff:fff2 ingress, ffff:fff3 egress.
    fn parent_minor(self) -> u16 {
        match self {
            Self::Ingress => 0xfff2,
            Self::Egress => 0xfff3,
        }
    }
}

impl std::fmt::Display for TcHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// How an attachment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A TCX bpf_link.
    Tcx,
    /// A clsact `bpf` filter.
    Clsact,
}

/// One program attached to one hook of one interface; detaches when dropped.
#[derive(Debug)]
pub(crate) struct Attachment {
    pub iface: String,
    pub hook: TcHook,
    pub via: Via,
    pub program: String,
    link: Option<SchedClassifierLink>,
}

impl Attachment {
    /// Detaches now, reporting errors (dropping detaches too, silently). An interface that
    /// is already gone took our filter or link with it, so that counts as detached.
    pub(crate) fn detach(mut self) -> Result<(), AttachError> {
        let Some(link) = self.link.take() else {
            return Ok(());
        };
        match link.detach() {
            Ok(()) => Ok(()),
            Err(ProgramError::NetlinkError(e)) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENOENT)) => {
                Ok(())
            }
            Err(source) => Err(AttachError::Detach {
                program: self.program.clone(),
                iface: self.iface.clone(),
                hook: self.hook,
                source: Box::new(source),
            }),
        }
    }
}

/// Resolves an interface name to its index in this network namespace.
pub fn ifindex(iface: &str) -> Result<u32, AttachError> {
    let name = CString::new(iface).map_err(|_| AttachError::NoSuchInterface(iface.into()))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 { Err(AttachError::NoSuchInterface(iface.into())) } else { Ok(idx) }
}

/// Resolves an interface index to its name in this network namespace.
pub fn ifname(ifindex: u32) -> Result<String, AttachError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(AttachError::NoSuchInterface(format!("ifindex {ifindex}")));
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The TC program called `name` in `ebpf`.
pub(crate) fn classifier<'a>(ebpf: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut SchedClassifier, ProgramError> {
    ebpf.program_mut(name).ok_or(ProgramError::UnexpectedProgramType)?.try_into()
}

/// Attaches `prog` (already loaded, named `program`) to `iface`/`hook`.
pub(crate) fn attach(
    prog: &mut SchedClassifier,
    program: &str,
    iface: &str,
    hook: TcHook,
    mode: AttachMode,
    clsact: ClsactOptions,
) -> Result<Attachment, AttachError> {
    ifindex(iface)?;
    let tcx = crate::ebpf::preflight::tcx_supported();
    let via = match mode {
        AttachMode::Auto if tcx => Via::Tcx,
        AttachMode::Auto | AttachMode::Clsact => Via::Clsact,
        AttachMode::Tcx if tcx => Via::Tcx,
        AttachMode::Tcx => {
            return Err(AttachError::TcxUnsupported { iface: iface.into() });
        }
    };
    // A previous fovea that died in clsact mode left its filter; it would count twice.
    remove_stale_filters(iface, hook, program, clsact)?;

    let attach_err =
        |source| AttachError::Attach { program: program.into(), iface: iface.into(), hook, source: Box::new(source) };
    let options = match via {
        Via::Tcx => TcAttachOptions::TcxOrder(LinkOrder::first()),
        Via::Clsact => {
            if let Err(source) = aya_tc::qdisc_add_clsact(iface) {
                let exists =
                    matches!(&source, aya_tc::TcError::NetlinkError(e) if e.raw_os_error() == Some(libc::EEXIST));
                if !exists {
                    return Err(AttachError::Qdisc { iface: iface.into(), source: Box::new(source) });
                }
            }
            TcAttachOptions::Netlink(NlOptions {
                priority: clsact.priority,
                handle: TcHandle::from(clsact.handle),
                classid: None,
            })
        }
    };
    let id = prog.attach_with_options(iface, hook.attach_type(), options).map_err(attach_err)?;
    let link = prog.take_link(id).map_err(attach_err)?;
    Ok(Attachment { iface: iface.into(), hook, via, program: program.into(), link: Some(link) })
}

/// A `bpf` filter found on a clsact hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterInfo {
    /// Priority.
    pub priority: u16,
    /// Handle.
    pub handle: u32,
    /// Filter kind (`bpf`, `u32`, `matchall` ...).
    pub kind: String,
    /// For `bpf` filters: the program name the loader recorded.
    pub name: Option<String>,
}

/// Lists the filters on `iface`'s clsact `hook` (empty when there is no clsact qdisc).
pub fn list_filters(iface: &str, hook: TcHook) -> Result<Vec<FilterInfo>, AttachError> {
    let index = ifindex(iface)?;
    let nl_err = |detail: String| AttachError::Netlink { iface: iface.into(), detail };
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = netlink_packet_route::tc::TcHandle { major: 0xffff, minor: hook.parent_minor() };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut req = NetlinkMessage::new(header, NetlinkPayload::from(RouteNetlinkMessage::GetTrafficFilter(msg)));
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| nl_err(e.to_string()))?;
    socket.bind_auto().map_err(|e| nl_err(e.to_string()))?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(|e| nl_err(e.to_string()))?;
    socket.send(&buf, 0).map_err(|e| nl_err(e.to_string()))?;

    let mut filters = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut rx[..], 0).map_err(|e| nl_err(e.to_string()))?;
        let mut off = 0;
        while off < n {
            let msg =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n]).map_err(|e| nl_err(e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(filters),
                NetlinkPayload::Error(e) => {
                    // no clsact qdisc: nothing of ours can be there
                    if e.code.map(|c| -c.get()) == Some(libc::EINVAL) {
                        return Ok(filters);
                    }
                    return Err(nl_err(format!("{e:?}")));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(m)) => {
                    if let Some(f) = filter_info(&m) {
                        filters.push(f);
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += len;
        }
    }
}

fn filter_info(m: &TcMessage) -> Option<FilterInfo> {
    let handle = u32::from(m.header.handle);
    // info = priority << 16 | protocol; the first message per priority has handle 0 (the
    // classifier instance itself), not a filter.
    if handle == 0 {
        return None;
    }
    let priority = (m.header.info >> 16) as u16;
    let mut kind = String::new();
    let mut name = None;
    for attr in &m.attributes {
        match attr {
            TcAttribute::Kind(k) => kind = k.clone(),
            TcAttribute::Options(opts) => {
                for o in opts {
                    if let TcOption::Bpf(TcFilterBpfOption::ProgName(n)) = o {
                        name = Some(n.clone());
                    }
                }
            }
            _ => {}
        }
    }
    Some(FilterInfo { priority, handle, kind, name })
}

/// Removes clsact filters of ours on `iface`/`hook`: kind `bpf` at our priority and handle
/// running a program named `program`. Returns how many were removed. Leaves everything else.
pub fn remove_stale_filters(
    iface: &str,
    hook: TcHook,
    program: &str,
    ours: ClsactOptions,
) -> Result<usize, AttachError> {
    let mut removed = 0;
    for f in list_filters(iface, hook)? {
        let is_ours = f.kind == "bpf"
            && f.priority == ours.priority
            && f.handle == ours.handle
            && f.name.as_deref() == Some(program);
        if !is_ours {
            continue;
        }
        let link = SchedClassifierLink::attached(iface, hook.attach_type(), f.priority, TcHandle::from(f.handle), None)
            .map_err(|_| AttachError::NoSuchInterface(iface.into()))?;
        link.detach().map_err(|source| AttachError::Detach {
            program: program.into(),
            iface: iface.into(),
            hook,
            source: Box::new(source),
        })?;
        removed += 1;
    }
    Ok(removed)
}
