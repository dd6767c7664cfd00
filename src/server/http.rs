//! Serving an axum router on a guarded listener, with or without TLS: HTTP/1.1 and HTTP/2,
//! every request marked on its connection (for the idle and header deadlines) and carrying its
//! [`BodyDeadline`], and a graceful stop that lets requests in flight finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::{ConnInfo, GuardedStream};
use super::listener::GuardedListener;
use super::stats::Rejection;

/// When the body of the request must be complete (`read_timeout`); handlers that read the body
/// find it in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// Longest TLS handshake when `read_header_timeout` is off.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets the
/// requests in flight finish and closes idle connections.
pub async fn serve_http(
    listener: GuardedListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            s = listener.accept() => s,
            _ = shutdown.cancelled() => break,
        };
        // Reap finished connection tasks so the set does not grow with the connection count.
        while connections.try_join_next().is_some() {}
        let (router, acceptor, shutdown) = (router.clone(), acceptor.clone(), shutdown.clone());
        connections.spawn(serve_connection(stream, router, acceptor, shutdown));
    }
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: GuardedStream,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let conn = stream.conn().clone();
    match acceptor {
        None => serve_io(TokioIo::new(stream), conn, router, shutdown).await,
        Some(acceptor) => {
            // The stream's own header deadline bounds the handshake; this bounds it when that is off.
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_io(TokioIo::new(tls), conn, router, shutdown).await,
                Ok(Err(e)) => tracing::debug!(peer = %conn.peer(), error = %e, "TLS handshake failed"),
                Err(_) => conn.stats().reject(
                    Rejection::HeaderTimeout,
                    Some(conn.peer()),
                    "TLS handshake not complete in time",
                ),
            }
        }
    }
}

async fn serve_io<I>(io: TokioIo<I>, conn: ConnInfo, router: Router, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(router);
    let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        let guard = conn.begin_request();
        if let Some(deadline) = conn.body_deadline() {
            request.extensions_mut().insert(BodyDeadline(deadline));
        }
        request.extensions_mut().insert(conn.clone());
        let response = hyper::service::Service::call(&inner, request);
        async move {
            let response = response.await;
            drop(guard);
            Ok::<_, Infallible>(match response {
                Ok(r) => r,
                Err(never) => match never {},
            })
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_end(result),
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            log_end(connection.await);
        }
    }
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
