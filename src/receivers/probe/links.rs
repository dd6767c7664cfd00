//! The interfaces of this network namespace, kept current from netlink link events.
//!
//! [`LinkWatcher`] joins the `RTNLGRP_LINK` multicast group and dumps the links once, so it
//! learns of a new interface (a pod's veth) the moment the kernel announces it, instead of
//! polling. When the kernel drops events because we read too slowly (`ENOBUFS`), the watcher
//! dumps again and reports what changed meanwhile, removals included.
//!
//! Opened with [`LinkWatcher::open_with_routes`] it also reports when a default route appears or
//! goes ([`LinkChange::DefaultRoutes`]), so a caller can follow the node's uplinks
//! ([`default_route_interfaces`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlasIterator,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use smol_str::SmolStr;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

// include/uapi/linux/rtnetlink.h, if_link.h, if.h
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
/// `sizeof(struct rtmsg)`.
const RTMSG_LEN: usize = 12;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
/// `sizeof(struct ifinfomsg)`.
const IFINFOMSG_LEN: usize = 16;
/// Link dumps come in datagrams of at most 32 KiB; events are far smaller.
const RECV_BUFFER_BYTES: usize = 64 * 1024;

/// Errors of the link watcher.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The netlink socket could not be opened, bound or subscribed.
    #[error(
        "cannot {action} the NETLINK_ROUTE socket that watches interfaces: {source}; the agent must be \
         allowed to create netlink sockets (seccomp profiles and LSMs sometimes forbid it)"
    )]
    Socket {
        /// `open`, `bind`, `subscribe to RTNLGRP_LINK on`, `register`.
        action: &'static str,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// Sending the link dump request or receiving events failed.
    #[error("netlink link watcher: {action} failed: {source}")]
    Io {
        /// `sending the RTM_GETLINK dump`, `receiving`.
        action: &'static str,
        /// The operating-system error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the dump.
    #[error("the kernel refused the RTM_GETLINK dump: {0}")]
    Refused(#[source] io::Error),
}

/// One interface as the kernel last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name (at most 15 bytes, so the `SmolStr` never allocates).
    pub name: SmolStr,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// A loopback device (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// The device type (`ARPHRD_*`: 1 Ethernet, 772 loopback, 65534 none ...).
    pub arphrd: u16,
    /// The link kind (`veth`, `bridge`, `netkit` ...; empty for physical devices).
    pub kind: SmolStr,
    /// The other end of this link lives in another network namespace (`IFLA_LINK_NETNSID`): the
    /// host side of a pod's veth.
    pub peer_in_other_netns: bool,
}

#[cfg(test)]
impl Link {
    /// An up Ethernet veth, for tests.
    pub(crate) fn test_veth(index: u32, name: &str, peer_in_other_netns: bool) -> Link {
        Link {
            index,
            name: name.into(),
            up: true,
            loopback: false,
            arphrd: 1,
            kind: "veth".into(),
            peer_in_other_netns,
        }
    }
}

/// What changed about the links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// A link appeared, or its name or up state changed.
    Changed(Link),
    /// The link with this index was deleted or moved to another namespace.
    Removed(u32),
    /// A default route was added or removed (only from [`LinkWatcher::open_with_routes`]).
    DefaultRoutes,
}

/// Watches the links of the network namespace it was opened in.
pub struct LinkWatcher {
    socket: AsyncFd<Socket>,
    table: LinkTable,
    buf: Vec<u8>,
    sequence: u32,
}

/// The links as the messages received so far describe them: what [`LinkWatcher`] keeps, apart
/// from its socket.
#[derive(Debug, Default)]
struct LinkTable {
    links: BTreeMap<u32, Link>,
    /// A dump in progress: its sequence number and the links it has listed so far.
    dump: Option<(u32, BTreeSet<u32>)>,
}

impl LinkWatcher {
    /// Subscribes to link events and starts a dump; call inside a tokio runtime. The first
    /// [`LinkWatcher::changes`] calls report every existing link.
    pub fn open() -> Result<Self, LinkError> {
        Self::open_groups(false)
    }

    /// Like [`LinkWatcher::open`], and also reports default routes coming and going.
    pub fn open_with_routes() -> Result<Self, LinkError> {
        Self::open_groups(true)
    }

    fn open_groups(routes: bool) -> Result<Self, LinkError> {
        let fail = |action| move |source| LinkError::Socket { action, source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail("open"))?;
        socket.bind_auto().map_err(fail("bind"))?;
        socket.add_membership(RTNLGRP_LINK).map_err(fail("subscribe to RTNLGRP_LINK on"))?;
        if routes {
            socket.add_membership(RTNLGRP_IPV4_ROUTE).map_err(fail("subscribe to RTNLGRP_IPV4_ROUTE on"))?;
            socket.add_membership(RTNLGRP_IPV6_ROUTE).map_err(fail("subscribe to RTNLGRP_IPV6_ROUTE on"))?;
        }
        socket.set_non_blocking(true).map_err(fail("configure"))?;
        // SAFETY: the Socket owns its fd, which stays open and unchanged until the AsyncFd
        // (and with it the Socket) is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| LinkError::Socket { action: "register", source: e.into() })?;
        let mut watcher = LinkWatcher {
            socket,
            table: LinkTable::default(),
            buf: Vec::with_capacity(RECV_BUFFER_BYTES),
            sequence: 0,
        };
        watcher.request_dump()?;
        Ok(watcher)
    }

    /// True while a dump (the first one, or a resync) has not finished.
    pub fn dumping(&self) -> bool {
        self.table.dump.is_some()
    }

    /// The links as currently known.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.table.links.values()
    }

    /// Waits for link messages and appends what they changed to `out`; returns how many
    /// changes were appended (possibly 0, e.g. for events that changed neither name nor state).
    pub async fn changes(&mut self, out: &mut Vec<LinkChange>) -> Result<usize, LinkError> {
        let before = out.len();
        loop {
            let mut guard =
                self.socket.readable_mut().await.map_err(|source| LinkError::Io { action: "waiting", source })?;
            self.buf.clear();
            let received = guard.get_inner().recv(&mut self.buf, 0);
            if matches!(&received, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                guard.clear_ready();
                continue;
            }
            drop(guard);
            match received {
                Ok(_) => {
                    self.table.apply(&self.buf, out)?;
                    return Ok(out.len() - before);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped events: list everything again and diff.
                    tracing::warn!("netlink link events were lost (ENOBUFS); listing interfaces again");
                    self.request_dump()?;
                }
                Err(source) => return Err(LinkError::Io { action: "receiving", source }),
            }
        }
    }

    fn request_dump(&mut self) -> Result<(), LinkError> {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.sequence;
        let mut message =
            NetlinkMessage::new(header, NetlinkPayload::from(RouteNetlinkMessage::GetLink(LinkMessage::default())));
        message.finalize();
        let mut request = vec![0u8; message.buffer_len()];
        message.serialize(&mut request);
        let kernel = SocketAddr::new(0, 0);
        self.socket
            .get_ref()
            .send_to(&request, &kernel, 0)
            .map_err(|source| LinkError::Io { action: "sending the RTM_GETLINK dump", source })?;
        self.table.dump = Some((self.sequence, BTreeSet::new()));
        Ok(())
    }
}

impl LinkTable {
    /// Applies every message of one received datagram, appending what changed to `out`.
    fn apply(&mut self, datagram: &[u8], out: &mut Vec<LinkChange>) -> Result<(), LinkError> {
        let mut data = datagram;
        while let Ok(message) = NetlinkBuffer::new_checked(data) {
            let length = message.length() as usize;
            let sequence = message.sequence_number();
            let in_dump = self.dump.as_ref().is_some_and(|(s, _)| *s == sequence);
            match message.message_type() {
                RTM_NEWLINK => {
                    if let Some(link) = parse_link(message.payload()) {
                        if in_dump && let Some((_, seen)) = &mut self.dump {
                            seen.insert(link.index);
                        }
                        if self.links.get(&link.index) != Some(&link) {
                            self.links.insert(link.index, link.clone());
                            out.push(LinkChange::Changed(link));
                        }
                    }
                }
                RTM_DELLINK => {
                    if let Some(index) = parse_index(message.payload())
                        && self.links.remove(&index).is_some()
                    {
                        out.push(LinkChange::Removed(index));
                    }
                }
                // only default routes (destination length 0) decide which links are uplinks
                RTM_NEWROUTE | RTM_DELROUTE
                    if message.payload().get(1) == Some(&0) && !out.contains(&LinkChange::DefaultRoutes) =>
                {
                    out.push(LinkChange::DefaultRoutes);
                }
                NLMSG_DONE if in_dump => {
                    if let Some((_, seen)) = self.dump.take() {
                        let gone: Vec<u32> = self.links.keys().copied().filter(|i| !seen.contains(i)).collect();
                        for index in gone {
                            self.links.remove(&index);
                            out.push(LinkChange::Removed(index));
                        }
                    }
                }
                NLMSG_ERROR if in_dump => {
                    let payload = message.payload();
                    let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code < 0 {
                        self.dump = None;
                        return Err(LinkError::Refused(io::Error::from_raw_os_error(-code)));
                    }
                }
                _ => {}
            }
            // Messages are 4-byte aligned within a datagram.
            let next = (length + 3) & !3;
            if length == 0 {
                break;
            }
            data = data.get(next..).unwrap_or_default();
        }
        Ok(())
    }
}

fn parse_index(payload: &[u8]) -> Option<u32> {
    let b = payload.get(4..8)?;
    let index = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    u32::try_from(index).ok().filter(|&i| i > 0)
}

/// A NUL-terminated string attribute.
fn nla_string(value: &[u8]) -> SmolStr {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    SmolStr::new(String::from_utf8_lossy(&value[..end]))
}

/// Decodes `struct ifinfomsg`, `IFLA_IFNAME`, `IFLA_LINKINFO`/`IFLA_INFO_KIND` and
/// `IFLA_LINK_NETNSID`; `None` for a malformed message.
fn parse_link(payload: &[u8]) -> Option<Link> {
    let index = parse_index(payload)?;
    let t = payload.get(2..4)?;
    let arphrd = u16::from_ne_bytes([t[0], t[1]]);
    let f = payload.get(8..12)?;
    let flags = u32::from_ne_bytes([f[0], f[1], f[2], f[3]]);
    let attributes = payload.get(IFINFOMSG_LEN..)?;
    let (mut name, mut kind, mut peer_in_other_netns) = (None, SmolStr::default(), false);
    for nla in NlasIterator::new(attributes).filter_map(Result::ok) {
        match nla.kind() {
            IFLA_IFNAME => name = Some(nla_string(nla.value())),
            IFLA_LINK_NETNSID => peer_in_other_netns = true,
            IFLA_LINKINFO => {
                if let Some(k) =
                    NlasIterator::new(nla.value()).filter_map(Result::ok).find(|n| n.kind() == IFLA_INFO_KIND)
                {
                    kind = nla_string(k.value());
                }
            }
            _ => {}
        }
    }
    Some(Link {
        index,
        name: name?,
        up: flags & IFF_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        arphrd,
        kind,
        peer_in_other_netns,
    })
}

/// The interfaces of the default routes (IPv4 and IPv6) of the main routing table in this
/// network namespace: the node's uplinks. Blocking; answers from the kernel at once.
pub fn default_route_interfaces() -> Result<BTreeSet<u32>, LinkError> {
    let io = |action| move |source| LinkError::Io { action, source };
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|source| LinkError::Socket { action: "open", source })?;
    socket.bind_auto().map_err(|source| LinkError::Socket { action: "bind", source })?;
    let mut out = BTreeSet::new();
    for (sequence, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        // nlmsghdr + rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type, flags }
        let mut request = Vec::with_capacity(16 + RTMSG_LEN);
        request.extend_from_slice(&((16 + RTMSG_LEN) as u32).to_ne_bytes());
        request.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
        request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        request.extend_from_slice(&sequence.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(&[family, 0, 0, 0, 0, 0, 0, 0]);
        request.extend_from_slice(&0u32.to_ne_bytes());
        socket.send_to(&request, &SocketAddr::new(0, 0), 0).map_err(io("sending the RTM_GETROUTE dump"))?;
        let mut buf = Vec::with_capacity(RECV_BUFFER_BYTES);
        'dump: loop {
            buf.clear();
            socket.recv(&mut buf, 0).map_err(io("receiving routes"))?;
            let mut data = &buf[..];
            while let Ok(message) = NetlinkBuffer::new_checked(data) {
                let length = message.length() as usize;
                match message.message_type() {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => {
                        let p = message.payload();
                        let code = p.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code < 0 {
                            return Err(LinkError::Refused(io::Error::from_raw_os_error(-code)));
                        }
                    }
                    RTM_NEWROUTE => {
                        if let Some(oif) = default_route_oif(message.payload()) {
                            out.insert(oif);
                        }
                    }
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                data = data.get((length + 3) & !3..).unwrap_or_default();
            }
        }
    }
    Ok(out)
}

/// The output interface of a default route of the main table, `None` for any other route.
fn default_route_oif(payload: &[u8]) -> Option<u32> {
    let header = payload.get(..RTMSG_LEN)?;
    let (dst_len, mut table) = (header[1], u32::from(header[4]));
    if dst_len != 0 {
        return None;
    }
    let mut oif = None;
    for nla in NlasIterator::new(payload.get(RTMSG_LEN..)?).filter_map(Result::ok) {
        let v = nla.value();
        match nla.kind() {
            RTA_OIF if v.len() >= 4 => oif = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
            RTA_TABLE if v.len() >= 4 => table = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
            _ => {}
        }
    }
    if table == RT_TABLE_MAIN { oif } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifinfomsg(index: i32, flags: u32, name: &str) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p[4..8].copy_from_slice(&index.to_ne_bytes());
        p[8..12].copy_from_slice(&flags.to_ne_bytes());
        let value_len = name.len() + 1;
        let nla_len = (4 + value_len) as u16;
        p.extend_from_slice(&nla_len.to_ne_bytes());
        p.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        p.extend_from_slice(name.as_bytes());
        p.push(0);
        while !p.len().is_multiple_of(4) {
            p.push(0);
        }
        p
    }

    #[test]
    fn decodes_index_name_and_flags() {
        let link = parse_link(&ifinfomsg(7, IFF_UP, "veth-test0")).expect("link");
        let want = Link {
            index: 7,
            name: "veth-test0".into(),
            up: true,
            loopback: false,
            arphrd: 0,
            kind: SmolStr::default(),
            peer_in_other_netns: false,
        };
        assert_eq!(link, want);
        let lo = parse_link(&ifinfomsg(1, IFF_UP | IFF_LOOPBACK, "lo")).expect("lo");
        assert!(lo.loopback);
        let down = parse_link(&ifinfomsg(9, 0, "eth1")).expect("down");
        assert!(!down.up);
    }

    /// One netlink message: header (length, type, flags, sequence, port) and payload.
    fn message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + payload.len());
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&sequence.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        m
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(20_000)))]

        /// Whatever a datagram holds, applying it returns (no panic, no endless loop).
        #[test]
        fn any_datagram_is_survived(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut table = LinkTable::default();
            let mut out = Vec::new();
            let _ = table.apply(&data, &mut out);
            proptest::prop_assert!(out.len() <= data.len() / 16 + 1);
        }

        /// Link events in any order leave exactly the links a simple model expects, and report
        /// exactly the changes.
        #[test]
        fn events_keep_the_table_a_model_expects(
            ops in proptest::collection::vec((proptest::prelude::any::<bool>(), 1i32..6, proptest::prelude::any::<bool>()), 0..40),
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        ) {
            let mut table = LinkTable::default();
            let mut model: BTreeMap<u32, bool> = BTreeMap::new();
            let mut expected_changes = 0;
            let mut datagram = Vec::new();
            for (new, index, up) in &ops {
                if *new {
                    datagram.extend(message(RTM_NEWLINK, 0, &ifinfomsg(*index, if *up { IFF_UP } else { 0 }, &format!("veth{index}"))));
                    if model.insert(*index as u32, *up) != Some(*up) {
                        expected_changes += 1;
                    }
                } else {
                    datagram.extend(message(RTM_DELLINK, 0, &ifinfomsg(*index, 0, "x")));
                    if model.remove(&(*index as u32)).is_some() {
                        expected_changes += 1;
                    }
                }
            }
            // Trailing bytes too short for a message end the walk; they do not break it.
            datagram.extend(&garbage);
            let mut out = Vec::new();
            table.apply(&datagram, &mut out).unwrap();
            let got: BTreeMap<u32, bool> = table.links.values().map(|l| (l.index, l.up)).collect();
            proptest::prop_assert_eq!(got, model);
            proptest::prop_assert_eq!(out.len(), expected_changes);
        }
    }

    #[test]
    fn rejects_truncated_and_nameless_messages() {
        assert_eq!(parse_link(&[0u8; 8]), None);
        assert_eq!(parse_link(&ifinfomsg(3, IFF_UP, "x")[..IFINFOMSG_LEN]), None);
        assert_eq!(parse_index(&ifinfomsg(-1, 0, "x")), None);
    }
}
