//! The OpenTelemetry -> Prometheus translation, shared by the `prometheus` (scrape) and
//! `prometheusremotewrite` exporters and the agent's own `/metrics` page, so every path names,
//! labels and folds a series the same way (otelcol keeps the same in `pkg/translator/prometheus`).
//!
//! - `options.rs`: how series are named and labelled ([`Naming`], [`StoreOptions`]).
//! - `naming.rs`: metric and label names (units, type suffixes, sanitising).
//! - `retina.rs`: the `naming: retina` table (Retina's names and labels).
//! - `store.rs`: the series store: the latest value of every series, placed in its Prometheus
//!   family, with its labels as name/value pairs (rendered once for the text exposition).
//! - `encode.rs`: the text exposition (Prometheus 0.0.4 and OpenMetrics 1.0).

mod encode;
mod naming;
mod options;
mod retina;
mod store;
#[cfg(test)]
mod tests;

pub use encode::{Format, encode_metrics, encode_metrics_with, write_go_float};
pub use naming::{MetricKind, attr_text, is_valid_label_name, label_name, metric_name};
pub use options::{Naming, ResourceToTelemetry, StoreOptions};
pub use retina::{metric_name as retina_metric_name, metric_names as retina_metric_names};
pub use store::{Exposed, Folded, Hist, Labels, Merged, PromKind, Scratch, Store, Touch};
