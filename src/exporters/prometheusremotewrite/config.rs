//! Configuration of the `prometheusremotewrite` exporter: otelcol's keys and defaults, plus
//! fovea's `naming`, `retry_on_http_429` (a feature gate in otelcol) and the persistent queue
//! under `remote_write_queue::storage`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::config::{Checks, ComponentConfig};
use crate::delivery::{RetryConfig, SendingQueueConfig, StorageConfig};
use crate::prometheus::{Naming, ResourceToTelemetry, StoreOptions, label_name};
use crate::tls::ClientTls;

/// otelcol's default `max_batch_size_bytes` (about 2.86 MiB).
pub const DEFAULT_MAX_BATCH_SIZE_BYTES: usize = 3_000_000;

/// Headers the exporter sets itself; `headers` may not override them.
pub const RESERVED_HEADERS: [&str; 4] =
    ["content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent"];

/// `exporters::prometheusremotewrite` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The remote-write URL, e.g. `http://prometheus:9090/api/v1/write` (required).
    pub endpoint: String,
    /// Extra HTTP headers on every request (authentication, tenant ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS for `https://` endpoints (otelcol's `tls:` keys; system roots unless `ca_file` is set).
    #[serde(default)]
    pub tls: ClientTls,
    /// Per-request timeout (default 5s).
    #[serde(default = "default_timeout", deserialize_with = "crate::config::duration::deserialize")]
    pub timeout: Duration,
    /// Only `snappy`, the format remote-write 1.0 requires (accepted for otelcol compatibility).
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Prefix for every OpenTelemetry-named metric and `target_info`.
    #[serde(default)]
    pub namespace: String,
    /// Labels added to every series unless the series already has a label of that name.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Copy resource attributes onto every series instead of sending `target_info`.
    #[serde(default)]
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// The `target_info` series per resource (default enabled).
    #[serde(default)]
    pub target_info: TargetInfo,
    /// Leave out the `otel_scope_name` / `otel_scope_version` labels (default false).
    #[serde(default)]
    pub disable_scope_info: bool,
    /// Append unit words and `_total` / `_ratio` to names (default true).
    #[serde(default = "default_true")]
    pub add_metric_suffixes: bool,
    /// Largest uncompressed request body; bigger batches are split (default 3000000, `0` = default).
    #[serde(default = "default_max_batch_size_bytes")]
    pub max_batch_size_bytes: usize,
    /// Send the type and help of each metric family (remote-write 1.0 `metadata`).
    #[serde(default)]
    pub send_metadata: bool,
    /// `otel` (OpenTelemetry -> Prometheus translation) or `retina` (Retina's names and labels).
    #[serde(default)]
    pub naming: Naming,
    /// Retry HTTP 429 answers (otelcol: feature gate `RetryOn429`); otherwise they are permanent.
    #[serde(default)]
    pub retry_on_http_429: bool,
    /// The sending queue (otelcol's `remote_write_queue`), and fovea's persistent queue under `storage`.
    #[serde(default)]
    pub remote_write_queue: RemoteWriteQueue,
    /// Retries of failed requests, with otelcol's remote-write defaults (50ms, 30s, 5m).
    #[serde(default = "RetryConfig::remote_write", deserialize_with = "RetryConfig::deserialize_remote_write")]
    pub retry_on_failure: RetryConfig,
    /// Not a key of this exporter (it has `remote_write_queue`); present only to say so clearly.
    #[serde(default)]
    pub sending_queue: Option<IgnoredAny>,
    /// otelcol's write-ahead log; replaced by `remote_write_queue::storage`.
    #[serde(default)]
    pub wal: Option<IgnoredAny>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_compression() -> String {
    "snappy".to_string()
}

fn default_true() -> bool {
    true
}

fn default_max_batch_size_bytes() -> usize {
    DEFAULT_MAX_BATCH_SIZE_BYTES
}

/// `target_info:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Send one `target_info` series per resource.
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

/// `remote_write_queue:` (otelcol's keys), plus fovea's `storage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteQueue {
    /// Queue requests (otherwise each batch is sent before the next one is read).
    pub enabled: bool,
    /// Capacity in requests.
    pub queue_size: usize,
    /// Accepted for otelcol compatibility; one sender always drains the queue so that the samples
    /// of a series reach Prometheus in order (otelcol uses it only for split batches).
    pub num_consumers: usize,
    /// Persist the queue on disk: it survives backend outages of any length and agent restarts.
    pub storage: Option<StorageConfig>,
}

impl Default for RemoteWriteQueue {
    fn default() -> Self {
        RemoteWriteQueue { enabled: true, queue_size: 10_000, num_consumers: 5, storage: None }
    }
}

impl RemoteWriteConfig {
    /// The configuration with every default and this `endpoint` (what `{endpoint: ...}` gives).
    pub fn with_endpoint(endpoint: impl Into<String>) -> Self {
        RemoteWriteConfig {
            endpoint: endpoint.into(),
            headers: BTreeMap::new(),
            tls: ClientTls::default(),
            timeout: default_timeout(),
            compression: default_compression(),
            namespace: String::new(),
            external_labels: BTreeMap::new(),
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            target_info: TargetInfo::default(),
            disable_scope_info: false,
            add_metric_suffixes: true,
            max_batch_size_bytes: DEFAULT_MAX_BATCH_SIZE_BYTES,
            send_metadata: false,
            naming: Naming::default(),
            retry_on_http_429: false,
            remote_write_queue: RemoteWriteQueue::default(),
            retry_on_failure: RetryConfig::remote_write(),
            sending_queue: None,
            wal: None,
        }
    }

    /// The delivery layer's queue: always one consumer, so requests leave in the order they were
    /// made and no series ever gets an older sample after a newer one.
    pub fn sending_queue(&self) -> SendingQueueConfig {
        let q = &self.remote_write_queue;
        SendingQueueConfig {
            enabled: q.enabled,
            num_consumers: 1,
            queue_size: q.queue_size,
            block_on_overflow: false,
            storage: q.storage.clone(),
            ..SendingQueueConfig::default()
        }
    }

    /// `max_batch_size_bytes` with otelcol's rule that `0` means the default.
    pub fn batch_size_limit(&self) -> usize {
        if self.max_batch_size_bytes == 0 { DEFAULT_MAX_BATCH_SIZE_BYTES } else { self.max_batch_size_bytes }
    }

    /// External labels with their names translated like attribute keys (as otelcol does).
    pub fn external_label_pairs(&self) -> Vec<(String, String)> {
        self.external_labels.iter().map(|(k, v)| (label_name(k), v.clone())).collect()
    }

    /// How the exporter's series store names and labels series (`job` and `instance` on Retina
    /// names too: a push carries its own target labels).
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            naming: self.naming,
            namespace: self.namespace.clone(),
            add_suffixes: self.add_metric_suffixes,
            resource_labels: self.resource_to_telemetry_conversion.enabled,
            scope_labels: !self.disable_scope_info,
            retina_target_labels: true,
            ..StoreOptions::plain()
        }
    }
}

/// Whether `endpoint` is an absolute `http://` or `https://` URL with a host.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("`{endpoint}` is not a URL ({e}); write e.g. \"http://prometheus:9090/api/v1/write\""))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{endpoint}` has scheme `{}`; remote-write needs http:// or https://, e.g. \"http://prometheus:9090/api/v1/write\"",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{endpoint}` has no host; write e.g. \"http://prometheus:9090/api/v1/write\""));
    }
    Ok(())
}

impl ComponentConfig for RemoteWriteConfig {
    fn validate(&self, checks: &mut Checks) {
        if let Err(e) = check_endpoint(&self.endpoint) {
            checks.fail("endpoint", e);
        }
        for (name, value) in &self.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                checks.fail(
                    &format!("headers::{name}"),
                    format!(
                        "the exporter sets `{name}` itself and it cannot be overridden (reserved: Content-Encoding, \
                         Content-Type, X-Prometheus-Remote-Write-Version, User-Agent)"
                    ),
                );
            } else if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                checks.fail(&format!("headers::{name}"), "not a valid HTTP header name");
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                checks.fail(&format!("headers::{name}"), "the value holds characters HTTP headers cannot carry");
            }
        }
        if self.timeout.is_zero() {
            checks.fail("timeout", "must be above 0, e.g. 5s");
        }
        if self.compression != "snappy" {
            checks.fail("compression", "compression type must be snappy (remote-write 1.0 requires it)");
        }
        for (name, value) in &self.external_labels {
            let path = format!("external_labels::{name}");
            if name.is_empty() {
                checks.fail(&path, "an external label needs a name");
            } else if value.is_empty() {
                checks.fail(&path, "an external label needs a value (an empty value would remove the label)");
            } else if label_name(name).is_empty() || label_name(name).starts_with("__") {
                checks.fail(&path, "not usable as a label name: use letters, digits and `_`, not starting with `__`");
            }
        }
        let q = &self.remote_write_queue;
        if q.enabled && q.queue_size == 0 {
            checks.fail(
                "remote_write_queue::queue_size",
                "a 0 size queue will drop all the data; set it above 0 or disable the queue",
            );
        }
        if q.num_consumers == 0 {
            checks.fail("remote_write_queue::num_consumers", "must be at least 1");
        }
        if let Some(s) = &q.storage {
            if !q.enabled {
                checks.fail(
                    "remote_write_queue::storage",
                    "the persistent queue needs the queue: set enabled: true or remove storage",
                );
            }
            if s.directory.as_os_str().is_empty() {
                checks.fail(
                    "remote_write_queue::storage::directory",
                    "must name a directory, e.g. /var/lib/fovea/queue/prometheusremotewrite",
                );
            } else {
                s.check_directory("remote_write_queue::storage::directory", checks);
            }
            if s.max_size_mib == 0 {
                checks.fail("remote_write_queue::storage::max_size_mib", "must be at least 1");
            }
        }
        self.retry_on_failure.validate("retry_on_failure", checks);
        if self.sending_queue.is_some() {
            checks.fail(
                "sending_queue",
                "prometheusremotewrite has no sending_queue (as in otelcol); its queue is remote_write_queue, \
                 and the persistent queue is remote_write_queue::storage: {directory: ..., max_size_mib: ...}",
            );
        }
        if self.wal.is_some() {
            checks.fail(
                "wal",
                "otelcol's write-ahead log is not supported; use remote_write_queue::storage: {directory: ...}, \
                 a persistent queue that survives outages and restarts",
            );
        }
        self.tls.validate("tls", checks);
    }
}
