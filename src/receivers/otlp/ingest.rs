//! What both protocols do with a decoded request: convert it, push it into the pipelines with an
//! acknowledgement, and wait until every exporter has taken it, so the answer tells the client
//! the truth (success only when the data is safe, otherwise a retryable error).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{Acks, Payload, Signal};
use crate::otlp::metrics_from_proto;
use crate::otlp::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use crate::pipeline::Output;
use crate::telemetry::ComponentStats;

/// Longest wait for the pipelines to take a request before answering "unavailable, retry".
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// A request the pipelines took.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Points left out because the model cannot represent them (reported as partial success).
    pub refused: u64,
    /// Why, for the partial-success message.
    pub message: String,
}

impl Accepted {
    /// The OTLP response: a partial success when points were refused.
    pub fn into_response(self) -> ExportMetricsServiceResponse {
        let partial_success = if self.refused > 0 {
            Some(ExportMetricsPartialSuccess { rejected_data_points: self.refused as i64, error_message: self.message })
        } else {
            None
        };
        ExportMetricsServiceResponse { partial_success }
    }
}

/// Why a request was not taken; the client should send it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The pipelines did not take the data (stopped, queue full, failed) or not in time.
    #[error("{0}")]
    Unavailable(String),
}

/// The receiver's link into its pipelines, shared by the gRPC and HTTP servers.
pub struct Ingest {
    id: String,
    output: Output,
    stats: Arc<ComponentStats>,
}

impl Ingest {
    /// An ingest point for receiver `id` sending into `output` and counting into `stats`.
    pub fn new(id: String, output: Output, stats: Arc<ComponentStats>) -> Self {
        Ingest { id, output, stats }
    }

    /// Converts and delivers one metrics request from `client`, waiting at most `deadline`
    /// (capped at [`ACK_TIMEOUT`]) for the pipelines to acknowledge it.
    pub async fn metrics(
        &self,
        request: ExportMetricsServiceRequest,
        deadline: Option<Duration>,
        client: Option<IpAddr>,
    ) -> Result<Accepted, IngestError> {
        let mut decoded = metrics_from_proto(request);
        let (accepted, refused) = (decoded.accepted, decoded.refused);
        // The receiver's output counts what it sends as received; the points refused here are
        // received too but never sent.
        self.stats.add_received(Signal::Metrics, refused);
        let message = decoded.message();
        if refused > 0 {
            self.stats.add_dropped(Signal::Metrics, refused);
            tracing::warn!(receiver = %self.id, refused, reason = %message, "OTLP data points refused");
        }
        if accepted == 0 {
            return Ok(Accepted { refused, message });
        }
        let (acks, waiter) = Acks::new_request();
        decoded.batch.acks = acks;
        decoded.batch.client = client.map(|ip| ip.to_canonical());
        let wait = deadline.map_or(ACK_TIMEOUT, |d| d.min(ACK_TIMEOUT));
        let delivered = tokio::time::timeout(wait, async {
            self.output.send(Payload::from(decoded.batch)).await.map_err(|e| e.to_string())?;
            Ok::<bool, String>(waiter.wait().await)
        })
        .await;
        let why = match delivered {
            Ok(Ok(true)) => return Ok(Accepted { refused, message }),
            Ok(Ok(false)) => "the pipeline did not take the data (an exporter queue is full or failed)".to_string(),
            Ok(Err(e)) => e,
            Err(_) => format!("the pipeline did not take the data within {wait:?}"),
        };
        self.stats.add_failed(Signal::Metrics, accepted);
        tracing::debug!(receiver = %self.id, points = accepted, reason = %why, "answering retryable");
        Err(IngestError::Unavailable(format!("{why}; retry later")))
    }
}
