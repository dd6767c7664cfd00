//! What a listener refuses, counted in the receiver's own metrics and logged without flooding
//! the log: connections over `max_connections`, and requests that were malformed, too large,
//! misaddressed or not sent in time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::model::semconv::own;
use crate::model::{Attributes, Metric, NumberPoint};
use crate::telemetry::Collector;

/// Why a request was refused before it reached a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The request's headers (or, for gRPC and TLS, the handshake and first request) did not
    /// arrive within `read_header_timeout`; the connection was closed.
    HeaderTimeout,
    /// The request body did not arrive within `read_timeout`.
    BodyTimeout,
    /// Not a valid OTLP request (bad protobuf or JSON, corrupt compression ...).
    Malformed,
    /// Larger than the configured limit.
    TooLarge,
    /// A content type the receiver does not read.
    UnsupportedMediaType,
    /// A path or method (or gRPC service) that is not served.
    UnknownPath,
}

impl Rejection {
    /// Every reason, in the order of the counters.
    pub const ALL: [Rejection; 6] = [
        Rejection::HeaderTimeout,
        Rejection::BodyTimeout,
        Rejection::Malformed,
        Rejection::TooLarge,
        Rejection::UnsupportedMediaType,
        Rejection::UnknownPath,
    ];

    /// The `reason` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::HeaderTimeout => "header_timeout",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::Malformed => "malformed",
            Rejection::TooLarge => "too_large",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::UnknownPath => "unknown_path",
        }
    }
}

/// At most one log line per this interval and kind of event; the lines in between are counted
/// and reported with the next one.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A log line that is written at most once per [`LOG_INTERVAL`].
#[derive(Default)]
struct Throttle {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    /// Calls `log` with the number of events not logged since the last line, unless a line was
    /// written less than [`LOG_INTERVAL`] ago.
    fn event(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let Ok(mut last) = self.last.lock() else { return };
        if last.is_some_and(|l| now.duration_since(l) < LOG_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        log(self.suppressed.swap(0, Ordering::Relaxed));
    }
}

/// Counters and logs of one listener.
pub struct ServerStats {
    /// `OTLP/HTTP` ..., for log lines.
    name: String,
    /// The receiver and protocol the counters are reported under; `None` for listeners that are
    /// not a receiver's (they log, and count nowhere).
    owner: Option<(String, &'static str)>,
    open: AtomicU64,
    refused: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
    refused_log: Throttle,
    rejected_log: Throttle,
    accept_log: Throttle,
}

impl ServerStats {
    /// Stats of a listener called `name` in logs (`OTLP/HTTP`), reported as `protocol` of
    /// `receiver` when it is a receiver's.
    pub fn new(name: impl Into<String>, owner: Option<(String, &'static str)>) -> Self {
        ServerStats {
            name: name.into(),
            owner,
            open: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            rejected: Default::default(),
            refused_log: Throttle::default(),
            rejected_log: Throttle::default(),
            accept_log: Throttle::default(),
        }
    }

    /// The listener's name in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused so far because `max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Requests rejected so far for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    pub(super) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection closed at once because `max` connections were open.
    pub(super) fn refuse(&self, peer: std::net::SocketAddr, max: usize) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.refused_log.event(|more| {
            tracing::warn!(
                listener = %self.name,
                %peer,
                max_connections = max,
                refused_since_last_log = more + 1,
                "connection refused: the listener has max_connections open; raise max_connections if clients are legitimate"
            );
        });
    }

    /// A request refused for `reason`, with what was wrong.
    pub fn reject(&self, reason: Rejection, peer: Option<std::net::SocketAddr>, detail: &str) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
        self.rejected_log.event(|more| {
            let peer = peer.map(|p| p.to_string()).unwrap_or_default();
            tracing::warn!(
                listener = %self.name,
                %peer,
                reason = reason.as_str(),
                detail,
                rejected_since_last_log = more + 1,
                "request rejected"
            );
        });
    }

    /// `accept` failed (out of file descriptors, most likely).
    pub(super) fn accept_failed(&self, error: &std::io::Error) {
        self.accept_log.event(|more| {
            let hint = if matches!(error.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                "; the process is out of file descriptors: raise its limit (ulimit -n, LimitNOFILE) or lower max_connections"
            } else {
                ""
            };
            tracing::warn!(listener = %self.name, %error, failures_since_last_log = more + 1, "cannot accept connections{hint}");
        });
    }
}

impl Collector for ServerStats {
    fn collect(&self, start: u64, now: u64, out: &mut Vec<Metric>) {
        let Some((receiver, protocol)) = &self.owner else { return };
        let attrs =
            || Attributes::from_pairs([(own::attr::RECEIVER, receiver.as_str()), (own::attr::PROTOCOL, *protocol)]);
        out.push(Metric::from_def(
            &own::RECEIVER_CONNECTIONS,
            vec![NumberPoint::int(attrs(), 0, now, self.open() as i64)],
        ));
        out.push(Metric::from_def(
            &own::RECEIVER_CONNECTIONS_REFUSED,
            vec![NumberPoint::int(attrs(), start, now, self.refused() as i64)],
        ));
        let points = Rejection::ALL
            .iter()
            .map(|r| {
                let mut a = attrs();
                a.insert(own::attr::REASON, r.as_str());
                NumberPoint::int(a, start, now, self.rejected(*r) as i64)
            })
            .collect();
        out.push(Metric::from_def(&own::RECEIVER_REQUESTS_REJECTED, points));
    }
}
