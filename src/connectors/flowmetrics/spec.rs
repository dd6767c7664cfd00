//! What the connector makes right now: which metrics, which context labels per end, which
//! namespaces, and how long idle series live. It comes from the config, from Retina's
//! annotations, or from the cluster's MetricsConfiguration, and can change while running.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{FlowMetricsConfig, LabelOption, MetricName, Mode};

/// A set of context label options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LabelSet(u8);

impl LabelSet {
    /// The set of `options`.
    pub fn of(options: impl IntoIterator<Item = LabelOption>) -> Self {
        LabelSet(options.into_iter().fold(0, |bits, o| bits | 1 << o as u8))
    }

    /// Whether `option` is in the set.
    pub fn has(self, option: LabelOption) -> bool {
        self.0 & (1 << option as u8) != 0
    }

    /// True when no option is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// How one metric is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    /// Labels of the source end (or the local endpoint in local mode).
    pub source: LabelSet,
    /// Labels of the destination end (remote mode).
    pub destination: LabelSet,
    /// Series of this metric not updated for this long are removed (`None`: kept).
    pub ttl: Option<Duration>,
}

/// Which namespaces' pods are observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace.
    #[default]
    All,
    /// Only these.
    Include(Vec<String>),
    /// All but these.
    Exclude(Vec<String>),
}

impl Namespaces {
    /// From include/exclude lists (include wins when both are given; config validation refuses that).
    pub fn from_lists(include: &[String], exclude: &[String]) -> Self {
        if !include.is_empty() {
            Namespaces::Include(include.to_vec())
        } else if !exclude.is_empty() {
            Namespaces::Exclude(exclude.to_vec())
        } else {
            Namespaces::All
        }
    }

    /// Whether a pod of `namespace` (`None`: the end is not a pod) is observed.
    pub fn admits(&self, namespace: Option<&str>) -> bool {
        match (self, namespace) {
            (Namespaces::All, _) => true,
            (Namespaces::Include(list), Some(ns)) => list.iter().any(|n| n == ns),
            (Namespaces::Exclude(list), Some(ns)) => !list.iter().any(|n| n == ns),
            (_, None) => false,
        }
    }
}

/// The whole selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Basic, remote or local context.
    pub mode: Mode,
    /// The metrics made, each with its labels.
    pub metrics: BTreeMap<MetricName, MetricSpec>,
    /// Observed namespaces.
    pub namespaces: Namespaces,
}

impl Spec {
    /// The selection a config describes.
    pub fn from_config(c: &FlowMetricsConfig) -> Self {
        let ttl = (!c.metric_expiration.is_zero()).then_some(c.metric_expiration);
        let labels = MetricSpec {
            source: LabelSet::of(c.labels.source.iter().copied()),
            destination: LabelSet::of(c.labels.destination.iter().copied()),
            ttl,
        };
        Spec {
            mode: c.mode,
            metrics: c.metrics.iter().map(|m| (*m, labels)).collect(),
            namespaces: Namespaces::from_lists(&c.namespaces.include, &c.namespaces.exclude),
        }
    }

    /// How `metric` is made, if it is.
    pub fn metric(&self, metric: MetricName) -> Option<&MetricSpec> {
        self.metrics.get(&metric)
    }
}
