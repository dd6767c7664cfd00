//! What the connector makes right now: which metrics, which context labels per end, which
//! namespaces, and how long idle series live. It comes from the config, from Retina's
//! annotations, or from the cluster's MetricsConfiguration, and can change while running.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{FlowMetricsConfig, LabelOption, MetricName, Mode};
use crate::k8s::MetricsConfiguration;

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

impl Spec {
    /// Retina's annotation mode: every metric, with Retina's default labels (ip, namespace,
    /// podname, workload) on both ends; which pods count is decided by their annotations.
    pub fn annotations(mode: Mode, ttl: Option<Duration>) -> Self {
        let labels =
            LabelSet::of([LabelOption::Ip, LabelOption::Namespace, LabelOption::Podname, LabelOption::Workload]);
        let spec = MetricSpec { source: labels, destination: labels, ttl };
        Spec { mode, metrics: MetricName::ALL.iter().map(|m| (*m, spec)).collect(), namespaces: Namespaces::All }
    }

    /// What a `MetricsConfiguration` asks for, validated as Retina's operator validates it:
    /// exactly one of `namespaces.include` / `exclude`, known metric names, durations that
    /// parse. Label strings Retina does not know are ignored, as Retina ignores them.
    pub fn from_metrics_configuration(mode: Mode, c: &MetricsConfiguration) -> Result<Self, String> {
        let namespaces = match (&c.include, &c.exclude) {
            (Some(include), None) => Namespaces::from_lists(include, &[]),
            (None, Some(exclude)) => Namespaces::from_lists(&[], exclude),
            _ => return Err("spec.namespaces needs exactly one of include and exclude".to_string()),
        };
        if c.context_options.is_empty() {
            return Err("spec.contextOptions is empty".to_string());
        }
        let mut metrics = BTreeMap::new();
        for option in &c.context_options {
            let metric = MetricName::parse(&option.metric_name)
                .ok_or_else(|| format!("metricName `{}` is not a pod-level metric fovea makes", option.metric_name))?;
            let ttl = match option.ttl.as_str() {
                "" | "0" => None,
                text => {
                    let ttl =
                        crate::config::duration::parse(text).map_err(|e| format!("ttl of {}: {e}", metric.as_str()))?;
                    (!ttl.is_zero()).then_some(ttl)
                }
            };
            let labels = |texts: &[String]| LabelSet::of(texts.iter().filter_map(|t| LabelOption::parse(t)));
            metrics.insert(
                metric,
                MetricSpec {
                    source: labels(&option.source_labels),
                    destination: labels(&option.destination_labels),
                    ttl,
                },
            );
        }
        Ok(Spec { mode, metrics, namespaces })
    }
}
