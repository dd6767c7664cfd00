//! `sending_queue` and `retry_on_failure`: otelcol's exporterhelper keys and defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::Checks;

/// `sending_queue:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueueConfig {
    /// Queue requests before sending (otherwise send inline, one at a time, and acknowledge a
    /// batch only once it is delivered).
    pub enabled: bool,
    /// Concurrent senders draining the queue. With 1, requests are sent strictly in queue order
    /// and a failing request holds back the ones behind it (remote-write needs this); with more,
    /// order is best effort.
    pub num_consumers: usize,
    /// Capacity in requests (one request = one encoded batch, or part of one when the encoder
    /// splits it). In memory, a batch whose requests do not fit is refused and counted as dropped.
    pub queue_size: usize,
    /// When the in-memory queue is full: wait for room (backpressure) instead of refusing new data.
    pub block_on_overflow: bool,
    /// Persist the queue on disk so it survives backend outages and agent restarts. Then
    /// `queue_size` bounds the requests kept on disk, a full queue drops its oldest requests (new
    /// data is never refused, `block_on_overflow` does not apply) and retries never give up.
    pub storage: Option<StorageConfig>,
    /// What `queue_size` counts: only `requests` (otelcol's default) is supported.
    pub sizer: Sizer,
    /// Merge batches before encoding them (otelcol's exporter-side batching); off unless the
    /// key is present (`batch: {}` takes the defaults).
    #[serde(deserialize_with = "crate::config::de::present_means_defaults")]
    pub batch: Option<QueueBatchConfig>,
}

/// otelcol's `sizer`: what sizes count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Requests (one encoded batch each).
    #[default]
    Requests,
    /// Items (data points, flow records).
    Items,
    /// Encoded bytes.
    Bytes,
}

/// `sending_queue::batch:`: items are held until `min_size` of them are there or
/// `flush_timeout` has passed since the first, merged into one batch (split above `max_size`)
/// and only then encoded and queued, so a pipeline of small batches sends few large requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchConfig {
    /// Longest an item waits for a batch to fill.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub flush_timeout: Duration,
    /// Items that make a batch worth sending.
    pub min_size: usize,
    /// Largest batch, in items (`0` = no limit).
    pub max_size: usize,
    /// What the sizes count: only `items` is supported.
    pub sizer: Sizer,
}

impl Default for QueueBatchConfig {
    fn default() -> Self {
        QueueBatchConfig { flush_timeout: Duration::from_millis(200), min_size: 8192, max_size: 0, sizer: Sizer::Items }
    }
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            block_on_overflow: false,
            storage: None,
            sizer: Sizer::Requests,
            batch: None,
        }
    }
}

/// `sending_queue::storage:` (fovea's file storage, in place of otelcol's storage extension id).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for this exporter's queue files (created if missing; one exporter per directory).
    pub directory: PathBuf,
    /// Upper bound of the queue on disk in MiB; when reached the oldest data is dropped and counted.
    #[serde(default = "default_max_size_mib")]
    pub max_size_mib: u64,
}

impl StorageConfig {
    /// Checks, without creating anything, that the agent can use `directory`: it is a writable
    /// directory, or it does not exist yet and its nearest existing parent is one (the queue
    /// creates it at start).
    pub fn check_directory(&self, field: &str, checks: &mut Checks) {
        if let Err(e) = crate::config::writable_directory(&self.directory) {
            checks.fail(field, e);
        }
    }
}

fn default_max_size_mib() -> u64 {
    1024
}

/// `retry_on_failure:`. With `enabled: false` a failed request is dropped, except in a persistent
/// queue, where it stays queued and is tried again after `initial_interval`.
///
/// Keys that are not written take the exporter's defaults: otelcol's exporterhelper's
/// ([`RetryConfig::default`], what deserializing gives) or remote-write's
/// ([`RetryConfig::remote_write`], read with [`RetryConfig::deserialize_remote_write`]).
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retry retryable failures.
    pub enabled: bool,
    /// First wait after a failure.
    pub initial_interval: Duration,
    /// Longest wait between attempts.
    pub max_interval: Duration,
    /// Give up on a request after this long (`0` = never). With persistent storage the request
    /// stays in the queue instead and is retried every `max_interval`, so an outage of any length
    /// (up to the queue's size bound) loses nothing.
    pub max_elapsed_time: Duration,
    /// Growth factor of the wait.
    pub multiplier: f64,
    /// Jitter: each wait is randomized by +-this fraction.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    /// otelcol's exporterhelper defaults: 5s, growing 1.5 times to 30s, giving up after 5m.
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    /// otelcol's remote-write defaults: its exporter retries by itself, starting at 50ms rather
    /// than exporterhelper's 5s; the rest as [`RetryConfig::default`].
    pub fn remote_write() -> Self {
        RetryConfig { initial_interval: Duration::from_millis(50), ..RetryConfig::default() }
    }

    /// Reads `retry_on_failure:`, taking the keys that are not written from `defaults`.
    pub fn deserialize_over<'de, D: Deserializer<'de>>(d: D, defaults: RetryConfig) -> Result<Self, D::Error> {
        let keys = RetryKeys::deserialize(d)?;
        Ok(RetryConfig {
            enabled: keys.enabled.unwrap_or(defaults.enabled),
            initial_interval: keys.initial_interval.unwrap_or(defaults.initial_interval),
            max_interval: keys.max_interval.unwrap_or(defaults.max_interval),
            max_elapsed_time: keys.max_elapsed_time.unwrap_or(defaults.max_elapsed_time),
            multiplier: keys.multiplier.unwrap_or(defaults.multiplier),
            randomization_factor: keys.randomization_factor.unwrap_or(defaults.randomization_factor),
        })
    }

    /// Reads `retry_on_failure:` with [`RetryConfig::remote_write`] defaults (a `deserialize_with`).
    pub fn deserialize_remote_write<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::deserialize_over(d, Self::remote_write())
    }
}

impl<'de> Deserialize<'de> for RetryConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::deserialize_over(d, Self::default())
    }
}

/// The keys of `retry_on_failure:` as written: `None` when absent (a written null is an error,
/// as for any other value of the wrong type).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryKeys {
    #[serde(default, deserialize_with = "written")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "written_duration")]
    initial_interval: Option<Duration>,
    #[serde(default, deserialize_with = "written_duration")]
    max_interval: Option<Duration>,
    #[serde(default, deserialize_with = "written_duration")]
    max_elapsed_time: Option<Duration>,
    #[serde(default, deserialize_with = "written")]
    multiplier: Option<f64>,
    #[serde(default, deserialize_with = "written")]
    randomization_factor: Option<f64>,
}

fn written<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn written_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::config::duration::deserialize(d).map(Some)
}

impl SendingQueueConfig {
    /// Cross-field checks, reported under `prefix` (e.g. `sending_queue`).
    pub fn validate(&self, prefix: &str, checks: &mut Checks) {
        if self.enabled && self.queue_size == 0 {
            checks.fail(
                &format!("{prefix}::queue_size"),
                "a 0 size queue would drop all data; set it above 0 or disable the queue",
            );
        }
        if self.enabled && self.num_consumers == 0 {
            checks.fail(&format!("{prefix}::num_consumers"), "must be at least 1");
        }
        if self.sizer != Sizer::Requests {
            checks.fail(
                &format!("{prefix}::sizer"),
                "only `requests` is supported: queue_size counts requests (batches); bound items with batch::max_size",
            );
        }
        if let Some(b) = &self.batch {
            if b.sizer != Sizer::Items {
                checks.fail(
                    &format!("{prefix}::batch::sizer"),
                    "only `items` is supported (data points or flow records)",
                );
            }
            if b.flush_timeout.is_zero() {
                checks.fail(&format!("{prefix}::batch::flush_timeout"), "must be above 0, e.g. 200ms");
            }
            if b.max_size > 0 && b.max_size < b.min_size {
                checks.fail(
                    &format!("{prefix}::batch::max_size"),
                    format!("must be 0 (no limit) or at least min_size ({})", b.min_size),
                );
            }
        }
        if let Some(s) = &self.storage {
            if !self.enabled {
                checks.fail(
                    &format!("{prefix}::storage"),
                    "the persistent queue needs the queue: set enabled: true or remove storage",
                );
            }
            if s.directory.as_os_str().is_empty() {
                checks.fail(
                    &format!("{prefix}::storage::directory"),
                    "must name a directory, e.g. /var/lib/fovea/queue/otlp",
                );
            } else {
                s.check_directory(&format!("{prefix}::storage::directory"), checks);
            }
            if s.max_size_mib == 0 {
                checks.fail(&format!("{prefix}::storage::max_size_mib"), "must be at least 1");
            }
        }
    }
}

impl RetryConfig {
    /// Cross-field checks as otelcol's configretry, reported under `prefix`.
    pub fn validate(&self, prefix: &str, checks: &mut Checks) {
        if !self.enabled {
            return;
        }
        if self.initial_interval.is_zero() {
            checks.fail(&format!("{prefix}::initial_interval"), "must be above 0");
        }
        if self.max_interval < self.initial_interval {
            checks.fail(&format!("{prefix}::max_interval"), "must not be less than initial_interval");
        }
        if !self.max_elapsed_time.is_zero()
            && (self.max_elapsed_time < self.initial_interval || self.max_elapsed_time < self.max_interval)
        {
            checks.fail(
                &format!("{prefix}::max_elapsed_time"),
                "must be 0 (retry forever) or not less than initial_interval and max_interval",
            );
        }
        if self.multiplier < 1.0 {
            checks.fail(&format!("{prefix}::multiplier"), "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.randomization_factor) {
            checks.fail(&format!("{prefix}::randomization_factor"), "must be in [0, 1)");
        }
    }
}
