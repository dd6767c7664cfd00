//! One accepted connection: its read deadlines, enforced where the bytes come in, and the
//! requests in flight on it, which the serving code reports.
//!
//! The deadlines live in the stream rather than in the HTTP stack so that HTTP/1, HTTP/2
//! (gRPC) and TLS handshakes are all timed the same way: whenever the server waits for bytes
//! and no request is in flight, the stream knows how long it may still wait.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::limits::Limits;
use super::stats::{Rejection, ServerStats};

/// What the deadlines depend on.
#[derive(Debug)]
struct State {
    /// Requests whose handling has started and not finished.
    in_flight: usize,
    /// Requests started on this connection so far.
    requests: u64,
    /// When the last request finished (or the connection opened).
    idle_since: Instant,
    /// HTTP/1: when the first byte of the next request arrived.
    head_started: Option<Instant>,
    /// The reader waiting without a deadline while requests were in flight: woken when the
    /// last one finishes, so the idle deadline starts even if no byte arrives.
    waker: Option<std::task::Waker>,
}

/// Why waiting for bytes ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// The request headers are late: a rejected request.
    Header,
    /// Nothing to do for too long: closed quietly.
    Idle,
}

struct Shared {
    limits: Limits,
    opened: Instant,
    peer: SocketAddr,
    stats: Arc<ServerStats>,
    state: Mutex<State>,
}

/// A handle on a connection, shared by its stream and the requests served on it. It is also the
/// connection info tonic puts in every request's extensions.
#[derive(Clone)]
pub struct ConnInfo(Arc<Shared>);

impl ConnInfo {
    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.0.peer
    }

    /// Marks a request as started (its headers are in); dropping the guard marks it finished.
    pub fn begin_request(&self) -> RequestGuard {
        if let Ok(mut s) = self.0.state.lock() {
            s.in_flight += 1;
            s.requests += 1;
            s.head_started = None;
        }
        RequestGuard(self.0.clone())
    }

    /// When the body of a request starting now must be complete, if `read_timeout` is set.
    pub fn body_deadline(&self) -> Option<Instant> {
        let t = self.0.limits.read_timeout;
        (!t.is_zero()).then(|| Instant::now() + t)
    }

    /// `read_timeout`, for messages.
    pub fn read_timeout(&self) -> Duration {
        self.0.limits.read_timeout
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.0.stats
    }

    /// The first deadline of the connection's wait for bytes, if any. While requests are in
    /// flight there is none; `waker` is then woken when the last one finishes.
    fn deadline(&self, waker: Option<&std::task::Waker>) -> Option<(Instant, Expiry)> {
        let limits = &self.0.limits;
        let mut s = self.0.state.lock().ok()?;
        if s.in_flight > 0 {
            if let Some(w) = waker {
                s.waker = Some(w.clone());
            }
            return None;
        }
        let header = |from: Instant| {
            (!limits.read_header_timeout.is_zero()).then(|| (from + limits.read_header_timeout, Expiry::Header))
        };
        if s.requests == 0 {
            return header(self.0.opened);
        }
        if let Some(started) = s.head_started {
            return header(started);
        }
        (!limits.idle_timeout.is_zero()).then(|| (s.idle_since + limits.idle_timeout, Expiry::Idle))
    }

    /// Bytes arrived while no request was in flight: for HTTP/1 a request has begun.
    fn bytes_arrived(&self) {
        if self.0.limits.http2 {
            return;
        }
        if let Ok(mut s) = self.0.state.lock()
            && s.in_flight == 0
            && s.requests > 0
            && s.head_started.is_none()
        {
            s.head_started = Some(Instant::now());
        }
    }
}

/// Marks its request finished when dropped.
pub struct RequestGuard(Arc<Shared>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.idle_since = Instant::now();
            if s.in_flight == 0
                && let Some(waker) = s.waker.take()
            {
                waker.wake();
            }
        }
    }
}

/// An accepted TCP connection whose reads end at its deadlines: a late request head is an
/// error (the connection is dropped and the rejection counted), an idle connection reads as
/// closed. It keeps its place under `max_connections` until dropped.
pub struct GuardedStream {
    inner: TcpStream,
    conn: ConnInfo,
    sleep: Pin<Box<Sleep>>,
    expired: bool,
}

impl GuardedStream {
    pub(super) fn new(inner: TcpStream, peer: SocketAddr, limits: Limits, stats: Arc<ServerStats>) -> Self {
        stats.opened();
        let now = Instant::now();
        let state = State { in_flight: 0, requests: 0, idle_since: now, head_started: None, waker: None };
        let conn = ConnInfo(Arc::new(Shared { limits, opened: now, peer, stats, state: Mutex::new(state) }));
        GuardedStream { inner, conn, sleep: Box::pin(tokio::time::sleep_until(now)), expired: false }
    }

    /// The connection's handle (to mark requests).
    pub fn conn(&self) -> &ConnInfo {
        &self.conn
    }

    /// Checks the deadline; `Some` ends the read (error for a late header, end of stream for idle).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<io::Result<()>> {
        if self.expired {
            return Some(Ok(()));
        }
        loop {
            let (at, why) = self.conn.deadline(Some(cx.waker()))?;
            if Instant::now() < at {
                if self.sleep.deadline() != at {
                    self.sleep.as_mut().reset(at);
                }
                if self.sleep.as_mut().poll(cx).is_pending() {
                    return None;
                }
                // The timer fired: look at the state again, a request may have started.
                continue;
            }
            self.expired = true;
            return Some(match why {
                Expiry::Idle => Ok(()),
                Expiry::Header => {
                    let timeout = self.conn.0.limits.read_header_timeout;
                    let first = self.conn.0.state.lock().map(|s| s.requests == 0).unwrap_or(true);
                    let detail = if first {
                        format!("no request headers within read_header_timeout ({timeout:?}) of connecting")
                    } else {
                        format!("request headers not complete within read_header_timeout ({timeout:?})")
                    };
                    self.conn.0.stats.reject(Rejection::HeaderTimeout, Some(self.conn.0.peer), &detail);
                    Err(io::Error::new(io::ErrorKind::TimedOut, detail))
                }
            });
        }
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.conn.0.stats.closed();
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.conn.bytes_arrived();
                    // A client dripping bytes must still finish its headers in time.
                    if let Some((at, Expiry::Header)) = this.conn.deadline(None)
                        && Instant::now() >= at
                        && let Some(Err(e)) = this.poll_deadline(cx)
                    {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                Some(result) => Poll::Ready(result),
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for GuardedStream {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.conn.clone()
    }
}

/// Boxed error of a request body.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails with `on_timeout()` when it is not complete by its deadline.
pub struct DeadlineBody<B> {
    inner: Pin<Box<B>>,
    sleep: Option<Pin<Box<Sleep>>>,
    on_timeout: fn() -> BodyError,
}

impl<B> DeadlineBody<B> {
    /// `inner`, failing at `deadline` (never when `None`).
    pub fn new(inner: B, deadline: Option<Instant>, on_timeout: fn() -> BodyError) -> Self {
        DeadlineBody {
            inner: Box::pin(inner),
            sleep: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            on_timeout,
        }
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body,
    B::Error: Into<BodyError>,
{
    type Data = B::Data;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, BodyError>>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let fired = this.sleep.as_mut().is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if fired {
                    this.sleep = None;
                    return Poll::Ready(Some(Err((this.on_timeout)())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
