//! The delivery [`Encoder`]: one batch -> one or more uncompressed `WriteRequest` bodies.
//!
//! `Request::items` counts OpenTelemetry data points, as otelcol does (not samples: a histogram
//! point is one item however many bucket series it makes), so the exporter's sent and dropped
//! counts add up to what it received. Points that are not sent (refused by the translation, or
//! not newer than their series' last sample) are counted as dropped here, once the exporter has
//! started and handed over its counters.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use super::config::RemoteWriteConfig;
use super::request::RequestWriter;
use super::series::{EncodeOutcome, Translator, TranslatorOptions};
use crate::delivery::{Encoder, Request};
use crate::model::{Payload, Signal};
use crate::telemetry::ComponentStats;

/// Encodes metric batches as Prometheus remote-write 1.0 requests.
pub struct RemoteWriteEncoder {
    translator: Mutex<Translator>,
    limit: usize,
    metadata: bool,
    stats: OnceLock<Arc<ComponentStats>>,
}

impl RemoteWriteEncoder {
    /// An encoder with the naming, labels and size limit of `config`.
    pub fn new(config: &RemoteWriteConfig) -> Self {
        let opts = TranslatorOptions {
            store: config.store_options(),
            external_labels: config.external_label_pairs(),
            target_info: config.target_info.enabled,
        };
        RemoteWriteEncoder {
            translator: Mutex::new(Translator::new(opts)),
            limit: config.batch_size_limit(),
            metadata: config.send_metadata,
            stats: OnceLock::new(),
        }
    }

    /// Counts points that are not sent in the exporter's counters (called when it starts).
    pub fn attach_stats(&self, stats: Arc<ComponentStats>) {
        let _ = self.stats.set(stats);
    }

    /// Number of OpenTelemetry series whose state is remembered.
    pub fn series(&self) -> usize {
        self.translator.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Encodes `payload`, appending its requests to `out`; what became of its points.
    pub fn encode_counted(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<EncodeOutcome, String> {
        let Payload::Metrics(batch) = payload else {
            return Err(format!("prometheusremotewrite exports metrics only, not {}", payload.signal()));
        };
        // A panic while holding the lock leaves the translator usable (each batch starts afresh).
        let mut translator = self.translator.lock().unwrap_or_else(PoisonError::into_inner);
        let mut writer = RequestWriter::new(self.limit, out);
        let outcome = translator.encode(batch, Instant::now(), self.metadata, &mut writer);
        writer.finish();
        Ok(outcome)
    }
}

impl Encoder for RemoteWriteEncoder {
    fn encode(&self, payload: &Payload, out: &mut Vec<Request>) -> Result<(), String> {
        let outcome = self.encode_counted(payload, out)?;
        if outcome.dropped() > 0
            && let Some(stats) = self.stats.get()
        {
            stats.add_dropped(Signal::Metrics, outcome.dropped());
        }
        Ok(())
    }
}
