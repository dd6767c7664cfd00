//! The HTTP endpoint: `GET <path>` answers the exposition, anything else 404.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::prometheus::Format;
use crate::server::{GuardedListener, Limits, ServerStats, serve_http};

/// Serves scrapes on `listener` until `stop` is cancelled, within the limits every internal
/// endpoint has (a flood of connections on another port, or on this one, cannot take it down).
pub(crate) async fn serve(
    listener: TcpListener,
    path: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new().route(&path, get(scrape)).with_state(shared);
    let name = format!("prometheus scrape endpoint {}", listener.local_addr()?);
    let listener = GuardedListener::new(listener, Limits::INTERNAL, Arc::new(ServerStats::new(name, None)));
    serve_http(listener, app, None, stop).await;
    Ok(())
}

async fn scrape(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept, shared.open_metrics);
    // Expire under a short write lock, then encode under a read lock so ingestion waits only
    // for the copy into the body, never for the network.
    shared.write().expire(Instant::now());
    let mut body = String::new();
    shared.read().encode(format, shared.send_timestamps, &mut body);
    ([(CONTENT_TYPE, HeaderValue::from_static(format.content_type()))], body).into_response()
}
