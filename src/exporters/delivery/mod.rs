//! Delivery for exporters that push: encode each batch once into a request, queue it (in memory
//! or on disk), and send it with otelcol's retry rules, counting what was sent, retried and dropped.
//!
//! A push exporter supplies an [`Encoder`] (batch -> request bodies) and a [`Transport`] (sends
//! one body and classifies the outcome); this module does the rest, the same way for OTLP/gRPC,
//! OTLP/HTTP and Prometheus remote-write.

mod config;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use config::{RetryConfig, SendingQueueConfig, StorageConfig};

use crate::model::{Payload, Signal};

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
    /// Sends `request` once (the caller retries). Must respect its own per-attempt timeout.
    async fn send(&self, request: &Request) -> Result<Sent, SendError>;
}

/// A push exporter: encodes each batch once, queues the requests and sends them with retries.
pub struct DeliveryExporter {
    name: String,
    queue: SendingQueueConfig,
    retry: RetryConfig,
    encoder: std::sync::Arc<dyn Encoder>,
    transport: std::sync::Arc<dyn Transport>,
}

impl DeliveryExporter {
    /// An exporter named `name` (its component id, for logs) with the given queue and retry
    /// settings, encoder and transport.
    pub fn new(
        name: String,
        queue: SendingQueueConfig,
        retry: RetryConfig,
        encoder: std::sync::Arc<dyn Encoder>,
        transport: std::sync::Arc<dyn Transport>,
    ) -> Self {
        DeliveryExporter { name, queue, retry, encoder, transport }
    }
}

#[async_trait]
impl crate::pipeline::Exporter for DeliveryExporter {
    async fn run(
        self: Box<Self>,
        mut ctx: crate::pipeline::ExporterContext,
    ) -> Result<(), crate::pipeline::ComponentError> {
        // Minimal inline delivery (no queue, no retry); the queued implementation replaces it.
        let _ = (&self.queue, &self.retry);
        let mut requests = Vec::new();
        while let Some(payload) = ctx.input.recv().await {
            requests.clear();
            if let Err(e) = self.encoder.encode(&payload, &mut requests) {
                tracing::warn!(exporter = %self.name, error = %e, "cannot encode; dropping");
                ctx.start.stats.add_dropped(payload.signal(), payload.items());
                payload.acks().fail();
                continue;
            }
            payload.acks().accept();
            for r in &requests {
                match self.transport.send(r).await {
                    Ok(_) => ctx.start.stats.add_sent(r.signal, r.items),
                    Err(e) => {
                        tracing::warn!(exporter = %self.name, error = %e, "send failed; dropping");
                        ctx.start.stats.add_dropped(r.signal, r.items);
                    }
                }
            }
        }
        Ok(())
    }
}
