//! A netlink socket that sends one dump request and walks the kernel's multipart reply.
//!
//! Requests are built and headers decoded with `netlink-packet-core`; the payload of each reply
//! message goes to a [`DumpSink`], which decodes only what it needs with the protocol crate.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
    NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

use super::error::LinuxutilError;

/// Receives the messages of one dump.
pub(super) trait DumpSink {
    /// Called before every attempt: forget what an interrupted attempt delivered.
    fn begin(&mut self);
    /// One reply message: its netlink type and payload. An `Err` aborts the dump.
    fn message(&mut self, message_type: u16, payload: &[u8]) -> Result<(), String>;
}

/// What a request is called in errors, and what to do when the kernel refuses it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestName {
    pub(super) name: &'static str,
    pub(super) hint_if_refused: &'static str,
}

/// A connected netlink socket with buffers reused across dumps.
///
/// The socket belongs to the network namespace of the thread that opened it, whichever thread
/// uses it later.
#[derive(Debug)]
pub(super) struct DumpSocket {
    socket: Socket,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
    sequence: u32,
}

/// Dumps send at most 32 KiB per datagram; twice that leaves room for any kernel.
const RECV_BUFFER_BYTES: usize = 64 * 1024;
/// A dump interrupted by concurrent changes this many times in a row is given up.
const MAX_ATTEMPTS: u32 = 3;
/// The kernel answers dumps at once; a silent socket must not hang a collection forever.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// How a dump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Every message was delivered.
    Complete,
    /// The kernel flagged the dump as inconsistent (`NLM_F_DUMP_INTR`); try again.
    Interrupted,
}

impl DumpSocket {
    /// Opens, binds and connects a socket of netlink `protocol` (`NETLINK_ROUTE`, ...).
    pub(super) fn open(protocol: isize, protocol_name: &'static str) -> Result<Self, LinuxutilError> {
        let fail = |action| move |source| LinuxutilError::NetlinkSocket { protocol: protocol_name, action, source };
        let mut socket = Socket::new(protocol).map_err(fail("open"))?;
        socket.bind_auto().map_err(fail("bind"))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail("connect"))?;
        set_recv_timeout(&socket, RECV_TIMEOUT).map_err(fail("configure"))?;
        Ok(Self { socket, send_buf: Vec::new(), recv_buf: Vec::with_capacity(RECV_BUFFER_BYTES), sequence: 0 })
    }

    /// Sends `request` as a dump and feeds every reply message to `sink`, retrying when the
    /// kernel flags the dump as interrupted (`NLM_F_DUMP_INTR`).
    pub(super) fn dump<M: NetlinkSerializable>(
        &mut self,
        request: M,
        name: RequestName,
        sink: &mut impl DumpSink,
    ) -> Result<(), LinuxutilError> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
        message.finalize();
        self.send_buf.clear();
        self.send_buf.resize(message.buffer_len(), 0);
        message.serialize(&mut self.send_buf);

        for _ in 0..MAX_ATTEMPTS {
            // A new sequence number per attempt lets us skip what is left of an abandoned dump
            // (after a decode error or a timeout) when it arrives late.
            self.sequence = self.sequence.wrapping_add(1);
            NetlinkBuffer::new(&mut self.send_buf[..]).set_sequence_number(self.sequence);
            self.socket.send(&self.send_buf, 0).map_err(|source| LinuxutilError::NetlinkIo {
                request: name.name,
                action: "sending",
                source,
            })?;
            sink.begin();
            match receive(&self.socket, &mut self.recv_buf, self.sequence, name, sink)? {
                Outcome::Complete => return Ok(()),
                Outcome::Interrupted => continue,
            }
        }
        Err(LinuxutilError::DumpInterrupted { request: name.name, attempts: MAX_ATTEMPTS })
    }
}

fn receive(
    socket: &Socket,
    buf: &mut Vec<u8>,
    sequence: u32,
    name: RequestName,
    sink: &mut impl DumpSink,
) -> Result<Outcome, LinuxutilError> {
    let decode = |reason: String| LinuxutilError::NetlinkDecode { request: name.name, reason };
    let mut interrupted = false;
    loop {
        buf.clear();
        let size = match socket.recv(buf, libc::MSG_TRUNC) {
            Ok(size) => size,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(LinuxutilError::NetlinkIo { request: name.name, action: "receiving", source });
            }
        };
        if size > buf.len() {
            return Err(decode(format!("a reply datagram of {size} bytes did not fit the {}-byte buffer", buf.len())));
        }
        if let Some(outcome) = walk_datagram(buf, sequence, name, sink, &mut interrupted)? {
            return Ok(outcome);
        }
    }
}

/// Walks the messages of one received datagram, feeding those of the dump `sequence` to `sink`
/// (`interrupted` is set when the kernel flags the dump). `Some` when the dump ended in it.
pub(super) fn walk_datagram(
    datagram: &[u8],
    sequence: u32,
    name: RequestName,
    sink: &mut impl DumpSink,
    interrupted: &mut bool,
) -> Result<Option<Outcome>, LinuxutilError> {
    let decode = |reason: String| LinuxutilError::NetlinkDecode { request: name.name, reason };
    let mut data = datagram;
    while !data.is_empty() {
        let message = NetlinkBuffer::new_checked(data).map_err(|e| decode(e.to_string()))?;
        let length = message.length() as usize;
        if message.sequence_number() == sequence {
            if message.flags() & NLM_F_DUMP_INTR != 0 {
                *interrupted = true;
            }
            let payload = message.payload();
            match message.message_type() {
                NLMSG_DONE => {
                    // The kernel reports errors that happen mid-dump in the DONE payload.
                    let code = DoneBuffer::new_checked(payload).map_or(0, |done| done.code());
                    if code < 0 {
                        return Err(refused(name, code));
                    }
                    return Ok(Some(if *interrupted { Outcome::Interrupted } else { Outcome::Complete }));
                }
                NLMSG_ERROR => {
                    let error = ErrorBuffer::new_checked(payload).map_err(|e| decode(e.to_string()))?;
                    if let Some(code) = error.code() {
                        return Err(refused(name, code.get()));
                    }
                }
                NLMSG_NOOP => {}
                NLMSG_OVERRUN => return Err(decode("the kernel reported an overrun".into())),
                message_type => sink.message(message_type, payload).map_err(decode)?,
            }
        }
        // Messages are 4-byte aligned within a datagram.
        let next = (length + 3) & !3;
        data = data.get(next..).unwrap_or_default();
    }
    Ok(None)
}

fn refused(name: RequestName, code: i32) -> LinuxutilError {
    LinuxutilError::NetlinkRefused {
        request: name.name,
        source: io::Error::from_raw_os_error(code.saturating_neg()),
        hint: name.hint_if_refused,
    }
}

fn set_recv_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: the fd is a live socket owned by `socket`; `tv` outlives the call and its size is
    // passed along.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::receivers::linuxutil::interfaces::LinkSink;
    use crate::receivers::linuxutil::sockets::StateSink;

    const NAME: RequestName = RequestName { name: "TEST", hint_if_refused: "" };

    /// One netlink message with the given header fields.
    fn message(kind: u16, flags: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&sequence.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        m
    }

    /// Walks `datagram` with both real sinks; neither may panic or loop.
    fn walk_both(datagram: &[u8], sequence: u32) {
        let mut interrupted = false;
        let mut sockets = StateSink::default();
        let _ = walk_datagram(datagram, sequence, NAME, &mut sockets, &mut interrupted);
        let mut interfaces = Vec::new();
        let mut links = LinkSink { interfaces: &mut interfaces, len: 0 };
        let _ = walk_datagram(datagram, sequence, NAME, &mut links, &mut interrupted);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(20_000)))]

        /// Arbitrary bytes from the kernel socket: an error or an outcome, never a panic.
        #[test]
        fn any_datagram_is_survived(data in proptest::collection::vec(any::<u8>(), 0..700), sequence in 0u32..3) {
            walk_both(&data, sequence);
        }

        /// Well-framed messages of any type with any payload (SOCK_DIAG and RTM_NEWLINK
        /// included): the sinks decode what they can and refuse the rest with a reason.
        #[test]
        fn framed_messages_with_any_payload_are_survived(
            messages in proptest::collection::vec(
                (prop_oneof![Just(NLMSG_DONE), Just(NLMSG_ERROR), Just(16u16), Just(20u16), any::<u16>()],
                 any::<u16>(), 0u32..2, proptest::collection::vec(any::<u8>(), 0..120)),
                0..8,
            ),
        ) {
            let datagram: Vec<u8> = messages.iter().flat_map(|(k, f, s, p)| message(*k, *f, *s, p)).collect();
            walk_both(&datagram, 1);
        }
    }

    #[test]
    fn a_dump_ends_at_done_and_reports_interruption() {
        let mut sink = StateSink::default();
        let mut interrupted = false;
        let done = message(NLMSG_DONE, NLM_F_DUMP_INTR, 7, &0i32.to_ne_bytes());
        let other = message(NLMSG_DONE, 0, 6, &0i32.to_ne_bytes());
        let datagram = [other, done].concat();
        let outcome = walk_datagram(&datagram, 7, NAME, &mut sink, &mut interrupted).unwrap();
        assert_eq!(outcome, Some(Outcome::Interrupted));
        let refused = message(NLMSG_DONE, 0, 7, &(-libc::EPERM).to_ne_bytes());
        assert!(matches!(
            walk_datagram(&refused, 7, NAME, &mut sink, &mut false),
            Err(LinuxutilError::NetlinkRefused { .. })
        ));
    }
}
