//! What every server of fovea shares (the `otlp` receiver's gRPC and HTTP listeners, the
//! `prometheus` scrape endpoint, the extensions and the own-telemetry endpoint): one rule for
//! listen addresses, a cap on open connections per listener, deadlines for slow clients, and
//! counters and logs of what was refused.

mod address;
mod connection;
mod http;
mod limits;
mod listener;
mod stats;

pub use address::ListenAddress;
pub use connection::{BodyError, ConnInfo, DeadlineBody, GuardedStream, RequestGuard};
pub use http::{BodyDeadline, serve_http};
pub use limits::{FD_RESERVE, Limits, fd_limit, raise_fd_limit};
pub use listener::{GuardedListener, bind_internal};
pub use stats::{Rejection, ServerStats};
