//! Delivery for exporters that push: encode each batch once into a request, queue it (in memory
//! or on disk), and send it with otelcol's retry rules, counting what was sent, retried and dropped.
//!
//! A push exporter supplies an [`Encoder`] (batch -> request bodies) and a [`Transport`] (sends
//! one body and classifies the outcome); this module does the rest, the same way for OTLP/gRPC,
//! OTLP/HTTP and Prometheus remote-write.
//!
//! Layout, one responsibility per file:
//! - `config.rs`: `sending_queue` and `retry_on_failure` (otelcol keys and defaults);
//! - `driver.rs`: the exporter: intake (encode, enqueue, acknowledge), consumers, shutdown;
//! - `intake.rs`: what the exporter reads next, merged by `sending_queue::batch` when set;
//! - `retry.rs`: otelcol's backoff and the per-request send/retry loop with its accounting;
//! - `memory.rs`: the bounded in-memory queue (refuse newest or block when full);
//! - `persistent/`: the on-disk queue: `mod.rs` (open, replay, consumers, close), `state.rs`
//!   (bookkeeping, eviction), `writer.rs` (group commit, bounds) and `done_log.rs` (delivery records);
//! - `disk.rs`: the on-disk format (segments, records, checksums, acknowledgement log, lock);
//! - `telemetry.rs`: extra own metrics (queue bytes, retries).

mod config;
mod disk;
mod driver;
pub mod http_client;
mod intake;
mod memory;
mod persistent;
mod retry;
mod telemetry;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use config::{QueueBatchConfig, RetryConfig, SendingQueueConfig, Sizer, StorageConfig};
pub use driver::DeliveryExporter;
pub use retry::Backoff;

use crate::model::{Payload, Signal};
use crate::pipeline::ComponentError;

/// One encoded request: what the queue holds and what the transport sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The signal of the items inside.
    pub signal: Signal,
    /// Items inside (data points or flow records), for accounting.
    pub items: u64,
    /// The encoded, uncompressed body (protobuf); the transport compresses on the wire.
    pub body: Bytes,
}

/// Turns batches into request bodies. May split one batch into several requests (size limits).
pub trait Encoder: Send + Sync + 'static {
    /// Encodes `payload`; an error is permanent (the data cannot be represented) and is counted.
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String>;
}

/// What the backend said to a successful request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    /// Items the backend rejected in a partial success (logged and counted as dropped).
    pub rejected_items: u64,
    /// The backend's message for a partial success.
    pub message: String,
}

/// Why a send failed, classified with otelcol's rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (gRPC Unavailable ..., HTTP 429/502/503/504, network errors); `throttle` is
    /// the server's requested delay (RetryInfo, Retry-After), a floor for the next wait.
    #[error("retryable: {reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// Server-requested delay.
        throttle: Option<Duration>,
    },
    /// Not worth retrying (bad request, unauthenticated ...): dropped and counted, with this reason logged.
    #[error("permanent: {reason}")]
    Permanent {
        /// What happened.
        reason: String,
    },
}

/// Sends one request body to the backend.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Loads what sending needs (TLS material, the client or channel); called by the exporter's
    /// `start`, so a missing certificate stops the agent from starting instead of failing every
    /// send. Needs a tokio runtime.
    fn connect(&self) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Sends `request` once (the caller retries). Must respect its own per-attempt timeout.
    async fn send(&self, request: &Request) -> Result<Sent, SendError>;
}

/// What can go wrong in the delivery layer itself (not in a send: see [`SendError`]).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Another process (or exporter) already uses the persistent queue directory.
    #[error(
        "persistent queue directory {directory} is in use by {holder} (lock file {directory}/lock is held); \
         give each exporter and each agent its own sending_queue::storage::directory"
    )]
    Locked {
        /// The queue directory.
        directory: PathBuf,
        /// Who holds the lock, as far as the lock file tells (`process 1234`).
        holder: String,
    },
    /// A file operation of the persistent queue failed.
    #[error("persistent queue: cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`create directory`, `fsync` ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The persistent queue's writer thread has stopped, so nothing more can be written.
    #[error("persistent queue {directory}: the writer has stopped; data cannot be persisted")]
    WriterStopped {
        /// The queue directory.
        directory: PathBuf,
    },
}

/// Locks a mutex, carrying on after a panic elsewhere: every critical section here leaves the
/// state consistent before anything that could panic, so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
