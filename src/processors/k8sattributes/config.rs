//! `processors::k8sattributes` configuration: otelcol's keys where they apply, plus
//! `delete_grace_period` and `kube_config_path`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::config::{Checks, ComponentConfig};
use crate::model::semconv::{attr, k8s};

/// `k8sattributes:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sAttributesConfig {
    /// How to reach and authenticate to the API server.
    pub auth_type: AuthType,
    /// `auth_type: kubeConfig`: the context to use (default: the file's current context).
    pub context: Option<String>,
    /// `auth_type: kubeConfig`: the file (default: `KUBECONFIG`, else `~/.kube/config`).
    pub kube_config_path: Option<PathBuf>,
    /// No API calls: only add `k8s.pod.ip` (the client's address) to metrics, for a gateway to
    /// associate by.
    pub passthrough: bool,
    /// Wait at start until the cache has synced (at most `wait_for_metadata_timeout`, then fail).
    pub wait_for_metadata: bool,
    /// How long `wait_for_metadata` waits.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub wait_for_metadata_timeout: Duration,
    /// How long a deleted pod's address still names it (unless the address is reused).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub delete_grace_period: Duration,
    /// Which pods to watch.
    pub filter: Filter,
    /// What to add.
    pub extract: Extract,
    /// How a metrics resource is matched to a pod (tried in order; the first rule whose sources
    /// are all present decides).
    pub pod_association: Vec<Association>,
    /// Pods never labelled.
    pub exclude: Exclude,
}

impl Default for K8sAttributesConfig {
    fn default() -> Self {
        K8sAttributesConfig {
            auth_type: AuthType::ServiceAccount,
            context: None,
            kube_config_path: None,
            passthrough: false,
            wait_for_metadata: false,
            wait_for_metadata_timeout: Duration::from_secs(10),
            delete_grace_period: Duration::from_secs(30),
            filter: Filter::default(),
            extract: Extract::default(),
            pod_association: Vec::new(),
            exclude: Exclude::default(),
        }
    }
}

/// `auth_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthType {
    /// In a pod, with its service account.
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// A kubeconfig file.
    #[serde(rename = "kubeConfig")]
    KubeConfig,
    /// The in-cluster address, no credentials.
    #[serde(rename = "none")]
    None,
}

/// `filter:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Only this node's pods.
    pub node: Option<String>,
    /// Only the pods of the node named by this environment variable (the DaemonSet sets
    /// `K8S_NODE_NAME` from `spec.nodeName`).
    pub node_from_env_var: Option<String>,
    /// Only this namespace (pods, Services, ReplicaSets, Jobs).
    pub namespace: Option<String>,
    /// Pod label selector terms.
    pub labels: Vec<SelectorTerm>,
    /// Pod field selector terms.
    pub fields: Vec<SelectorTerm>,
}

/// One `filter.labels` / `filter.fields` term.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorTerm {
    /// Label or field name.
    pub key: String,
    /// Value (not for `exists` / `does-not-exist`).
    #[serde(default)]
    pub value: Option<String>,
    /// `equals` (default), `not-equals`, `exists`, `does-not-exist` (labels only).
    #[serde(default)]
    pub op: SelectorOp,
}

/// How a selector term compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectorOp {
    /// `key=value`.
    #[default]
    Equals,
    /// `key!=value`.
    NotEquals,
    /// `key` (labels).
    Exists,
    /// `!key` (labels).
    DoesNotExist,
}

impl SelectorTerm {
    /// The term in Kubernetes selector syntax.
    pub fn render(&self) -> String {
        let value = self.value.as_deref().unwrap_or("");
        match self.op {
            SelectorOp::Equals => format!("{}={value}", self.key),
            SelectorOp::NotEquals => format!("{}!={value}", self.key),
            SelectorOp::Exists => self.key.clone(),
            SelectorOp::DoesNotExist => format!("!{}", self.key),
        }
    }
}

/// `extract:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Extract {
    /// Metadata names to add; `None` means the default set.
    pub metadata: Option<Vec<String>>,
    /// Labels to add.
    pub labels: Vec<Extraction>,
    /// Annotations to add.
    pub annotations: Vec<Extraction>,
    /// otelcol key fovea does not support (reported by `validate`).
    pub otel_annotations: Option<IgnoredAny>,
    /// otelcol key fovea does not support (reported by `validate`).
    pub deployment_name_from_replicaset: Option<IgnoredAny>,
}

/// The metadata added when `extract.metadata` is not given: everything that names a pod's
/// identity and workload, the node, and the Service of a ClusterIP.
pub const DEFAULT_METADATA: &[&str] = &[
    k8s::NAMESPACE_NAME.plain,
    k8s::POD_NAME.plain,
    k8s::POD_UID.plain,
    k8s::NODE_NAME.plain,
    k8s::WORKLOAD_KIND.plain,
    k8s::WORKLOAD_NAME.plain,
    k8s::DEPLOYMENT_NAME.plain,
    k8s::REPLICASET_NAME.plain,
    k8s::STATEFULSET_NAME.plain,
    k8s::DAEMONSET_NAME.plain,
    k8s::JOB_NAME.plain,
    k8s::CRONJOB_NAME.plain,
    k8s::SERVICE_NAME.plain,
];

/// One `extract.labels` / `extract.annotations` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extraction {
    /// The attribute name (`$1` ... refer to `key_regex` captures); default `k8s.<from>.label.<key>`.
    #[serde(default)]
    pub tag_name: Option<String>,
    /// One key.
    #[serde(default)]
    pub key: Option<String>,
    /// Every key this expression matches (anchored).
    #[serde(default)]
    pub key_regex: Option<String>,
    /// `pod` (default), `namespace` or `node`.
    #[serde(default = "default_from")]
    pub from: String,
}

fn default_from() -> String {
    "pod".into()
}

/// One `pod_association` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Association {
    /// Every source must be present, and all must name the same pod.
    pub sources: Vec<AssociationSource>,
}

/// One source of a `pod_association` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationSource {
    /// `connection` (the client's address) or `resource_attribute`.
    pub from: AssociationFrom,
    /// For `resource_attribute`: `k8s.pod.ip` or `k8s.pod.uid`.
    #[serde(default)]
    pub name: Option<String>,
}

/// Where an association value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssociationFrom {
    /// The address of the client that sent the data (OTLP receiver).
    Connection,
    /// A resource attribute.
    ResourceAttribute,
}

/// `exclude:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exclude {
    /// Pods by name (anchored regular expressions).
    pub pods: Vec<ExcludePod>,
}

/// One excluded pod name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludePod {
    /// The name expression.
    pub name: String,
}

/// Where labels and annotations may be read from.
pub const SOURCES: &[&str] = &["pod", "namespace", "node"];

/// Association attributes fovea can look a pod up by.
pub const ASSOCIATION_ATTRIBUTES: &[&str] = &[attr::K8S_POD_IP, attr::K8S_POD_UID];

impl ComponentConfig for K8sAttributesConfig {
    fn validate(&self, checks: &mut Checks) {
        if self.context.is_some() && self.auth_type != AuthType::KubeConfig {
            checks.fail("context", "only applies to auth_type: kubeConfig");
        }
        if self.kube_config_path.is_some() && self.auth_type != AuthType::KubeConfig {
            checks.fail("kube_config_path", "only applies to auth_type: kubeConfig");
        }
        if self.wait_for_metadata && self.wait_for_metadata_timeout.is_zero() {
            checks.fail("wait_for_metadata_timeout", "must be more than 0 when wait_for_metadata is true");
        }
        if self.filter.node.is_some() && self.filter.node_from_env_var.is_some() {
            checks.fail("filter::node_from_env_var", "set either filter::node or filter::node_from_env_var, not both");
        }
        for (i, term) in self.filter.fields.iter().enumerate() {
            if !matches!(term.op, SelectorOp::Equals | SelectorOp::NotEquals) {
                checks.fail(&format!("filter::fields::{i}::op"), "field selectors support only equals and not-equals");
            }
        }
        for (what, terms) in [("labels", &self.filter.labels), ("fields", &self.filter.fields)] {
            for (i, term) in terms.iter().enumerate() {
                let needs_value = matches!(term.op, SelectorOp::Equals | SelectorOp::NotEquals);
                if needs_value != term.value.is_some() {
                    let message = if needs_value { "needs a value" } else { "takes no value with this op" };
                    checks.fail(&format!("filter::{what}::{i}::value"), message);
                }
            }
        }
        if self.extract.otel_annotations.is_some() {
            checks.fail(
                "extract::otel_annotations",
                "otelcol key not supported by fovea (flows have no resource to annotate); remove it",
            );
        }
        if self.extract.deployment_name_from_replicaset.is_some() {
            checks.fail(
                "extract::deployment_name_from_replicaset",
                "otelcol key not supported by fovea: the Deployment always comes from the ReplicaSet's owner (a \
                 metadata-only ReplicaSet watch); remove it",
            );
        }
        if let Some(metadata) = &self.extract.metadata {
            let supported: Vec<&str> = k8s::METADATA.iter().map(|a| a.plain).collect();
            for (i, name) in metadata.iter().enumerate() {
                if !supported.contains(&name.as_str()) {
                    checks.fail(
                        &format!("extract::metadata::{i}"),
                        format!("`{name}` is not supported; supported: {}", supported.join(", ")),
                    );
                }
            }
        }
        for (what, rules) in [("labels", &self.extract.labels), ("annotations", &self.extract.annotations)] {
            for (i, rule) in rules.iter().enumerate() {
                let at = format!("extract::{what}::{i}");
                match (&rule.key, &rule.key_regex) {
                    (None, None) => checks.fail(&at, "needs key or key_regex"),
                    (Some(_), Some(_)) => checks.fail(&format!("{at}::key_regex"), "set key or key_regex, not both"),
                    (None, Some(re)) => {
                        if let Err(e) = regex::Regex::new(re) {
                            checks.fail(&format!("{at}::key_regex"), format!("not a valid regular expression: {e}"));
                        }
                    }
                    (Some(_), None) => {}
                }
                if !SOURCES.contains(&rule.from.as_str()) {
                    checks.fail(
                        &format!("{at}::from"),
                        format!(
                            "`{}` is not supported (fovea does not watch workload objects); valid: {}",
                            rule.from,
                            SOURCES.join(", ")
                        ),
                    );
                }
            }
        }
        for (i, rule) in self.pod_association.iter().enumerate() {
            let at = format!("pod_association::{i}::sources");
            if rule.sources.is_empty() || rule.sources.len() > 4 {
                checks.fail(&at, "a rule has one to four sources");
            }
            for (j, source) in rule.sources.iter().enumerate() {
                match (source.from, source.name.as_deref()) {
                    (AssociationFrom::Connection, Some(_)) => {
                        checks.fail(&format!("{at}::{j}::name"), "from: connection takes no name");
                    }
                    (AssociationFrom::ResourceAttribute, name)
                        if !name.is_some_and(|n| ASSOCIATION_ATTRIBUTES.contains(&n)) =>
                    {
                        checks.fail(
                            &format!("{at}::{j}::name"),
                            format!("from: resource_attribute needs name {}", ASSOCIATION_ATTRIBUTES.join(" or ")),
                        );
                    }
                    _ => {}
                }
            }
        }
        for (i, pod) in self.exclude.pods.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&pod.name) {
                checks.fail(&format!("exclude::pods::{i}::name"), format!("not a valid regular expression: {e}"));
            }
        }
    }
}
