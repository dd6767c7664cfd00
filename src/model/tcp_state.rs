//! [`TcpState`]: the one TCP connection state of fovea, decoded from Linux's state numbers and
//! named as OpenTelemetry's `network.connection.state` (or as the kernel names it, for Retina).

/// TCP connection state: the RFC 9293 states plus Linux's request socket (`NEW_SYN_RECV`).
///
/// Declared in the order of [`TcpState::ALL`] (so `state as usize` is its position there), with
/// `NewSynRecv` last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// `closed`: no connection (rarely seen: closed sockets leave the tables at once).
    Closed,
    /// `close_wait`: the peer closed; waiting for the local application to close.
    CloseWait,
    /// `closing`: both sides closed at once; waiting for the peer's ACK of our FIN.
    Closing,
    /// `established`: open connection.
    Established,
    /// `fin_wait_1`: we closed; waiting for the peer's ACK or FIN.
    FinWait1,
    /// `fin_wait_2`: our FIN was acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// `last_ack`: the peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// `listen`: listening socket.
    Listen,
    /// `syn_received`: SYN received and answered.
    SynReceived,
    /// `syn_sent`: SYN sent, waiting for SYN-ACK.
    SynSent,
    /// `time_wait`: connection closed, waiting out stray segments.
    TimeWait,
    /// `new_syn_recv`: Linux's request socket, a SYN-RECEIVED connection before it has a full
    /// socket (not in OpenTelemetry's list; see [`TcpState::rfc`]).
    NewSynRecv,
}

impl TcpState {
    /// The states of OpenTelemetry's `network.connection.state` list, in its order: every state
    /// except Linux's `NewSynRecv`, which is a kind of `SynReceived`.
    pub const ALL: [TcpState; 11] = [
        TcpState::Closed,
        TcpState::CloseWait,
        TcpState::Closing,
        TcpState::Established,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynReceived,
        TcpState::SynSent,
        TcpState::TimeWait,
    ];

    /// From the Linux `TCP_*` state number (include/net/tcp_states.h); `None` for a number this
    /// build does not know.
    pub fn from_linux(n: u8) -> Option<Self> {
        Some(match n {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynReceived,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Closed,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            _ => return None,
        })
    }

    /// From a `network.connection.state` value (the inverse of [`TcpState::as_str`]).
    pub fn from_otel(value: &str) -> Option<Self> {
        Some(match value {
            "closed" => TcpState::Closed,
            "close_wait" => TcpState::CloseWait,
            "closing" => TcpState::Closing,
            "established" => TcpState::Established,
            "fin_wait_1" => TcpState::FinWait1,
            "fin_wait_2" => TcpState::FinWait2,
            "last_ack" => TcpState::LastAck,
            "listen" => TcpState::Listen,
            "syn_received" => TcpState::SynReceived,
            "syn_sent" => TcpState::SynSent,
            "time_wait" => TcpState::TimeWait,
            "new_syn_recv" => TcpState::NewSynRecv,
            _ => return None,
        })
    }

    /// The RFC 9293 state: a request socket (`NewSynRecv`) is `SynReceived`, as `ss` and the
    /// kernel's socket dumps report it; every other state is itself.
    pub fn rfc(self) -> Self {
        match self {
            TcpState::NewSynRecv => TcpState::SynReceived,
            other => other,
        }
    }

    /// The `network.connection.state` value, e.g. `close_wait`.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Closed => "closed",
            TcpState::CloseWait => "close_wait",
            TcpState::Closing => "closing",
            TcpState::Established => "established",
            TcpState::FinWait1 => "fin_wait_1",
            TcpState::FinWait2 => "fin_wait_2",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::SynReceived => "syn_received",
            TcpState::SynSent => "syn_sent",
            TcpState::TimeWait => "time_wait",
            TcpState::NewSynRecv => "new_syn_recv",
        }
    }

    /// The kernel's name without `TCP_` (`ESTABLISHED`, `SYN_RECV`, `CLOSE` ...), as Retina
    /// labels states.
    pub fn kernel_name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynReceived => "SYN_RECV",
            TcpState::SynSent => "SYN_SENT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_opentelemetry_values() {
        let names: Vec<_> = TcpState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "closed",
                "close_wait",
                "closing",
                "established",
                "fin_wait_1",
                "fin_wait_2",
                "last_ack",
                "listen",
                "syn_received",
                "syn_sent",
                "time_wait"
            ]
        );
    }

    #[test]
    fn all_is_in_declaration_order() {
        for (i, state) in TcpState::ALL.iter().enumerate() {
            assert_eq!(*state as usize, i, "{state:?}");
        }
    }

    #[test]
    fn linux_numbers_keep_request_sockets_apart() {
        let mapped: Vec<_> = (0..=13).map(TcpState::from_linux).collect();
        use TcpState::*;
        assert_eq!(
            mapped,
            [
                None,
                Some(Established),
                Some(SynSent),
                Some(SynReceived),
                Some(FinWait1),
                Some(FinWait2),
                Some(TimeWait),
                Some(Closed),
                Some(CloseWait),
                Some(LastAck),
                Some(Listen),
                Some(Closing),
                Some(NewSynRecv),
                None
            ]
        );
        assert_eq!(NewSynRecv.rfc(), SynReceived);
        assert_eq!(Established.rfc(), Established);
    }

    #[test]
    fn otel_values_round_trip() {
        for state in (1..=12).filter_map(TcpState::from_linux) {
            assert_eq!(TcpState::from_otel(state.as_str()), Some(state));
        }
        assert_eq!(TcpState::from_otel("ESTABLISHED"), None);
    }
}
