//! How much a listener lets its clients take: open connections and the time to send a request.

use std::time::Duration;

/// The limits of one listener. A zero duration means "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; one more is closed as soon as it is accepted (and counted).
    pub max_connections: usize,
    /// From accepting a connection until its first request's headers are in (the TLS handshake
    /// included), and for HTTP/1 from the first byte of each later request until its headers
    /// are in. Slow or silent clients are disconnected.
    pub read_header_timeout: Duration,
    /// From a request's headers until its whole body is in.
    pub read_timeout: Duration,
    /// How long a connection with no request in flight stays open.
    pub idle_timeout: Duration,
    /// HTTP/2 only (gRPC): request headers arrive in frames between others, so only the first
    /// request is timed by `read_header_timeout`.
    pub http2: bool,
}

impl Limits {
    /// The endpoints without settings of their own: the own-telemetry endpoint, the
    /// `prometheus` scrape endpoint and the extensions. Scrapers and probes open a handful of
    /// connections and send small requests.
    pub const INTERNAL: Limits = Limits {
        max_connections: 64,
        read_header_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        http2: false,
    };

    /// `max_connections`, lowered when the process's file-descriptor limit could not hold it:
    /// every listener may use at most a quarter of what is left after [`FD_RESERVE`], so a flood
    /// on one port cannot starve the others (or the probes, the queues and the logs) of
    /// descriptors.
    pub fn effective_max_connections(&self) -> usize {
        let Some(limit) = fd_limit() else { return self.max_connections };
        let share = (limit.saturating_sub(FD_RESERVE) / 4).max(1) as usize;
        self.max_connections.min(share)
    }
}

/// File descriptors kept for everything but the listeners' connections.
pub const FD_RESERVE: u64 = 256;

/// The process's soft `RLIMIT_NOFILE`, `None` when unlimited or unknown.
pub fn fd_limit() -> Option<u64> {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `cur` is a valid rlimit out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } != 0 || cur.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(cur.rlim_cur)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go programs (otelcol among them) do at
/// start: the soft default of 1024 is too low for a server, the hard limit is what the
/// administrator allows. Returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `cur` is a valid rlimit out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) } != 0 {
        return None;
    }
    if cur.rlim_cur < cur.rlim_max {
        let want = libc::rlimit { rlim_cur: cur.rlim_max, rlim_max: cur.rlim_max };
        // SAFETY: `want` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return Some(cur.rlim_max);
        }
    }
    Some(cur.rlim_cur)
}
