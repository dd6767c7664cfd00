//! What the cache needs to know before it starts: how to authenticate, which pods to watch, how
//! long a deleted pod still answers. Every `k8sattributes` instance must agree on these, since
//! there is one cache per process.

use std::path::PathBuf;
use std::time::Duration;

/// How the cache authenticates to the API server (otelcol's `auth_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// In a pod: `KUBERNETES_SERVICE_HOST`/`PORT`, the service-account token (re-read when the
    /// kubelet rotates it) and the cluster CA.
    ServiceAccount,
    /// A kubeconfig file (`path`, else `KUBECONFIG`, else `~/.kube/config`) and optional context.
    KubeConfig {
        /// The file.
        path: Option<PathBuf>,
        /// The context (default: the file's current context).
        context: Option<String>,
    },
    /// The in-cluster address and CA, no credentials.
    None,
}

/// Which pods the cache watches and how long deleted ones answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// How to authenticate.
    pub auth: Auth,
    /// Watch only the pods of this node (`fieldSelector=spec.nodeName=<node>`).
    pub node: Option<String>,
    /// Watch only this namespace's pods, Services, ReplicaSets and Jobs.
    pub namespace: Option<String>,
    /// Extra pod label selector (`app=cart,tier!=db`).
    pub pod_label_selector: Option<String>,
    /// Extra pod field selector (`status.phase=Running`).
    pub pod_field_selector: Option<String>,
    /// How long a deleted pod's address still names it (unless reused).
    pub delete_grace_period: Duration,
    /// Pods whose name matches one of these (anchored) expressions are not cached.
    pub exclude_pods: Vec<String>,
}

impl CacheSettings {
    /// The pod watch's field selector: the node filter and the extra fields.
    pub fn pod_fields(&self) -> Option<String> {
        let node = self.node.as_ref().map(|n| format!("spec.nodeName={n}"));
        let parts: Vec<String> = node.into_iter().chain(self.pod_field_selector.clone()).collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }
}
