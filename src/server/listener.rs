//! Accepting connections within `max_connections`: one more is accepted and closed at once
//! (counted and logged), so a flood cannot exhaust the process's file descriptors, and a failing
//! `accept` (out of descriptors) backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::connection::GuardedStream;
use super::limits::Limits;
use super::stats::ServerStats;

/// Wait after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound listener with its limits.
pub struct GuardedListener {
    listener: TcpListener,
    limits: Limits,
    max_connections: usize,
    stats: Arc<ServerStats>,
}

impl GuardedListener {
    /// Guards `listener` with `limits`, counting into `stats`. `max_connections` is lowered (and
    /// a warning logged) when the file-descriptor limit could not hold it.
    pub fn new(listener: TcpListener, limits: Limits, stats: Arc<ServerStats>) -> Self {
        let max_connections = limits.effective_max_connections();
        if max_connections < limits.max_connections {
            tracing::warn!(
                listener = %stats.name(),
                configured = limits.max_connections,
                effective = max_connections,
                fd_limit = super::limits::fd_limit(),
                "max_connections lowered to a quarter of the file descriptors left after the reserve; raise the limit (ulimit -n, LimitNOFILE) to allow more"
            );
        }
        GuardedListener { listener, limits, max_connections, stats }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The connection cap in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// The next connection within the cap.
    pub async fn accept(&self) -> GuardedStream {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    self.stats.accept_failed(&e);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            if self.stats.open() as usize >= self.max_connections {
                self.stats.refuse(peer, self.max_connections);
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            return GuardedStream::new(stream, peer, self.limits, self.stats.clone());
        }
    }
}

/// Binds `endpoint` (a checked listen address) for an endpoint with the internal limits (the
/// extensions), called `name` in logs.
pub async fn bind_internal(endpoint: &str, name: &str) -> std::io::Result<GuardedListener> {
    let target = super::ListenAddress::parse(endpoint)
        .map(|a| a.bind_target())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(target).await?;
    let name = format!("{name} {}", listener.local_addr()?);
    Ok(GuardedListener::new(listener, Limits::INTERNAL, Arc::new(ServerStats::new(name, None))))
}
